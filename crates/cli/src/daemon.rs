//! Daemon mode: run a node with resolved settings until SIGINT or SIGTERM
//! (CLI.md §9, §10 steps 3–6).
//!
//! By the time [`run_node`] is called the command line and config file are merged
//! ([`crate::settings`]), logging is up and the key is loaded or created. What is
//! left is the node itself, and a clean shutdown: one signal cancels every task, and
//! the node returns once they have all ended.

use anyhow::Context;
use mycelium_node::NodeConfig;
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::settings::NodeSettings;

/// Runs a node until it is asked to stop. Returns an error for the start-up
/// failures CLI.md §9 gives exit status 1.
pub(crate) fn run_node(settings: NodeSettings, key: SecretKey) -> anyhow::Result<()> {
    let runtime = runtime().context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        for (what, on) in [
            ("the HTTP API", true),
            ("the JSON-RPC API", true),
            ("the DNS forwarder", settings.enable_dns),
        ] {
            if on {
                tracing::warn!("{what} is not implemented in this build yet");
            }
        }
        let cfg = NodeConfig {
            secret: key,
            peers: settings.peers.clone(),
            tcp_listen_port: Some(settings.tcp_listen_port),
            quic_listen_port: (!settings.disable_quic).then_some(settings.quic_listen_port),
            tun_name: (!settings.no_tun).then(|| settings.tun_name.clone()),
            discovery: (!settings.disable_peer_discovery).then(|| mycelium_node::DiscoveryConfig {
                port: settings.peer_discovery_port,
                interfaces: settings.peer_discovery_interfaces.clone(),
            }),
            firewall_mark: settings.firewall_mark,
            router: RouterConfig::default(),
        };
        mycelium_node::run(cfg, shutdown).await?;
        tracing::info!("node stopped");
        Ok(())
    })
}

/// The node's runtime. One thread by default: every packet is then handled start to
/// finish without waking another thread, which on small machines (measured on two
/// cores) carries about a third more traffic for a quarter less CPU than a
/// thread per core. `MYCELIUM_THREADS=N` spreads the work over N threads instead,
/// for machines with cores to spare and many busy links.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("MYCELIUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM (Ctrl-C elsewhere).
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot listen for signals; stop the node with SIGKILL");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
    shutdown.cancel();
}
