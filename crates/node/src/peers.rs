//! Making and accepting peer connections: the TCP listener on `[::]` and a dialer
//! per static peer that reconnects when the link ends (PROTOCOL.md §2.2, §2.7).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mycelium_proto::routing::LinkKind;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::core::Shared;
use crate::link;

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
        set_mark(&stream, mark);
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let label = format!("TCP {local} <-> {remote} (inbound)");
        let (r, w) = stream.into_split();
        tokio::spawn(link::run(shared.clone(), r, w, tcp_kind(&remote), label));
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

/// Dials a discovered peer, redialling after each link ends, until it has failed
/// `max_failures` times in a row or the node shuts down.
pub(crate) async fn dial_until_failures(
    shared: Arc<Shared>,
    addr: SocketAddr,
    mark: Option<u32>,
    max_failures: u32,
) {
    let mut failures = 0;
    while failures < max_failures {
        match connect(addr, mark).await {
            Ok(stream) => {
                failures = 0;
                let local = stream
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                let label = format!("TCP {local} <-> {addr} (discovered)");
                let (r, w) = stream.into_split();
                link::run(shared.clone(), r, w, tcp_kind(&addr), label).await;
            }
            Err(e) => {
                failures += 1;
                tracing::debug!("connecting to discovered tcp://{addr}: {e}");
            }
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
    tracing::info!("forgetting discovered peer tcp://{addr} after {max_failures} failed attempts");
}

/// Keeps a static TCP peer connected until shutdown.
pub(crate) async fn dial_forever(shared: Arc<Shared>, addr: SocketAddr, mark: Option<u32>) {
    loop {
        match connect(addr, mark).await {
            Ok(stream) => {
                let local = stream
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                let label = format!("TCP {local} <-> {addr}");
                let (r, w) = stream.into_split();
                link::run(shared.clone(), r, w, tcp_kind(&addr), label).await;
            }
            Err(e) => tracing::debug!("connecting to tcp://{addr}: {e}"),
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}
