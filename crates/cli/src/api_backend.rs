//! The management APIs' view of a running node: [`mycelium_api::Backend`] over a
//! [`mycelium_node::Node`] handle, translating the node's types into the API's JSON
//! model.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use mycelium_api::backend::{PeerExists, PeerNotFound, TableFull, Topic};
use mycelium_api::model::{
    self, Info, MessageInfo, MessageReceiveInfo, PacketStatEntry, PacketStatistics, PeerStats,
    QueriedSubnet, Route,
};
use mycelium_api::{Backend, PushError, PushOutcome};
use mycelium_node::{
    BusError, ConnectionState, Node, PeerError, PeerKind, Pushed, RouteInfo, TopicConfig,
};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::messages::{MessageState, PushError as BusPushError, ReceivedMessage};
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::wire::Metric;
use mycelium_proto::{PublicKey, Subnet};

/// The node as the REST and JSON-RPC servers see it.
#[derive(Debug, Clone)]
pub(crate) struct NodeBackend {
    node: Node,
}

impl NodeBackend {
    pub(crate) fn new(node: Node) -> Self {
        Self { node }
    }

    fn receive_info(&self, msg: ReceivedMessage) -> MessageReceiveInfo {
        MessageReceiveInfo {
            id: msg.id,
            src_ip: IpAddr::V6(msg.src),
            src_pk: msg.src_key,
            dst_ip: IpAddr::V6(msg.dst),
            dst_pk: self.node.public_key(),
            topic: msg.topic,
            payload: msg.payload.to_vec(),
        }
    }

    async fn with_topics<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut TopicConfig) -> T + Send + 'static,
    ) -> Option<T> {
        self.node.messages().with_topics(f).await
    }
}

fn route(r: RouteInfo) -> Route {
    Route {
        subnet: r.subnet,
        next_hop: r.next_hop,
        metric: if r.metric == Metric::INFINITE {
            model::Metric::Infinite
        } else {
            model::Metric::Finite(r.metric.0)
        },
        seqno: r.seqno.0,
    }
}

fn stat_entries(v: Vec<(Ipv6Addr, mycelium_node::Count)>) -> Vec<PacketStatEntry> {
    v.into_iter()
        .map(|(ip, c)| PacketStatEntry {
            ip: IpAddr::V6(ip),
            packet_count: c.packets,
            byte_count: c.bytes,
        })
        .collect()
}

/// Whitelisted topics at most, and sources per topic: the API cannot grow the
/// topic configuration without bound.
const MAX_TOPICS: usize = 4_096;
const MAX_TOPIC_SOURCES: usize = 1_024;

/// Messages travel between overlay addresses only. Upstream accepts an IPv4
/// destination and never sends the message; we refuse it as the client's mistake
/// (REST 400, RPC -32602).
fn overlay_destination(dst: IpAddr) -> Result<Ipv6Addr, PushError> {
    match dst {
        IpAddr::V6(ip) => Ok(ip),
        IpAddr::V4(v4) => Err(PushError::Unroutable(format!(
            "{v4} is not an overlay (IPv6) address: messages go to overlay addresses only"
        ))),
    }
}

fn push_error(e: BusError) -> PushError {
    match e {
        BusError::Push(BusPushError::TopicTooLong(_)) => PushError::TopicTooLarge,
        BusError::Push(BusPushError::TooLarge { max, .. }) => PushError::PayloadTooLarge {
            max: usize::try_from(max).unwrap_or(usize::MAX),
        },
        BusError::Push(BusPushError::IdInUse) => PushError::ReplyInProgress,
        e @ (BusError::Push(_) | BusError::TooManyWaiters) => PushError::QueueFull(e.to_string()),
        BusError::Stopped => PushError::Unavailable("the node is stopping".into()),
    }
}

#[async_trait]
impl Backend for NodeBackend {
    async fn info(&self) -> Info {
        Info {
            node_subnet: self.node.subnet(),
            node_ip: self.node.address(),
            node_pubkey: self.node.public_key(),
            node_start_time: self.node.start_time(),
        }
    }

    async fn peers(&self) -> Vec<PeerStats> {
        self.node
            .peers()
            .into_iter()
            .map(|p| PeerStats {
                endpoint: p.endpoint,
                peer_type: match p.kind {
                    PeerKind::Static => model::PeerType::Static,
                    PeerKind::LinkLocalDiscovery => model::PeerType::LinkLocalDiscovery,
                    PeerKind::Inbound => model::PeerType::Inbound,
                },
                connection_state: match p.state {
                    ConnectionState::Alive => model::ConnectionState::Alive,
                    ConnectionState::Connecting => model::ConnectionState::Connecting,
                    ConnectionState::Dead => model::ConnectionState::Dead,
                },
                tx_bytes: p.tx_bytes,
                rx_bytes: p.rx_bytes,
                discovered: p.discovered.as_secs(),
                last_connected: p.last_connected.map(|d| d.as_secs()),
            })
            .collect()
    }

    async fn add_peer(&self, endpoint: Endpoint) -> Result<(), PeerExists> {
        match self.node.add_peer(endpoint) {
            Ok(()) => Ok(()),
            Err(PeerError::AlreadyExists) => Err(PeerExists),
            // The API has no other answer for a full table or a stopping node;
            // the log says which it was.
            Err(e) => {
                tracing::warn!("not adding peer {endpoint}: {e}");
                Err(PeerExists)
            }
        }
    }

    async fn remove_peer(&self, endpoint: Endpoint) -> Result<(), PeerNotFound> {
        self.node.remove_peer(&endpoint).map_err(|_| PeerNotFound)
    }

    async fn selected_routes(&self) -> Vec<Route> {
        self.node
            .routes()
            .await
            .selected
            .into_iter()
            .map(route)
            .collect()
    }

    async fn fallback_routes(&self) -> Vec<Route> {
        self.node
            .routes()
            .await
            .fallback
            .into_iter()
            .map(route)
            .collect()
    }

    async fn queried_subnets(&self) -> Vec<QueriedSubnet> {
        self.node
            .routes()
            .await
            .queried
            .into_iter()
            .map(|(subnet, left)| QueriedSubnet {
                subnet,
                expiration: left.as_secs(),
            })
            .collect()
    }

    async fn packet_stats(&self) -> PacketStatistics {
        let s = self.node.packet_statistics();
        PacketStatistics {
            by_source: stat_entries(s.by_source),
            by_destination: stat_entries(s.by_destination),
        }
    }

    async fn public_key_for(&self, ip: Ipv6Addr) -> Option<PublicKey> {
        self.node.public_key_for(IpAddr::V6(ip)).await
    }

    async fn pop_message(
        &self,
        peek: bool,
        timeout: Duration,
        topic: Option<Topic>,
    ) -> Option<MessageReceiveInfo> {
        let timeout = timeout.min(mycelium_api::MAX_WAIT);
        let msg = self.node.messages().pop(peek, timeout, topic).await?;
        Some(self.receive_info(msg))
    }

    async fn push_message(
        &self,
        dst: IpAddr,
        topic: Topic,
        payload: Vec<u8>,
        reply_timeout: Option<Duration>,
    ) -> Result<PushOutcome, PushError> {
        let dst = overlay_destination(dst)?;
        let reply_timeout = reply_timeout.map(|t| t.min(mycelium_api::MAX_WAIT));
        let pushed = self
            .node
            .messages()
            .push(dst, topic, payload.into(), reply_timeout)
            .await
            .map_err(push_error)?;
        Ok(match pushed {
            Pushed::Sent(id) => PushOutcome::Sent(id),
            Pushed::TimedOut(id) => PushOutcome::TimedOut(id),
            Pushed::Reply(_, reply) => PushOutcome::Reply(self.receive_info(*reply)),
        })
    }

    async fn reply_message(
        &self,
        id: MessageId,
        dst: IpAddr,
        payload: Vec<u8>,
    ) -> Result<(), PushError> {
        let dst = overlay_destination(dst)?;
        self.node
            .messages()
            .reply(id, dst, payload.into())
            .await
            .map_err(push_error)
    }

    async fn message_info(&self, id: MessageId) -> Option<MessageInfo> {
        let status = self.node.messages().status(id).await?;
        Some(MessageInfo {
            dst: IpAddr::V6(status.info.dst),
            state: match status.info.state {
                MessageState::Pending => model::TransmissionState::Pending,
                MessageState::Sending {
                    pending,
                    sent,
                    acked,
                } => model::TransmissionState::Sending(model::SendingProgress {
                    pending,
                    sent,
                    acked,
                }),
                MessageState::Received => model::TransmissionState::Received,
                MessageState::Read => model::TransmissionState::Read,
                MessageState::Aborted => model::TransmissionState::Aborted,
            },
            created: status.created,
            deadline: status.deadline,
            msg_len: status.info.len,
        })
    }

    async fn default_topic_accept(&self) -> bool {
        self.with_topics(|t| t.default_accept())
            .await
            .unwrap_or(true)
    }

    async fn set_default_topic_accept(&self, accept: bool) {
        self.with_topics(move |t| t.set_default_accept(accept))
            .await;
    }

    async fn topics(&self) -> Vec<Topic> {
        self.with_topics(|t| t.topics().map(<[u8]>::to_vec).collect())
            .await
            .unwrap_or_default()
    }

    async fn add_topic(&self, topic: Topic) -> Result<(), TableFull> {
        self.with_topics(move |t| {
            if t.rule(&topic).is_none() && t.topics().count() >= MAX_TOPICS {
                return Err(TableFull("topic"));
            }
            t.add_topic(topic);
            Ok(())
        })
        .await
        .unwrap_or(Err(TableFull("topic")))
    }

    async fn remove_topic(&self, topic: Topic) {
        self.with_topics(move |t| t.remove_topic(&topic)).await;
    }

    async fn topic_sources(&self, topic: Topic) -> Option<Vec<Subnet>> {
        self.with_topics(move |t| t.sources(&topic).map(<[Subnet]>::to_vec))
            .await
            .flatten()
    }

    async fn add_topic_source(&self, topic: Topic, source: Subnet) -> Result<(), TableFull> {
        self.with_topics(move |t| {
            let known = t.rule(&topic).is_some();
            if !known && t.topics().count() >= MAX_TOPICS {
                return Err(TableFull("topic"));
            }
            let sources = t.sources(&topic).map_or(0, <[Subnet]>::len);
            if sources >= MAX_TOPIC_SOURCES {
                return Err(TableFull("topic source"));
            }
            t.add_source(topic, source);
            Ok(())
        })
        .await
        .unwrap_or(Err(TableFull("topic source")))
    }

    async fn remove_topic_source(&self, topic: Topic, source: Subnet) {
        self.with_topics(move |t| t.remove_source(&topic, &source))
            .await;
    }

    async fn topic_forward_socket(&self, topic: Topic) -> Option<String> {
        self.with_topics(move |t| {
            t.forward_socket(&topic)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .await
        .flatten()
    }

    async fn set_topic_forward_socket(&self, topic: Topic, path: String) {
        self.node
            .messages()
            .set_forward_socket(topic, PathBuf::from(path))
            .await;
    }

    async fn remove_topic_forward_socket(&self, topic: Topic) {
        self.with_topics(move |t| t.clear_forward_socket(&topic))
            .await;
    }

    async fn proxies(&self) -> Vec<Ipv6Addr> {
        self.node.proxy().proxies()
    }

    async fn connect_proxy(&self, remote: Option<SocketAddr>) -> Option<SocketAddr> {
        self.node.proxy().connect(remote).await
    }

    async fn disconnect_proxy(&self) {
        self.node.proxy().disconnect().await;
    }

    async fn start_proxy_probe(&self) {
        self.node.proxy().start_probing();
    }

    async fn stop_proxy_probe(&self) {
        self.node.proxy().stop_probing();
    }
}
