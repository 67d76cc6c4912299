//! What a request names: the host value (from `Forwarded`, `X-Forwarded-Host`,
//! `Host` or the request target, first found wins), the metadata id and the
//! registry it encodes (`<32 hex id>.<registry host[:port]>`), and the metadata
//! key of the `key` query parameter. Also the registry allow-list's entries.
//!
//! Pure functions over header values and strings; nothing here fetches.

use std::net::IpAddr;

use axum::http::{HeaderMap, Uri};

/// The host value of a request, by upstream's precedence; `None` when there is
/// none. Header values that are not visible ASCII are passed over.
pub fn host_value(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let first = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(host) = first("forwarded").and_then(forwarded_host) {
        return Some(host);
    }
    if let Some(v) = first("x-forwarded-host") {
        return Some(v.to_owned());
    }
    if let Some(v) = first("host") {
        return Some(v.to_owned());
    }
    uri.authority().map(|a| {
        let a = a.as_str();
        a.rsplit_once('@').map_or(a, |(_, host)| host).to_owned()
    })
}

/// The `host=` pair of the first element of a `Forwarded` value.
fn forwarded_host(value: &str) -> Option<String> {
    let element = value.split(',').next().unwrap_or_default();
    element.split(';').find_map(|pair| {
        let (name, v) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim_matches(' ').trim_matches('"').to_owned())
    })
}

/// What a host value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The metadata id (first label).
    pub id: [u8; 16],
    /// The registry: every other label, with any port (empty if none).
    pub registry: String,
}

/// Why a host value or query names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The first label is not 32 hex digits.
    #[error("the first label of the host is not a 32-digit hex id")]
    BadId,
    /// `key` is not at least 32 hex digits of even length, or is repeated.
    #[error("bad key parameter")]
    BadKey,
    /// The query string does not decode to UTF-8.
    #[error("undecodable query string")]
    BadQuery,
}

/// Splits a host value into the metadata id and the registry.
pub fn parse_target(host: &str) -> Result<Target, InputError> {
    let (label, registry) = host.split_once('.').unwrap_or((host, ""));
    Ok(Target {
        id: hex16(label).ok_or(InputError::BadId)?,
        registry: registry.to_owned(),
    })
}

/// Exactly 32 hex digits, either case.
fn hex16(s: &str) -> Option<[u8; 16]> {
    let mut out = [0; 16];
    (s.len() == 32 && hex::decode_to_slice(s, &mut out).is_ok()).then_some(out)
}

/// The metadata key of a query string: `None` without a `key` parameter.
/// Present, it must be hex of even length and at least 32 digits; the first 32
/// are the key.
pub fn parse_key(query: Option<&str>) -> Result<Option<[u8; 16]>, InputError> {
    let mut key = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(name)? != "key" {
            // Still has to decode, as a whole query string does upstream.
            decode_component(value)?;
            continue;
        }
        if key.is_some() {
            return Err(InputError::BadKey);
        }
        key = Some(decode_component(value)?);
    }
    let Some(key) = key else { return Ok(None) };
    let valid = key.len() >= 32 && key.len() % 2 == 0 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(InputError::BadKey);
    }
    hex16(&key[..32]).map(Some).ok_or(InputError::BadKey)
}

/// One `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte.
fn decode_component(s: &str) -> Result<String, InputError> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| InputError::BadQuery)
}

/// A registry as host and port: an allow-list entry, or what a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// Host name (lower case) or IP address (IPv6 in brackets).
    pub host: String,
    /// TCP port; 80 when not given.
    pub port: u16,
}

impl RegistryHost {
    /// Parses `host[:port]`, `[v6][:port]`; `None` for an empty host, a bad port
    /// or characters no host name has.
    pub fn parse(s: &str) -> Option<Self> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{v6}]"), port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (s.to_owned(), None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse().ok()?,
        };
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._[]:".contains(c);
        if host.is_empty() || !host.chars().all(ok_char) {
            return None;
        }
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether the registry is on this machine: `localhost` or a loopback
    /// address. Only such a registry's metadata may point shard fetches at
    /// this machine's own addresses (see [`local_scope`]).
    pub fn is_local(&self) -> bool {
        let literal = self.host.trim_start_matches('[').trim_end_matches(']');
        self.host == "localhost"
            || self.host.ends_with(".localhost")
            || literal
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// Whether `ip` reaches only this machine or its links: loopback, unspecified,
/// link-local, multicast or broadcast (IPv4-mapped forms included). Metadata
/// anyone may publish on a public registry must not make the node connect to
/// services listening there.
pub fn local_scope(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl std::fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 80 {
            f.write_str(&self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests;
