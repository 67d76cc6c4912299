//! The document side of the conformance tests: OpenAPI/OpenRPC schemas turned
//! into JSON Schema validators, our documents, upstream's reference documents with
//! our documented differences applied as listed exceptions, and the check of one
//! REST answer against a document.
//!
//! Used by this crate's tests (through `common`) and by the CLI crate's live-node
//! conformance test (`#[path]`), so it needs only serde_json, serde_yaml,
//! jsonschema and mycelium-api.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use serde_json::{json, Value};

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

/// Upstream's own document `name` (`api.yaml` or `openrpc.json`), kept unchanged
/// in `crates/api/tests/fixtures/upstream`.
pub fn upstream_file(name: &str) -> String {
    match name {
        "api.yaml" => include_str!("../fixtures/upstream/api.yaml"),
        "openrpc.json" => include_str!("../fixtures/upstream/openrpc.json"),
        other => panic!("no upstream document {other}"),
    }
    .to_owned()
}

/// The operation object with `id` in an OpenAPI document.
pub fn operation<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
    doc["paths"].as_object()?.values().find_map(|item| {
        item.as_object()?
            .values()
            .find(|op| op["operationId"] == id)
    })
}

/// Follows a `$ref` to `#/components/...` in `doc`.
pub fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}

/// Checks one answer of operation `op` (case `name`) against the response `doc`
/// documents for its status: the status is listed, the content type is one listed
/// (or the body is empty where that is allowed), and a JSON body fits the schema.
pub fn check(
    doc: &Value,
    doc_name: &str,
    name: &str,
    op: &str,
    status: u16,
    ctype: &str,
    body: &[u8],
) {
    let ctx = format!("{doc_name}: case {name} ({op} → {status})");
    let op = operation(doc, op).unwrap_or_else(|| panic!("{ctx}: operation not documented"));
    let resp = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{ctx}: status not documented"));
    let resp = resolve(doc, resp);
    let Some(content) = resp["content"].as_object() else {
        assert!(
            body.is_empty(),
            "{ctx}: documented without a body, got {body:?}"
        );
        return;
    };
    if body.is_empty() && !content.contains_key("application/json") {
        return; // a documented text body may be empty (e.g. 400 for a long topic)
    }
    let media = ctype.split(';').next().unwrap_or("").trim();
    let schema = &content
        .get(media)
        .unwrap_or_else(|| panic!("{ctx}: content type {ctype:?} not documented"))["schema"];
    if media == "application/json" {
        let instance: Value =
            serde_json::from_slice(body).unwrap_or_else(|e| panic!("{ctx}: body is not JSON: {e}"));
        let errors = schema_errors(doc, schema, &instance);
        assert!(
            errors.is_empty(),
            "{ctx}: {instance} does not match: {errors:?}"
        );
    }
}

/// Upstream's api.yaml with our documented differences applied: each change is
/// one documented way in which upstream's code (which we follow) differs from it.
pub fn upstream_with_exceptions() -> Value {
    let text = upstream_file("api.yaml");
    let mut doc: Value = serde_yaml::from_str(&text).unwrap();
    let schemas = "/components/schemas";
    // Sets (or adds) the member at a JSON pointer whose parent exists.
    let mut set = |ptr: &str, v: Value| {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        doc.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{parent} is not in upstream's api.yaml"))
            .insert(key, v);
    };
    // difference #1: endpoints are {"proto","addr":{"socket"|"vsock"}}, with tls and vsock.
    set(
        &format!("{schemas}/Endpoint"),
        json!({"type": "object", "required": ["proto", "addr"],
               "properties": {"proto": {"type": "string", "enum": ["tcp", "tls", "quic", "vsock"]},
                              "addr": {"type": "object"}}}),
    );
    // difference #2: PeerStats also has discovered and lastConnected (upstream's schema is open,
    // so this only documents it).
    set(
        &format!("{schemas}/PeerStats/properties/discovered"),
        json!({"type": "integer", "minimum": 0}),
    );
    set(
        &format!("{schemas}/PeerStats/properties/lastConnected"),
        json!({"type": "integer", "minimum": 0, "nullable": true}),
    );
    // difference #3: the public key answer is {"publicKey": ...}, not {"NodePubKey": ...}.
    set(
        &format!("{schemas}/PublicKeyResponse"),
        json!({"type": "object", "required": ["publicKey"], "additionalProperties": false,
               "properties": {"publicKey": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}),
    );
    // difference #4 (addTopic takes a byte array) and #6 (socketPath) concern request bodies,
    // which the cases send in the code's form; nothing to patch for answers.
    // difference #5: adding a topic source answers 201; unknown topics' sources are 404.
    let topics = "/paths/~1api~1v1~1messages~1topics~1{topic}~1sources";
    set(
        &format!("{topics}/post/responses"),
        json!({"201": {"description": "Source added"}, "400": {"description": "bad topic or subnet"}}),
    );
    set(
        &format!("{topics}/get/responses/404"),
        json!({"description": "topic not whitelisted"}),
    );
    // difference #8: a topic over 255 bytes gives 400.
    set(
        "/paths/~1api~1v1~1messages/post/responses/400",
        json!({"description": "topic too large"}),
    );
    doc
}

pub fn result_schema<'a>(doc: &'a Value, method: &str) -> &'a Value {
    let m = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == method)
        .unwrap_or_else(|| panic!("{method} not in openrpc.json"));
    &m["result"]["schema"]
}

/// Methods whose results differ from upstream's openrpc.json, so its
/// result schema is not checked for them.
pub const UPSTREAM_RPC_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "getPublicKeyFromIp",
        "difference #13: the result is a bare hex string",
    ),
    (
        "popMessage",
        "difference #11: null when no message arrived (not an error 204)",
    ),
    (
        "pushMessage",
        "upstream's oneOf cannot match: its InboundMessage requires nothing, so an id \
         answer fits both branches",
    ),
];

/// The `errors` codes our OpenRPC document lists for `method`.
pub fn documented_rpc_errors(doc: &Value, method: &str) -> Vec<i64> {
    doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == method)
        .and_then(|m| m["errors"].as_array())
        .map(|errors| errors.iter().filter_map(|e| e["code"].as_i64()).collect())
        .unwrap_or_default()
}

/// The operationIds of an OpenAPI document.
pub fn operation_ids(doc: &Value) -> std::collections::BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap().to_owned())
        .collect()
}
