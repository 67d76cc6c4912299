//! What the APIs need from a node: the [`Backend`] trait.
//!
//! Both servers (REST and JSON-RPC) translate requests into calls on one
//! `Arc<dyn Backend>` and the answers back into JSON; they hold no node state of
//! their own. The node crate implements this trait over its core task;
//! [`FakeBackend`](crate::FakeBackend) implements it in memory for tests and demos.
//!
//! Methods take already-validated values (parsed endpoints, decoded topics, message
//! ids), so a backend never sees malformed input. None of them may hold a lock that
//! other calls need while it waits: `pop_message` and `push_message` can wait for
//! many seconds and must not block the rest of the API (unlike upstream).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::{PublicKey, Subnet};

use crate::model::{
    Info, MessageInfo, MessageReceiveInfo, PacketStatistics, PeerStats, QueriedSubnet, Route,
};

/// A topic: raw bytes, at most [`MAX_TOPIC_LEN`](crate::model::MAX_TOPIC_LEN) for
/// messages (the topic whitelist takes what the backend allows).
pub type Topic = Vec<u8>;

/// `add_peer` found a peer with that protocol and socket address already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("A peer identified by that endpoint already exists")]
pub struct PeerExists;

/// `remove_peer` found no such peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("A peer identified by that endpoint does not exist")]
pub struct PeerNotFound;

/// A configuration table (topics, topic sources) is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} table is full")]
pub struct TableFull(pub &'static str);

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The topic is longer than 255 bytes (upstream's limit; REST 400, RPC -32015).
    #[error("topic too large")]
    TopicTooLarge,
    /// The payload is larger than this node accepts (REST 413, RPC -32040).
    #[error("message payload too large: at most {max} bytes")]
    PayloadTooLarge {
        /// The largest payload accepted.
        max: usize,
    },
    /// The outbound queue is full; try again later (REST 503, RPC -32041). The
    /// text says which budget refused and how full it is.
    #[error("outbound message queue is full: {0}")]
    QueueFull(String),
    /// The message subsystem is not running (REST 503, RPC -32041).
    #[error("message subsystem unavailable: {0}")]
    Unavailable(String),
    /// The destination is not one the overlay can route to, such as an IPv4
    /// address: the client's mistake (REST 400 with a JSON error, RPC -32602).
    #[error("unroutable destination: {0}")]
    Unroutable(String),
    /// A reply to this message id is still being sent (REST 409, RPC -32043).
    #[error("a reply to this message id is still being sent")]
    ReplyInProgress,
}

/// What became of a pushed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued; nobody waits for a reply.
    Sent(MessageId),
    /// A reply arrived in time.
    Reply(MessageReceiveInfo),
    /// Waited for a reply; none came in time.
    TimedOut(MessageId),
}

/// The node as the management APIs see it.
///
/// Used as `Arc<dyn Backend>`. Every method is called from request handlers running
/// concurrently; implementations must be cheap or await without blocking a thread.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    // ----- admin -----

    /// General node information.
    async fn info(&self) -> Info;

    /// Every known peer.
    async fn peers(&self) -> Vec<PeerStats>;

    /// Records a static peer (the connect loop dials it later).
    async fn add_peer(&self, endpoint: Endpoint) -> Result<(), PeerExists>;

    /// Forgets a peer and closes its connection.
    async fn remove_peer(&self, endpoint: Endpoint) -> Result<(), PeerNotFound>;

    /// One route per subnet that has a selected route.
    async fn selected_routes(&self) -> Vec<Route>;

    /// Every route entry that is not selected, retracted ones included.
    async fn fallback_routes(&self) -> Vec<Route>;

    /// Subnets with a running route query.
    async fn queried_subnets(&self) -> Vec<QueriedSubnet>;

    /// Data packet counters by source and destination.
    async fn packet_stats(&self) -> PacketStatistics;

    /// The key of the node whose subnet covers `ip`, if a route entry (selected or
    /// fallback) or our own subnet covers it.
    async fn public_key_for(&self, ip: Ipv6Addr) -> Option<PublicKey>;

    // ----- messages -----

    /// Takes (or with `peek`, shows) the oldest received message whose topic equals
    /// `topic` (any topic if `None`), waiting up to `timeout` for one (the API caps
    /// it at [`MAX_WAIT`](crate::MAX_WAIT)). Every message returned causes a READ
    /// notification to its sender. The wait must not block other calls; the future
    /// may be dropped (client gone, server shutting down) and must then leave the
    /// message queued.
    async fn pop_message(
        &self,
        peek: bool,
        timeout: Duration,
        topic: Option<Topic>,
    ) -> Option<MessageReceiveInfo>;

    /// Queues a message to `dst` (a `pk` destination has already been turned into
    /// its address). With `reply_timeout`, waits up to that long for a reply (a
    /// zero timeout answers `TimedOut` at once). The API layer has checked the
    /// topic length. A `dst` the overlay cannot reach (IPv4) is refused with
    /// [`PushError::Unroutable`]; upstream accepts it and never sends it.
    async fn push_message(
        &self,
        dst: IpAddr,
        topic: Topic,
        payload: Vec<u8>,
        reply_timeout: Option<Duration>,
    ) -> Result<PushOutcome, PushError>;

    /// Sends `payload` to `dst` as the reply to message `id` (the id is not checked).
    async fn reply_message(
        &self,
        id: MessageId,
        dst: IpAddr,
        payload: Vec<u8>,
    ) -> Result<(), PushError>;

    /// The status of an outbound message, while it is remembered.
    async fn message_info(&self, id: MessageId) -> Option<MessageInfo>;

    // ----- topic configuration -----

    /// Whether messages on topics that are not whitelisted are accepted.
    async fn default_topic_accept(&self) -> bool;

    /// Sets the action for topics that are not whitelisted.
    async fn set_default_topic_accept(&self, accept: bool);

    /// The whitelisted topics.
    async fn topics(&self) -> Vec<Topic>;

    /// Whitelists a topic (no-op if it already is).
    async fn add_topic(&self, topic: Topic) -> Result<(), TableFull>;

    /// Removes a topic from the whitelist (no-op if it is not there).
    async fn remove_topic(&self, topic: Topic);

    /// The sources allowed for a topic; `None` if the topic is not whitelisted.
    async fn topic_sources(&self, topic: Topic) -> Option<Vec<Subnet>>;

    /// Allows a source for a topic, whitelisting the topic if needed.
    async fn add_topic_source(&self, topic: Topic, source: Subnet) -> Result<(), TableFull>;

    /// Removes a source of a topic (no-op if absent).
    async fn remove_topic_source(&self, topic: Topic, source: Subnet);

    /// The Unix socket messages on a topic are forwarded to.
    async fn topic_forward_socket(&self, topic: Topic) -> Option<String>;

    /// Sets the forward socket of a topic; ignored if the topic is not whitelisted.
    async fn set_topic_forward_socket(&self, topic: Topic, path: String);

    /// Removes the forward socket of a topic.
    async fn remove_topic_forward_socket(&self, topic: Topic);

    // ----- proxy -----

    /// Overlay addresses of proxies last probed as valid.
    async fn proxies(&self) -> Vec<Ipv6Addr>;

    /// Connects to `remote`, or the best known proxy if `None`; the chosen proxy, or
    /// `None` if none was valid or the local listener could not be bound.
    async fn connect_proxy(&self, remote: Option<SocketAddr>) -> Option<SocketAddr>;

    /// Disconnects the proxy, if any.
    async fn disconnect_proxy(&self);

    /// Starts probing for proxies in the background.
    async fn start_proxy_probe(&self);

    /// Stops probing for proxies.
    async fn stop_proxy_probe(&self);
}
