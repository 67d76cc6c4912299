//! Making and accepting peer connections: the TCP listener on `[::]` and a dialer
//! per static peer that reconnects when the link ends.
//!
//! In a private network (the `private` feature) the same sockets carry TLS: the
//! listener runs the server side of a handshake on every accepted connection, and
//! every dialled stream peer, `tcp://` or `tls://`, the client side.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::routing::LinkKind;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::link;
use crate::peering::Peering;
use crate::registry::{ConnectionState, EntryHandle, PeerError, PeerKind};
use crate::stats::NodeStats;

/// Upstream redials a static peer every 5 s.
const REDIAL: Duration = Duration::from_secs(5);
/// Our own dialling gives up on an unanswered connect after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes the listener runs at once; connections past it are closed.
#[cfg(feature = "private")]
const MAX_HANDSHAKES: usize = 64;

/// How stream peers are carried: plain TCP, or TLS over TCP in a private network.
#[derive(Debug, Clone, Default)]
pub(crate) struct Streams {
    #[cfg(feature = "private")]
    tls: Option<Arc<crate::tls::Tls>>,
    #[cfg(feature = "private")]
    handshakes: Option<Arc<tokio::sync::Semaphore>>,
}

impl Streams {
    /// Streams of a private network.
    #[cfg(feature = "private")]
    pub(crate) fn private(tls: Arc<crate::tls::Tls>) -> Self {
        Self {
            tls: Some(tls),
            handshakes: Some(Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES))),
        }
    }

    /// Whether peers connect with TLS (and QUIC is off).
    pub(crate) fn is_private(&self) -> bool {
        #[cfg(feature = "private")]
        return self.tls.is_some();
        #[cfg(not(feature = "private"))]
        false
    }
}

fn is_ipv4(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
    }
}

#[cfg(target_os = "linux")]
fn set_mark(fd: &impl std::os::fd::AsFd, mark: Option<u32>) {
    if let Some(mark) = mark {
        if let Err(e) = socket_mark(fd, mark) {
            tracing::warn!("setting SO_MARK {mark}: {e}");
        }
    }
}

#[cfg(target_os = "linux")]
fn socket_mark(fd: &impl std::os::fd::AsFd, mark: u32) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(fd);
    sock.set_mark(mark)
}

#[cfg(not(target_os = "linux"))]
fn set_mark<T>(_fd: &T, _mark: Option<u32>) {}

/// A TCP listener on `[::]` that takes IPv4 peers too, on every system. Windows
/// makes IPv6 sockets IPv6-only unless told otherwise (upstream's listener there
/// refuses IPv4 peers), so we say so explicitly rather than rely on the default.
fn dual_stack_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // As tokio's own bind does on Unix: a restarted node can listen at once, while
    // the old connections are in TIME_WAIT. (On Windows the option would let two
    // listeners share the port, so it stays off there.)
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The TCP listener on `[::]:port`; `None` (logged) if the port cannot be bound,
/// when the node runs without one, as upstream does.
pub(crate) fn bind(port: u16) -> Option<TcpListener> {
    let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    match dual_stack_listener(addr) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!("cannot listen on TCP {addr}: {e}; running without a TCP listener");
            None
        }
    }
}

/// Accepts inbound TCP peers (TLS in a private network) on `listener` until
/// shutdown.
pub(crate) async fn serve(peering: Arc<Peering>, streams: Streams, listener: TcpListener) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let what = if streams.is_private() { "TLS" } else { "TCP" };
    tracing::info!("listening for {what} peers on {addr}");
    loop {
        let (stream, remote) = tokio::select! {
            _ = peering.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accepting a TCP peer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !peering.admit_connection() {
            tracing::debug!("closing TCP peer {remote}: connection attempts over the rate");
            continue;
        }
        set_mark(&stream, peering.mark);
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "private")]
        if let (Some(tls), Some(slots)) = (&streams.tls, &streams.handshakes) {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("refusing TLS peer {remote}: too many handshakes running");
                continue;
            };
            let (peering, tls, tasks) = (peering.clone(), tls.clone(), peering.tasks.clone());
            tasks.spawn(async move {
                let handshake = tokio::select! {
                    _ = peering.shutdown.cancelled() => return,
                    r = accept_tls(&peering, &tls, stream, remote) => r,
                };
                drop(slot);
                if let Some((stream, local)) = handshake {
                    let stream = Secured::Tls(stream);
                    inbound(&peering, Endpoint::tls(remote), stream, local, remote).await;
                }
            });
            continue;
        }
        let local = stream.local_addr().ok();
        let (peering, tasks) = (peering.clone(), peering.tasks.clone());
        tasks.spawn(async move {
            let stream = Secured::Plain(stream);
            inbound(&peering, Endpoint::tcp(remote), stream, local, remote).await;
        });
    }
}

/// Records an inbound peer and runs its link until it ends.
async fn inbound(
    peering: &Arc<Peering>,
    endpoint: Endpoint,
    stream: Secured,
    local: Option<SocketAddr>,
    remote: SocketAddr,
) {
    let entry = match peering
        .registry
        .insert(endpoint, PeerKind::Inbound, ConnectionState::Alive)
    {
        Ok(entry) => entry,
        Err(e) => {
            if e == PeerError::TooMany {
                NodeStats::bump(&peering.stats().connections_over_limit);
            }
            tracing::debug!("refusing peer {endpoint}: {e}");
            return;
        }
    };
    run_stream(peering, stream, local, remote, &entry, "inbound").await;
    peering.registry.forget(&entry);
}

/// The server side of a TLS handshake; a refusal is logged and counted.
#[cfg(feature = "private")]
async fn accept_tls(
    peering: &Peering,
    tls: &crate::tls::Tls,
    stream: TcpStream,
    remote: SocketAddr,
) -> Option<(tokio_openssl::SslStream<TcpStream>, Option<SocketAddr>)> {
    let local = stream.local_addr().ok();
    match tls.accept(stream).await {
        Ok(s) => Some((s, local)),
        Err(e) => {
            crate::stats::NodeStats::bump(&peering.stats().tls_handshake_failures);
            tracing::warn!("TLS handshake with inbound peer {remote} refused: {e}");
            None
        }
    }
}

/// Runs a link over a connected TCP stream, or a TLS stream over one, until it
/// ends.
async fn run_stream(
    peering: &Arc<Peering>,
    stream: Secured,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    entry: &EntryHandle,
    origin: &'static str,
) {
    let local = local.map_or_else(|| "?".into(), |a| a.to_string());
    let ipv4 = is_ipv4(&remote);
    let meta = |kind, conn_id| link::LinkMeta {
        kind,
        conn_id,
        remote: Some(remote),
        origin,
        entry: entry.clone(),
    };
    match stream {
        Secured::Plain(stream) => {
            let (r, w) = stream.into_split();
            let conn_id = format!("TCP {local} <-> {remote}");
            link::run(&peering.links, r, w, meta(LinkKind::Tcp { ipv4 }, conn_id)).await;
        }
        #[cfg(feature = "private")]
        Secured::Tls(stream) => {
            let (r, w) = tokio::io::split(stream);
            let conn_id = format!("TLS {local} <-> {remote}");
            link::run(&peering.links, r, w, meta(LinkKind::Tls { ipv4 }, conn_id)).await;
        }
    }
}

async fn connect(addr: SocketAddr, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    set_mark(&socket, mark);
    socket.set_nodelay(true)?;
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Dials a TCP peer (TLS in a private network), redialling after each link ends,
/// until its registry entry is removed, the node shuts down, or (with
/// `max_failures`) it has failed that many times in a row, when the entry is
/// forgotten.
pub(crate) async fn dial(
    peering: Arc<Peering>,
    streams: Streams,
    entry: EntryHandle,
    max_failures: Option<u32>,
) {
    let Some(addr) = entry.endpoint.socket_addr() else {
        return;
    };
    let origin = if max_failures.is_some() {
        "discovered"
    } else {
        "static"
    };
    let mut failures = 0;
    loop {
        peering
            .registry
            .set_state(&entry, ConnectionState::Connecting);
        let attempt = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            r = connect(addr, peering.mark) => r,
        };
        let endpoint = entry.endpoint;
        match attempt {
            Ok(stream) => {
                let local = stream.local_addr().ok();
                match secure(&peering, &streams, stream, &entry).await {
                    Some(stream) => {
                        failures = 0;
                        peering.registry.set_state(&entry, ConnectionState::Alive);
                        run_stream(&peering, stream, local, addr, &entry, origin).await;
                    }
                    None => failures += 1,
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!("connecting to {endpoint}: {e}");
            }
        }
        peering.registry.set_state(&entry, ConnectionState::Dead);
        if max_failures.is_some_and(|max| failures >= max) {
            tracing::info!("forgetting {origin} peer {endpoint} after {failures} failed attempts");
            peering.registry.forget(&entry);
            return;
        }
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}

/// A dialled stream, ready for a link.
enum Secured {
    Plain(TcpStream),
    #[cfg(feature = "private")]
    Tls(tokio_openssl::SslStream<TcpStream>),
}

/// Runs the client side of a TLS handshake over a dialled stream in a private
/// network; hands back the stream as it is otherwise. `None` (logged and counted)
/// when the handshake fails or the entry is removed meanwhile.
async fn secure(
    peering: &Peering,
    streams: &Streams,
    stream: TcpStream,
    entry: &EntryHandle,
) -> Option<Secured> {
    #[cfg(feature = "private")]
    if let Some(tls) = &streams.tls {
        let handshake = tokio::select! {
            _ = entry.cancel.cancelled() => return None,
            r = tls.connect(stream) => r,
        };
        return match handshake {
            Ok(s) => Some(Secured::Tls(s)),
            Err(e) => {
                crate::stats::NodeStats::bump(&peering.stats().tls_handshake_failures);
                tracing::warn!("TLS handshake with {} failed: {e}", entry.endpoint);
                None
            }
        };
    }
    let _ = (peering, streams, entry);
    Some(Secured::Plain(stream))
}
