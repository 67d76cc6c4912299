//! The node's management APIs: HTTP REST under `/api/v1`, JSON-RPC 2.0, the
//! project's OpenAPI and OpenRPC documents and the web view.
//!
//! The crate does not know the node: both servers talk to an `Arc<dyn Backend>`
//! ([`backend`]), which the node implements and [`FakeBackend`] fakes. It owns the
//! JSON shapes ([`model`]), the REST routes and their framework behaviour
//! ([`http_router`], [`serve_http`]), the JSON-RPC server ([`rpc_router`],
//! [`serve_rpc`]) and the optional bearer-token check both share.
//!
//! Where upstream v0.7.10's code and its documents disagree, the code wins;
//! our own documents (`openapi.yaml`, `openrpc.json`) describe what this
//! crate really does, including what it adds: bearer authentication and the errors
//! of bounded queues and tables.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod auth;
pub mod backend;
mod conn_limit;
mod fake;
mod host_check;
pub mod http;
pub mod httpd;
pub mod model;
pub mod rpc;

pub use backend::{Backend, PushError, PushOutcome};
pub use fake::{FakeBackend, FAKE_INBOX_LEN, FAKE_MAX_PAYLOAD};
pub use http::http_router;
pub use rpc::rpc_router;

/// Our OpenAPI 3.0 document (served as JSON at `GET /api/v1/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Our OpenRPC document (the result of `rpc.discover`).
pub const OPENRPC_JSON: &str = include_str!("../openrpc.json");

/// The web view page served at `GET /`.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// Longest a long-poll (`popMessage`) or a reply wait is allowed to last; longer
/// requested timeouts are cut to this.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the servers wait for running requests after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Settings shared by the REST and JSON-RPC servers.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// When set, every request (but `GET /`, the web view page) must carry
    /// `Authorization: Bearer <token>`; others get 401 with a JSON error body.
    pub token: Option<String>,
    /// Largest REST request body accepted (413 past it).
    pub max_body_bytes: usize,
    /// Largest JSON-RPC request accepted (413 past it); upstream's is 10 MiB.
    pub max_rpc_request_bytes: usize,
    /// Most connections each server keeps open (upstream's RPC server: 100); more
    /// wait in the accept queue until one closes.
    pub max_connections: usize,
    /// The longest a client may keep a server waiting for a request's head or the
    /// next piece of its body; a connection that does is closed ([`httpd`]).
    pub read_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_body_bytes: 10 << 20,
            max_rpc_request_bytes: 10 << 20,
            max_connections: 100,
            read_timeout: httpd::DEFAULT_READ_TIMEOUT,
        }
    }
}

/// What every handler shares: the backend, the settings, and a token that is
/// cancelled when the server shuts down so waiting requests end at once.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) cfg: Arc<ApiConfig>,
    pub(crate) closing: CancellationToken,
    /// The address the server listens on, when it is known (`serve_*`): on a
    /// loopback address, requests must name a loopback host (DNS-rebinding guard).
    pub(crate) listen: Option<SocketAddr>,
}

impl AppState {
    fn new(backend: Arc<dyn Backend>, cfg: ApiConfig, closing: CancellationToken) -> Self {
        Self {
            backend,
            cfg: Arc::new(cfg),
            closing,
            listen: None,
        }
    }

    fn listening_on(mut self, listen: Option<SocketAddr>) -> Self {
        self.listen = listen;
        self
    }
}

/// Serves the REST API (and `GET /`) on `listener`, HTTP/1.1 and h2c, until
/// `shutdown` completes; waiting requests (long-polls) then end at once, and
/// requests still running get two seconds to finish.
///
/// On a loopback listener, requests whose `Host` names anything but `localhost` or
/// a loopback address get 421 (DNS-rebinding protection); the same holds for
/// [`serve_rpc`].
pub async fn serve_http(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let closing = CancellationToken::new();
    let listen = host_check::listen_addr(&listener);
    let limits = limits(&cfg);
    let state = AppState::new(backend, cfg, closing.clone()).listening_on(listen);
    let router = http::router_with(state);
    serve(listener, router, limits, closing, shutdown).await
}

/// Serves the JSON-RPC API on `listener` (POST on any path, WebSocket upgrades)
/// until `shutdown` completes.
pub async fn serve_rpc(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let closing = CancellationToken::new();
    let listen = host_check::listen_addr(&listener);
    let limits = limits(&cfg);
    let state = AppState::new(backend, cfg, closing.clone()).listening_on(listen);
    let router = rpc::router_with(state);
    serve(listener, router, limits, closing, shutdown).await
}

fn limits(cfg: &ApiConfig) -> httpd::Limits {
    httpd::Limits {
        max_connections: cfg.max_connections,
        read_timeout: cfg.read_timeout,
        http2: true,
    }
}

async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: httpd::Limits,
    closing: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let signal = closing.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => signal.cancel(),
            () = signal.cancelled() => {}
        }
    });
    let server = httpd::serve(listener, router, limits, closing.clone().cancelled_owned());
    let result = tokio::select! {
        r = server => r,
        () = async {
            closing.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    // Ends the signal task too if the server stopped on its own (an accept error).
    closing.cancel();
    result
}
