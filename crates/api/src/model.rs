//! The JSON shapes both APIs exchange, as serde types.
//!
//! Field names and their order are the ones upstream v0.7.10 emits, so an answer
//! re-serialised from a parsed upstream answer is byte-for-byte the same (see the
//! fixture tests). Binary fields (payloads, topics) are standard base64 with `=`
//! padding, and decoding insists on canonical padding. Protocol values that have a
//! text form in `mycelium_proto` (keys, subnets, endpoints, message ids) are carried
//! as those types and written through their `Display`/`FromStr`.
//!
//! This module only describes data; what the node does with it is the
//! [`Backend`](crate::Backend)'s business.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol, VsockAddr};
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::{PublicKey, Subnet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest topic a message may carry, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// General information about the node (`GET /api/v1/admin`, `getInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The `/64` the node owns.
    #[serde(with = "text")]
    pub node_subnet: Subnet,
    /// The node's overlay address.
    pub node_ip: Ipv6Addr,
    /// The node's public key.
    #[serde(with = "text")]
    pub node_pubkey: PublicKey,
    /// When the node started, in seconds since the Unix epoch.
    pub node_start_time: u64,
}

/// How the node came to know a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerType {
    /// Configured (command line, config file or the API).
    Static,
    /// Found by link-local discovery.
    LinkLocalDiscovery,
    /// Connected to us.
    Inbound,
}

/// The state of the connection to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    /// A link is up.
    Alive,
    /// A connection attempt is running.
    Connecting,
    /// Not connected.
    Dead,
}

/// One known peer (`GET /api/v1/admin/peers`, `getPeers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStats {
    /// Where the peer is, as `{"proto":..,"addr":{..}}`.
    #[serde(with = "endpoint_json")]
    pub endpoint: Endpoint,
    /// How we know about it.
    #[serde(rename = "type")]
    pub peer_type: PeerType,
    /// Whether we are connected.
    pub connection_state: ConnectionState,
    /// Bytes written to the transport for this endpoint.
    pub tx_bytes: u64,
    /// Bytes read from the transport for this endpoint.
    pub rx_bytes: u64,
    /// Seconds since the endpoint became known.
    pub discovered: u64,
    /// Seconds since the last successful connection; `null` if never connected.
    pub last_connected: Option<u64>,
}

/// A route metric as the APIs show it: a number, or `"infinite"` for a retraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A finite metric, 0..=65534.
    Finite(u16),
    /// The infinite metric (0xFFFF on the wire).
    Infinite,
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Finite(m) => s.serialize_u16(*m),
            Self::Infinite => s.serialize_str("infinite"),
        }
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n < u16::MAX => Ok(Self::Finite(n)),
            Raw::Number(_) => Ok(Self::Infinite),
            Raw::Text(t) if t == "infinite" => Ok(Self::Infinite),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "a metric is a number or \"infinite\", got {t:?}"
            ))),
        }
    }
}

/// A routing table entry (`GET /api/v1/admin/routes/*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The destination subnet.
    #[serde(with = "text")]
    pub subnet: Subnet,
    /// The connection the route goes through, e.g. `TCP <local> <-> <remote>`.
    pub next_hop: String,
    /// The metric the next hop advertised (without our link cost).
    pub metric: Metric,
    /// The sequence number of the route.
    pub seqno: u16,
}

/// A subnet a route query is running for (`GET /api/v1/admin/routes/queried`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueriedSubnet {
    /// The subnet asked for.
    #[serde(with = "text")]
    pub subnet: Subnet,
    /// Whole seconds until the query expires; a JSON **string**, as upstream writes it.
    #[serde(with = "text")]
    pub expiration: u64,
}

/// Packet counters for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PacketStatEntry {
    /// The address.
    pub ip: IpAddr,
    /// Packets counted.
    pub packet_count: u64,
    /// Encrypted payload bytes counted.
    pub byte_count: u64,
}

/// Packet counters by source and by destination (`GET /api/v1/admin/stats/packets`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PacketStatistics {
    /// Per source address.
    pub by_source: Vec<PacketStatEntry>,
    /// Per destination address.
    pub by_destination: Vec<PacketStatEntry>,
}

/// Where a message goes: an overlay IP, or a public key that stands for its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageDestination {
    /// `{"ip": "<address>"}`.
    Ip(IpAddr),
    /// `{"pk": "<64 hex>"}`, replaced by the key's overlay address.
    Pk(#[serde(with = "text")] PublicKey),
}

impl MessageDestination {
    /// The address the message is sent to.
    pub fn ip(&self) -> IpAddr {
        match self {
            Self::Ip(ip) => *ip,
            Self::Pk(pk) => IpAddr::V6(pk.address()),
        }
    }
}

/// A message to send (request body of `POST /api/v1/messages`, `pushMessage`).
/// Unknown fields are ignored, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSendInfo {
    /// The receiver.
    pub dst: MessageDestination,
    /// An optional topic; `null` and absent both mean none.
    #[serde(default, with = "base64_opt", skip_serializing_if = "Option::is_none")]
    pub topic: Option<Vec<u8>>,
    /// The message body.
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
}

/// A received message (`GET /api/v1/messages`, `popMessage`, a reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReceiveInfo {
    /// The message id.
    #[serde(with = "text")]
    pub id: MessageId,
    /// The sender's overlay address.
    pub src_ip: IpAddr,
    /// The sender's public key.
    #[serde(with = "text")]
    pub src_pk: PublicKey,
    /// Our address the message was sent to.
    pub dst_ip: IpAddr,
    /// Our public key.
    #[serde(with = "text")]
    pub dst_pk: PublicKey,
    /// The topic; the field is left out when the topic is empty.
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub topic: Vec<u8>,
    /// The message body.
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
}

/// `{"id": "<16 hex>"}`: the id of a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushMessageResponseId {
    /// The id given to the message.
    #[serde(with = "text")]
    pub id: MessageId,
}

/// The answer to a push: the reply if one was awaited and came, else the id.
/// Untagged, as upstream: the two are told apart by their fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PushMessageResponse {
    /// The reply that arrived in time.
    Reply(MessageReceiveInfo),
    /// The id of the message pushed.
    Id(PushMessageResponseId),
}

/// Where an outbound message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransmissionState {
    /// Not started yet.
    Pending,
    /// Chunks are being sent.
    Sending(SendingProgress),
    /// The receiver has the whole message.
    Received,
    /// The receiver's application read it.
    Read,
    /// The sender gave up.
    Aborted,
}

/// Chunk counters of a message being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingProgress {
    /// Chunks not sent yet.
    pub pending: u64,
    /// Chunks sent, not acknowledged.
    pub sent: u64,
    /// Chunks acknowledged.
    pub acked: u64,
}

/// The status of an outbound message (`GET /api/v1/messages/status/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageInfo {
    /// The receiver's address.
    pub dst: IpAddr,
    /// Where the message is.
    pub state: TransmissionState,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// When the sender gives up, Unix seconds (created + 300).
    pub deadline: i64,
    /// The payload length in bytes.
    pub msg_len: u64,
}

/// `{"publicKey": "<64 hex>"}` (`GET /api/v1/pubkey/{ip}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyResponse {
    /// The key of the node owning the subnet.
    #[serde(with = "text")]
    pub public_key: PublicKey,
}

/// `{"endpoint": "tcp://1.2.3.4:9651"}` (`POST /api/v1/admin/peers`). The endpoint
/// stays a string here so a bad one gets the endpoint parser's 400, not a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPeerRequest {
    /// The endpoint URI.
    pub endpoint: String,
}

/// `{"remote": "[407::1]:1080"}`, `{"remote": null}` or `{}` (`POST /api/v1/admin/proxy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectProxyRequest {
    /// The proxy to use; none means pick the best known one.
    #[serde(default)]
    pub remote: Option<SocketAddr>,
}

/// `{"accept": bool}`: the action for topics that are not whitelisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultTopicAction {
    /// Whether messages on such topics are accepted.
    pub accept: bool,
}

/// `{"subnet": "400::/7"}` (`POST .../sources`). A string, so a bad subnet is a 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSourceRequest {
    /// A CIDR or a bare address.
    pub subnet: String,
}

/// `{"socketPath": "/run/app.sock"}` (`PUT .../forward`); camelCase, as upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicForwardSocketRequest {
    /// The Unix socket messages on the topic are forwarded to.
    pub socket_path: String,
}

/// The body of errors this implementation adds (401, 413, 503, 507):
/// `{"error": "<text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// Decodes standard base64 with canonical `=` padding, as every binary field needs.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s)
}

/// Encodes standard base64 with `=` padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Serde through `Display` and `FromStr`, for protocol types that have a text form.
pub(crate) mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Serde of bytes as a base64 string.
pub(crate) mod base64_bytes {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode_base64(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::decode_base64(&s).map_err(de::Error::custom)
    }
}

/// Serde of optional bytes as a base64 string or `null`.
pub(crate) mod base64_opt {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::encode_base64(v)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
            Some(s) => super::decode_base64(&s)
                .map(Some)
                .map_err(de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The API form of an endpoint: `{"proto":"tcp","addr":{"socket":"1.2.3.4:9651"}}`,
/// or `{"proto":"vsock","addr":{"vsock":{"cid":3,"port":9651}}}`.
pub(crate) mod endpoint_json {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Proto {
        Tcp,
        Quic,
        Tls,
        Vsock,
    }

    #[derive(Serialize, Deserialize)]
    struct Vsock {
        cid: u32,
        port: u32,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Addr {
        Socket(SocketAddr),
        Vsock(Vsock),
    }

    #[derive(Serialize, Deserialize)]
    struct Json {
        proto: Proto,
        addr: Addr,
    }

    pub(crate) fn serialize<S: Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
        let proto = match e.proto() {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Quic => Proto::Quic,
            Protocol::Tls => Proto::Tls,
            Protocol::Vsock => Proto::Vsock,
        };
        let addr = match e.addr() {
            EndpointAddr::Socket(a) => Addr::Socket(a),
            EndpointAddr::Vsock(v) => Addr::Vsock(Vsock {
                cid: v.cid,
                port: v.port,
            }),
        };
        Json { proto, addr }.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let j = Json::deserialize(d)?;
        let proto = match j.proto {
            Proto::Tcp => Protocol::Tcp,
            Proto::Quic => Protocol::Quic,
            Proto::Tls => Protocol::Tls,
            Proto::Vsock => Protocol::Vsock,
        };
        let addr = match j.addr {
            Addr::Socket(a) => EndpointAddr::Socket(a),
            Addr::Vsock(v) => EndpointAddr::Vsock(VsockAddr {
                cid: v.cid,
                port: v.port,
            }),
        };
        Endpoint::new(proto, addr).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
