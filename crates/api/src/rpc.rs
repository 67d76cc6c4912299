//! The JSON-RPC 2.0 API, written over axum and serde_json.
//!
//! Transport as upstream's jsonrpsee server: `POST` on any path with a JSON content
//! type (`application/json`, `application/json-rpc`, `application/jsonrequest`, with
//! or without parameters), 415 for other content types, 405 for other methods,
//! requests up to 10 MiB, batches, and WebSocket upgrades on the same port. Params
//! are positional (trailing optional ones may be left out) or named, in snake_case
//! or camelCase.
//!
//! Application errors carry upstream's codes (-32007…-32032) with the message
//! "Server error" and no data. Our bounded queues and tables add three codes, also
//! "Server error" but with a `data` text: -32040 payload too large, -32041 message
//! queue full or unavailable, -32042 configuration table full, -32043 a reply to
//! that message is still being sent. A destination the overlay cannot route (IPv4)
//! is -32602 "Invalid params".
//!
//! Results are serialised straight to raw JSON so objects keep upstream's key order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::Subnet;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::backend::{PushError, PushOutcome, Topic};
use crate::model::{self, MessageSendInfo, PushMessageResponseId, MAX_TOPIC_LEN};
use crate::{auth, ApiConfig, AppState, Backend, MAX_WAIT};

/// Every method served, with its parameter names (snake_case) in positional order.
pub const METHODS: &[(&str, &[&str])] = &[
    ("getInfo", &[]),
    ("getPublicKeyFromIp", &["ip"]),
    ("getPeers", &[]),
    ("addPeer", &["endpoint"]),
    ("deletePeer", &["endpoint"]),
    ("getSelectedRoutes", &[]),
    ("getFallbackRoutes", &[]),
    ("getQueriedSubnets", &[]),
    ("getProxies", &[]),
    ("connectProxy", &["remote"]),
    ("disconnectProxy", &[]),
    ("startProxyProbe", &[]),
    ("stopProxyProbe", &[]),
    ("getPacketStatistics", &[]),
    ("rpc.discover", &[]),
    ("popMessage", &["peek", "timeout", "topic"]),
    ("pushMessage", &["message", "reply_timeout"]),
    ("pushMessageReply", &["id", "message"]),
    ("getMessageInfo", &["id"]),
    ("getDefaultTopicAction", &[]),
    ("setDefaultTopicAction", &["accept"]),
    ("getTopics", &[]),
    ("addTopic", &["topic"]),
    ("removeTopic", &["topic"]),
    ("getTopicSources", &["topic"]),
    ("addTopicSource", &["topic", "subnet"]),
    ("removeTopicSource", &["topic", "subnet"]),
    ("getTopicForwardSocket", &["topic"]),
    ("setTopicForwardSocket", &["topic", "socket_path"]),
    ("removeTopicForwardSocket", &["topic"]),
];

/// Application error codes (upstream's, and ours from -32040).
pub mod codes {
    /// `getPublicKeyFromIp`: not an IP address.
    pub const INVALID_IP: i64 = -32007;
    /// `getPublicKeyFromIp`: no route entry covers the address.
    pub const NO_PUBKEY: i64 = -32008;
    /// `addPeer`: the endpoint does not parse.
    pub const ADD_PEER_BAD_ENDPOINT: i64 = -32009;
    /// `addPeer`: the peer exists.
    pub const PEER_EXISTS: i64 = -32010;
    /// `deletePeer`: no such peer.
    pub const PEER_NOT_FOUND: i64 = -32011;
    /// `deletePeer`: the endpoint does not parse.
    pub const DELETE_PEER_BAD_ENDPOINT: i64 = -32012;
    /// `popMessage`: the topic is not base64.
    pub const POP_BAD_TOPIC: i64 = -32013;
    /// `pushMessage`: the topic is longer than 255 bytes.
    pub const TOPIC_TOO_LARGE: i64 = -32015;
    /// `pushMessageReply`: the id is not hex of at least 8 bytes.
    pub const REPLY_BAD_ID: i64 = -32018;
    /// `getMessageInfo`: unknown message.
    pub const MESSAGE_NOT_FOUND: i64 = -32019;
    /// `getMessageInfo`: the id is not hex of at least 8 bytes.
    pub const INFO_BAD_ID: i64 = -32020;
    /// Topic methods: the topic is not base64.
    pub const BAD_TOPIC: i64 = -32021;
    /// `addTopicSource`/`removeTopicSource`: the subnet does not parse.
    pub const BAD_SUBNET: i64 = -32023;
    /// `getTopicSources`: the topic is not whitelisted.
    pub const TOPIC_NOT_FOUND: i64 = -32030;
    /// `connectProxy`: no valid proxy, or the local listener could not be bound.
    pub const NO_PROXY: i64 = -32032;
    /// Ours: the message payload is larger than the node accepts.
    pub const PAYLOAD_TOO_LARGE: i64 = -32040;
    /// Ours: the outbound message queue is full, or messaging is unavailable.
    pub const QUEUE_FULL: i64 = -32041;
    /// Ours: a topic configuration table is full.
    pub const TABLE_FULL: i64 = -32042;
    /// Ours: a reply to that message id is still being sent.
    pub const REPLY_IN_PROGRESS: i64 = -32043;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// The code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// Details, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: &str, data: Option<String>) -> Self {
        Self {
            code,
            message: message.to_owned(),
            data: data.map(Value::String),
        }
    }

    /// An application error: upstream's form, "Server error" and no data.
    fn server(code: i64) -> Self {
        Self::new(code, "Server error", None)
    }

    fn server_with(code: i64, data: impl ToString) -> Self {
        Self::new(code, "Server error", Some(data.to_string()))
    }

    fn parse_error() -> Self {
        Self::new(-32700, "Parse error", None)
    }

    fn invalid_request() -> Self {
        Self::new(-32600, "Invalid request", None)
    }

    fn method_not_found() -> Self {
        Self::new(-32601, "Method not found", None)
    }

    fn invalid_params(data: impl ToString) -> Self {
        Self::new(-32602, "Invalid params", Some(data.to_string()))
    }

    fn internal() -> Self {
        Self::new(-32603, "Internal error", None)
    }
}

type RpcResult = Result<Box<RawValue>, RpcError>;

fn ok<T: Serialize>(v: &T) -> RpcResult {
    serde_json::value::to_raw_value(v).map_err(|_| RpcError::internal())
}

/// The JSON-RPC router: every path, every method (non-POST answers 405, GET with
/// `Upgrade: websocket` becomes a WebSocket session).
pub fn rpc_router(backend: Arc<dyn Backend>, cfg: ApiConfig) -> Router {
    router_with(AppState::new(
        backend,
        cfg,
        tokio_util::sync::CancellationToken::new(),
    ))
}

pub(crate) fn router_with(state: AppState) -> Router {
    Router::new()
        .fallback(entry)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::host_check::require_local_host,
        ))
        .with_state(state)
}

/// Whether a content type is one jsonrpsee accepts as JSON.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    [
        "application/json",
        "application/json-rpc",
        "application/jsonrequest",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn entry(State(s): State<AppState>, req: Request<Body>) -> Response {
    if req.method() == Method::GET && req.headers().contains_key(header::UPGRADE) {
        let (mut parts, _) = req.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &s).await {
            Ok(ws) => ws
                .max_message_size(s.cfg.max_rpc_request_bytes)
                .on_upgrade(move |socket| websocket(s, socket)),
            Err(rejection) => rejection.into_response(),
        };
    }
    if req.method() != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if !is_json_content_type(req.headers()) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Supplied content type is not allowed. Content-Type: application/json is required",
        )
            .into_response();
    }
    let limit = s.cfg.max_rpc_request_bytes;
    let Ok(body) = to_bytes(req.into_body(), limit).await else {
        let err = error_response(Value::Null, too_big());
        return json_response(StatusCode::PAYLOAD_TOO_LARGE, err);
    };
    match handle_text(&s, &body).await {
        Some(answer) => json_response(StatusCode::OK, answer),
        // Only notifications: nothing to say.
        None => StatusCode::OK.into_response(),
    }
}

fn too_big() -> RpcError {
    RpcError::new(-32600, "Request is too big", None)
}

/// One WebSocket session: every text (or UTF-8 binary) frame is a request or a batch,
/// answered on the same socket; requests run concurrently (at most 16 at once) so a
/// long-polling `popMessage` does not hold up the rest.
async fn websocket(s: AppState, socket: WebSocket) {
    const IN_FLIGHT: usize = 16;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            () = s.closing.cancelled() => None,
        };
        let bytes = match frame {
            Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(answer) = handle_text(&s, &bytes).await {
                let _ = tx.send(answer).await;
            }
            drop(permit);
        });
    }
    drop(tx);
    let _ = writer.await;
}

/// Answers a request or batch given as bytes; `None` when nothing is to be sent
/// back (notifications only).
pub(crate) async fn handle_text(s: &AppState, body: &[u8]) -> Option<String> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Some(error_response(Value::Null, RpcError::parse_error())),
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            Some(error_response(Value::Null, RpcError::invalid_request()))
        }
        Value::Array(items) => {
            let answers: Vec<String> = join_all(items.into_iter().map(|i| handle_one(s, i)))
                .await
                .into_iter()
                .flatten()
                .collect();
            if answers.is_empty() {
                None
            } else {
                Some(format!("[{}]", answers.join(",")))
            }
        }
        single => handle_one(s, single).await,
    }
}

#[derive(Serialize)]
struct Success<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a RawValue,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a RpcError,
}

fn error_response(id: Value, error: RpcError) -> String {
    serde_json::to_string(&Failure {
        jsonrpc: "2.0",
        id: &id,
        error: &error,
    })
    .unwrap_or_default()
}

async fn handle_one(s: &AppState, request: Value) -> Option<String> {
    let Value::Object(mut obj) = request else {
        return Some(error_response(Value::Null, RpcError::invalid_request()));
    };
    let id = obj.remove("id");
    let valid_id = matches!(
        id,
        None | Some(Value::Null | Value::Number(_) | Value::String(_))
    );
    let echo = match &id {
        Some(v) if valid_id => v.clone(),
        _ => Value::Null,
    };
    let version_ok = obj.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let method = obj.get("method").and_then(Value::as_str).map(str::to_owned);
    let params = obj.remove("params");
    let params_ok = matches!(
        params,
        None | Some(Value::Null | Value::Array(_) | Value::Object(_))
    );
    let (Some(method), true, true, true) = (method, version_ok, valid_id, params_ok) else {
        return Some(error_response(echo, RpcError::invalid_request()));
    };
    let result = call(s, &method, params).await;
    // A request without an id is a notification: run it, answer nothing.
    id.as_ref()?;
    Some(match result {
        Ok(raw) => serde_json::to_string(&Success {
            jsonrpc: "2.0",
            id: &echo,
            result: &raw,
        })
        .unwrap_or_default(),
        Err(e) => error_response(echo, e),
    })
}

/// The snake_case name of a parameter in camelCase (`reply_timeout` → `replyTimeout`).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Params bound to a method's parameter names; `null` counts as absent.
struct Params(Vec<Option<Value>>);

impl Params {
    fn bind(params: Option<Value>, names: &[&str]) -> Self {
        let values: Vec<Option<Value>> = match params {
            Some(Value::Array(items)) => {
                let mut items = items.into_iter();
                names.iter().map(|_| items.next()).collect()
            }
            Some(Value::Object(mut map)) => names
                .iter()
                .map(|n| map.remove(*n).or_else(|| map.remove(&camel(n))))
                .collect(),
            _ => names.iter().map(|_| None).collect(),
        };
        Self(
            values
                .into_iter()
                .map(|v: Option<Value>| v.filter(|v| !v.is_null()))
                .collect(),
        )
    }

    fn take(&mut self, i: usize) -> Option<Value> {
        self.0.get_mut(i).and_then(Option::take)
    }

    fn optional<T: DeserializeOwned>(&mut self, i: usize) -> Result<Option<T>, RpcError> {
        self.take(i)
            .map(|v| serde_json::from_value(v).map_err(RpcError::invalid_params))
            .transpose()
    }

    fn required<T: DeserializeOwned>(&mut self, i: usize, name: &str) -> Result<T, RpcError> {
        self.optional(i)?
            .ok_or_else(|| RpcError::invalid_params(format!("missing required parameter `{name}`")))
    }
}

fn decode_topic(topic: &str, code: i64) -> Result<Topic, RpcError> {
    model::decode_base64(topic).map_err(|_| RpcError::server(code))
}

/// Upstream's RPC id parsing: even-length hex of at least 8 bytes, first 8 used.
fn rpc_id(id: &str, code: i64) -> Result<MessageId, RpcError> {
    let bytes = hex::decode(id).map_err(|_| RpcError::server(code))?;
    let first: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| RpcError::server(code))?;
    Ok(MessageId(first))
}

fn push_error(e: PushError) -> RpcError {
    match e {
        PushError::TopicTooLarge => RpcError::server(codes::TOPIC_TOO_LARGE),
        PushError::Unroutable(_) => RpcError::invalid_params(e),
        PushError::ReplyInProgress => RpcError::server_with(codes::REPLY_IN_PROGRESS, e),
        PushError::PayloadTooLarge { .. } => RpcError::server_with(codes::PAYLOAD_TOO_LARGE, e),
        PushError::QueueFull(_) | PushError::Unavailable(_) => {
            RpcError::server_with(codes::QUEUE_FULL, e)
        }
    }
}

fn wait_for(secs: u64) -> std::time::Duration {
    std::time::Duration::from_secs(secs).min(MAX_WAIT)
}

/// Runs one method.
async fn call(s: &AppState, method: &str, params: Option<Value>) -> RpcResult {
    let names = METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, names)| *names)
        .ok_or_else(RpcError::method_not_found)?;
    let mut p = Params::bind(params, names);
    let b = &s.backend;
    match method {
        "getInfo" => ok(&b.info().await),
        "getPublicKeyFromIp" => {
            let ip: String = p.required(0, "ip")?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| RpcError::server(codes::INVALID_IP))?;
            // Upstream panics on IPv4; no overlay address is IPv4, so: no key.
            let IpAddr::V6(ip) = ip else {
                return Err(RpcError::server(codes::NO_PUBKEY));
            };
            match b.public_key_for(ip).await {
                Some(pk) => ok(&pk.to_string()),
                None => Err(RpcError::server(codes::NO_PUBKEY)),
            }
        }
        "getPeers" => ok(&b.peers().await),
        "addPeer" => {
            let ep: String = p.required(0, "endpoint")?;
            let ep: Endpoint = ep
                .parse()
                .map_err(|_| RpcError::server(codes::ADD_PEER_BAD_ENDPOINT))?;
            b.add_peer(ep)
                .await
                .map_err(|_| RpcError::server(codes::PEER_EXISTS))?;
            ok(&true)
        }
        "deletePeer" => {
            let ep: String = p.required(0, "endpoint")?;
            let ep: Endpoint = ep
                .parse()
                .map_err(|_| RpcError::server(codes::DELETE_PEER_BAD_ENDPOINT))?;
            b.remove_peer(ep)
                .await
                .map_err(|_| RpcError::server(codes::PEER_NOT_FOUND))?;
            ok(&true)
        }
        "getSelectedRoutes" => ok(&b.selected_routes().await),
        "getFallbackRoutes" => ok(&b.fallback_routes().await),
        "getQueriedSubnets" => ok(&b.queried_subnets().await),
        "getProxies" => ok(&b.proxies().await),
        "connectProxy" => {
            let remote: Option<SocketAddr> = p.optional(0)?;
            match b.connect_proxy(remote).await {
                Some(addr) => ok(&addr),
                None => Err(RpcError::server(codes::NO_PROXY)),
            }
        }
        "disconnectProxy" => {
            b.disconnect_proxy().await;
            ok(&true)
        }
        "startProxyProbe" => {
            b.start_proxy_probe().await;
            ok(&true)
        }
        "stopProxyProbe" => {
            b.stop_proxy_probe().await;
            ok(&true)
        }
        "getPacketStatistics" => ok(&b.packet_stats().await),
        "rpc.discover" => {
            RawValue::from_string(crate::OPENRPC_JSON.to_owned()).map_err(|_| RpcError::internal())
        }
        "popMessage" => {
            let peek: Option<bool> = p.optional(0)?;
            let timeout: Option<u64> = p.optional(1)?;
            let topic: Option<String> = p.optional(2)?;
            let topic = topic
                .map(|t| decode_topic(&t, codes::POP_BAD_TOPIC))
                .transpose()?;
            let pop = b.pop_message(peek.unwrap_or(false), wait_for(timeout.unwrap_or(0)), topic);
            let msg = tokio::select! {
                m = pop => m,
                () = s.closing.cancelled() => None,
            };
            ok(&msg)
        }
        "pushMessage" => {
            let msg: MessageSendInfo = p.required(0, "message")?;
            let reply_timeout: Option<u64> = p.optional(1)?;
            let topic = msg.topic.unwrap_or_default();
            if topic.len() > MAX_TOPIC_LEN {
                return Err(RpcError::server(codes::TOPIC_TOO_LARGE));
            }
            let push = b.push_message(
                msg.dst.ip(),
                topic,
                msg.payload,
                reply_timeout.map(wait_for),
            );
            let outcome = tokio::select! {
                o = push => o,
                () = s.closing.cancelled() => {
                    return Err(RpcError::server_with(codes::QUEUE_FULL, "shutting down"))
                }
            };
            match outcome.map_err(push_error)? {
                PushOutcome::Sent(id) | PushOutcome::TimedOut(id) => {
                    ok(&PushMessageResponseId { id })
                }
                PushOutcome::Reply(reply) => ok(&reply),
            }
        }
        "pushMessageReply" => {
            let id: String = p.required(0, "id")?;
            let msg: MessageSendInfo = p.required(1, "message")?;
            let id = rpc_id(&id, codes::REPLY_BAD_ID)?;
            b.reply_message(id, msg.dst.ip(), msg.payload)
                .await
                .map_err(push_error)?;
            ok(&true)
        }
        "getMessageInfo" => {
            let id: String = p.required(0, "id")?;
            let id = rpc_id(&id, codes::INFO_BAD_ID)?;
            match b.message_info(id).await {
                Some(info) => ok(&info),
                None => Err(RpcError::server(codes::MESSAGE_NOT_FOUND)),
            }
        }
        "getDefaultTopicAction" => ok(&b.default_topic_accept().await),
        "setDefaultTopicAction" => {
            let accept: bool = p.required(0, "accept")?;
            b.set_default_topic_accept(accept).await;
            ok(&true)
        }
        "getTopics" => {
            let topics: Vec<String> = b
                .topics()
                .await
                .iter()
                .map(|t| model::encode_base64(t))
                .collect();
            ok(&topics)
        }
        _ => topic_method(s, method, p).await,
    }
}

/// The methods that take a base64 `topic` as their first parameter.
async fn topic_method(s: &AppState, method: &str, mut p: Params) -> RpcResult {
    let topic: String = p.required(0, "topic")?;
    let topic = decode_topic(&topic, codes::BAD_TOPIC)?;
    let b = &s.backend;
    let subnet = |p: &mut Params| -> Result<Subnet, RpcError> {
        let subnet: String = p.required(1, "subnet")?;
        subnet
            .parse()
            .map_err(|_| RpcError::server(codes::BAD_SUBNET))
    };
    match method {
        "addTopic" => {
            b.add_topic(topic)
                .await
                .map_err(|e| RpcError::server_with(codes::TABLE_FULL, e))?;
            ok(&true)
        }
        "removeTopic" => {
            b.remove_topic(topic).await;
            ok(&true)
        }
        "getTopicSources" => match b.topic_sources(topic).await {
            Some(sources) => {
                let sources: Vec<String> = sources.iter().map(ToString::to_string).collect();
                ok(&sources)
            }
            None => Err(RpcError::server(codes::TOPIC_NOT_FOUND)),
        },
        "addTopicSource" => {
            let subnet = subnet(&mut p)?;
            b.add_topic_source(topic, subnet)
                .await
                .map_err(|e| RpcError::server_with(codes::TABLE_FULL, e))?;
            ok(&true)
        }
        "removeTopicSource" => {
            let subnet = subnet(&mut p)?;
            b.remove_topic_source(topic, subnet).await;
            ok(&true)
        }
        "getTopicForwardSocket" => ok(&b.topic_forward_socket(topic).await),
        "setTopicForwardSocket" => {
            let path: String = p.required(1, "socket_path")?;
            b.set_topic_forward_socket(topic, path).await;
            ok(&true)
        }
        "removeTopicForwardSocket" => {
            b.remove_topic_forward_socket(topic).await;
            ok(&true)
        }
        // Every name of METHODS is handled above or here.
        _ => Err(RpcError::method_not_found()),
    }
}

#[cfg(test)]
mod tests;
