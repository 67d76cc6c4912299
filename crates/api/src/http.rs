//! The HTTP REST API under `/api/v1`, on axum.
//!
//! Every route is one row of [`OPERATIONS`]: the router is built from that table and
//! the tests check it against `openapi.yaml`, so the document and the server cannot
//! drift apart. Framework behaviour is axum's, as upstream's is: 415 without a JSON
//! content type, 400 for syntactically bad JSON, 422 for JSON of the wrong shape,
//! 400 for unparseable path or query parameters, 404 (empty) for unknown paths,
//! 405 for a wrong method. Handler errors are upstream's (plain text or empty
//! bodies), plus our own JSON errors for bounded queues and tables:
//! 413 payload too large, 503 queue full, 507 table full, 401 bad token, 400 for an
//! unroutable destination, 409 for a second reply to a message while the first is
//! still being sent, 421 for a foreign `Host` on a loopback listener.
//!
//! Unlike upstream, no request holds a lock while it waits: a long-polling
//! `GET /api/v1/messages` does not hold up other requests.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::{Json, Router};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::Subnet;
use serde::Deserialize;

use crate::backend::{PushError, PushOutcome, TableFull, Topic};
use crate::model::{
    self, AddPeerRequest, ApiError, ConnectProxyRequest, DefaultTopicAction, MessageSendInfo,
    PublicKeyResponse, PushMessageResponseId, TopicForwardSocketRequest, TopicSourceRequest,
    MAX_TOPIC_LEN,
};
use crate::{auth, ApiConfig, AppState, Backend, MAX_WAIT};

/// One REST operation: method, path template (OpenAPI syntax) and operationId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path template, `{name}` for parameters.
    pub path: &'static str,
    /// The operationId in `openapi.yaml` (upstream's where it has one).
    pub id: &'static str,
}

const fn op(method: &'static str, path: &'static str, id: &'static str) -> Operation {
    Operation { method, path, id }
}

/// Every REST operation served, in `openapi.yaml` order. `GET /` (the web view)
/// is served too but is not part of the API document.
pub const OPERATIONS: &[Operation] = &[
    op("GET", "/api/v1/admin", "getInfo"),
    op("GET", "/api/v1/admin/peers", "getPeers"),
    op("POST", "/api/v1/admin/peers", "addPeer"),
    op("DELETE", "/api/v1/admin/peers/{endpoint}", "deletePeer"),
    op("GET", "/api/v1/admin/routes/selected", "getSelectedRoutes"),
    op("GET", "/api/v1/admin/routes/fallback", "getFallbackRoutes"),
    op("GET", "/api/v1/admin/routes/queried", "getQueriedSubnets"),
    op("GET", "/api/v1/admin/proxy", "getProxies"),
    op("POST", "/api/v1/admin/proxy", "connectProxy"),
    op("DELETE", "/api/v1/admin/proxy", "disconnectProxy"),
    op("GET", "/api/v1/admin/proxy/probe", "startProxyProbe"),
    op("DELETE", "/api/v1/admin/proxy/probe", "stopProxyProbe"),
    op("GET", "/api/v1/admin/stats/packets", "getPacketStatistics"),
    op("GET", "/api/v1/messages", "popMessage"),
    op("POST", "/api/v1/messages", "pushMessage"),
    op("POST", "/api/v1/messages/reply/{id}", "pushMessageReply"),
    op("GET", "/api/v1/messages/status/{id}", "getMessageInfo"),
    op(
        "GET",
        "/api/v1/messages/topics/default",
        "getDefaultTopicAction",
    ),
    op(
        "PUT",
        "/api/v1/messages/topics/default",
        "setDefaultTopicAction",
    ),
    op("GET", "/api/v1/messages/topics", "getTopics"),
    op("POST", "/api/v1/messages/topics", "addTopic"),
    op("DELETE", "/api/v1/messages/topics/{topic}", "removeTopic"),
    op(
        "GET",
        "/api/v1/messages/topics/{topic}/sources",
        "getTopicSources",
    ),
    op(
        "POST",
        "/api/v1/messages/topics/{topic}/sources",
        "addTopicSource",
    ),
    op(
        "DELETE",
        "/api/v1/messages/topics/{topic}/sources/{subnet}",
        "removeTopicSource",
    ),
    op(
        "GET",
        "/api/v1/messages/topics/{topic}/forward",
        "getTopicForwardSocket",
    ),
    op(
        "PUT",
        "/api/v1/messages/topics/{topic}/forward",
        "setTopicForwardSocket",
    ),
    op(
        "DELETE",
        "/api/v1/messages/topics/{topic}/forward",
        "removeTopicForwardSocket",
    ),
    op("GET", "/api/v1/pubkey/{ip}", "getPublicKeyFromIp"),
    op("GET", "/api/v1/openapi.json", "getOpenApi"),
];

/// The REST router (with `GET /`) over `backend`; merge it into a larger app or
/// serve it with [`serve_http`](crate::serve_http).
pub fn http_router(backend: std::sync::Arc<dyn Backend>, cfg: ApiConfig) -> Router {
    router_with(AppState::new(
        backend,
        cfg,
        tokio_util::sync::CancellationToken::new(),
    ))
}

pub(crate) fn router_with(state: AppState) -> Router {
    let mut router = Router::new().route("/", routing::get(index));
    for op in OPERATIONS {
        router = router.route(op.path, handler(op.id));
    }
    router
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
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

/// The method router serving operation `id`.
fn handler(id: &str) -> MethodRouter<AppState> {
    use routing::{delete, get, post, put};
    match id {
        "getInfo" => get(get_info),
        "getPeers" => get(get_peers),
        "addPeer" => post(add_peer),
        "deletePeer" => delete(delete_peer),
        "getSelectedRoutes" => get(get_selected_routes),
        "getFallbackRoutes" => get(get_fallback_routes),
        "getQueriedSubnets" => get(get_queried_subnets),
        "getProxies" => get(get_proxies),
        "connectProxy" => post(connect_proxy),
        "disconnectProxy" => delete(disconnect_proxy),
        "startProxyProbe" => get(start_proxy_probe),
        "stopProxyProbe" => delete(stop_proxy_probe),
        "getPacketStatistics" => get(get_packet_stats),
        "popMessage" => get(pop_message),
        "pushMessage" => post(push_message),
        "pushMessageReply" => post(push_message_reply),
        "getMessageInfo" => get(get_message_info),
        "getDefaultTopicAction" => get(get_default_topic_action),
        "setDefaultTopicAction" => put(set_default_topic_action),
        "getTopics" => get(get_topics),
        "addTopic" => post(add_topic),
        "removeTopic" => delete(remove_topic),
        "getTopicSources" => get(get_topic_sources),
        "addTopicSource" => post(add_topic_source),
        "removeTopicSource" => delete(remove_topic_source),
        "getTopicForwardSocket" => get(get_topic_forward),
        "setTopicForwardSocket" => put(set_topic_forward),
        "removeTopicForwardSocket" => delete(remove_topic_forward),
        "getPublicKeyFromIp" => get(get_public_key),
        "getOpenApi" => get(get_openapi),
        // A row of OPERATIONS without a handler; the route-table test catches it.
        _ => MethodRouter::new(),
    }
}

type St = State<AppState>;

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json_error(status: StatusCode, error: impl std::fmt::Display) -> Response {
    (
        status,
        Json(ApiError {
            error: error.to_string(),
        }),
    )
        .into_response()
}

fn table_full(e: TableFull) -> Response {
    json_error(StatusCode::INSUFFICIENT_STORAGE, e)
}

fn push_error(e: PushError) -> Response {
    match e {
        PushError::TopicTooLarge => text(StatusCode::BAD_REQUEST, ""),
        PushError::Unroutable(_) => json_error(StatusCode::BAD_REQUEST, e),
        PushError::ReplyInProgress => json_error(StatusCode::CONFLICT, e),
        PushError::PayloadTooLarge { .. } => json_error(StatusCode::PAYLOAD_TOO_LARGE, e),
        PushError::QueueFull(_) | PushError::Unavailable(_) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}

/// The web view's headers: the page runs only its own inline script and style,
/// talks only to this origin, and may not be framed, cached stale or sniffed.
const INDEX_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
];

async fn index() -> Response {
    (INDEX_HEADERS, Html(crate::INDEX_HTML)).into_response()
}

async fn get_openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI_JSON,
    )
        .into_response()
}

// ----- admin -----

async fn get_info(State(s): St) -> Response {
    Json(s.backend.info().await).into_response()
}

async fn get_peers(State(s): St) -> Response {
    Json(s.backend.peers().await).into_response()
}

async fn add_peer(State(s): St, Json(req): Json<AddPeerRequest>) -> Response {
    let endpoint: Endpoint = match req.endpoint.parse() {
        Ok(e) => e,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.backend.add_peer(endpoint).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn delete_peer(State(s): St, Path(endpoint): Path<String>) -> Response {
    let endpoint: Endpoint = match endpoint.parse() {
        Ok(e) => e,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.backend.remove_peer(endpoint).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn get_selected_routes(State(s): St) -> Response {
    Json(s.backend.selected_routes().await).into_response()
}

async fn get_fallback_routes(State(s): St) -> Response {
    Json(s.backend.fallback_routes().await).into_response()
}

async fn get_queried_subnets(State(s): St) -> Response {
    Json(s.backend.queried_subnets().await).into_response()
}

async fn get_packet_stats(State(s): St) -> Response {
    Json(s.backend.packet_stats().await).into_response()
}

async fn get_proxies(State(s): St) -> Response {
    Json(s.backend.proxies().await).into_response()
}

async fn connect_proxy(State(s): St, Json(req): Json<ConnectProxyRequest>) -> Response {
    match s.backend.connect_proxy(req.remote).await {
        Some(addr) => Json(addr).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn disconnect_proxy(State(s): St) -> StatusCode {
    s.backend.disconnect_proxy().await;
    StatusCode::NO_CONTENT
}

async fn start_proxy_probe(State(s): St) -> StatusCode {
    s.backend.start_proxy_probe().await;
    StatusCode::NO_CONTENT
}

async fn stop_proxy_probe(State(s): St) -> StatusCode {
    s.backend.stop_proxy_probe().await;
    StatusCode::NO_CONTENT
}

async fn get_public_key(State(s): St, Path(ip): Path<IpAddr>) -> Response {
    // Upstream's handler panics on an IPv4 address; no IPv4 address is in the
    // overlay, so "no key known" is the honest answer.
    let IpAddr::V6(ip) = ip else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match s.backend.public_key_for(ip).await {
        Some(public_key) => Json(PublicKeyResponse { public_key }).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ----- messages -----

/// Query of `GET /api/v1/messages`. A topic that is not canonical base64 fails the
/// whole query (400), as upstream.
#[derive(Deserialize)]
struct PopQuery {
    #[serde(default)]
    peek: bool,
    #[serde(default)]
    timeout: u64,
    #[serde(default, with = "model::base64_opt")]
    topic: Option<Vec<u8>>,
}

/// Query of `POST /api/v1/messages`; presence of `reply_timeout` means "wait".
#[derive(Deserialize)]
struct PushQuery {
    reply_timeout: Option<u64>,
}

fn wait_for(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_WAIT)
}

async fn pop_message(State(s): St, Query(q): Query<PopQuery>) -> Response {
    let pop = s.backend.pop_message(q.peek, wait_for(q.timeout), q.topic);
    let msg = tokio::select! {
        m = pop => m,
        () = s.closing.cancelled() => None,
    };
    match msg {
        Some(m) => Json(m).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn push_message(
    State(s): St,
    Query(q): Query<PushQuery>,
    Json(msg): Json<MessageSendInfo>,
) -> Response {
    let topic = msg.topic.unwrap_or_default();
    if topic.len() > MAX_TOPIC_LEN {
        return push_error(PushError::TopicTooLarge);
    }
    let push = s.backend.push_message(
        msg.dst.ip(),
        topic,
        msg.payload,
        q.reply_timeout.map(wait_for),
    );
    let outcome = tokio::select! {
        o = push => o,
        () = s.closing.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match outcome {
        Ok(PushOutcome::Sent(id)) => {
            (StatusCode::CREATED, Json(PushMessageResponseId { id })).into_response()
        }
        Ok(PushOutcome::Reply(reply)) => Json(reply).into_response(),
        Ok(PushOutcome::TimedOut(id)) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(PushMessageResponseId { id }),
        )
            .into_response(),
        Err(e) => push_error(e),
    }
}

/// A path parameter (or topic source) that does not parse: a 400, with upstream's
/// body for each kind.
#[derive(Debug, Clone, Copy)]
enum BadParam {
    /// A message id that is not exactly 16 hex characters (text body).
    MessageId,
    /// A topic that is not canonical base64 (empty body).
    Topic,
    /// A topic source that is not a CIDR or an address (empty body).
    Subnet,
}

impl IntoResponse for BadParam {
    fn into_response(self) -> Response {
        match self {
            Self::MessageId => text(StatusCode::BAD_REQUEST, "a message id is 16 hex characters"),
            // Upstream sends these without a body; ours is empty too, but labelled
            // text/plain as every other 400 of the API.
            Self::Topic | Self::Subnet => text(StatusCode::BAD_REQUEST, ""),
        }
    }
}

type Answer = Result<Response, BadParam>;

/// A message id in a path: exactly 16 hex characters.
fn path_id(id: &str) -> Result<MessageId, BadParam> {
    if id.len() != 16 {
        return Err(BadParam::MessageId);
    }
    id.parse().map_err(|_| BadParam::MessageId)
}

async fn push_message_reply(
    State(s): St,
    Path(id): Path<String>,
    Json(msg): Json<MessageSendInfo>,
) -> Answer {
    let id = path_id(&id)?;
    Ok(
        match s.backend.reply_message(id, msg.dst.ip(), msg.payload).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => push_error(e),
        },
    )
}

async fn get_message_info(State(s): St, Path(id): Path<String>) -> Answer {
    let id = path_id(&id)?;
    Ok(match s.backend.message_info(id).await {
        Some(info) => Json(info).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

// ----- topics -----

/// A `{topic}` path segment: base64 of the topic bytes.
fn path_topic(topic: &str) -> Result<Topic, BadParam> {
    model::decode_base64(topic).map_err(|_| BadParam::Topic)
}

/// A topic source: a CIDR, or a bare address meaning /32 or /128.
fn parse_subnet(s: &str) -> Result<Subnet, BadParam> {
    s.parse::<Subnet>().map_err(|_| BadParam::Subnet)
}

async fn get_default_topic_action(State(s): St) -> Response {
    Json(DefaultTopicAction {
        accept: s.backend.default_topic_accept().await,
    })
    .into_response()
}

async fn set_default_topic_action(State(s): St, Json(req): Json<DefaultTopicAction>) -> StatusCode {
    s.backend.set_default_topic_accept(req.accept).await;
    StatusCode::NO_CONTENT
}

async fn get_topics(State(s): St) -> Response {
    let topics: Vec<String> = s
        .backend
        .topics()
        .await
        .iter()
        .map(|t| model::encode_base64(t))
        .collect();
    Json(topics).into_response()
}

async fn add_topic(State(s): St, Json(topic): Json<Vec<u8>>) -> Response {
    match s.backend.add_topic(topic).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => table_full(e),
    }
}

async fn remove_topic(State(s): St, Path(topic): Path<String>) -> Answer {
    s.backend.remove_topic(path_topic(&topic)?).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_topic_sources(State(s): St, Path(topic): Path<String>) -> Answer {
    Ok(match s.backend.topic_sources(path_topic(&topic)?).await {
        Some(sources) => {
            let sources: Vec<String> = sources.iter().map(ToString::to_string).collect();
            Json(sources).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn add_topic_source(
    State(s): St,
    Path(topic): Path<String>,
    Json(req): Json<TopicSourceRequest>,
) -> Answer {
    let topic = path_topic(&topic)?;
    let subnet = parse_subnet(&req.subnet)?;
    Ok(match s.backend.add_topic_source(topic, subnet).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => table_full(e),
    })
}

async fn remove_topic_source(
    State(s): St,
    Path((topic, subnet)): Path<(String, String)>,
) -> Answer {
    let topic = path_topic(&topic)?;
    let subnet = parse_subnet(&subnet)?;
    s.backend.remove_topic_source(topic, subnet).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_topic_forward(State(s): St, Path(topic): Path<String>) -> Answer {
    let path = s.backend.topic_forward_socket(path_topic(&topic)?).await;
    Ok(Json(path).into_response())
}

async fn set_topic_forward(
    State(s): St,
    Path(topic): Path<String>,
    Json(req): Json<TopicForwardSocketRequest>,
) -> Answer {
    let topic = path_topic(&topic)?;
    s.backend
        .set_topic_forward_socket(topic, req.socket_path)
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_topic_forward(State(s): St, Path(topic): Path<String>) -> Answer {
    s.backend
        .remove_topic_forward_socket(path_topic(&topic)?)
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
