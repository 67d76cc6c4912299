//! Peer endpoints: where a peer link goes, as the command line, the config file and
//! the API name it.
//!
//! An [`Endpoint`] is a transport ([`Protocol`]) and an address: an IP socket address
//! for TCP, QUIC and TLS, a `CID:PORT` pair for vsock. Its text form is the URI
//! `tcp://1.2.3.4:9651`; [`Endpoint::human`] gives the capitalised form the CLI
//! tables and logs use (`Tcp 1.2.3.4:9651`). Parsing accepts what upstream accepts
//! (scheme in any case, IP addresses only, IPv6 in brackets) and fails with
//! upstream's error texts, which the API returns verbatim in its 400 answers.
//!
//! This module only names endpoints; dialling them belongs to the node.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::num::ParseIntError;
use std::str::FromStr;

/// The separator between the scheme and the address of an endpoint URI.
const SCHEME_SEPARATOR: &str = "://";

/// The transport of a peer link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Plain TCP.
    Tcp,
    /// QUIC over UDP.
    Quic,
    /// TLS 1.3 with a pre-shared key over TCP (private networks only).
    Tls,
    /// Linux VM sockets.
    Vsock,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: [Self; 4] = [Self::Tcp, Self::Quic, Self::Tls, Self::Vsock];

    /// The URI scheme and API name: `tcp`, `quic`, `tls`, `vsock`.
    pub const fn scheme(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::Tls => "tls",
            Self::Vsock => "vsock",
        }
    }

    /// The capitalised name the CLI tables and logs use: `Tcp`, `Quic`, `Tls`,
    /// `Vsock`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "Tcp",
            Self::Quic => "Quic",
            Self::Tls => "Tls",
            Self::Vsock => "Vsock",
        }
    }

    /// The protocol whose scheme is `scheme`, compared without regard to ASCII case.
    pub fn from_scheme(scheme: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.scheme().eq_ignore_ascii_case(scheme))
    }

    /// Whether the address of this protocol is an IP socket address (every protocol
    /// but vsock).
    pub const fn uses_socket_addr(self) -> bool {
        !matches!(self, Self::Vsock)
    }
}

/// Writes the scheme (`tcp`).
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// A vsock address: context id and port, both decimal `u32` in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VsockAddr {
    /// The context id of the machine (2 is the host).
    pub cid: u32,
    /// The port on that machine.
    pub port: u32,
}

/// Writes `CID:PORT`.
impl fmt::Display for VsockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.cid, self.port)
    }
}

/// The address part of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An IP socket address (TCP, QUIC, TLS).
    Socket(SocketAddr),
    /// A vsock address.
    Vsock(VsockAddr),
}

/// Writes the address as it appears after `://`.
impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(a) => a.fmt(f),
            Self::Vsock(a) => a.fmt(f),
        }
    }
}

/// A peer endpoint: a protocol and an address of the kind that protocol uses.
///
/// The pairing is an invariant: TCP, QUIC and TLS endpoints always hold a socket
/// address and vsock endpoints a vsock address, so the URI form always parses back
/// to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    proto: Protocol,
    addr: EndpointAddr,
}

/// An address that is not of the kind its protocol uses (see [`Endpoint::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {proto} endpoint cannot have the address {addr}")]
pub struct AddrKindMismatch {
    /// The protocol asked for.
    pub proto: Protocol,
    /// The address given.
    pub addr: EndpointAddr,
}

impl Endpoint {
    /// An endpoint of `proto` at `addr`; an error if the address is not of the kind
    /// `proto` uses (a socket address for vsock, or a vsock address for the rest).
    pub const fn new(proto: Protocol, addr: EndpointAddr) -> Result<Self, AddrKindMismatch> {
        match (proto.uses_socket_addr(), addr) {
            (true, EndpointAddr::Socket(_)) | (false, EndpointAddr::Vsock(_)) => {
                Ok(Self { proto, addr })
            }
            _ => Err(AddrKindMismatch { proto, addr }),
        }
    }

    /// A plain TCP endpoint.
    pub const fn tcp(addr: SocketAddr) -> Self {
        Self {
            proto: Protocol::Tcp,
            addr: EndpointAddr::Socket(addr),
        }
    }

    /// A QUIC endpoint.
    pub const fn quic(addr: SocketAddr) -> Self {
        Self {
            proto: Protocol::Quic,
            addr: EndpointAddr::Socket(addr),
        }
    }

    /// A TLS-PSK endpoint (private networks).
    pub const fn tls(addr: SocketAddr) -> Self {
        Self {
            proto: Protocol::Tls,
            addr: EndpointAddr::Socket(addr),
        }
    }

    /// A vsock endpoint.
    pub const fn vsock(addr: VsockAddr) -> Self {
        Self {
            proto: Protocol::Vsock,
            addr: EndpointAddr::Vsock(addr),
        }
    }

    /// The transport.
    pub const fn proto(&self) -> Protocol {
        self.proto
    }

    /// The address.
    pub const fn addr(&self) -> EndpointAddr {
        self.addr
    }

    /// The socket address of a TCP, QUIC or TLS endpoint; `None` for vsock.
    pub const fn socket_addr(&self) -> Option<SocketAddr> {
        match self.addr {
            EndpointAddr::Socket(a) => Some(a),
            EndpointAddr::Vsock(_) => None,
        }
    }

    /// The form CLI tables and logs show: `Tcp 1.2.3.4:9651`, `Vsock 2:9651`.
    pub fn human(&self) -> impl fmt::Display + '_ {
        Human(self)
    }
}

/// Writes the URI form, `tcp://1.2.3.4:9651`, with a lowercase scheme.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SCHEME_SEPARATOR}{}", self.proto, self.addr)
    }
}

struct Human<'a>(&'a Endpoint);

impl fmt::Display for Human<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.proto.name(), self.0.addr)
    }
}

/// Why an endpoint URI did not parse. The texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointParseError {
    /// There is no `://`.
    #[error("missing leading protocol identifier")]
    MissingProtocol,
    /// The scheme is none of `tcp`, `quic`, `tls`, `vsock`.
    #[error("protocol for endpoint is not supported")]
    UnsupportedProtocol,
    /// The address of a TCP, QUIC or TLS endpoint is not an IP socket address.
    #[error("failed to parse address: {0}")]
    Address(AddrParseError),
    /// The CID or the port of a vsock address is not a decimal `u32`.
    #[error("failed to parse vsock address component: {0}")]
    VsockComponent(ParseIntError),
    /// A vsock address that is not two components separated by one `:`.
    #[error("vsock address must be in CID:PORT format")]
    VsockFormat,
}

impl FromStr for Endpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, addr) = s
            .split_once(SCHEME_SEPARATOR)
            .ok_or(EndpointParseError::MissingProtocol)?;
        let proto = Protocol::from_scheme(scheme).ok_or(EndpointParseError::UnsupportedProtocol)?;
        let addr = if proto.uses_socket_addr() {
            EndpointAddr::Socket(addr.parse().map_err(EndpointParseError::Address)?)
        } else {
            EndpointAddr::Vsock(addr.parse()?)
        };
        Ok(Self { proto, addr })
    }
}

impl FromStr for VsockAddr {
    type Err = EndpointParseError;

    /// Parses `CID:PORT`, both decimal `u32`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cid, port) = s.split_once(':').ok_or(EndpointParseError::VsockFormat)?;
        if port.contains(':') {
            return Err(EndpointParseError::VsockFormat);
        }
        let component = |c: &str| c.parse::<u32>().map_err(EndpointParseError::VsockComponent);
        Ok(Self {
            cid: component(cid)?,
            port: component(port)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed parse in a test should fail it loudly

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn parse(s: &str) -> Result<Endpoint, EndpointParseError> {
        s.parse()
    }

    #[test]
    fn every_scheme_parses_in_any_case() {
        let v4: SocketAddr = "1.2.3.4:9651".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:9651".parse().unwrap();
        assert_eq!(parse("tcp://1.2.3.4:9651").unwrap(), Endpoint::tcp(v4));
        assert_eq!(parse("TCP://1.2.3.4:9651").unwrap(), Endpoint::tcp(v4));
        assert_eq!(
            parse("Quic://[2001:db8::1]:9651").unwrap(),
            Endpoint::quic(v6)
        );
        assert_eq!(parse("tLs://1.2.3.4:9651").unwrap(), Endpoint::tls(v4));
        assert_eq!(
            parse("VSOCK://2:9651").unwrap(),
            Endpoint::vsock(VsockAddr { cid: 2, port: 9651 })
        );
    }

    #[test]
    fn uri_form_has_a_lowercase_scheme() {
        let ep = parse("QUIC://[2a01:4f8:212:fa6::2]:9651").unwrap();
        assert_eq!(ep.to_string(), "quic://[2a01:4f8:212:fa6::2]:9651");
        assert_eq!(
            parse("Vsock://4294967295:0").unwrap().to_string(),
            "vsock://4294967295:0"
        );
    }

    #[test]
    fn human_form_matches_the_cli_tables() {
        assert_eq!(
            parse("tcp://1.2.3.4:9651").unwrap().human().to_string(),
            "Tcp 1.2.3.4:9651"
        );
        assert_eq!(
            parse("quic://[::ffff:127.0.0.1]:29652")
                .unwrap()
                .human()
                .to_string(),
            "Quic [::ffff:127.0.0.1]:29652"
        );
        assert_eq!(
            parse("tls://1.2.3.4:1").unwrap().human().to_string(),
            "Tls 1.2.3.4:1"
        );
        assert_eq!(
            parse("vsock://2:9651").unwrap().human().to_string(),
            "Vsock 2:9651"
        );
    }

    #[test]
    fn missing_scheme_is_refused_with_upstreams_text() {
        for s in ["", "1.2.3.4:9651", "tcp:/1.2.3.4:9651", "tcp:1.2.3.4:9651"] {
            let err = parse(s).unwrap_err();
            assert_eq!(err, EndpointParseError::MissingProtocol, "{s}");
            assert_eq!(err.to_string(), "missing leading protocol identifier");
        }
    }

    #[test]
    fn unknown_scheme_is_refused_with_upstreams_text() {
        for s in [
            "udp://1.2.3.4:1",
            "://1.2.3.4:1",
            " tcp://1.2.3.4:1",
            "tcpx://1.2.3.4:1",
        ] {
            let err = parse(s).unwrap_err();
            assert_eq!(err, EndpointParseError::UnsupportedProtocol, "{s}");
            assert_eq!(err.to_string(), "protocol for endpoint is not supported");
        }
    }

    #[test]
    fn host_names_and_bare_ipv6_are_refused() {
        for s in [
            "tcp://localhost:9651",
            "tcp://example.com:9651",
            "quic://2001:db8::1:9651",
            "tcp://1.2.3.4",
            "tcp://1.2.3.4:65536",
            "tls://[2001:db8::1]",
            "tcp://",
        ] {
            let err = parse(s).unwrap_err();
            assert!(
                matches!(err, EndpointParseError::Address(_)),
                "{s}: {err:?}"
            );
            assert!(
                err.to_string().starts_with("failed to parse address: "),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_vsock_addresses_are_refused_with_upstreams_texts() {
        for s in ["vsock://2", "vsock://", "vsock://1:2:3"] {
            let err = parse(s).unwrap_err();
            assert_eq!(err, EndpointParseError::VsockFormat, "{s}");
            assert_eq!(err.to_string(), "vsock address must be in CID:PORT format");
        }
        for s in [
            "vsock://a:1",
            "vsock://1:",
            "vsock://4294967296:1",
            "vsock://-1:1",
        ] {
            let err = parse(s).unwrap_err();
            assert!(matches!(err, EndpointParseError::VsockComponent(_)), "{s}");
            assert!(
                err.to_string()
                    .starts_with("failed to parse vsock address component: "),
                "{err}"
            );
        }
    }

    #[test]
    fn address_kind_must_match_the_protocol() {
        let sock = EndpointAddr::Socket(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 1));
        let vsock = EndpointAddr::Vsock(VsockAddr { cid: 3, port: 1 });
        for proto in [Protocol::Tcp, Protocol::Quic, Protocol::Tls] {
            assert_eq!(Endpoint::new(proto, sock).unwrap().proto(), proto);
            assert!(Endpoint::new(proto, vsock).is_err());
        }
        assert!(Endpoint::new(Protocol::Vsock, sock).is_err());
        let ep = Endpoint::new(Protocol::Vsock, vsock).unwrap();
        assert_eq!(ep.addr(), vsock);
        assert_eq!(ep.socket_addr(), None);
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        let ip = prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ];
        (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        prop_oneof![
            socket_addr().prop_map(Endpoint::tcp),
            socket_addr().prop_map(Endpoint::quic),
            socket_addr().prop_map(Endpoint::tls),
            (any::<u32>(), any::<u32>())
                .prop_map(|(cid, port)| Endpoint::vsock(VsockAddr { cid, port })),
        ]
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parsing_uri_shaped_strings_never_panics(
            s in "(?i)(tcp|quic|tls|vsock|udp)?(://)?[0-9a-f:.\\[\\]%-]{0,48}"
        ) {
            if let Ok(ep) = parse(&s) {
                // Whatever parses prints back to something that parses the same.
                prop_assert_eq!(parse(&ep.to_string()), Ok(ep));
            }
        }

        #[test]
        fn uri_form_parses_back(ep in endpoint()) {
            prop_assert_eq!(parse(&ep.to_string()), Ok(ep));
            let upper = ep.to_string().replacen(ep.proto().scheme(), &ep.proto().scheme().to_uppercase(), 1);
            prop_assert_eq!(parse(&upper), Ok(ep));
        }
    }
}
