//! What a node is started with: [`NodeConfig`] and its parts, and why a start
//! fails ([`NodeError`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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
    /// The DNS forwarder (`--enable-dns`); `None` disables it.
    pub dns: Option<DnsConfig>,
    /// Stop dialling (and accepting) QUIC for a while to a neighbour that keeps
    /// dropping its QUIC link whenever it has a packet too large for a datagram for
    /// us (upstream v0.7.10 does), as long as a TCP link to it is up. On by
    /// default; off, such neighbours are still recognised, logged and counted
    /// (for measuring what the pause saves).
    pub pause_flapping_quic: bool,
    /// Test only: send data on QUIC links as upstream v0.7.10 does, every data
    /// packet as a datagram whatever its size, dropping the whole connection when
    /// one does not fit. Lets a test stand one of our nodes in for an upstream
    /// neighbour. Off by default: a packet that does not fit goes on the stream.
    pub upstream_quic_datagrams: bool,
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
            dns: None,
            pause_flapping_quic: true,
            upstream_quic_datagrams: false,
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
    /// The DNS forwarder could not listen (for example, port 53 is taken by a
    /// local resolver, or the process may not bind ports below 1024).
    #[error("DNS forwarder: cannot listen on {transport} {addr}: {error}")]
    Dns {
        /// `UDP` or `TCP`.
        transport: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// UDP port of beacons (9650).
    pub port: u16,
    /// Interfaces to use; empty means every qualifying one.
    pub interfaces: Vec<String>,
}

/// The DNS forwarder's settings. [`DnsConfig::default`] is upstream's behaviour;
/// tests change the addresses, ports and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where clients query, over UDP and TCP (`[::]:53`).
    pub listen: SocketAddr,
    /// Overlay nodes that resolve for us, in order of preference: the one with
    /// the lowest route metric wins, ties going to the earlier one.
    pub candidates: Vec<Ipv6Addr>,
    /// The port queries go to on a candidate (53).
    pub candidate_port: u16,
    /// The resolver used while no candidate has a route (`1.1.1.1:53`).
    pub fallback: SocketAddr,
    /// How often the candidates are re-evaluated (30 s); the first evaluation
    /// runs at once.
    pub period: Duration,
    /// How long a query waits for its answer before the client gets SERVFAIL (5 s).
    pub timeout: Duration,
    /// Client queries being answered at once, UDP and TCP together; more are
    /// dropped until one ends.
    pub max_in_flight: usize,
}

impl DnsConfig {
    /// The public nodes upstream forwards to, in its order.
    pub const CANDIDATES: [Ipv6Addr; 10] = [
        Ipv6Addr::new(
            0x54b, 0x83ab, 0x6cb5, 0x7b38, 0x44ae, 0xcd14, 0x53f3, 0xa907,
        ),
        Ipv6Addr::new(
            0x40a, 0x152c, 0xb85b, 0x9646, 0x5b71, 0xd03a, 0xeb27, 0x2462,
        ),
        Ipv6Addr::new(0x597, 0xa4ef, 0x806, 0xb09, 0x6650, 0xcbbf, 0x1b68, 0xcc94),
        Ipv6Addr::new(
            0x549, 0x8bce, 0xfa45, 0xe001, 0xcbf8, 0xf2e2, 0x2da6, 0xa67c,
        ),
        Ipv6Addr::new(
            0x410, 0x2778, 0x53bf, 0x6f41, 0xaf28, 0x1b60, 0xd7c0, 0x707a,
        ),
        Ipv6Addr::new(0x488, 0x74ac, 0x8a31, 0x277b, 0x9683, 0xc8e, 0xe14f, 0x79a7),
        Ipv6Addr::new(
            0x4ab, 0xa385, 0x5a4e, 0xef8f, 0x92e0, 0x1605, 0x7cb6, 0x24b2,
        ),
        Ipv6Addr::new(
            0x4de, 0xb695, 0x3859, 0x8234, 0xd04c, 0x5de6, 0x8097, 0xc27c,
        ),
        Ipv6Addr::new(
            0x5eb, 0xc711, 0xf9ab, 0xeb24, 0xff26, 0xe392, 0xa115, 0x1c0e,
        ),
        Ipv6Addr::new(0x445, 0x465, 0xfe81, 0x1e2b, 0x5420, 0xa029, 0x6b0, 0x9f61),
    ];
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 53),
            candidates: Self::CANDIDATES.to_vec(),
            candidate_port: 53,
            fallback: SocketAddr::new(Ipv4Addr::new(1, 1, 1, 1).into(), 53),
            period: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            max_in_flight: 512,
        }
    }
}
