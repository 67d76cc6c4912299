//! [`FakeBackend`]: an in-memory node for tests, the web view and CLI development.
//!
//! It answers every [`Backend`] call from plain tables: a few peers and routes,
//! an inbox of received messages, the topic configuration and a proxy list. A message
//! pushed to the node's own address loops back into the inbox; a message to anyone
//! else stays "sending" forever. A reply to a pushed message that is waiting for one
//! wakes that push. Every table is bounded.
//!
//! Nothing here talks to a network; `examples/fake_node.rs` serves it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::{PublicKey, Subnet};
use tokio::sync::{oneshot, Notify};

use crate::backend::{Backend, PeerExists, PeerNotFound, PushError, PushOutcome, TableFull, Topic};
use crate::model::{
    ConnectionState, Info, MessageInfo, MessageReceiveInfo, Metric, PacketStatEntry,
    PacketStatistics, PeerStats, PeerType, QueriedSubnet, Route, SendingProgress,
    TransmissionState, MAX_TOPIC_LEN,
};

/// Largest payload the fake accepts (bigger pushes get `PayloadTooLarge`).
pub const FAKE_MAX_PAYLOAD: usize = 1 << 20;
/// Most messages held in the inbox (a loop-back push past it gets `QueueFull`).
pub const FAKE_INBOX_LEN: usize = 256;

fn inbox_full() -> PushError {
    PushError::QueueFull(format!(
        "inbox budget full: {FAKE_INBOX_LEN} of {FAKE_INBOX_LEN} messages"
    ))
}
/// Most outbound message statuses remembered (the oldest is forgotten first).
const STATUS_LEN: usize = 1024;
/// Most whitelisted topics.
const MAX_TOPICS: usize = 256;
/// Most sources per topic.
const MAX_SOURCES: usize = 64;
/// Most peers.
const MAX_PEERS: usize = 256;
/// How long an outbound message is tried.
const SEND_WINDOW_SECS: i64 = 300;

#[derive(Default)]
struct TopicConfig {
    sources: Vec<Subnet>,
    forward: Option<String>,
}

struct State {
    peers: Vec<PeerStats>,
    inbox: VecDeque<MessageReceiveInfo>,
    statuses: VecDeque<(MessageId, MessageInfo)>,
    reply_waiters: HashMap<MessageId, oneshot::Sender<MessageReceiveInfo>>,
    next_id: u64,
    default_accept: bool,
    topics: BTreeMap<Topic, TopicConfig>,
    proxy_probing: bool,
    proxy_connected: Option<SocketAddr>,
}

/// An in-memory [`Backend`]; see the module documentation.
pub struct FakeBackend {
    key: PublicKey,
    start_time: u64,
    routes: Vec<(Route, PublicKey)>,
    fallback: Vec<(Route, PublicKey)>,
    proxies: Vec<Ipv6Addr>,
    state: Mutex<State>,
    arrivals: Notify,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Messages travel between overlay (IPv6) addresses only, as with a real node.
fn unroutable(dst: IpAddr) -> Result<(), PushError> {
    match dst {
        IpAddr::V6(_) => Ok(()),
        IpAddr::V4(v4) => Err(PushError::Unroutable(format!(
            "{v4} is not an overlay (IPv6) address"
        ))),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fake_key(seed: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    PublicKey::from_bytes(bytes)
}

impl FakeBackend {
    /// A node with two peers, two selected routes, a fallback and a retracted route,
    /// a running route query and two known proxies.
    pub fn new() -> Self {
        let key = fake_key(1);
        let remotes: Vec<PublicKey> = (2..5).map(fake_key).collect();
        let peer = |ep: &str, t, s, last| PeerStats {
            endpoint: ep
                .parse()
                .unwrap_or(Endpoint::tcp(SocketAddr::from(([127, 0, 0, 1], 9651)))),
            peer_type: t,
            connection_state: s,
            tx_bytes: 1738,
            rx_bytes: 6598,
            discovered: 120,
            last_connected: last,
        };
        let peers = vec![
            peer(
                "tcp://192.0.2.1:9651",
                PeerType::Static,
                ConnectionState::Alive,
                Some(110),
            ),
            peer(
                "quic://[2001:db8::2]:9651",
                PeerType::Static,
                ConnectionState::Dead,
                None,
            ),
            peer(
                "tcp://[::ffff:127.0.0.1]:35914",
                PeerType::Inbound,
                ConnectionState::Alive,
                Some(8),
            ),
        ];
        let route = |pk: &PublicKey, hop: &str, metric, seqno| {
            (
                Route {
                    subnet: pk.subnet(),
                    next_hop: hop.to_owned(),
                    metric,
                    seqno,
                },
                *pk,
            )
        };
        let hop_a = "TCP 192.0.2.10:40000 <-> 192.0.2.1:9651";
        let hop_b = "TCP [::ffff:127.0.0.1]:9651 <-> [::ffff:127.0.0.1]:35914";
        let routes = vec![
            route(&remotes[0], hop_a, Metric::Finite(0), 3),
            route(&remotes[1], hop_b, Metric::Finite(20), 1),
        ];
        let fallback = vec![
            route(&remotes[1], hop_a, Metric::Finite(40), 1),
            route(&remotes[2], hop_b, Metric::Infinite, 7),
        ];
        let proxies = vec![remotes[0].address(), remotes[1].address()];
        Self {
            key,
            start_time: now_secs(),
            routes,
            fallback,
            proxies,
            state: Mutex::new(State {
                peers,
                inbox: VecDeque::new(),
                statuses: VecDeque::new(),
                reply_waiters: HashMap::new(),
                next_id: 0x2bb2_31c5_0d01_4200,
                default_accept: true,
                topics: BTreeMap::new(),
                proxy_probing: false,
                proxy_connected: None,
            }),
            arrivals: Notify::new(),
        }
    }

    /// The fake node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// The fake node's overlay address.
    pub fn address(&self) -> Ipv6Addr {
        self.key.address()
    }

    /// The public key of the remote node owning the first selected route.
    pub fn remote_key(&self) -> PublicKey {
        self.routes.first().map_or(self.key, |r| r.1)
    }

    /// Puts a received message into the inbox, as if it came from the network.
    /// Returns false (and drops it) when the inbox is full.
    pub fn deliver(&self, msg: MessageReceiveInfo) -> bool {
        let mut st = self.lock();
        if st.inbox.len() >= FAKE_INBOX_LEN {
            return false;
        }
        st.inbox.push_back(msg);
        drop(st);
        self.arrivals.notify_waiters();
        true
    }

    /// Whether proxy probing is on.
    pub fn proxy_probing(&self) -> bool {
        self.lock().proxy_probing
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this file; the data is
        // still usable, so carry on rather than poison every later request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_matching(&self, peek: bool, topic: Option<&[u8]>) -> Option<MessageReceiveInfo> {
        let mut st = self.lock();
        let pos = st
            .inbox
            .iter()
            .position(|m| topic.map_or(true, |t| m.topic == t))?;
        if peek {
            st.inbox.get(pos).cloned()
        } else {
            st.inbox.remove(pos)
        }
    }

    fn record_status(st: &mut State, id: MessageId, info: MessageInfo) {
        if let Some(slot) = st.statuses.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = info;
            return;
        }
        if st.statuses.len() >= STATUS_LEN {
            st.statuses.pop_front();
        }
        st.statuses.push_back((id, info));
    }

    fn received(&self, id: MessageId, topic: Topic, payload: Vec<u8>) -> MessageReceiveInfo {
        MessageReceiveInfo {
            id,
            src_ip: IpAddr::V6(self.address()),
            src_pk: self.key,
            dst_ip: IpAddr::V6(self.address()),
            dst_pk: self.key,
            topic,
            payload,
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    async fn info(&self) -> Info {
        Info {
            node_subnet: self.key.subnet(),
            node_ip: self.address(),
            node_pubkey: self.key,
            node_start_time: self.start_time,
        }
    }

    async fn peers(&self) -> Vec<PeerStats> {
        self.lock().peers.clone()
    }

    async fn add_peer(&self, endpoint: Endpoint) -> Result<(), PeerExists> {
        let mut st = self.lock();
        if st.peers.iter().any(|p| p.endpoint == endpoint) || st.peers.len() >= MAX_PEERS {
            return Err(PeerExists);
        }
        st.peers.push(PeerStats {
            endpoint,
            peer_type: PeerType::Static,
            connection_state: ConnectionState::Connecting,
            tx_bytes: 0,
            rx_bytes: 0,
            discovered: 0,
            last_connected: None,
        });
        Ok(())
    }

    async fn remove_peer(&self, endpoint: Endpoint) -> Result<(), PeerNotFound> {
        let mut st = self.lock();
        let before = st.peers.len();
        st.peers.retain(|p| p.endpoint != endpoint);
        if st.peers.len() == before {
            Err(PeerNotFound)
        } else {
            Ok(())
        }
    }

    async fn selected_routes(&self) -> Vec<Route> {
        self.routes.iter().map(|r| r.0.clone()).collect()
    }

    async fn fallback_routes(&self) -> Vec<Route> {
        self.fallback.iter().map(|r| r.0.clone()).collect()
    }

    async fn queried_subnets(&self) -> Vec<QueriedSubnet> {
        vec![QueriedSubnet {
            subnet: fake_key(9).subnet(),
            expiration: 14,
        }]
    }

    async fn packet_stats(&self) -> PacketStatistics {
        let entry = |ip: Ipv6Addr, packets, bytes| PacketStatEntry {
            ip: IpAddr::V6(ip),
            packet_count: packets,
            byte_count: bytes,
        };
        let remote = self.remote_key().address();
        PacketStatistics {
            by_source: vec![entry(self.address(), 3, 380), entry(remote, 2, 205)],
            by_destination: vec![entry(remote, 3, 380), entry(self.address(), 2, 205)],
        }
    }

    async fn public_key_for(&self, ip: Ipv6Addr) -> Option<PublicKey> {
        let ip = IpAddr::V6(ip);
        if self.key.subnet().contains_ip(ip) {
            return Some(self.key);
        }
        self.routes
            .iter()
            .chain(&self.fallback)
            .find(|(r, _)| r.subnet.contains_ip(ip))
            .map(|(_, k)| *k)
    }

    async fn pop_message(
        &self,
        peek: bool,
        timeout: Duration,
        topic: Option<Topic>,
    ) -> Option<MessageReceiveInfo> {
        // A deadline past what the clock can hold means "wait for ever".
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            // Register for a wake-up before looking, so an arrival between the look
            // and the wait is not missed.
            let arrived = self.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(m) = self.take_matching(peek, topic.as_deref()) {
                return Some(m);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, arrived).await.is_err() {
                        return None;
                    }
                }
                None => arrived.await,
            }
        }
    }

    async fn push_message(
        &self,
        dst: IpAddr,
        topic: Topic,
        payload: Vec<u8>,
        reply_timeout: Option<Duration>,
    ) -> Result<PushOutcome, PushError> {
        if topic.len() > MAX_TOPIC_LEN {
            return Err(PushError::TopicTooLarge);
        }
        if payload.len() > FAKE_MAX_PAYLOAD {
            return Err(PushError::PayloadTooLarge {
                max: FAKE_MAX_PAYLOAD,
            });
        }
        unroutable(dst)?;
        let created = now_secs() as i64;
        let len = payload.len() as u64;
        let to_self = dst == IpAddr::V6(self.address());
        let (id, waiter) = {
            let mut st = self.lock();
            if to_self && st.inbox.len() >= FAKE_INBOX_LEN {
                return Err(inbox_full());
            }
            let id = MessageId(st.next_id.to_be_bytes());
            st.next_id = st.next_id.wrapping_add(1);
            let state = if to_self {
                TransmissionState::Received
            } else if dst.is_ipv6() {
                TransmissionState::Sending(SendingProgress {
                    pending: len.div_ceil(1300),
                    sent: 0,
                    acked: 0,
                })
            } else {
                TransmissionState::Pending
            };
            let info = MessageInfo {
                dst,
                state,
                created,
                deadline: created + SEND_WINDOW_SECS,
                msg_len: len,
            };
            Self::record_status(&mut st, id, info);
            let waiter = reply_timeout.map(|_| {
                let (tx, rx) = oneshot::channel();
                st.reply_waiters.insert(id, tx);
                rx
            });
            if to_self {
                let msg = self.received(id, topic, payload);
                st.inbox.push_back(msg);
            }
            (id, waiter)
        };
        if to_self {
            self.arrivals.notify_waiters();
        }
        let (Some(wait), Some(rx)) = (reply_timeout, waiter) else {
            return Ok(PushOutcome::Sent(id));
        };
        let outcome = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => PushOutcome::Reply(reply),
            _ => PushOutcome::TimedOut(id),
        };
        self.lock().reply_waiters.remove(&id);
        Ok(outcome)
    }

    async fn reply_message(
        &self,
        id: MessageId,
        dst: IpAddr,
        payload: Vec<u8>,
    ) -> Result<(), PushError> {
        if payload.len() > FAKE_MAX_PAYLOAD {
            return Err(PushError::PayloadTooLarge {
                max: FAKE_MAX_PAYLOAD,
            });
        }
        unroutable(dst)?;
        let reply = self.received(id, Vec::new(), payload);
        let mut st = self.lock();
        if let Some(tx) = st.reply_waiters.remove(&id) {
            // The waiter may have timed out just now; then the reply is dropped.
            let _ = tx.send(reply);
        } else if dst == IpAddr::V6(self.address()) {
            if st.inbox.len() >= FAKE_INBOX_LEN {
                return Err(inbox_full());
            }
            st.inbox.push_back(reply);
            drop(st);
            self.arrivals.notify_waiters();
        }
        Ok(())
    }

    async fn message_info(&self, id: MessageId) -> Option<MessageInfo> {
        let st = self.lock();
        st.statuses
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, m)| m.clone())
    }

    async fn default_topic_accept(&self) -> bool {
        self.lock().default_accept
    }

    async fn set_default_topic_accept(&self, accept: bool) {
        self.lock().default_accept = accept;
    }

    async fn topics(&self) -> Vec<Topic> {
        self.lock().topics.keys().cloned().collect()
    }

    async fn add_topic(&self, topic: Topic) -> Result<(), TableFull> {
        let mut st = self.lock();
        if !st.topics.contains_key(&topic) && st.topics.len() >= MAX_TOPICS {
            return Err(TableFull("topic"));
        }
        st.topics.entry(topic).or_default();
        Ok(())
    }

    async fn remove_topic(&self, topic: Topic) {
        self.lock().topics.remove(&topic);
    }

    async fn topic_sources(&self, topic: Topic) -> Option<Vec<Subnet>> {
        self.lock().topics.get(&topic).map(|t| t.sources.clone())
    }

    async fn add_topic_source(&self, topic: Topic, source: Subnet) -> Result<(), TableFull> {
        let mut st = self.lock();
        if !st.topics.contains_key(&topic) && st.topics.len() >= MAX_TOPICS {
            return Err(TableFull("topic"));
        }
        let cfg = st.topics.entry(topic).or_default();
        if cfg.sources.contains(&source) {
            return Ok(());
        }
        if cfg.sources.len() >= MAX_SOURCES {
            return Err(TableFull("topic source"));
        }
        cfg.sources.push(source);
        Ok(())
    }

    async fn remove_topic_source(&self, topic: Topic, source: Subnet) {
        if let Some(cfg) = self.lock().topics.get_mut(&topic) {
            cfg.sources.retain(|s| *s != source);
        }
    }

    async fn topic_forward_socket(&self, topic: Topic) -> Option<String> {
        self.lock()
            .topics
            .get(&topic)
            .and_then(|t| t.forward.clone())
    }

    async fn set_topic_forward_socket(&self, topic: Topic, path: String) {
        if let Some(cfg) = self.lock().topics.get_mut(&topic) {
            cfg.forward = Some(path);
        }
    }

    async fn remove_topic_forward_socket(&self, topic: Topic) {
        if let Some(cfg) = self.lock().topics.get_mut(&topic) {
            cfg.forward = None;
        }
    }

    async fn proxies(&self) -> Vec<Ipv6Addr> {
        self.proxies.clone()
    }

    async fn connect_proxy(&self, remote: Option<SocketAddr>) -> Option<SocketAddr> {
        let chosen = match remote {
            Some(r) => r,
            None => SocketAddr::new(IpAddr::V6(*self.proxies.first()?), 1080),
        };
        self.lock().proxy_connected = Some(chosen);
        Some(chosen)
    }

    async fn disconnect_proxy(&self) {
        self.lock().proxy_connected = None;
    }

    async fn start_proxy_probe(&self) {
        self.lock().proxy_probing = true;
    }

    async fn stop_proxy_probe(&self) {
        self.lock().proxy_probing = false;
    }
}
