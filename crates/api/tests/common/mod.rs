//! Shared by the integration tests: a real server on 127.0.0.1:0 over a
//! `FakeBackend`; the document checks are in `schema.rs` (also used by the CLI
//! crate's live-node conformance test).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

mod schema;
#[allow(unused_imports)] // each test binary uses a different part
pub use schema::*;

use std::sync::Arc;

use mycelium_api::{ApiConfig, Backend, FakeBackend};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running server; dropping it shuts the server down.
pub struct Server {
    pub base: String,
    pub fake: Arc<FakeBackend>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone, Copy)]
pub enum Kind {
    Http,
    Rpc,
}

pub async fn start(kind: Kind, cfg: ApiConfig) -> Server {
    start_on(kind, cfg, "127.0.0.1:0").await
}

/// A server listening on `bind`; its `base` names 127.0.0.1 with the bound port
/// when `bind` is an unspecified address.
pub async fn start_on(kind: Kind, cfg: ApiConfig, bind: &str) -> Server {
    let listener = TcpListener::bind(bind).await.unwrap();
    let mut addr = listener.local_addr().unwrap();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fake = Arc::new(FakeBackend::new());
    let backend: Arc<dyn Backend> = fake.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(async move {
        let r = match kind {
            Kind::Http => mycelium_api::serve_http(listener, backend, cfg, shutdown).await,
            Kind::Rpc => mycelium_api::serve_rpc(listener, backend, cfg, shutdown).await,
        };
        r.unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        fake,
        stop: Some(stop),
    }
}

pub async fn http() -> Server {
    start(Kind::Http, ApiConfig::default()).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn rpc_call(base: &str, method: &str, params: Value) -> Value {
    client()
        .post(base)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
