//! The SOCKS5 proxy client: finding open SOCKS5 servers on other overlay
//! nodes, and a local TCP forwarder to one of them.
//!
//! Nothing here speaks the peer protocol or SOCKS beyond its first two bytes: probes
//! and forwarded connections are ordinary kernel TCP sockets to overlay addresses,
//! so their packets go out through the node's TUN device like any other traffic.
//!
//! * **Probing** ([`Proxy::start_probing`]): every [`PROBE_INTERVAL`] (the first
//!   round at once) each node we hold a selected route to is asked on
//!   `[its address]:1080` for the "no authentication" method. The results are kept
//!   per address with the time the answer took; addresses that answered `05 00` are
//!   the known proxies ([`Proxy::proxies`], best first).
//! * **Forwarding** ([`Proxy::connect`]): a listener on `[::]:1080` whose every
//!   accepted connection is copied byte for byte, both ways, to the chosen remote.
//!   The local application speaks SOCKS5 end to end with the remote server.
//!
//! Where upstream leaves things unbounded this module does not: probes run at most
//! [`MAX_PROBES_IN_FLIGHT`] at a time, results are kept for at most
//! [`MAX_PROBE_RESULTS`] addresses, the race for the best proxy and every outgoing
//! connect have a timeout, and at most [`MAX_RELAYED_CONNECTIONS`] connections are
//! forwarded at once (further clients wait in the listen backlog until one ends).
//! Starting the probe while it runs does not start a second loop.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

use crate::cmd::{CoreCmd, Query};
use crate::path::DataPath;

/// The port probed on every node, and the port of the local listener (IANA SOCKS).
pub const SOCKS_PORT: u16 = 1080;
/// Time between the starts of two probe rounds.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// The most one probe may take: connect, greeting and reply.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes running at once (upstream: no limit).
pub const MAX_PROBES_IN_FLIGHT: usize = 32;
/// Addresses whose last probe result is kept; past it the oldest result gives way.
pub const MAX_PROBE_RESULTS: usize = 4_096;
/// Known proxies raced against each other when connecting without a named remote:
/// the ones with the lowest latency in the last round.
pub const MAX_RACED: usize = 16;
/// The most a forwarded connection waits for the remote to accept it.
pub const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections forwarded at once. Each holds two sockets; further clients wait in
/// the listen backlog until a forwarded connection ends.
pub const MAX_RELAYED_CONNECTIONS: usize = 256;
/// Listen backlog of the local listener.
const BACKLOG: u32 = 1_024;

/// The "no authentication" greeting: SOCKS5, one method, method 0.
const GREETING: [u8; 3] = [0x05, 0x01, 0x00];

/// What a probe found on port 1080 of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// A SOCKS5 server that accepts clients without authentication.
    Valid,
    /// A SOCKS5 server that wants authentication.
    AuthenticationRequired,
    /// Something answered, but not as a SOCKS5 server.
    NotAProxy,
    /// No answer: refused, unreachable, or too slow.
    NotListening,
}

/// Where probes go and where the forwarder listens; the defaults are upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    /// The local listener.
    pub listen: SocketAddr,
    /// The port probed on every overlay node.
    pub probe_port: u16,
    /// Connections forwarded at once.
    pub max_relayed: usize,
    /// Forward connections from any address. Off by default: the listener is on
    /// every interface, as upstream's is, but only loopback clients are served, so
    /// the node is not an open relay to the chosen proxy for its LAN and the whole
    /// overlay.
    pub allow_remote_clients: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), SOCKS_PORT),
            probe_port: SOCKS_PORT,
            max_relayed: MAX_RELAYED_CONNECTIONS,
            allow_remote_clients: false,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Gives the addresses one probe round asks.
type Targets = Arc<dyn Fn() -> BoxFuture<Vec<Ipv6Addr>> + Send + Sync>;

#[derive(Debug, Clone, Copy)]
struct Probed {
    result: ProbeResult,
    latency: Duration,
    /// When it was recorded, as a sequence number: the lowest gives way first.
    seq: u64,
}

/// The running forwarder.
struct Forwarder {
    remote: SocketAddr,
    listen: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Inner {
    settings: ProxySettings,
    targets: Targets,
    /// Ends probing and forwarding when the node stops.
    shutdown: CancellationToken,
    /// Where the probe loop and the forwarder run, so that shutdown waits for them.
    tasks: TaskTracker,
    results: Mutex<HashMap<Ipv6Addr, Probed>>,
    next_seq: AtomicU64,
    /// The token of the running probe loop, if one runs.
    probing: Mutex<Option<CancellationToken>>,
    forwarder: tokio::sync::Mutex<Option<Forwarder>>,
    /// Forwarded connections alive right now (tasks not yet ended).
    relays: Arc<AtomicUsize>,
}

/// The proxy client of a node. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// The proxy client of a node: probes go to the owners of its selected routes.
    pub(crate) fn for_node(
        path: &Arc<DataPath>,
        settings: ProxySettings,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let weak = Arc::downgrade(path);
        let targets: Targets = Arc::new(move || Box::pin(route_targets(weak.clone())));
        Self::with_tasks(settings, targets, shutdown, tasks)
    }

    #[cfg(test)]
    fn new(settings: ProxySettings, targets: Targets, shutdown: CancellationToken) -> Self {
        Self::with_tasks(settings, targets, shutdown, TaskTracker::new())
    }

    fn with_tasks(
        settings: ProxySettings,
        targets: Targets,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                targets,
                shutdown,
                tasks,
                results: Mutex::new(HashMap::new()),
                next_seq: AtomicU64::new(0),
                probing: Mutex::new(None),
                forwarder: tokio::sync::Mutex::new(None),
                relays: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// Starts probing in the background, unless it already runs.
    pub fn start_probing(&self) {
        let mut probing = lock(&self.inner.probing);
        if probing.as_ref().is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let token = self.inner.shutdown.child_token();
        *probing = Some(token.clone());
        self.inner
            .tasks
            .spawn(probe_loop(self.inner.clone(), token));
    }

    /// Stops probing. The results found so far are kept.
    pub fn stop_probing(&self) {
        if let Some(token) = lock(&self.inner.probing).take() {
            token.cancel();
        }
    }

    /// Addresses whose last probe found an open SOCKS5 server, lowest latency first.
    pub fn proxies(&self) -> Vec<Ipv6Addr> {
        let results = lock(&self.inner.results);
        let mut valid: Vec<(Duration, Ipv6Addr)> = results
            .iter()
            .filter(|(_, p)| p.result == ProbeResult::Valid)
            .map(|(a, p)| (p.latency, *a))
            .collect();
        valid.sort_unstable();
        valid.into_iter().map(|(_, a)| a).collect()
    }

    /// The last probe result for an address and how long it took.
    pub fn probe_result(&self, addr: Ipv6Addr) -> Option<(ProbeResult, Duration)> {
        lock(&self.inner.results)
            .get(&addr)
            .map(|p| (p.result, p.latency))
    }

    /// Forwards the local listener to `remote`, or, if `None`, to whichever known
    /// proxy answers the SOCKS5 greeting first. A running forwarder is stopped first.
    /// `None` if no known proxy answered or the listener could not be bound.
    pub async fn connect(&self, remote: Option<SocketAddr>) -> Option<SocketAddr> {
        let remote = match remote {
            Some(r) => r,
            None => {
                let port = self.inner.settings.probe_port;
                let ip = self.race().await?;
                SocketAddr::new(ip.into(), port)
            }
        };
        let mut slot = self.inner.forwarder.lock().await;
        if let Some(old) = slot.take() {
            old.stop().await;
        }
        let listener = match bind(self.inner.settings.listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "proxy: cannot listen on {}: {e}",
                    self.inner.settings.listen
                );
                return None;
            }
        };
        let listen = listener.local_addr().unwrap_or(self.inner.settings.listen);
        let cancel = self.inner.shutdown.child_token();
        let task = self.inner.tasks.spawn(forward(
            listener,
            remote,
            cancel.clone(),
            self.inner.settings.max_relayed,
            self.inner.settings.allow_remote_clients,
            self.inner.relays.clone(),
        ));
        tracing::info!(
            "proxy: forwarding {} to {remote}",
            self.inner.settings.listen
        );
        *slot = Some(Forwarder {
            remote,
            listen,
            cancel,
            task,
        });
        Some(remote)
    }

    /// Stops the forwarder: once this returns the listener is closed and every
    /// forwarded connection is closed. Does nothing if none runs.
    pub async fn disconnect(&self) {
        if let Some(old) = self.inner.forwarder.lock().await.take() {
            tracing::info!("proxy: no longer forwarding to {}", old.remote);
            old.stop().await;
        }
    }

    /// The remote the forwarder sends to, if it runs.
    pub async fn remote(&self) -> Option<SocketAddr> {
        self.inner.forwarder.lock().await.as_ref().map(|f| f.remote)
    }

    /// The address the forwarder listens on, if it runs.
    pub async fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.forwarder.lock().await.as_ref().map(|f| f.listen)
    }

    /// Connections being forwarded right now.
    pub fn relayed_connections(&self) -> usize {
        self.inner.relays.load(Ordering::Relaxed)
    }

    /// The known proxies with the lowest latency, asked at once; the first to answer
    /// `05 00` wins.
    async fn race(&self) -> Option<Ipv6Addr> {
        let port = self.inner.settings.probe_port;
        let mut racers = JoinSet::new();
        for ip in self.proxies().into_iter().take(MAX_RACED) {
            racers.spawn(async move { (ip, probe(SocketAddr::new(ip.into(), port)).await) });
        }
        while let Some(done) = racers.join_next().await {
            let Ok((ip, (result, latency))) = done else {
                continue;
            };
            self.record(ip, result, latency);
            if result == ProbeResult::Valid {
                return Some(ip);
            }
        }
        None
    }

    fn record(&self, ip: Ipv6Addr, result: ProbeResult, latency: Duration) {
        let mut results = lock(&self.inner.results);
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        if results.len() >= MAX_PROBE_RESULTS && !results.contains_key(&ip) {
            let oldest = results.iter().min_by_key(|(_, p)| p.seq).map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                results.remove(&oldest);
            }
        }
        results.insert(
            ip,
            Probed {
                result,
                latency,
                seq,
            },
        );
    }
}

impl Forwarder {
    async fn stop(self) {
        self.cancel.cancel();
        // The task closes the listener and waits for its connections to close.
        let _ = self.task.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The addresses of the nodes owning our selected routes (as upstream: the address
/// derived from the owner's key, not an arbitrary address in its subnet).
async fn route_targets(path: Weak<DataPath>) -> Vec<Ipv6Addr> {
    let Some(path) = path.upgrade() else {
        return Vec::new();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if path
        .to_core
        .send(CoreCmd::Query(Query::Routes(tx)))
        .await
        .is_err()
    {
        return Vec::new();
    }
    let Ok(routes) = rx.await else {
        return Vec::new();
    };
    let snapshot = path.snapshot.load();
    let mut targets: Vec<Ipv6Addr> = routes
        .selected
        .iter()
        .filter_map(|r| match r.subnet.address() {
            std::net::IpAddr::V6(ip) => snapshot.key_for(ip).map(|k| k.address()),
            std::net::IpAddr::V4(_) => None,
        })
        .filter(|ip| *ip != path.own_ip)
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets.truncate(MAX_PROBE_RESULTS);
    targets
}

async fn probe_loop(inner: Arc<Inner>, token: CancellationToken) {
    let proxy = Proxy {
        inner: inner.clone(),
    };
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let round = async {
            let targets = (inner.targets)().await;
            tracing::debug!("proxy: probing {} nodes", targets.len());
            let mut probes = JoinSet::new();
            for ip in targets {
                while probes.len() >= MAX_PROBES_IN_FLIGHT {
                    if let Some(Ok((ip, (result, latency)))) = probes.join_next().await {
                        proxy.record(ip, result, latency);
                    }
                }
                let port = inner.settings.probe_port;
                probes.spawn(async move { (ip, probe(SocketAddr::new(ip.into(), port)).await) });
            }
            while let Some(done) = probes.join_next().await {
                if let Ok((ip, (result, latency))) = done {
                    proxy.record(ip, result, latency);
                }
            }
        };
        tokio::select! {
            () = token.cancelled() => break,
            () = round => {}
        }
    }
}

/// Asks `addr` for the "no authentication" method; the result and how long the
/// answer took.
pub async fn probe(addr: SocketAddr) -> (ProbeResult, Duration) {
    let start = Instant::now();
    let ask = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        stream.write_all(&GREETING).await.ok()?;
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).await.ok()?;
        Some(match reply {
            [0x05, 0x00] => ProbeResult::Valid,
            [0x05, 0xFF] => ProbeResult::AuthenticationRequired,
            _ => ProbeResult::NotAProxy,
        })
    };
    let result = tokio::time::timeout(PROBE_TIMEOUT, ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(ProbeResult::NotListening);
    (result, start.elapsed())
}

/// Whether `ip` is this host's loopback, IPv4-mapped included (the dual-stack
/// listener sees `127.0.0.1` as `::ffff:127.0.0.1`).
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Connections of an earlier forwarder in TIME_WAIT must not keep the port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Counts a forwarded connection while it lives.
struct RelayGuard(Arc<AtomicUsize>);

impl RelayGuard {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for RelayGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts local connections and forwards each to `remote` until `cancel`; then
/// closes the listener and every forwarded connection before returning.
async fn forward(
    listener: TcpListener,
    remote: SocketAddr,
    cancel: CancellationToken,
    max_relayed: usize,
    allow_remote: bool,
    count: Arc<AtomicUsize>,
) {
    let mut relays = JoinSet::new();
    loop {
        // Reap the ended connections; at the limit, wait for one to end.
        while relays.try_join_next().is_some() {}
        if relays.len() >= max_relayed.max(1) {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = relays.join_next() => continue,
            }
        }
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = relays.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let local = match accepted {
            Ok((_, client)) if !allow_remote && !is_loopback(client.ip()) => {
                tracing::debug!("proxy: refusing {client}: not a loopback client");
                continue;
            }
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::debug!("proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = RelayGuard::new(&count);
        let cancel = cancel.clone();
        relays.spawn(async move {
            let _guard = guard;
            tokio::select! {
                () = cancel.cancelled() => {}
                () = relay(local, remote) => {}
            }
        });
    }
    drop(listener);
    // Dropping a relay's future closes both of its sockets.
    relays.shutdown().await;
}

/// Copies bytes both ways between a local client and the remote until both
/// directions ended (an end of stream on one side is passed on as a write shutdown
/// to the other) or either side fails.
async fn relay(mut local: TcpStream, remote: SocketAddr) {
    let connect = tokio::time::timeout(RELAY_CONNECT_TIMEOUT, TcpStream::connect(remote)).await;
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("proxy: connecting to {remote}: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("proxy: connecting to {remote}: timed out");
            return;
        }
    };
    let _ = local.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut upstream).await {
        tracing::debug!("proxy: forwarding to {remote}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::Ipv6Addr;

    const LOOPBACK: Ipv6Addr = Ipv6Addr::LOCALHOST;

    /// A server on `[::1]:0` that answers every connection with `reply` after
    /// reading the 3-byte greeting, then echoes whatever follows.
    async fn fake_server(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut greeting = [0u8; 3];
                    if s.read_exact(&mut greeting).await.is_err() {
                        return;
                    }
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    /// An echo server on `[::1]:0` (the forwarder does not look at the bytes).
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    fn proxy_with(targets: Vec<Ipv6Addr>, probe_port: u16, max_relayed: usize) -> Proxy {
        let settings = ProxySettings {
            listen: SocketAddr::new(LOOPBACK.into(), 0),
            probe_port,
            max_relayed,
            allow_remote_clients: false,
        };
        let targets: Targets = Arc::new(move || {
            let t = targets.clone();
            Box::pin(async move { t })
        });
        Proxy::new(settings, targets, CancellationToken::new())
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn probe_tells_servers_apart() {
        let valid = fake_server(&[0x05, 0x00]).await;
        let auth = fake_server(&[0x05, 0xFF]).await;
        let other = fake_server(b"HTTP/1.1 400").await;
        let short = fake_server(&[0x05]).await;
        let closed = {
            let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(probe(valid).await.0, ProbeResult::Valid);
        assert_eq!(probe(auth).await.0, ProbeResult::AuthenticationRequired);
        assert_eq!(probe(other).await.0, ProbeResult::NotAProxy);
        assert_eq!(probe(closed).await.0, ProbeResult::NotListening);
        // One byte and then silence: the probe gives up at its timeout.
        let started = Instant::now();
        let (result, _) = tokio::time::timeout(PROBE_TIMEOUT * 2, probe(short))
            .await
            .unwrap();
        assert_eq!(result, ProbeResult::NotListening);
        assert!(started.elapsed() >= PROBE_TIMEOUT - Duration::from_millis(100));
    }

    #[tokio::test]
    async fn probing_finds_a_proxy_and_stopping_keeps_it() {
        let valid = fake_server(&[0x05, 0x00]).await;
        let proxy = proxy_with(vec![LOOPBACK], valid.port(), 4);
        assert!(proxy.proxies().is_empty());
        proxy.start_probing();
        proxy.start_probing(); // no second loop
        eventually("the proxy is found", || proxy.proxies() == vec![LOOPBACK]).await;
        let (result, latency) = proxy.probe_result(LOOPBACK).unwrap();
        assert_eq!(result, ProbeResult::Valid);
        assert!(latency < PROBE_TIMEOUT);
        proxy.stop_probing();
        assert_eq!(proxy.proxies(), vec![LOOPBACK]);
        // A later start works again.
        proxy.start_probing();
        proxy.stop_probing();
    }

    #[tokio::test]
    async fn auth_only_servers_are_not_proxies() {
        let auth = fake_server(&[0x05, 0xFF]).await;
        let proxy = proxy_with(vec![LOOPBACK], auth.port(), 4);
        proxy.start_probing();
        eventually("the server is probed", || {
            proxy.probe_result(LOOPBACK).is_some()
        })
        .await;
        assert_eq!(
            proxy.probe_result(LOOPBACK).unwrap().0,
            ProbeResult::AuthenticationRequired
        );
        assert!(proxy.proxies().is_empty());
        assert_eq!(proxy.connect(None).await, None);
        assert_eq!(proxy.remote().await, None);
        proxy.stop_probing();
    }

    #[tokio::test]
    async fn probe_results_are_bounded() {
        let proxy = proxy_with(Vec::new(), 1, 4);
        for i in 0..=MAX_PROBE_RESULTS as u128 {
            let ip = Ipv6Addr::from(0xfd00_u128 << 112 | i);
            proxy.record(ip, ProbeResult::Valid, Duration::from_millis(1));
        }
        assert_eq!(proxy.proxies().len(), MAX_PROBE_RESULTS);
        // The oldest gave way.
        assert!(proxy
            .probe_result(Ipv6Addr::from(0xfd00_u128 << 112))
            .is_none());
    }

    #[tokio::test]
    async fn best_proxy_is_chosen_and_forwarded_to() {
        let valid = fake_server(&[0x05, 0x00]).await;
        let proxy = proxy_with(vec![LOOPBACK], valid.port(), 4);
        proxy.start_probing();
        eventually("the proxy is found", || !proxy.proxies().is_empty()).await;
        proxy.stop_probing();
        assert_eq!(proxy.connect(None).await, Some(valid));
        let listen = proxy.listen_addr().await.unwrap();
        // The client speaks SOCKS to the remote end to end.
        let mut c = TcpStream::connect(listen).await.unwrap();
        c.write_all(&GREETING).await.unwrap();
        let mut reply = [0u8; 2];
        c.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [0x05, 0x00]);
        drop(c);
        proxy.disconnect().await;
        assert_eq!(proxy.relayed_connections(), 0);
    }

    #[tokio::test]
    async fn relays_end_with_their_connections_and_with_disconnect() {
        let echo = echo_server().await;
        let proxy = proxy_with(Vec::new(), 1, 64);
        // A named remote is used as is, with no probe.
        assert_eq!(proxy.connect(Some(echo)).await, Some(echo));
        let listen = proxy.listen_addr().await.unwrap();

        // Clients that half-close: the echo comes back whole, then end of stream.
        let mut clients = JoinSet::new();
        for i in 0..20u8 {
            clients.spawn(async move {
                let mut c = TcpStream::connect(listen).await.unwrap();
                let data = vec![i; 100_000];
                c.write_all(&data).await.unwrap();
                c.shutdown().await.unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, data);
            });
        }
        while let Some(r) = clients.join_next().await {
            r.unwrap();
        }
        eventually("relays end with their connections", || {
            proxy.relayed_connections() == 0
        })
        .await;

        // Open connections are closed by disconnect, and the listener with them.
        let mut open = Vec::new();
        for _ in 0..10 {
            let mut c = TcpStream::connect(listen).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).await.unwrap();
            open.push(c);
        }
        assert_eq!(proxy.relayed_connections(), 10);
        proxy.disconnect().await;
        assert_eq!(proxy.relayed_connections(), 0);
        assert_eq!(proxy.remote().await, None);
        for mut c in open {
            let mut buf = [0u8; 1];
            let n = c.read(&mut buf).await.unwrap_or(0);
            assert_eq!(n, 0, "a forwarded connection outlived disconnect");
        }
        let refused = TcpStream::connect(listen).await;
        assert!(refused.is_err(), "the listener outlived disconnect");
        // Disconnecting again is fine.
        proxy.disconnect().await;
    }

    #[tokio::test]
    async fn relayed_connections_are_bounded() {
        let echo = echo_server().await;
        let proxy = proxy_with(Vec::new(), 1, 2);
        proxy.connect(Some(echo)).await.unwrap();
        let listen = proxy.listen_addr().await.unwrap();
        let mut first = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(listen).await.unwrap();
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.unwrap();
            first.push(c);
        }
        // The third waits in the backlog: no echo while two are forwarded.
        let mut third = TcpStream::connect(listen).await.unwrap();
        third.write_all(b"y").await.unwrap();
        let mut b = [0u8; 1];
        let early =
            tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut b)).await;
        assert!(early.is_err(), "a third connection was forwarded");
        assert_eq!(proxy.relayed_connections(), 2);
        // One ends; the third is served.
        drop(first.pop());
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"y");
        proxy.disconnect().await;
        assert_eq!(proxy.relayed_connections(), 0);
    }

    #[tokio::test]
    async fn reconnecting_replaces_the_forwarder() {
        let echo = echo_server().await;
        let other = echo_server().await;
        let settings = ProxySettings {
            listen: SocketAddr::new(LOOPBACK.into(), 0),
            probe_port: 1,
            max_relayed: 4,
            allow_remote_clients: false,
        };
        // A fixed port, as the node's: taken from a listener we close first.
        let port = {
            let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let settings = ProxySettings {
            listen: SocketAddr::new(LOOPBACK.into(), port),
            ..settings
        };
        let targets: Targets = Arc::new(|| Box::pin(async { Vec::new() }));
        let proxy = Proxy::new(settings, targets, CancellationToken::new());
        proxy.connect(Some(echo)).await.unwrap();
        let mut c = TcpStream::connect(settings.listen).await.unwrap();
        c.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        // An immediate re-connect gets the port again (the old listener is closed
        // before the new one binds) and closes the old connections.
        assert_eq!(proxy.connect(Some(other)).await, Some(other));
        assert_eq!(c.read(&mut b).await.unwrap_or(0), 0);
        assert_eq!(proxy.remote().await, Some(other));
        // A listener that cannot be bound is reported.
        let blocker = proxy_with(Vec::new(), 1, 4);
        let taken = ProxySettings {
            listen: settings.listen,
            ..blocker.inner.settings
        };
        let blocked = Proxy::new(
            taken,
            Arc::new(|| Box::pin(async { Vec::new() })),
            CancellationToken::new(),
        );
        assert_eq!(blocked.connect(Some(echo)).await, None);
        proxy.disconnect().await;
    }

    #[tokio::test]
    async fn node_shutdown_ends_the_forwarder() {
        let echo = echo_server().await;
        let shutdown = CancellationToken::new();
        let settings = ProxySettings {
            listen: SocketAddr::new(LOOPBACK.into(), 0),
            probe_port: 1,
            max_relayed: 4,
            allow_remote_clients: false,
        };
        let proxy = Proxy::new(
            settings,
            Arc::new(|| Box::pin(async { Vec::new() })),
            shutdown.clone(),
        );
        proxy.connect(Some(echo)).await.unwrap();
        let listen = proxy.listen_addr().await.unwrap();
        let mut c = TcpStream::connect(listen).await.unwrap();
        c.write_all(b"a").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        shutdown.cancel();
        assert_eq!(c.read(&mut b).await.unwrap_or(0), 0);
        eventually("relays end", || proxy.relayed_connections() == 0).await;
    }
}
