//! Whole API requests through the REST and JSON-RPC routers as the daemon
//! serves them, over the fake backend: a REST operation with fuzzed path parameters,
//! query and body, or a JSON-RPC call (a known method with fuzzed params, or a raw
//! body). The routers are built once (see `routers`). The clock is tokio's paused clock, so long-polls and reply waits end at
//! once. No request may panic a handler or get a 500; every JSON-RPC answer and
//! every JSON REST answer must be JSON.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use mycelium_api::http::OPERATIONS;
use mycelium_api::rpc::METHODS;
use mycelium_api::{http_router, rpc_router, ApiConfig, FakeBackend};
use tower::ServiceExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime builds")
    })
}

/// The two routers over one fake backend, built once: building them costs far more
/// than a request. The backend's state carries over between inputs, within the
/// bounds it keeps.
fn routers() -> &'static (axum::Router, axum::Router) {
    static R: OnceLock<(axum::Router, axum::Router)> = OnceLock::new();
    R.get_or_init(|| {
        let backend = Arc::new(FakeBackend::new());
        (
            http_router(backend.clone(), ApiConfig::default()),
            rpc_router(backend, ApiConfig::default()),
        )
    })
}

/// Reads the script; past its end every read gives zeros or nothing.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A length-prefixed piece.
    fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8()).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// Percent-encodes what is not an unreserved URI character, except `keep`.
fn encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn rest_request(s: &mut Script<'_>) -> Option<Request<Body>> {
    let sel = s.u8();
    let op = OPERATIONS.get(usize::from(sel) % (OPERATIONS.len() + 1));
    let method = match (op, s.u8() % 8) {
        (Some(op), 0..=5) => Method::from_bytes(op.method.as_bytes()).ok()?,
        (_, 6) => Method::POST,
        (_, 7) => Method::DELETE,
        _ => Method::GET,
    };
    let mut path = String::new();
    match op {
        Some(op) => {
            for part in op.path.split('/').skip(1) {
                path.push('/');
                if part.starts_with('{') {
                    path.push_str(&encode(s.piece(), b":"));
                } else {
                    path.push_str(part);
                }
            }
        }
        None => path = format!("/{}", encode(s.piece(), b"/")),
    }
    let query = s.piece();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&encode(query, b"=&"));
    }
    let mut req = Request::builder().method(method).uri(path);
    if s.u8() & 1 == 0 {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    req.body(Body::from(s.0.to_vec())).ok()
}

fn rpc_request(s: &mut Script<'_>) -> Option<Request<Body>> {
    let sel = s.u8();
    let body = match METHODS.get(usize::from(sel) % (METHODS.len() + 1)) {
        Some((method, _)) => {
            let params = String::from_utf8_lossy(s.0);
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
                .into_bytes()
        }
        None => s.0.to_vec(),
    };
    Request::builder()
        .method(Method::POST)
        .uri("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let rpc = s.u8() & 1 == 1;
    let (http, rpc_api) = routers();
    let (router, req) = if rpc {
        (rpc_api.clone(), rpc_request(&mut s))
    } else {
        (http.clone(), rest_request(&mut s))
    };
    let Some(req) = req else {
        return;
    };
    runtime().block_on(async move {
        let what = format!("{} {}", req.method(), req.uri());
        let res = router.oneshot(req).await.expect("routers are infallible");
        let status = res.status();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        let json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("a response body reads");
        if (rpc || json) && !body.is_empty() {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                panic!(
                    "{what}: {status} with a body that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    });
});
