//! What the node options accept and fall back to: the built-in defaults, the bounds
//! on their values and the private network name check. The command line (`args`),
//! the config file (`config`) and the resolved settings (`settings`) all take them
//! from here. A leaf: it uses no other module of this crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Default TCP (or TLS) listen port.
pub const DEFAULT_TCP_LISTEN_PORT: u16 = 9651;
/// Default QUIC port.
pub const DEFAULT_QUIC_LISTEN_PORT: u16 = 9651;
/// Default link-local discovery port.
pub const DEFAULT_PEER_DISCOVERY_PORT: u16 = 9650;
/// Default HTTP API listen address.
pub const DEFAULT_API_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8989);
/// Default JSON-RPC listen address.
pub const DEFAULT_JSONRPC_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8990);
/// Default number of route update processors.
pub const DEFAULT_UPDATE_WORKERS: usize = 1;
/// The most update processors upstream can run; it panics from 255 on.
pub const MAX_UPDATE_WORKERS: usize = 254;
/// Default TUN device name.
#[cfg(target_os = "macos")]
pub const DEFAULT_TUN_NAME: &str = "utun0";
/// Default TUN device name.
#[cfg(not(target_os = "macos"))]
pub const DEFAULT_TUN_NAME: &str = "mycelium";

/// The resource limits: ranges and defaults.
pub mod limits;

/// Shortest and longest private network name in bytes.
#[cfg(feature = "private")]
const NETWORK_NAME_LEN: std::ops::RangeInclusive<usize> = 2..=64;

/// Checks a private network name: 2 to 64 bytes. The error text is
/// upstream's.
#[cfg(feature = "private")]
pub fn parse_network_name(name: &str) -> Result<String, NetworkNameError> {
    if NETWORK_NAME_LEN.contains(&name.len()) {
        Ok(name.to_owned())
    } else {
        Err(NetworkNameError)
    }
}

/// A private network name outside 2..=64 bytes.
#[cfg(feature = "private")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkNameError;

#[cfg(feature = "private")]
impl std::fmt::Display for NetworkNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("network name must be between 2 and 64 characters")
    }
}

#[cfg(feature = "private")]
impl std::error::Error for NetworkNameError {}
