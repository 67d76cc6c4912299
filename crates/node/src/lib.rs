//! The node: a tokio driver around the sans-IO core.
//!
//! One task (the *core*, [`core`]) owns the [`Router`](mycelium_proto::routing::Router)
//! and everything that must be decided in one place: link up and down, control TLVs,
//! timers, packets waiting for a route. After each batch of inputs it publishes what
//! changed to the forwarding [`Snapshot`](snapshot::Snapshot) (link senders, replaced
//! whole through an `ArcSwap`; keys and selected next hops, in a sharded table
//! updated in place shard by shard, in proportion to what the router changed). The
//! packet path never waits for the core: the TUN reader and every link reader look
//! up the snapshot, seal, open and forward in place, and hand the core only what the
//! snapshot cannot answer.
//!
//! Links ([`link`]) only move framed bytes: a reader that splits the stream into
//! packets and hands the core control TLVs in batches, a writer that batches what
//! the core (one chunk of control packets per flush) and the data plane queue for
//! it.

mod core;
mod dataplane;
mod discovery;
mod limits;
mod link;
mod messages;
mod peers;
pub mod proxy;
mod quic;
mod registry;
#[cfg(test)]
mod scale_tests;
mod snapshot;
mod stats;
#[cfg(feature = "private")]
mod tls;
mod tun;
#[cfg(target_os = "linux")]
mod vsock;

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol};
use mycelium_proto::routing::{RouterConfig, RouterStats};
use mycelium_proto::wire::{Metric, SeqNo};
use mycelium_proto::{PublicKey, SecretKey, Subnet};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreCmd, Query, Shared};
use crate::registry::ConnectionState as State;

pub use discovery::DiscoveryConfig;
pub use limits::Limits;
pub use messages::{BusError, MessageStatus, Messages, Pushed};
pub use mycelium_proto::messages::{BusConfig, TopicConfig};
pub use proxy::{ProbeResult, Proxy, ProxySettings};
pub use registry::{ConnectionState, PeerError, PeerInfo, PeerKind};
pub use stats::{Count, NodeStats, TLV_TYPES};

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
    /// QUIC (PROTOCOL.md §2.4). Only builds with the `private` feature can start
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

/// One route as the API shows it (API.md §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination.
    pub subnet: Subnet,
    /// The connection identifier of the next hop (`TCP a <-> b`, `QUIC -> b`).
    pub next_hop: String,
    /// The metric as the next hop announced it (our link cost not included).
    pub metric: Metric,
    /// The originator's sequence number.
    pub seqno: SeqNo,
}

/// The routing table as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutesView {
    /// One per subnet with a selected route.
    pub selected: Vec<RouteInfo>,
    /// Every route that is not selected, retracted ones included.
    pub fallback: Vec<RouteInfo>,
    /// Subnets being looked for, with the time until the query gives up.
    pub queried: Vec<(Subnet, Duration)>,
}

/// The router's counters and table sizes, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterView {
    /// What the router refused or dropped.
    pub stats: RouterStats,
    /// Subnets in the table (known or queried).
    pub subnets: usize,
    /// Route entries.
    pub routes: usize,
    /// Subnets with a selected route.
    pub selected: usize,
    /// Neighbours the router knows.
    pub neighbours: usize,
    /// Packets waiting for a route or a key.
    pub pending_packets: usize,
}

/// Data packets per address (API.md §1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketStatistics {
    /// By source address.
    pub by_source: Vec<(Ipv6Addr, Count)>,
    /// By destination address.
    pub by_destination: Vec<(Ipv6Addr, Count)>,
    /// Packets whose addresses did not fit the bounded tables.
    pub untracked: u64,
}

/// A handle on a running node: what the APIs read and change. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    streams: peers::Streams,
    messages: Messages,
    proxy: Proxy,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.shared.own_ip)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.secret.public_key()
    }

    /// The node's overlay address.
    pub fn address(&self) -> Ipv6Addr {
        self.shared.own_ip
    }

    /// The node's `/64`.
    pub fn subnet(&self) -> Subnet {
        self.shared.own_subnet
    }

    /// Start time in seconds since the Unix epoch.
    pub fn start_time(&self) -> u64 {
        self.shared
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.registry.list()
    }

    /// Adds a static peer; it is dialled right away and redialled until removed.
    /// Peers this node cannot dial (TLS outside a private network, QUIC in one or
    /// with QUIC off, vsock off Linux) are recorded but not dialled.
    pub fn add_peer(&self, endpoint: Endpoint) -> Result<(), PeerError> {
        add_static_peer(&self.shared, &self.streams, endpoint)
    }

    /// Removes a peer of any kind and closes its connection.
    pub fn remove_peer(&self, endpoint: &Endpoint) -> Result<(), PeerError> {
        self.shared.registry.remove(endpoint)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .core_tx
            .send(CoreCmd::Query(make(tx)))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// The routing table; empty once the node has stopped.
    pub async fn routes(&self) -> RoutesView {
        self.ask(Query::Routes).await.unwrap_or_default()
    }

    /// The key owning the subnet that holds `ip`, from any route entry, selected or
    /// not. `None` for IPv4 addresses and addresses no entry covers.
    pub async fn public_key_for(&self, ip: IpAddr) -> Option<PublicKey> {
        let IpAddr::V6(ip) = ip else { return None };
        if self.shared.own_subnet.contains_ip(ip.into()) {
            return Some(self.public_key());
        }
        self.ask(|tx| Query::KeyFor(ip, tx)).await.flatten()
    }

    /// The router's counters and table sizes.
    pub async fn router(&self) -> RouterView {
        self.ask(Query::Router).await.unwrap_or_default()
    }

    /// The message bus.
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    /// The SOCKS5 proxy client (PROXY.md).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Data-plane counters.
    pub fn stats(&self) -> &NodeStats {
        &self.shared.stats
    }

    /// Data packets per source and destination address.
    pub fn packet_statistics(&self) -> PacketStatistics {
        let (by_source, by_destination, untracked) = self.shared.packets.snapshot();
        PacketStatistics {
            by_source,
            by_destination,
            untracked,
        }
    }
}

fn add_static_peer(
    shared: &Arc<Shared>,
    streams: &peers::Streams,
    endpoint: Endpoint,
) -> Result<(), PeerError> {
    let entry = shared
        .registry
        .insert(endpoint, PeerKind::Static, State::Dead)?;
    match (endpoint.proto(), endpoint.addr()) {
        (Protocol::Tcp, EndpointAddr::Socket(_)) => {
            if streams.is_private() {
                tracing::warn!("peer {endpoint}: private network: connecting with TLS");
            }
            tokio::spawn(peers::dial(shared.clone(), streams.clone(), entry, None));
        }
        (Protocol::Tls, EndpointAddr::Socket(_)) => {
            if streams.is_private() {
                tokio::spawn(peers::dial(shared.clone(), streams.clone(), entry, None));
            } else {
                tracing::warn!(
                    "peer {endpoint}: TLS peers are for private networks and this node is \
                     in none; not dialling it"
                );
            }
        }
        (Protocol::Quic, EndpointAddr::Socket(_)) => match shared.quic.get() {
            Some(quic) => {
                tokio::spawn(quic::dial(shared.clone(), quic.clone(), entry));
            }
            None if streams.is_private() => {
                tracing::warn!("peer {endpoint}: QUIC is off in a private network; not dialling it")
            }
            None => tracing::warn!("peer {endpoint}: QUIC is disabled; not dialling it"),
        },
        #[cfg(target_os = "linux")]
        (Protocol::Vsock, EndpointAddr::Vsock(_)) => {
            tokio::spawn(vsock::dial(shared.clone(), entry));
        }
        _ => tracing::warn!(
            "peer {endpoint}: {} links are not supported on this system; not dialling it",
            endpoint.proto().name()
        ),
    }
    Ok(())
}

/// How stream peers are carried: plain TCP, or TLS in a private network.
fn stream_transport(private: Option<&PrivateNetwork>) -> Result<peers::Streams, NodeError> {
    match private {
        None => Ok(peers::Streams::default()),
        #[cfg(feature = "private")]
        Some(net) => {
            let tls = tls::Tls::new(net).map_err(|e| NodeError::Tls(e.to_string()))?;
            tracing::info!(
                "private network {:?}: peers connect with TLS; QUIC is off",
                net.name()
            );
            Ok(peers::Streams::private(Arc::new(tls)))
        }
        #[cfg(not(feature = "private"))]
        Some(_) => Err(NodeError::PrivateUnsupported),
    }
}

/// Starts a node: creates the TUN device and the QUIC socket (the start-up failures
/// a caller must report), then spawns every task. Returns a handle on the node and a
/// future that ends once `shutdown` is cancelled and every task has ended. Must be
/// called within a tokio runtime.
pub async fn start(
    cfg: NodeConfig,
    shutdown: CancellationToken,
) -> Result<(Node, impl Future<Output = ()>), NodeError> {
    let own_key = cfg.secret.public_key();
    let streams = stream_transport(cfg.private.as_ref())?;
    #[cfg(not(target_os = "linux"))]
    if let Some(mark) = cfg.firewall_mark {
        tracing::warn!("firewall marks are Linux only; ignoring firewall mark {mark}");
    }
    let tun = match &cfg.tun_name {
        Some(name) => Some(Arc::new(
            tun::Tun::open(name, own_key.address(), cfg.tun_offload).map_err(|error| {
                NodeError::Tun {
                    name: name.clone(),
                    error,
                }
            })?,
        )),
        None => None,
    };
    let (core, shared, router_id, receivers) = core::Core::new(&cfg, tun.clone(), shutdown.clone());
    let quic_port = cfg.quic_listen_port.filter(|_| !streams.is_private());
    let quic = match quic_port {
        Some(port) => Some(
            quic::endpoint(port, router_id, cfg.firewall_mark)
                .map_err(|error| NodeError::Quic { port, error })?,
        ),
        None => None,
    };
    if let Some(endpoint) = &quic {
        let _ = shared.quic.set(endpoint.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(core.run());
    let arrivals = Arc::new(tokio::sync::Notify::new());
    let bus = mycelium_proto::messages::MessageBus::new(cfg.messages.clone(), cfg.topics.clone());
    tasks.spawn(messages::run(
        shared.clone(),
        receivers.bus,
        bus,
        arrivals.clone(),
    ));
    if let (Some(tun), Some(rx)) = (tun, receivers.tun) {
        tasks.spawn(dataplane::tun_reader(shared.clone(), tun));
        tasks.spawn(dataplane::tun_writer(shared.clone(), rx));
    }
    if let Some(port) = cfg.tcp_listen_port {
        tasks.spawn(peers::listen(
            shared.clone(),
            streams.clone(),
            port,
            cfg.firewall_mark,
        ));
    }
    if let Some(port) = cfg.vsock_listen_port {
        #[cfg(target_os = "linux")]
        tasks.spawn(vsock::listen(shared.clone(), port));
        #[cfg(not(target_os = "linux"))]
        tracing::warn!("vsock is Linux only; not listening on vsock port {port}");
    }
    if let Some(endpoint) = &quic {
        tasks.spawn(quic::accept(shared.clone(), endpoint.clone()));
    }
    if let (Some(discovery), Some(port)) = (cfg.discovery.clone(), cfg.tcp_listen_port) {
        tasks.spawn(discovery::run(
            shared.clone(),
            streams.clone(),
            discovery,
            router_id,
            port,
            cfg.firewall_mark,
        ));
    }
    for peer in cfg.peers {
        if let Err(e) = add_static_peer(&shared, &streams, peer) {
            tracing::warn!("peer {peer}: {e}");
        }
    }
    let node = Node {
        shared: shared.clone(),
        streams,
        messages: Messages::new(shared.clone(), arrivals),
        proxy: Proxy::for_node(&shared),
    };
    let done = async move {
        while tasks.join_next().await.is_some() {}
        if let Some(endpoint) = quic {
            endpoint.close(0u32.into(), b"shutting down");
            endpoint.wait_idle().await;
        }
        drop(shared);
    };
    Ok((node, done))
}

/// Runs a node until `shutdown` is cancelled. Returns once every task has ended.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let (_node, done) = start(cfg, shutdown).await?;
    done.await;
    Ok(())
}
