//! DNS-rebinding protection in front of both servers.
//!
//! A web page from anywhere can make the visitor's browser send requests to
//! `127.0.0.1:8989` by pointing a name it controls at the loopback address; the
//! browser then sends that name in `Host`. So while a server listens on a loopback
//! address (where no token is required), it answers only requests whose `Host` (or
//! HTTP/2 `:authority`) names a loopback literal (`127.x.y.z`, `[::1]`),
//! `localhost`, or the listen address, with any port or none, and whose `Origin`,
//! when there is one, is an http(s) origin on such a host; others get 421 with a
//! JSON error. The `Origin` rule stops pages elsewhere from opening a JSON-RPC
//! WebSocket to the loopback address itself, which browsers allow without asking.
//! A request without any host passes: browsers always send one. A server on any
//! other address (which demands a token) accepts every host and origin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::model::ApiError;
use crate::AppState;

/// Lets a request through unless the server listens on loopback and the request
/// names a host that is not a loopback one.
pub(crate) async fn require_local_host(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(listen) = state.listen.filter(|a| is_loopback(a.ip())) else {
        return next.run(req).await;
    };
    let header_host = req.headers().get(header::HOST).map(|v| v.to_str().ok());
    let authority = req.uri().authority().map(|a| a.as_str());
    let named = [header_host, authority.map(Some)];
    let hosts_ok = named
        .iter()
        .flatten()
        .all(|host| host.is_some_and(|h| is_local_host(h, listen.ip())));
    // A page elsewhere may open a WebSocket to 127.0.0.1 itself (no preflight, the
    // right Host); its browser names the page's origin, which must be local too.
    let origin_ok = match req.headers().get(header::ORIGIN) {
        None => true,
        Some(o) => o.to_str().is_ok_and(|o| is_local_origin(o, listen.ip())),
    };
    if hosts_ok && origin_ok {
        next.run(req).await
    } else {
        misdirected()
    }
}

/// Whether `ip` is a loopback address, IPv4-mapped ones included.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`) names a
/// loopback literal, `localhost`, or `listen`.
pub(crate) fn is_local_host(host: &str, listen: IpAddr) -> bool {
    let port_ok = |p: &str| p.is_empty() || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => p,
            Some(_) => return false,
            None if after.is_empty() => "",
            None => return false,
        };
        let Ok(ip) = inner.parse::<Ipv6Addr>() else {
            return false;
        };
        return port_ok(port) && (is_loopback(IpAddr::V6(ip)) || IpAddr::V6(ip) == listen);
    }
    let (name, port) = match host.split_once(':') {
        Some((_, "")) => return false,
        Some((name, port)) => (name, port),
        None => (host, ""),
    };
    if !port_ok(port) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") || name.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match name.parse::<Ipv4Addr>() {
        Ok(ip) => ip.is_loopback() || IpAddr::V4(ip) == listen,
        Err(_) => false,
    }
}

/// Whether an `Origin` (`scheme://host[:port]`) names a local host; `null` and
/// anything else that is not such an origin do not.
fn is_local_origin(origin: &str, listen: IpAddr) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    ["http", "https"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        && is_local_host(host, listen)
}

fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        Json(ApiError {
            error: "this API listens on a loopback address and answers only requests for \
                    localhost or a loopback address (Host header) from such an origin"
                .to_owned(),
        }),
    )
        .into_response()
}

/// The listen address of a server, for [`require_local_host`].
pub(crate) fn listen_addr(listener: &tokio::net::TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_pass_and_others_do_not() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8989",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8989",
            "localhost",
            "LocalHost:8989",
            "localhost.:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_local_host(ok, v4), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8989",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8989",
            "[2001:db8::1]:8989",
            "[::1",
            "[::1]x",
            "[::1]:",
            "127.0.0.1:",
            "127.0.0.1:80:80",
            "127.0.0.1:http",
            "",
            "::1",
        ] {
            assert!(!is_local_host(bad, v4), "{bad}");
        }
    }

    #[test]
    fn only_local_origins_pass() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for ok in [
            "http://127.0.0.1:8989",
            "http://localhost",
            "HTTPS://[::1]:1",
        ] {
            assert!(is_local_origin(ok, v4), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "file://",
            "ws://127.0.0.1",
            "",
        ] {
            assert!(!is_local_origin(bad, v4), "{bad}");
        }
    }

    #[test]
    fn the_listen_address_passes() {
        let v6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(is_local_host("[::1]:8989", v6));
        assert!(is_loopback("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!is_loopback(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    }
}
