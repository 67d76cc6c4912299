//! The management APIs' view of a running node: [`mycelium_api::Backend`] over a
//! [`mycelium_node::Node`] handle, translating the node's types into the API's JSON
//! model (API.md §1).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use mycelium_api::backend::{PeerExists, PeerNotFound, TableFull, Topic};
use mycelium_api::model::{
    self, Info, MessageInfo, MessageReceiveInfo, PacketStatEntry, PacketStatistics, PeerStats,
    QueriedSubnet, Route,
};
use mycelium_api::{Backend, PushError, PushOutcome};
use mycelium_node::{ConnectionState, Node, PeerError, PeerKind, RouteInfo};
use mycelium_proto::endpoint::Endpoint;
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

const NO_MESSAGES: &str = "the message bus is not part of this build yet";

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
        _peek: bool,
        timeout: Duration,
        _topic: Option<Topic>,
    ) -> Option<MessageReceiveInfo> {
        tokio::time::sleep(timeout.min(mycelium_api::MAX_WAIT)).await;
        None
    }

    async fn push_message(
        &self,
        _dst: IpAddr,
        _topic: Topic,
        _payload: Vec<u8>,
        _reply_timeout: Option<Duration>,
    ) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(NO_MESSAGES.into()))
    }

    async fn reply_message(
        &self,
        _id: MessageId,
        _dst: IpAddr,
        _payload: Vec<u8>,
    ) -> Result<(), PushError> {
        Err(PushError::Unavailable(NO_MESSAGES.into()))
    }

    async fn message_info(&self, _id: MessageId) -> Option<MessageInfo> {
        None
    }

    async fn default_topic_accept(&self) -> bool {
        true
    }

    async fn set_default_topic_accept(&self, _accept: bool) {}

    async fn topics(&self) -> Vec<Topic> {
        Vec::new()
    }

    async fn add_topic(&self, _topic: Topic) -> Result<(), TableFull> {
        Err(TableFull("topic"))
    }

    async fn remove_topic(&self, _topic: Topic) {}

    async fn topic_sources(&self, _topic: Topic) -> Option<Vec<Subnet>> {
        None
    }

    async fn add_topic_source(&self, _topic: Topic, _source: Subnet) -> Result<(), TableFull> {
        Err(TableFull("topic source"))
    }

    async fn remove_topic_source(&self, _topic: Topic, _source: Subnet) {}

    async fn topic_forward_socket(&self, _topic: Topic) -> Option<String> {
        None
    }

    async fn set_topic_forward_socket(&self, _topic: Topic, _path: String) {}

    async fn remove_topic_forward_socket(&self, _topic: Topic) {}

    // The SOCKS proxy arrives with its own issue: until then no proxy is ever
    // valid, which the API reports as upstream does when none is found.
    async fn proxies(&self) -> Vec<Ipv6Addr> {
        Vec::new()
    }

    async fn connect_proxy(&self, _remote: Option<SocketAddr>) -> Option<SocketAddr> {
        None
    }

    async fn disconnect_proxy(&self) {}

    async fn start_proxy_probe(&self) {}

    async fn stop_proxy_probe(&self) {}
}
