//! The HTTP server under the APIs, the metrics endpoint and the CDN helper: an
//! axum router on hyper, with the bounds `axum::serve` leaves out.
//!
//! * At most [`Limits::max_connections`] connections are open at once; clients
//!   past the cap wait in the kernel's accept queue.
//! * A client must not keep the server waiting for what a request still has to
//!   send for longer than [`Limits::read_timeout`]: the request's head (from when
//!   the connection is accepted, or from the end of the previous response while
//!   it is kept alive), or the next piece of its body. A connection that sends
//!   nothing, or a byte now and then, is closed and its place freed. Without
//!   this, as many idle connections as the cap would shut everyone else out for
//!   good. Nothing else is timed: long-polls, slow responses and WebSockets last
//!   as long as they need.
//!
//! On shutdown the server stops accepting, answers no new request, lets the ones
//! in progress finish, and returns once every connection has closed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use crate::conn_limit::Counted;

/// [`Limits::read_timeout`] unless configured otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What one server allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, at least one.
    pub max_connections: usize,
    /// The longest wait for a request's head, or for the next piece of its body.
    pub read_timeout: Duration,
    /// Whether clients may speak HTTP/2 (h2c, by prior knowledge) besides HTTP/1.1.
    pub http2: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 100,
            read_timeout: DEFAULT_READ_TIMEOUT,
            http2: false,
        }
    }
}

/// The start of the HTTP/2 connection preface: a client that sends these bytes
/// first is still choosing its protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `router` on `listener` within `limits` until `shutdown` completes,
/// then stops as the module documentation says.
pub async fn serve(
    mut listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    if limits.http2 {
        // An HTTP/2 connection has no head to time once its preface is in: one
        // that stops answering pings is closed instead.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.read_timeout)
            .keep_alive_timeout(limits.read_timeout)
            .enable_connect_protocol();
    }
    let builder = if limits.http2 {
        builder
    } else {
        builder.http1_only()
    };
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is ours and never closed.
                Err(_) => break,
            },
        };
        // axum's accept retries errors such as running out of file descriptors
        // after a pause, so it returns only with a connection.
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = Listener::accept(&mut listener) => accepted,
        };
        let (builder, router, stopping) = (builder.clone(), router.clone(), stopping.clone());
        connections.spawn(async move {
            let started = tokio::select! {
                () = stopping.cancelled() => false,
                ready = tokio::time::timeout(limits.read_timeout, first_bytes(&stream)) => {
                    matches!(ready, Ok(Ok(true)))
                }
            };
            if !started {
                return;
            }
            let service = TowerToHyperService::new(router.map_request(
                move |req: hyper::Request<Incoming>| {
                    req.map(|body| Body::new(TimeoutBody::new(limits.read_timeout, body)))
                },
            ));
            // The permit goes with the stream, into a WebSocket that takes it over.
            let io = TokioIo::new(Counted::new(stream, permit));
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stopping.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Waits until the client has sent enough to choose its protocol: a first byte
/// that does not start the HTTP/2 preface, or the whole preface. `Ok(false)` if
/// it closed first.
async fn first_bytes(stream: &TcpStream) -> io::Result<bool> {
    let mut seen = [0; H2_PREFACE.len()];
    loop {
        stream.readable().await?;
        let n = match stream.peek(&mut seen).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(false);
        }
        if n == seen.len() || seen[..n] != H2_PREFACE[..n] {
            return Ok(true);
        }
        // Part of the preface: the rest follows at once from a real client. Peeking
        // again at once would spin on the same bytes.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
