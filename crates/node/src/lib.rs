//! The node: a tokio driver around the sans-IO core.
//!
//! One task (the *core*, [`core`]) owns the [`Router`](mycelium_proto::routing::Router)
//! and everything that must be decided in one place: link up and down, control TLVs,
//! timers, packets waiting for a route. After each batch of inputs it publishes an
//! immutable forwarding [`Snapshot`](snapshot::Snapshot) (selected next hops, keys,
//! link senders) through an `ArcSwap`. The packet path never waits for the core:
//! the TUN reader and every link reader look up the snapshot, seal, open and forward
//! in place, and hand the core only what the snapshot cannot answer.
//!
//! Links ([`link`]) only move framed bytes: a reader that splits the stream into
//! packets, a writer that batches what the core and the data plane queue for it.

mod core;
mod dataplane;
mod discovery;
mod link;
mod peers;
mod quic;
mod snapshot;
mod stats;
mod tun;

use std::sync::Arc;

use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol};
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::SecretKey;
use tokio_util::sync::CancellationToken;

pub use discovery::DiscoveryConfig;
pub use stats::NodeStats;

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's identity.
    pub secret: SecretKey,
    /// Static peers, redialled when their connection ends.
    pub peers: Vec<Endpoint>,
    /// TCP listen port on `[::]`; `None` disables the listener.
    pub tcp_listen_port: Option<u16>,
    /// QUIC port on `[::]`, used to listen and to dial; `None` disables QUIC.
    pub quic_listen_port: Option<u16>,
    /// TUN device name; `None` runs without TUN (router only).
    pub tun_name: Option<String>,
    /// Link-local peer discovery; `None` disables it.
    pub discovery: Option<DiscoveryConfig>,
    /// Linux `SO_MARK` for peer sockets.
    pub firewall_mark: Option<u32>,
    /// Routing timers and bounds.
    pub router: RouterConfig,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The TUN device could not be created or configured.
    #[error("creating TUN device {name}: {source}")]
    Tun {
        /// The device name asked for.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The QUIC socket could not be set up (for example, the port is taken).
    #[error("setting up QUIC on UDP port {port}: {source}")]
    Quic {
        /// The port asked for.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs a node until `shutdown` is cancelled. Returns once every task has ended.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let own_key = cfg.secret.public_key();
    let tun = match &cfg.tun_name {
        Some(name) => Some(Arc::new(tun::open(name, own_key.address()).map_err(
            |source| NodeError::Tun {
                name: name.clone(),
                source,
            },
        )?)),
        None => None,
    };
    let (core, shared, router_id, tun_rx) = core::Core::new(&cfg, tun.clone(), shutdown.clone());
    let quic = match cfg.quic_listen_port {
        Some(port) => Some(
            quic::endpoint(port, router_id, cfg.firewall_mark)
                .map_err(|source| NodeError::Quic { port, source })?,
        ),
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(core.run());
    if let (Some(tun), Some(rx)) = (tun, tun_rx) {
        tasks.spawn(dataplane::tun_reader(shared.clone(), tun));
        tasks.spawn(dataplane::tun_writer(shared.clone(), rx));
    }
    if let Some(port) = cfg.tcp_listen_port {
        tasks.spawn(peers::listen(shared.clone(), port, cfg.firewall_mark));
    }
    if let Some(endpoint) = &quic {
        tasks.spawn(quic::accept(shared.clone(), endpoint.clone()));
    }
    if let (Some(discovery), Some(port)) = (cfg.discovery.clone(), cfg.tcp_listen_port) {
        let known = cfg.peers.iter().filter_map(|p| p.socket_addr()).collect();
        tasks.spawn(discovery::run(
            shared.clone(),
            discovery,
            router_id,
            port,
            cfg.firewall_mark,
            known,
        ));
    }
    for peer in cfg.peers {
        match (peer.proto(), peer.addr()) {
            (Protocol::Tcp, EndpointAddr::Socket(addr)) => {
                tasks.spawn(peers::dial_forever(shared.clone(), addr, cfg.firewall_mark));
            }
            (Protocol::Quic, EndpointAddr::Socket(addr)) => match &quic {
                Some(endpoint) => {
                    tasks.spawn(quic::dial_forever(shared.clone(), endpoint.clone(), addr));
                }
                None => tracing::warn!("peer {peer}: QUIC is disabled; ignoring it"),
            },
            _ => tracing::warn!(
                "peer {peer}: {} links are not supported by this build yet; ignoring it",
                peer.proto().name()
            ),
        }
    }
    while tasks.join_next().await.is_some() {}
    if let Some(endpoint) = quic {
        endpoint.close(0u32.into(), b"shutting down");
        endpoint.wait_idle().await;
    }
    Ok(())
}
