//! Shared by the integration tests: a real server on 127.0.0.1:0 over a
//! `FakeBackend`, and OpenAPI/OpenRPC schemas turned into JSON Schema validators.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

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

/// OpenAPI 3.0 schema → JSON Schema 2020-12: `nullable` becomes a `null` type,
/// everything else is kept (unknown keywords such as `example` are ignored).
pub fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if k != "nullable" {
                    out.insert(k.clone(), to_json_schema(v));
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                        if let Some(Value::Array(e)) = out.get_mut("enum") {
                            e.push(Value::Null);
                        }
                    }
                    _ => return json!({"anyOf": [Value::Object(out), {"type": "null"}]}),
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// Validates `instance` against `schema`, resolving `#/components/...` references
/// in `doc` (an OpenAPI or OpenRPC document). Returns the errors found.
pub fn schema_errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = to_json_schema(schema);
    if !root.is_object() {
        return vec![format!("schema is not an object: {schema}")];
    }
    root["components"] = to_json_schema(&doc["components"]);
    let validator = match jsonschema::draft202012::new(&root) {
        Ok(v) => v,
        Err(e) => return vec![format!("bad schema {schema}: {e}")],
    };
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

pub fn our_openapi() -> Value {
    serde_json::from_str(mycelium_api::OPENAPI_JSON).unwrap()
}

pub fn our_openrpc() -> Value {
    serde_json::from_str(mycelium_api::OPENRPC_JSON).unwrap()
}

/// Upstream's reference document, when the shared tree is beside the repository.
pub fn upstream_file(name: &str) -> Option<String> {
    // shared/ sits beside the repository (CI lays it there); accept one level
    // closer too.
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in ["../../../shared/reference", "../../shared/reference"] {
        if let Ok(s) = std::fs::read_to_string(crate_dir.join(up).join(name)) {
            return Some(s);
        }
    }
    println!("note: shared/reference/{name} not found beside the repository; skipping the upstream-document part");
    None
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
