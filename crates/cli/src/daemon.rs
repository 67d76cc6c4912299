//! Daemon mode: run a node with resolved settings until SIGINT or SIGTERM
//! (upstream's start-up steps after the command line and config file).
//!
//! By the time [`run_node`] is called the command line and config file are merged
//! ([`crate::settings`]), logging is up and the key is loaded or created. What is
//! left is the node itself, and a clean shutdown: one signal cancels every task, and
//! the node returns once they have all ended.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use mycelium_api::{ApiConfig, Backend};
use mycelium_node::NodeConfig;
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::SecretKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api_backend::NodeBackend;
use crate::settings::NodeSettings;

/// Runs a node until it is asked to stop. Returns an error for the start-up
/// failures upstream gives exit status 1.
pub(crate) fn run_node(settings: NodeSettings, key: SecretKey) -> anyhow::Result<()> {
    let token = api_token(&settings)?;
    let topics = topic_config(&settings)?;
    let runtime = runtime().context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let cfg = NodeConfig {
            secret: key,
            peers: settings.peers.clone(),
            tcp_listen_port: Some(settings.tcp_listen_port),
            quic_listen_port: (!settings.disable_quic).then_some(settings.quic_listen_port),
            tun_name: (!settings.no_tun).then(|| settings.tun_name.clone()),
            tun_offload: !settings.no_tun_offload,
            discovery: (!settings.disable_peer_discovery).then(|| mycelium_node::DiscoveryConfig {
                port: settings.peer_discovery_port,
                interfaces: settings.peer_discovery_interfaces.clone(),
            }),
            firewall_mark: settings.firewall_mark,
            router: router_config(&settings),
            messages: mycelium_node::BusConfig::default(),
            topics,
            vsock_listen_port: settings.vsock_listen_port,
            private: private_network(&settings)?,
            limits: node_limits(&settings),
            proxy: mycelium_node::ProxySettings {
                allow_remote_clients: settings.proxy_allow_remote,
                ..mycelium_node::ProxySettings::default()
            },
            dns: settings.enable_dns.then(|| settings.dns.to_config()),
            pause_flapping_quic: !settings.no_quic_pause,
            upstream_quic_datagrams: settings.upstream_quic_datagrams,
        };
        let (node, done) = mycelium_node::start(cfg, shutdown.clone()).await?;
        // Bound now, so that a taken port or an unusable cache directory stops the
        // node with the reason (upstream's start-up fails there too).
        let cdn = match &settings.cdn_cache {
            Some(dir) => match mycelium_cdn::bind(&settings.cdn.to_config(dir.clone())).await {
                Ok(cdn) => Some(cdn),
                Err(e) => {
                    shutdown.cancel();
                    done.await;
                    return Err(e.into());
                }
            },
            None => None,
        };
        let backend: Arc<dyn Backend> = Arc::new(NodeBackend::new(node.clone()));
        let api_cfg = ApiConfig {
            token,
            ..ApiConfig::default()
        };
        let mut servers = tokio::task::JoinSet::new();
        if let Some(cdn) = cdn {
            match cdn.local_addr() {
                Ok(addr) => tracing::info!(
                    "CDN helper on http://{addr}, registries {:?}",
                    settings.cdn.registries
                ),
                Err(e) => tracing::warn!("CDN helper listening, address unknown: {e}"),
            }
            let (listener, router) = cdn.into_parts();
            servers.spawn(mycelium_api::httpd::serve(
                listener,
                router,
                mycelium_api::httpd::Limits::default(),
                shutdown.clone().cancelled_owned(),
            ));
        }
        // As upstream: an HTTP API address that cannot be bound only disables the API.
        match TcpListener::bind(settings.api_addr).await {
            Ok(listener) => {
                tracing::info!("HTTP API on http://{}", settings.api_addr);
                servers.spawn(mycelium_api::serve_http(
                    listener,
                    backend.clone(),
                    api_cfg.clone(),
                    shutdown.clone().cancelled_owned(),
                ));
            }
            Err(e) => tracing::error!("API disabled: cannot listen on {}: {e}", settings.api_addr),
        }
        // Upstream panics here; we stop cleanly with the reason.
        let rpc = match TcpListener::bind(settings.jsonrpc_addr).await {
            Ok(listener) => listener,
            Err(e) => {
                shutdown.cancel();
                done.await;
                anyhow::bail!(
                    "cannot listen for JSON-RPC on {}: {e}",
                    settings.jsonrpc_addr
                );
            }
        };
        tracing::info!("JSON-RPC API on http://{}", settings.jsonrpc_addr);
        servers.spawn(mycelium_api::serve_rpc(
            rpc,
            backend,
            api_cfg,
            shutdown.clone().cancelled_owned(),
        ));
        if let Some(addr) = settings.metrics_api_address {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!("Prometheus metrics on http://{addr}/metrics");
                    servers.spawn(crate::metrics::serve(
                        listener,
                        node.clone(),
                        shutdown.clone().cancelled_owned(),
                    ));
                }
                Err(e) => tracing::error!("metrics disabled: cannot listen on {addr}: {e}"),
            }
        }
        done.await;
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!("API server ended with an error: {e}");
            }
        }
        tracing::info!("node stopped");
        Ok(())
    })
}

/// The private network from `--network-name` and `--network-key-file` (both
/// needed, as upstream). The key file must hold exactly 32 bytes.
#[cfg(feature = "private")]
fn private_network(
    settings: &NodeSettings,
) -> anyhow::Result<Option<mycelium_node::PrivateNetwork>> {
    let Some((name, key_file)) = settings.private_network() else {
        if settings.network_name.is_some() || settings.network_key_file.is_some() {
            tracing::warn!(
                "a private network needs both a network name and a key file; running public"
            );
        }
        return Ok(None);
    };
    let net = mycelium_node::PrivateNetwork::from_key_file(name.to_owned(), key_file)?;
    Ok(Some(net))
}

/// Builds without the `private` feature have no private networks.
#[cfg(not(feature = "private"))]
fn private_network(_: &NodeSettings) -> anyhow::Result<Option<mycelium_node::PrivateNetwork>> {
    Ok(None)
}

/// The topic access control from `--topic-config`. Upstream ignores a file it
/// cannot read and panics on one in the legacy format; we refuse to start, naming
/// the file and the line, so a node never runs with an ACL other than the one meant.
/// The routing defaults with the table bounds the settings give.
fn router_config(settings: &NodeSettings) -> RouterConfig {
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let mut cfg = if settings.upstream_timers {
        RouterConfig::upstream()
    } else {
        RouterConfig::default()
    };
    cfg.limits.max_subnets = size(settings.max_routes);
    cfg.limits.max_routes_per_neighbour = size(settings.max_routes_per_peer);
    if settings.leaf {
        let routes = size(settings.leaf_routes);
        cfg.leaf = Some(mycelium_proto::routing::Leaf { routes });
        // The table never holds more; the forwarding table is sized by this bound.
        cfg.limits.max_subnets = cfg.limits.max_subnets.min(routes);
    }
    cfg
}

/// The peer and link bounds the settings give (each range-checked already).
fn node_limits(settings: &NodeSettings) -> mycelium_node::Limits {
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let rate = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    mycelium_node::Limits {
        max_inbound_peers: size(settings.max_inbound_peers),
        connections_per_second: rate(settings.max_connections_per_second),
        link_data_queue: size(settings.link_data_queue),
        link_control_rate: rate(settings.link_control_rate),
        // Ten seconds' worth at once: the default lets a peer send a table of
        // 200000 routes on connect without being slowed.
        link_control_burst: rate(settings.link_control_rate.saturating_mul(10)),
    }
}

fn topic_config(settings: &NodeSettings) -> anyhow::Result<mycelium_node::TopicConfig> {
    let Some(path) = &settings.topic_config else {
        return Ok(mycelium_node::TopicConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the topic configuration {}", path.display()))?;
    let (topics, warnings) = mycelium_node::TopicConfig::from_toml(&text)
        .with_context(|| format!("in the topic configuration {}", path.display()))?;
    for w in warnings {
        tracing::warn!("topic configuration {}: {w}", path.display());
    }
    Ok(topics)
}

/// The APIs' bearer token: read from `--api-token-file` when given, and required
/// when either API listens beyond loopback, where anyone who can reach the socket
/// could otherwise send messages as the node and reconfigure it.
fn api_token(settings: &NodeSettings) -> anyhow::Result<Option<String>> {
    let exposed: Vec<SocketAddr> = [settings.api_addr, settings.jsonrpc_addr]
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    let Some(path) = &settings.api_token_file else {
        if let Some(addr) = exposed.first() {
            anyhow::bail!(
                "the API address {addr} is not a loopback address: give --api-token-file \
                 with a bearer token, so that not everyone who reaches it can control the node"
            );
        }
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the API token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(|c| c.is_control()) {
        anyhow::bail!(
            "the API token file {} must hold one line of 1 to 4096 printable characters",
            path.display()
        );
    }
    tracing::info!(
        "the HTTP and JSON-RPC APIs require a bearer token (from {})",
        path.display()
    );
    Ok(Some(token.to_owned()))
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

/// Cancels `shutdown` on SIGINT or SIGTERM (on Windows: Ctrl-C, Ctrl-Break, the
/// console window closing, log-off or system shutdown). Should the node not have
/// stopped [`STOP_GRACE`] later, the process ends anyway: a stop never hangs.
async fn stop_on_signal(shutdown: CancellationToken) {
    let requested = external_stop();
    let what = tokio::select! {
        what = first_stop_signal() => match what {
            Some(what) => what,
            None => {
                tracing::error!("cannot listen for stop signals; stop the node by killing it");
                requested.cancelled().await;
                STOP_REASON.get().copied().unwrap_or("stop requested")
            }
        },
        () = requested.cancelled() => STOP_REASON.get().copied().unwrap_or("stop requested"),
    };
    tracing::info!("{what}: stopping");
    shutdown.cancel();
    std::thread::spawn(|| {
        std::thread::sleep(STOP_GRACE);
        tracing::error!("still stopping after {STOP_GRACE:?}; exiting now");
        std::process::exit(1);
    });
}

/// A stop asked for from outside the node's own signals (the Windows service
/// manager), before or after the node started.
fn external_stop() -> &'static CancellationToken {
    static STOP: OnceLock<CancellationToken> = OnceLock::new();
    STOP.get_or_init(CancellationToken::new)
}

/// Why the node was asked to stop from outside, for the log.
static STOP_REASON: OnceLock<&'static str> = OnceLock::new();

/// Stops the node (or keeps it from starting), saying why.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn request_stop(reason: &'static str) {
    let _ = STOP_REASON.set(reason);
    external_stop().cancel();
}

/// How long a stop may take before the process ends without waiting.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for the first stop signal and names it; `None` if none can be listened for.
#[cfg(unix)]
async fn first_stop_signal() -> Option<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok()?;
    let mut term = signal(SignalKind::terminate()).ok()?;
    tokio::select! {
        _ = int.recv() => Some("SIGINT"),
        _ = term.recv() => Some("SIGTERM"),
    }
}

/// Waits for the first stop signal and names it; `None` if none can be listened for.
///
/// Windows gives a console program about five seconds after the window closes (and
/// somewhat more at log-off and shutdown) before ending it, which the node's stop
/// fits in.
#[cfg(windows)]
async fn first_stop_signal() -> Option<&'static str> {
    use tokio::signal::windows;
    let mut c = windows::ctrl_c().ok()?;
    let mut brk = windows::ctrl_break().ok()?;
    let mut close = windows::ctrl_close().ok()?;
    let mut logoff = windows::ctrl_logoff().ok()?;
    let mut down = windows::ctrl_shutdown().ok()?;
    tokio::select! {
        _ = c.recv() => Some("Ctrl-C"),
        _ = brk.recv() => Some("Ctrl-Break"),
        _ = close.recv() => Some("console closed"),
        _ = logoff.recv() => Some("log-off"),
        _ = down.recv() => Some("system shutdown"),
    }
}

/// Waits for the first stop signal and names it; `None` if none can be listened for.
#[cfg(not(any(unix, windows)))]
async fn first_stop_signal() -> Option<&'static str> {
    tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
}
