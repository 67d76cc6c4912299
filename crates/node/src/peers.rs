//! Making and accepting peer connections: the TCP listener on `[::]` and a dialer
//! per static peer that reconnects when the link ends (PROTOCOL.md §2.2, §2.7).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::routing::LinkKind;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::core::Shared;
use crate::link;
use crate::registry::{ConnectionState, EntryHandle, PeerKind};

/// Upstream redials a static peer every 5 s.
const REDIAL: Duration = Duration::from_secs(5);
/// Our own dialling gives up on an unanswered connect after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn tcp_kind(addr: &SocketAddr) -> LinkKind {
    let ipv4 = match addr.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
    };
    LinkKind::Tcp { ipv4 }
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

/// Accepts inbound TCP peers on `[::]:port` until shutdown. If the port cannot be
/// bound the node keeps running without a listener, as upstream does.
pub(crate) async fn listen(shared: Arc<Shared>, port: u16, mark: Option<u32>) {
    let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on TCP {addr}: {e}; running without a TCP listener");
            return;
        }
    };
    tracing::info!("listening for TCP peers on {addr}");
    loop {
        let (stream, remote) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accepting a TCP peer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let entry = match shared.registry.insert(
            Endpoint::tcp(remote),
            PeerKind::Inbound,
            ConnectionState::Alive,
        ) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::debug!("refusing TCP peer {remote}: {e}");
                continue;
            }
        };
        set_mark(&stream, mark);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            run_stream(&shared, stream, remote, &entry, "inbound").await;
            shared.registry.forget(&entry);
        });
    }
}

/// Runs a link over a connected TCP stream until it ends.
async fn run_stream(
    shared: &Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    entry: &EntryHandle,
    origin: &'static str,
) {
    let local = stream
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let conn_id = format!("TCP {local} <-> {remote}");
    let (r, w) = stream.into_split();
    let link = link::LinkMeta {
        kind: tcp_kind(&remote),
        conn_id,
        origin,
        entry: entry.clone(),
    };
    link::run(shared.clone(), r, w, link).await;
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

/// Dials a TCP peer, redialling after each link ends, until its registry entry is
/// removed, the node shuts down, or (with `max_failures`) it has failed that many
/// times in a row, when the entry is forgotten.
pub(crate) async fn dial(shared: Arc<Shared>, entry: EntryHandle, max_failures: Option<u32>) {
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
        shared
            .registry
            .set_state(&entry, ConnectionState::Connecting);
        let attempt = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            r = connect(addr, shared.mark) => r,
        };
        match attempt {
            Ok(stream) => {
                failures = 0;
                shared.registry.set_state(&entry, ConnectionState::Alive);
                run_stream(&shared, stream, addr, &entry, origin).await;
            }
            Err(e) => {
                failures += 1;
                tracing::debug!("connecting to tcp://{addr}: {e}");
            }
        }
        shared.registry.set_state(&entry, ConnectionState::Dead);
        if max_failures.is_some_and(|max| failures >= max) {
            tracing::info!(
                "forgetting {origin} peer tcp://{addr} after {failures} failed attempts"
            );
            shared.registry.forget(&entry);
            return;
        }
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}
