//! The node: a tokio driver around the sans-IO core.
//!
//! Each task is handed what it uses, and nothing is looked up through a shared
//! whole:
//!
//! - The **router task** ([`router`]) owns the
//!   [`Router`](mycelium_proto::routing::Router) and everything that must be decided
//!   in one place: link up and down, control TLVs, timers, packets waiting for a
//!   route. After each batch of inputs it publishes what changed to the forwarding
//!   [`Snapshot`](snapshot::Snapshot) (link senders, replaced whole through an
//!   `ArcSwap`; keys and selected next hops, in a sharded table updated in place
//!   shard by shard, in proportion to what the router changed). It never waits on
//!   packet I/O: packets it held go back to the data plane's worker.
//! - The **data plane** ([`path`], [`workers`]) is the TUN reader, every link
//!   reader and a worker. Each looks up the snapshot and seals, opens and forwards
//!   in place ([`buffer`]), applying [`mycelium_proto::forward`]'s decisions, and
//!   hands the router task only what the snapshot cannot answer.
//! - **Links** ([`link`]) only move framed bytes: a reader that splits the stream
//!   into packets and hands the router task control TLVs in batches, a writer that
//!   batches what the router task (one chunk of control packets per flush,
//!   [`control_queue`]) and the data plane queue for it. Listeners and dialers
//!   ([`tcp`], [`quic`], vsock, [`discovery`]) start them through [`peering`].
//! - The **message bus** ([`bus`]) runs the sans-IO bus on its own task.
//!
//! Tasks hand each other the messages in [`cmd`]. Every task is spawned on one
//! [`TaskTracker`], so the future [`start`] returns ends only once they all have.

mod buffer;
mod bus;
mod cmd;
mod config;
mod control_queue;
mod discovery;
mod dns;
mod icmp;
mod limits;
mod link;
mod path;
mod peering;
pub mod proxy;
mod quic;
mod quic_flaps;
mod registry;
mod replay;
mod router;
#[cfg(test)]
mod scale_tests;
mod secrets;
mod snapshot;
mod stats;
mod tcp;
#[cfg(feature = "private")]
mod tls;
mod tun;
mod tun_batch;
mod views;
#[cfg(target_os = "linux")]
mod vsock;
mod workers;

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol};
use mycelium_proto::routing::Router;
use mycelium_proto::{PublicKey, RouterId, Subnet};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::{CoreCmd, Query};
use crate::path::DataPath;
use crate::peering::Peering;
use crate::registry::ConnectionState as State;

pub use bus::{BusError, MessageStatus, Messages, Pushed};
pub use config::{
    DiscoveryConfig, DnsConfig, NodeConfig, NodeError, PrivateNetwork, PrivateNetworkError,
};
pub use limits::Limits;
pub use mycelium_proto::messages::{BusConfig, TopicConfig};
pub use proxy::{ProbeResult, Proxy, ProxySettings};
pub use registry::{ConnectionState, PeerError, PeerInfo, PeerKind};
pub use stats::{Count, NodeStats, TLV_TYPES};
pub use views::{PacketStatistics, RouteInfo, RouterView, RoutesView};

/// A handle on a running node: what the APIs read and change. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    path: Arc<DataPath>,
    peering: Arc<Peering>,
    streams: tcp::Streams,
    quic: Option<quinn::Endpoint>,
    started: SystemTime,
    messages: Messages,
    proxy: Proxy,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.path.own_ip)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.path.secret.public_key()
    }

    /// The node's overlay address.
    pub fn address(&self) -> Ipv6Addr {
        self.path.own_ip
    }

    /// The node's `/64`.
    pub fn subnet(&self) -> Subnet {
        self.path.own_subnet
    }

    /// Start time in seconds since the Unix epoch.
    pub fn start_time(&self) -> u64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peering.registry.list()
    }

    /// Adds a static peer; it is dialled right away and redialled until removed.
    /// Peers this node cannot dial (TLS outside a private network, QUIC in one or
    /// with QUIC off, vsock off Linux) are recorded but not dialled.
    pub fn add_peer(&self, endpoint: Endpoint) -> Result<(), PeerError> {
        add_static_peer(&self.peering, &self.streams, self.quic.as_ref(), endpoint)
    }

    /// Removes a peer of any kind and closes its connection.
    pub fn remove_peer(&self, endpoint: &Endpoint) -> Result<(), PeerError> {
        self.peering.registry.remove(endpoint)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.path
            .to_core
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
        if self.path.own_subnet.contains_ip(ip.into()) {
            return Some(self.public_key());
        }
        self.ask(|tx| Query::KeyFor(ip, tx)).await.flatten()
    }

    /// The router's counters and table sizes.
    pub async fn router(&self) -> RouterView {
        self.ask(Query::Router).await.unwrap_or_default()
    }

    /// The QUIC peers not dialled (nor accepted) for now, with the time left:
    /// neighbours that drop their QUIC link whenever they have a large packet for
    /// us, reached over TCP meanwhile. Empty once the node has stopped.
    pub async fn quic_pauses(&self) -> Vec<(Endpoint, std::time::Duration)> {
        self.ask(Query::QuicPauses)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(addr, left)| (Endpoint::quic(addr), left))
            .collect()
    }

    /// The message bus.
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    /// The SOCKS5 proxy client.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Data-plane counters.
    pub fn stats(&self) -> &NodeStats {
        &self.path.stats
    }

    /// Data packets per source and destination address.
    pub fn packet_statistics(&self) -> PacketStatistics {
        let (by_source, by_destination, untracked) = self.path.packets.snapshot();
        PacketStatistics {
            by_source,
            by_destination,
            untracked,
        }
    }
}

fn add_static_peer(
    peering: &Arc<Peering>,
    streams: &tcp::Streams,
    quic: Option<&quinn::Endpoint>,
    endpoint: Endpoint,
) -> Result<(), PeerError> {
    let entry = peering
        .registry
        .insert(endpoint, PeerKind::Static, State::Dead)?;
    let tasks = &peering.tasks;
    match (endpoint.proto(), endpoint.addr()) {
        (Protocol::Tcp, EndpointAddr::Socket(_)) => {
            if streams.is_private() {
                tracing::warn!("peer {endpoint}: private network: connecting with TLS");
            }
            tasks.spawn(tcp::dial(peering.clone(), streams.clone(), entry, None));
        }
        (Protocol::Tls, EndpointAddr::Socket(_)) => {
            if streams.is_private() {
                tasks.spawn(tcp::dial(peering.clone(), streams.clone(), entry, None));
            } else {
                tracing::warn!(
                    "peer {endpoint}: TLS peers are for private networks and this node is \
                     in none; not dialling it"
                );
            }
        }
        (Protocol::Quic, EndpointAddr::Socket(_)) => match quic {
            Some(quic) => {
                tasks.spawn(quic::dial(peering.clone(), quic.clone(), entry));
            }
            None if streams.is_private() => {
                tracing::warn!("peer {endpoint}: QUIC is off in a private network; not dialling it")
            }
            None => tracing::warn!("peer {endpoint}: QUIC is disabled; not dialling it"),
        },
        #[cfg(target_os = "linux")]
        (Protocol::Vsock, EndpointAddr::Vsock(_)) => {
            tasks.spawn(vsock::dial(peering.clone(), entry));
        }
        _ => tracing::warn!(
            "peer {endpoint}: {} links are not supported on this system; not dialling it",
            endpoint.proto().name()
        ),
    }
    Ok(())
}

/// How stream peers are carried: plain TCP, or TLS in a private network.
fn stream_transport(private: Option<&PrivateNetwork>) -> Result<tcp::Streams, NodeError> {
    match private {
        None => Ok(tcp::Streams::default()),
        #[cfg(feature = "private")]
        Some(net) => {
            let tls = tls::Tls::new(net).map_err(|e| NodeError::Tls(e.to_string()))?;
            tracing::info!(
                "private network {:?}: peers connect with TLS; QUIC is off",
                net.name()
            );
            Ok(tcp::Streams::private(Arc::new(tls)))
        }
        #[cfg(not(feature = "private"))]
        Some(_) => Err(NodeError::PrivateUnsupported),
    }
}

/// Starts a node: creates the TUN device, the QUIC socket and the listeners (the
/// start-up failures a caller must report, and the ports peers connect to), then
/// spawns every task. Returns once every listener is bound, with a handle on the
/// node and a future that ends once `shutdown` is cancelled and every task the node
/// started has ended. Must be called within a tokio runtime.
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
    let mut rng = rand::thread_rng();
    let router_id = RouterId::new(own_key, rng.gen());
    let mut router_cfg = cfg.router.clone();
    router_cfg.hash_seed = rng.gen();
    let max_subnets = router_cfg.limits.max_subnets;
    let leaf = router_cfg.leaf.is_some();
    let router = Router::new(router_cfg, router_id, mycelium_proto::time::Instant::ZERO);
    let forwarding = snapshot::TableWriter::new(max_subnets, rng.gen());
    tracing::info!(
        "node {} at {} (router id {router_id})",
        own_key,
        own_key.address()
    );
    let quic_port = cfg.quic_listen_port.filter(|_| !streams.is_private());
    let quic = match quic_port {
        Some(port) => Some(
            quic::endpoint(port, router_id, cfg.firewall_mark)
                .map_err(|error| NodeError::Quic { port, error })?,
        ),
        None => None,
    };
    // Bound before `start` returns, so a caller may connect at once. A port that
    // cannot be bound leaves the node running without that listener, as upstream
    // does.
    let tcp_listener = cfg.tcp_listen_port.and_then(tcp::bind);
    // Unlike the peer listeners, a DNS forwarder that cannot listen fails the start.
    let dns = match cfg.dns.clone() {
        Some(dns_cfg) => Some((dns::bind(&dns_cfg)?, dns_cfg)),
        None => None,
    };
    #[cfg(target_os = "linux")]
    let vsock_listener = cfg.vsock_listen_port.and_then(vsock::bind);
    #[cfg(not(target_os = "linux"))]
    if let Some(port) = cfg.vsock_listen_port {
        tracing::warn!("vsock is Linux only; not listening on vsock port {port}");
    }

    let (to_core, core_rx) = mpsc::channel(router::CORE_QUEUE);
    let (to_worker, work_rx) = mpsc::channel(router::WORK_QUEUE);
    let (bus_tx, bus_rx) = mpsc::channel(bus::BUS_QUEUE);
    let (frames_tx, frames_rx) = mpsc::channel(bus::BUS_QUEUE);
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot::Snapshot::new(
        Default::default(),
        forwarding.table().clone(),
    )));
    let path = Arc::new(DataPath {
        secret: cfg.secret.clone(),
        own_ip: own_key.address(),
        own_subnet: own_key.subnet(),
        snapshot: snapshot.clone(),
        to_core: to_core.clone(),
        to_bus: frames_tx,
        to_worker: to_worker.clone(),
        tun: tun.clone(),
        stats: Arc::default(),
        packets: Arc::default(),
        replays: replay::ReplayFilter::default(),
    });
    let tasks = TaskTracker::new();
    let (control_in_flight, read_chunk) = if leaf {
        (router::LEAF_CONTROL_IN_FLIGHT, link::LEAF_READ_CHUNK)
    } else {
        (router::CONTROL_IN_FLIGHT, link::READ_CHUNK)
    };
    let links = Arc::new(link::Links::new(
        to_core,
        Arc::new(Semaphore::new(control_in_flight)),
        link::LinkSettings {
            control_queue_bytes: control_queue::control_queue_bytes(max_subnets),
            limits: cfg.limits,
            read_chunk,
            upstream_datagrams: cfg.upstream_quic_datagrams,
        },
        path.clone(),
        tasks.clone(),
    ));
    let peering = Arc::new(Peering::new(
        links,
        registry::Registry::new(shutdown.clone(), cfg.limits.max_inbound_peers),
        cfg.firewall_mark,
        shutdown.clone(),
        tasks.clone(),
    ));

    tasks.spawn(
        router::Core::new(router::CoreParts {
            router,
            forwarding,
            snapshot,
            rx: core_rx,
            to_worker,
            stats: path.stats.clone(),
            packets: path.packets.clone(),
            shutdown: shutdown.clone(),
            pause_flapping_quic: cfg.pause_flapping_quic,
        })
        .run(),
    );
    tasks.spawn(workers::worker(path.clone(), work_rx, shutdown.clone()));
    if let Some(tun) = tun {
        tasks.spawn(workers::tun_reader(path.clone(), tun, shutdown.clone()));
    }
    let arrivals = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(bus::run(bus::BusParts {
        bus: mycelium_proto::messages::MessageBus::new(cfg.messages.clone(), cfg.topics.clone()),
        path: path.clone(),
        rx: bus_rx,
        tx: bus_tx.clone(),
        frames: frames_rx,
        arrivals: arrivals.clone(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    }));
    if let Some(listener) = tcp_listener {
        tasks.spawn(tcp::serve(peering.clone(), streams.clone(), listener));
    }
    #[cfg(target_os = "linux")]
    if let Some(listener) = vsock_listener {
        tasks.spawn(vsock::serve(peering.clone(), listener));
    }
    if let Some((listeners, dns_cfg)) = dns {
        dns::serve(
            listeners,
            dns_cfg,
            path.to_core.clone(),
            shutdown.clone(),
            &tasks,
        );
    }
    if let Some(endpoint) = &quic {
        tasks.spawn(quic::accept(peering.clone(), endpoint.clone()));
    }
    if let (Some(discovery), Some(port)) = (cfg.discovery.clone(), cfg.tcp_listen_port) {
        tasks.spawn(discovery::run(
            peering.clone(),
            streams.clone(),
            discovery,
            router_id,
            port,
            cfg.firewall_mark,
        ));
    }
    for peer in cfg.peers {
        if let Err(e) = add_static_peer(&peering, &streams, quic.as_ref(), peer) {
            tracing::warn!("peer {peer}: {e}");
        }
    }
    let node = Node {
        messages: Messages::new(bus_tx, path.own_ip, shutdown.clone(), arrivals),
        proxy: Proxy::for_node(&path, cfg.proxy, shutdown.clone(), tasks.clone()),
        path,
        peering,
        streams,
        quic: quic.clone(),
        started: SystemTime::now(),
    };
    let done = async move {
        shutdown.cancelled().await;
        tasks.close();
        tasks.wait().await;
        if let Some(endpoint) = quic {
            endpoint.close(0u32.into(), b"shutting down");
            endpoint.wait_idle().await;
        }
    };
    Ok((node, done))
}

/// The DNS forwarder's message path without sockets, for fuzzing: a client's
/// message and the resolver's reply to what the client gets over UDP and TCP.
/// Panics where the forwarder would answer wrongly.
#[doc(hidden)]
pub fn dns_message_path(client: &[u8], reply: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    dns::message_path(client, reply)
}

/// Runs a node until `shutdown` is cancelled. Returns once every task has ended.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let (_node, done) = start(cfg, shutdown).await?;
    done.await;
    Ok(())
}
