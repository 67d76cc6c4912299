//! What a node is started with: [`NodeConfig`] and its parts, and why a start
//! fails ([`NodeError`]).

use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::messages::{BusConfig, TopicConfig};
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::SecretKey;

use crate::limits::Limits;
use crate::proxy::ProxySettings;

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's identity.
    pub secret: SecretKey,
    /// Static peers, redialled when their connection ends.
    pub peers: Vec<Endpoint>,
    /// TCP listen port on `[::]` (TLS in a private network); `None` disables the
    /// listener.
    pub tcp_listen_port: Option<u16>,
    /// QUIC port on `[::]`, used to listen and to dial; `None` disables QUIC, and
    /// so does a private network.
    pub quic_listen_port: Option<u16>,
    /// TUN device name; `None` runs without TUN (router only). On macOS a taken or
    /// malformed `utunN` name gives way to the first free one.
    pub tun_name: Option<String>,
    /// Segmentation offload on the TUN device (Linux; elsewhere packets always
    /// cross one at a time). Off, Linux uses the portable one-packet path too.
    pub tun_offload: bool,
    /// Link-local peer discovery; `None` disables it.
    pub discovery: Option<DiscoveryConfig>,
    /// Linux `SO_MARK` for peer sockets.
    pub firewall_mark: Option<u32>,
    /// Routing timers and bounds.
    pub router: RouterConfig,
    /// Message bus timers and bounds.
    pub messages: BusConfig,
    /// Topic access control (`--topic-config`).
    pub topics: TopicConfig,
    /// vsock listen port (Linux); `None` disables the listener.
    pub vsock_listen_port: Option<u32>,
    /// The private network this node belongs to, if any: TLS instead of TCP, no
    /// QUIC. Only builds with the `private` feature can start
    /// with one.
    pub private: Option<PrivateNetwork>,
    /// Bounds on peers and links (the router's own are in [`NodeConfig::router`]).
    pub limits: Limits,
    /// The SOCKS5 proxy client's listener and probes.
    pub proxy: ProxySettings,
}

impl NodeConfig {
    /// A node that only routes: no listeners, no QUIC, no TUN, no discovery, no
    /// peers, and default timers and bounds. Tests and tools start from it and set
    /// what they need (`NodeConfig { peers, ..NodeConfig::router_only(key) }`).
    pub fn router_only(secret: SecretKey) -> Self {
        Self {
            secret,
            peers: Vec::new(),
            tcp_listen_port: None,
            quic_listen_port: None,
            tun_name: None,
            tun_offload: true,
            discovery: None,
            firewall_mark: None,
            router: RouterConfig::default(),
            messages: BusConfig::default(),
            topics: TopicConfig::default(),
            vsock_listen_port: None,
            private: None,
            limits: Limits::default(),
            proxy: ProxySettings::default(),
        }
    }
}

/// Shortest and longest private network name, in bytes.
const NETWORK_NAME_LEN: std::ops::RangeInclusive<usize> = 2..=64;

/// A private network: its name (the TLS-PSK identity, public) and its 32-byte
/// pre-shared key (secret; never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateNetwork {
    name: String,
    key: [u8; 32],
}

impl std::fmt::Debug for PrivateNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateNetwork")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a private network configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateNetworkError {
    /// The name is not 2 to 64 bytes long.
    #[error("network name must be between 2 and 64 characters (got {0} bytes)")]
    NameLength(usize),
    /// The key file could not be read.
    #[error("reading the network key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("the network key file {path} holds {len} bytes; it must hold exactly 32")]
    KeyLength {
        /// The file.
        path: std::path::PathBuf,
        /// Its length.
        len: u64,
    },
}

impl PrivateNetwork {
    /// A network of this name and key; the name must be 2 to 64 bytes.
    pub fn new(name: String, key: [u8; 32]) -> Result<Self, PrivateNetworkError> {
        if !NETWORK_NAME_LEN.contains(&name.len()) {
            return Err(PrivateNetworkError::NameLength(name.len()));
        }
        Ok(Self { name, key })
    }

    /// A network of this name with the key read from `path`, which must hold
    /// exactly 32 bytes (upstream takes the first 32 of a longer file; a file of
    /// another length is more likely the wrong file than a key).
    pub fn from_key_file(
        name: String,
        path: &std::path::Path,
    ) -> Result<Self, PrivateNetworkError> {
        use std::io::Read;
        let file_err = |source| PrivateNetworkError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(file_err)?;
        // Read at most one byte past the key, so a huge file is not read whole.
        let mut bytes = Vec::with_capacity(33);
        file.take(33).read_to_end(&mut bytes).map_err(file_err)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
            PrivateNetworkError::KeyLength {
                path: path.to_owned(),
                len,
            }
        })?;
        Self::new(name, key)
    }

    /// The name, the TLS-PSK identity.
    pub fn name(&self) -> &str {
        &self.name
    }

    #[cfg_attr(not(feature = "private"), allow(dead_code))]
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The TUN device could not be created or configured.
    ///
    /// The OS error is part of the message and not a separate source, so that an
    /// error chain printed in full says it once.
    #[error("creating TUN device {name}: {error}")]
    Tun {
        /// The device name asked for.
        name: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The QUIC socket could not be set up (for example, the port is taken).
    #[error("setting up QUIC on UDP port {port}: {error}")]
    Quic {
        /// The port asked for.
        port: u16,
        /// The OS error.
        error: std::io::Error,
    },
    /// A private network was configured but this build has no TLS (built without
    /// the `private` feature).
    #[error("this build has no private network support (build with the `private` feature)")]
    PrivateUnsupported,
    /// The private network's TLS contexts could not be set up.
    #[error("setting up TLS for the private network: {0}")]
    Tls(String),
}

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// UDP port of beacons (9650).
    pub port: u16,
    /// Interfaces to use; empty means every qualifying one.
    pub interfaces: Vec<String>,
}
