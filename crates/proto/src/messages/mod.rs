//! The reliable message bus (MESSAGES.md), sans-IO.
//!
//! [`MessageBus`] moves byte strings between overlay nodes inside data packets of
//! user-header type 1, wire-compatible with upstream v0.7.10. It owns the outbound
//! messages and their retransmission, reassembly of inbound messages, the inbox,
//! reply waiters and the topic access control ([`TopicConfig`]). It owns no socket,
//! no clock and no routing table: every input carries the current [`Instant`], and
//! frames come out of [`MessageBus::poll_transmit`] for the node to seal and route.
//!
//! # Driving it
//!
//! * Inputs: [`MessageBus::push`] (API send), [`MessageBus::handle_frame`] (a
//!   decrypted type-1 payload, user header removed), [`MessageBus::handle_timeout`]
//!   (when [`MessageBus::poll_timeout`] is due), [`MessageBus::pop`] (API receive),
//!   [`MessageBus::wait_for_reply`] / [`MessageBus::take_reply`] /
//!   [`MessageBus::cancel_reply_wait`] (send-and-wait), and
//!   [`MessageBus::handle_forward_result`] (a forward socket answered).
//! * Outputs, drained after every input: [`MessageBus::poll_transmit`] (a frame to
//!   seal as `01 01 00 00 ‖ frame` into a data packet from `src` to `dst`, hop limit
//!   64), [`MessageBus::poll_event`], [`MessageBus::poll_timeout`].
//! * Times are [`Instant`]s; [`MessageInfo`]'s `created` and `deadline` too. The
//!   node converts them to Unix seconds with its own clock offset.
//!
//! # Where we differ from upstream (same wire)
//!
//! Each item answers an upstream defect listed in MESSAGES.md §8 or
//! BEHAVIOUR-NOTES.md:
//!
//! * **Short last chunk** (§4.1): we send `L mod 1300 ∈ 1..249` tails rebalanced so
//!   upstream receivers accept them, and accept short chunks anywhere ourselves.
//! * **Lost DONE-ACK**: completed messages are remembered
//!   ([`BusConfig::completed_memory`]); a retransmitted INIT, CHUNK or DONE of one
//!   is acknowledged again and never delivered twice. A READ arriving while our
//!   DONE-ACK is still missing counts as delivery.
//! * **Duplicate INIT**: a repeated INIT for a message being reassembled keeps the
//!   chunks already stored (upstream discards them, so a duplicated INIT arriving
//!   late stalls the message for good); only an INIT with a different length, topic
//!   or reply flag replaces the message.
//! * **Unbounded state / huge declared lengths**: messages above
//!   [`BusConfig::max_message_size`] are refused (not acknowledged); nothing is
//!   allocated before data arrives; partial messages are bounded per source /64 and
//!   in total and dropped when idle; the inbox, reply slots, forwards in flight and
//!   partial messages share one byte and count budget. An INIT that does not fit is
//!   not acknowledged, so the sender keeps retrying and gets in once there is room:
//!   an accepted message is never dropped for lack of space.
//! * **Retransmission storm**: see [`outbound`]'s documentation (windowed sending,
//!   adaptive timeout with back-off) and the outbound bounds.
//! * **Anyone can "reply"**: a REPLY skips the topic check only if it answers a
//!   message we sent to the replier's /64 or one a local caller waits on
//!   ([`BusConfig::check_unsolicited_replies`]); otherwise it is checked like any
//!   message (its topic is empty).
//! * **Reply matching by id only**: a waiter receives only messages with the REPLY
//!   flag; a non-reply colliding with a waited-on id goes to the inbox.
//! * **Cross-talk between sources**: inbound state is keyed by (source, id) and
//!   acknowledgements must come from the address the message was sent to.

mod chunking;
mod inbound;
mod outbound;
mod timers;
mod topics;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rand_core::RngCore;

pub use topics::{TopicConfig, TopicConfigError, TopicRule};

use inbound::{Completed, Partial};
use outbound::{emit, NewOutbound, Outbound};
use timers::{TimerKey, Timers};

use crate::identity::PublicKey;
use crate::time::Instant;
use crate::wire::message::{Frame, MessageId, CHECKSUM_LEN, MAX_TOPIC_LEN};

/// Every timer and bound of the bus. [`Default`] gives upstream's timers where
/// peers can observe them and our bounds where upstream has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Chunk size (1300). Keep it: upstream receivers need `ceil(len / 1300)`
    /// chunks (§4.1).
    pub chunk_size: usize,
    /// Smallest chunk upstream receivers accept except at one index (250).
    pub min_chunk_size: usize,
    /// Retransmission timeout before any round trip was measured (100 ms, upstream's
    /// fixed period).
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout (100 ms).
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout while backing off (1 s).
    pub max_rto: Duration,
    /// Chunks of one message sent but not yet acknowledged, at most (128).
    pub send_window: usize,
    /// How long a message is tried when the caller gives no time (300 s).
    pub default_try_for: Duration,
    /// How long an outbound message's status stays available after it was pushed
    /// (600 s, or its deadline if later).
    pub status_retention: Duration,
    /// Largest message sent or accepted (16 MiB).
    pub max_message_size: u64,
    /// Payload bytes of outbound messages still being sent (128 MiB).
    pub max_outbound_bytes: usize,
    /// Outbound messages still being sent (4096).
    pub max_outbound_messages: usize,
    /// Outbound statuses kept, finished ones included (65536); the oldest finished
    /// is forgotten first.
    pub max_statuses: usize,
    /// Bytes received and held: inbox, reply slots, forwards in flight, and the
    /// declared length of every partial message (64 MiB).
    pub max_inbox_bytes: u64,
    /// Messages received and held, counted like the bytes (4096).
    pub max_inbox_messages: usize,
    /// Partial messages from one source /64 (16).
    pub max_partial_per_source: usize,
    /// Declared bytes of partial messages from one source /64 (32 MiB).
    pub max_partial_bytes_per_source: u64,
    /// Partial messages in total (256).
    pub max_partial_total: usize,
    /// A partial message with no frame for this long is dropped (300 s: no sender
    /// with upstream's window is still trying by then).
    pub partial_idle_timeout: Duration,
    /// How long a delivered message is remembered after its last frame, to
    /// acknowledge retransmissions (300 s).
    pub completed_memory: Duration,
    /// Delivered messages remembered at most (65536); past it new ones are not.
    pub max_completed: usize,
    /// Reply waiters at most (4096).
    pub max_reply_waiters: usize,
    /// Whether a REPLY that answers nothing we sent is subject to the topic check
    /// (true).
    pub check_unsolicited_replies: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1300,
            min_chunk_size: 250,
            initial_rto: Duration::from_millis(100),
            min_rto: Duration::from_millis(100),
            max_rto: Duration::from_secs(1),
            send_window: 128,
            default_try_for: Duration::from_secs(300),
            status_retention: Duration::from_secs(600),
            max_message_size: 16 << 20,
            max_outbound_bytes: 128 << 20,
            max_outbound_messages: 4096,
            max_statuses: 65536,
            max_inbox_bytes: 64 << 20,
            max_inbox_messages: 4096,
            max_partial_per_source: 16,
            max_partial_bytes_per_source: 32 << 20,
            max_partial_total: 256,
            partial_idle_timeout: Duration::from_secs(300),
            completed_memory: Duration::from_secs(300),
            max_completed: 65536,
            max_reply_waiters: 4096,
            check_unsolicited_replies: true,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Our address to send from: the node IP for a new message; for a reply, the
    /// address the original message was sent to is as good.
    pub src: Ipv6Addr,
    /// The receiver (any address in its /64).
    pub dst: Ipv6Addr,
    /// Topic, at most 255 bytes; replies carry none (it is ignored for them).
    pub topic: Vec<u8>,
    /// The data.
    pub payload: Bytes,
    /// The message this one answers: its id is reused and the REPLY flag set.
    pub reply_to: Option<MessageId>,
    /// How long to try; [`BusConfig::default_try_for`] if `None`.
    pub try_for: Option<Duration>,
}

/// Why a message was not accepted for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The topic is longer than 255 bytes.
    #[error("topic of {0} bytes is longer than 255")]
    TopicTooLong(usize),
    /// The payload exceeds [`BusConfig::max_message_size`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The outbound store is full; try again later.
    #[error("too many messages being sent")]
    QueueFull,
    /// A reply with this id is still being sent.
    #[error("a message with this id is still being sent")]
    IdInUse,
}

/// Too many callers wait for replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many reply waiters")]
pub struct TooManyWaiters;

/// A frame to send: seal `01 01 00 00 ‖ frame` into a data packet from `src` to
/// `dst` with hop limit 64 and route it like any packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address of the data packet.
    pub src: Ipv6Addr,
    /// Destination address of the data packet.
    pub dst: Ipv6Addr,
    /// The message frame.
    pub frame: Vec<u8>,
}

/// Outbound message state, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// INIT not yet acknowledged.
    Pending,
    /// Chunks being sent.
    Sending {
        /// Chunks never sent yet.
        pending: u64,
        /// Chunks sent, not acknowledged.
        sent: u64,
        /// Chunks acknowledged.
        acked: u64,
    },
    /// The receiver has the whole message.
    Received,
    /// A reader at the receiver obtained it.
    Read,
    /// Given up at the deadline.
    Aborted,
}

/// Status of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// Where it goes.
    pub dst: Ipv6Addr,
    /// Its state.
    pub state: MessageState,
    /// When it was pushed.
    pub created: Instant,
    /// When it is given up.
    pub deadline: Instant,
    /// Payload length.
    pub len: u64,
}

/// A message that arrived complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Its id.
    pub id: MessageId,
    /// Whether it is a reply.
    pub reply: bool,
    /// Source address of its frames.
    pub src: Ipv6Addr,
    /// The sender's key (the key its frames were decrypted with).
    pub src_key: PublicKey,
    /// The address it was sent to (one of ours).
    pub dst: Ipv6Addr,
    /// Topic bytes.
    pub topic: Vec<u8>,
    /// The data.
    pub payload: Bytes,
}

/// A message handed to a forward socket; answer with
/// [`MessageBus::handle_forward_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardTicket(u64);

/// Something the node must act on or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message entered the inbox: wake readers.
    MessageReceived {
        /// Its id.
        id: MessageId,
    },
    /// A reply for a waiter arrived: [`MessageBus::take_reply`] it.
    ReplyReceived {
        /// The id waited on.
        id: MessageId,
    },
    /// A waiter's time ran out without a reply.
    ReplyTimedOut {
        /// The id waited on.
        id: MessageId,
    },
    /// Write `message.payload` to the Unix socket `socket` (MESSAGES.md §7.3), then
    /// call [`MessageBus::handle_forward_result`] with what came back.
    Forward {
        /// Pass back with the result.
        ticket: ForwardTicket,
        /// The socket path.
        socket: PathBuf,
        /// The message.
        message: ReceivedMessage,
    },
    /// An outbound message reached its receiver.
    Delivered {
        /// Its id.
        id: MessageId,
    },
    /// A reader at the receiver obtained an outbound message.
    Read {
        /// Its id.
        id: MessageId,
    },
    /// An outbound message was given up at its deadline.
    SendFailed {
        /// Its id.
        id: MessageId,
    },
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Frames that did not decode.
    pub malformed: u64,
    /// INITs refused by the topic configuration.
    pub refused_by_policy: u64,
    /// INITs declaring more than [`BusConfig::max_message_size`].
    pub refused_too_large: u64,
    /// INITs left unacknowledged because the inbox budget was full.
    pub refused_full: u64,
    /// INITs left unacknowledged because of the partial-message bounds.
    pub refused_partial_limit: u64,
    /// Chunks that did not fit their message.
    pub bad_chunks: u64,
    /// DONEs that did not complete their message.
    pub bad_dones: u64,
    /// Retransmitted frames of delivered messages, acknowledged again.
    pub duplicates: u64,
    /// Partial messages dropped when idle.
    pub partial_expired: u64,
    /// Messages delivered (inbox, reply waiter or forward socket).
    pub delivered: u64,
    /// Outbound messages pushed.
    pub pushed: u64,
    /// Outbound messages aborted at their deadline.
    pub aborted: u64,
    /// Frames sent again after a timeout.
    pub retransmissions: u64,
}

/// What the bus holds right now (for metrics, and to check nothing leaks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusUsage {
    /// Outbound messages still being sent.
    pub sending: usize,
    /// Their payload bytes.
    pub sending_bytes: u64,
    /// Outbound statuses kept, finished ones included.
    pub statuses: usize,
    /// Partial inbound messages.
    pub partial: usize,
    /// Messages counted against the inbox budget (inbox, reply slots, forwards in
    /// flight, partial messages).
    pub held: usize,
    /// Their bytes (declared lengths for partial messages).
    pub held_bytes: u64,
    /// Messages in the inbox.
    pub inbox: usize,
    /// Delivered messages remembered for duplicate suppression.
    pub completed: usize,
    /// Reply waiters.
    pub waiters: usize,
    /// Messages handed to forward sockets, not yet answered.
    pub forwards: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    count: usize,
    bytes: u64,
}

#[derive(Debug)]
struct Waiter {
    until: Instant,
    reply: Option<ReceivedMessage>,
}

type InKey = (Ipv6Addr, MessageId);

fn same_64(a: Ipv6Addr, b: Ipv6Addr) -> bool {
    a.octets()[..8] == b.octets()[..8]
}

fn prefix_64(a: Ipv6Addr) -> u64 {
    (u128::from(a) >> 64) as u64
}

/// The message bus. See the module documentation.
#[derive(Debug)]
pub struct MessageBus {
    cfg: BusConfig,
    topics: TopicConfig,
    outbound: BTreeMap<MessageId, Outbound>,
    /// Finished outbound messages by when their status expires.
    finished: BTreeSet<(Instant, MessageId)>,
    outbound_active: Usage,
    partial: BTreeMap<InKey, Partial>,
    partial_by_source: BTreeMap<u64, Usage>,
    completed: BTreeMap<InKey, Completed>,
    /// Everything counted against the inbox budget.
    held: Usage,
    inbox: VecDeque<ReceivedMessage>,
    waiters: BTreeMap<MessageId, Waiter>,
    forwards: BTreeMap<ForwardTicket, ReceivedMessage>,
    next_ticket: u64,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: BusStats,
}

impl MessageBus {
    /// An empty bus.
    pub fn new(cfg: BusConfig, topics: TopicConfig) -> Self {
        Self {
            cfg,
            topics,
            outbound: BTreeMap::new(),
            finished: BTreeSet::new(),
            outbound_active: Usage::default(),
            partial: BTreeMap::new(),
            partial_by_source: BTreeMap::new(),
            completed: BTreeMap::new(),
            held: Usage::default(),
            inbox: VecDeque::new(),
            waiters: BTreeMap::new(),
            forwards: BTreeMap::new(),
            next_ticket: 0,
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: BusStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    /// The topic configuration.
    pub fn topics(&self) -> &TopicConfig {
        &self.topics
    }

    /// The topic configuration, to change; changes apply to the next INIT.
    pub fn topics_mut(&mut self) -> &mut TopicConfig {
        &mut self.topics
    }

    /// Counters.
    pub fn stats(&self) -> BusStats {
        self.stats
    }

    /// Messages waiting in the inbox.
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// What the bus holds.
    pub fn usage(&self) -> BusUsage {
        BusUsage {
            sending: self.outbound_active.count,
            sending_bytes: self.outbound_active.bytes,
            statuses: self.outbound.len(),
            partial: self.partial.len(),
            held: self.held.count,
            held_bytes: self.held.bytes,
            inbox: self.inbox.len(),
            completed: self.completed.len(),
            waiters: self.waiters.len(),
            forwards: self.forwards.len(),
        }
    }

    // ----- sending ------------------------------------------------------------

    /// Queues a message and sends its INIT. The id is drawn from `rng` unless the
    /// message is a reply.
    pub fn push(
        &mut self,
        now: Instant,
        msg: NewMessage,
        rng: &mut impl RngCore,
    ) -> Result<MessageId, PushError> {
        let reply = msg.reply_to.is_some();
        let topic = if reply { Vec::new() } else { msg.topic };
        if topic.len() > MAX_TOPIC_LEN {
            return Err(PushError::TopicTooLong(topic.len()));
        }
        let len = msg.payload.len() as u64;
        if len > self.cfg.max_message_size {
            return Err(PushError::TooLarge {
                len,
                max: self.cfg.max_message_size,
            });
        }
        if self.outbound_active.count >= self.cfg.max_outbound_messages
            || self.outbound_active.bytes + len > self.cfg.max_outbound_bytes as u64
        {
            return Err(PushError::QueueFull);
        }
        let id = match msg.reply_to {
            Some(id) => {
                if self.outbound.get(&id).is_some_and(Outbound::is_active) {
                    return Err(PushError::IdInUse);
                }
                id
            }
            None => loop {
                let mut id = [0u8; 8];
                rng.fill_bytes(&mut id);
                if !self.outbound.contains_key(&MessageId(id)) {
                    break MessageId(id);
                }
            },
        };
        // A finished entry under the same id (an earlier reply) gives way.
        self.forget_outbound(id);
        if self.outbound.len() >= self.cfg.max_statuses.max(1) {
            match self.finished.first().copied() {
                Some((_, oldest)) => self.forget_outbound(oldest),
                None => return Err(PushError::QueueFull),
            }
        }
        let try_for = msg.try_for.unwrap_or(self.cfg.default_try_for);
        let o = Outbound::new(
            now,
            NewOutbound {
                id,
                src: msg.src,
                dst: msg.dst,
                topic,
                reply,
                data: msg.payload,
                deadline: now + try_for,
            },
            &self.cfg,
        );
        self.outbound_active.count += 1;
        self.outbound_active.bytes += len;
        self.outbound.insert(id, o);
        self.stats.pushed += 1;
        self.service_outbound(now, id);
        Ok(id)
    }

    /// Status of an outbound message, while it is kept.
    pub fn message_info(&self, now: Instant, id: MessageId) -> Option<MessageInfo> {
        let o = self.outbound.get(&id).filter(|o| now < o.expires)?;
        Some(MessageInfo {
            dst: o.dst,
            state: o.state(),
            created: o.created,
            deadline: o.deadline,
            len: o.len,
        })
    }

    fn forget_outbound(&mut self, id: MessageId) {
        let Some(o) = self.outbound.remove(&id) else {
            return;
        };
        self.timers.reset(TimerKey::Outbound(id), o.timer, None);
        if o.is_active() {
            self.outbound_active.count -= 1;
            self.outbound_active.bytes -= o.held_bytes() as u64;
        } else {
            self.finished.remove(&(o.expires, id));
        }
    }

    /// Services an outbound message and re-arms its timer.
    fn service_outbound(&mut self, now: Instant, id: MessageId) {
        let Some(o) = self.outbound.get_mut(&id) else {
            return;
        };
        let was_active = o.is_active();
        let held = o.held_bytes();
        let s = o.service(now, &self.cfg, &mut self.transmits, &mut self.stats);
        if s.aborted {
            self.events.push_back(Event::SendFailed { id });
        }
        if s.expired {
            // `forget_outbound` accounts for it as it was before this call.
            self.settle_outbound(id, was_active, held);
            self.forget_outbound(id);
            return;
        }
        let old = o.timer.replace(s.wake);
        self.timers.reset(TimerKey::Outbound(id), old, Some(s.wake));
        self.settle_outbound(id, was_active, held);
    }

    /// Accounts for an outbound message that may have just finished.
    fn settle_outbound(&mut self, id: MessageId, was_active: bool, held: usize) {
        let Some(o) = self.outbound.get(&id) else {
            return;
        };
        if was_active && !o.is_active() {
            self.outbound_active.count -= 1;
            self.outbound_active.bytes -= held as u64;
            self.finished.insert((o.expires, id));
        }
    }

    // ----- frames in ----------------------------------------------------------

    /// A message frame arrived: the decrypted payload after the user header, from
    /// `src` (whose key decrypted it) to our address `dst`.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_key: PublicKey,
        frame: &[u8],
    ) {
        let Ok(frame) = Frame::decode(frame) else {
            self.stats.malformed += 1;
            return;
        };
        match frame {
            Frame::Init {
                id,
                reply,
                length,
                topic,
            } => self.on_init(now, src, dst, id, reply, length, topic),
            Frame::Chunk {
                id,
                index,
                offset,
                size,
                data,
            } => self.on_chunk(now, src, dst, id, (index, offset, size), data),
            Frame::Done {
                id,
                chunks,
                checksum,
            } => self.on_done(now, src, dst, src_key, id, chunks, checksum),
            Frame::Aborted { id } => {
                if self.partial.contains_key(&(src, id)) {
                    self.drop_partial((src, id));
                }
            }
            Frame::InitAck { id, .. } => {
                self.with_ack(now, src, id, |o, now, cfg| o.on_init_ack(now, cfg));
            }
            Frame::ChunkAck {
                id,
                index,
                offset,
                size,
            } => {
                self.with_ack(now, src, id, |o, now, cfg| {
                    o.on_chunk_ack(now, cfg, index, offset, size)
                });
            }
            Frame::DoneAck {
                id,
                chunks,
                checksum,
            } => {
                let delivered =
                    self.with_ack(now, src, id, |o, _, _| o.on_done_ack(chunks, &checksum));
                if delivered {
                    self.events.push_back(Event::Delivered { id });
                }
            }
            Frame::Read { id } => {
                if self.with_ack(now, src, id, |o, _, _| o.on_read()) {
                    self.events.push_back(Event::Read { id });
                }
            }
            Frame::ReadAck { .. } => {}
        }
    }

    /// Applies an acknowledgement (or READ) from `src` to outbound message `id`,
    /// then services the message if it changed.
    fn with_ack(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        id: MessageId,
        f: impl FnOnce(&mut Outbound, Instant, &BusConfig) -> bool,
    ) -> bool {
        let Some(o) = self.outbound.get_mut(&id) else {
            return false;
        };
        // Acknowledgements come from exactly the address the message went to.
        if o.dst != src {
            return false;
        }
        let was_active = o.is_active();
        let held = o.held_bytes();
        if !f(o, now, &self.cfg) {
            return false;
        }
        if was_active && o.state() == MessageState::Read {
            // The DONE-ACK was lost, but the READ says the message arrived.
            self.events.push_back(Event::Delivered { id });
        }
        self.settle_outbound(id, was_active, held);
        self.service_outbound(now, id);
        true
    }

    #[allow(clippy::too_many_arguments)] // one frame's fields, unpacked
    fn on_init(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: MessageId,
        reply: bool,
        length: u64,
        topic: &[u8],
    ) {
        let key = (src, id);
        let ack = |bus: &mut Self| {
            emit(
                &mut bus.transmits,
                dst,
                src,
                Frame::InitAck {
                    id,
                    reply,
                    length,
                    topic_len: topic.len() as u8,
                },
            );
        };
        if let Some(p) = self.partial.get_mut(&key) {
            if p.same_init(reply, length, topic) {
                p.expires = now + self.cfg.partial_idle_timeout;
                ack(self);
                return;
            }
            // A different message under the same id replaces it, as upstream.
            self.drop_partial(key);
        }
        if let Some(c) = self.completed.get_mut(&key) {
            if c.reply == reply && c.length == length && usize::from(c.topic_len) == topic.len() {
                c.expires = now + self.cfg.completed_memory;
                self.stats.duplicates += 1;
                ack(self);
                return;
            }
            self.forget_completed(key);
        }
        let checked =
            !reply || (self.cfg.check_unsolicited_replies && !self.reply_expected(id, src));
        if checked && !self.topics.allows(topic, IpAddr::V6(src)) {
            self.stats.refused_by_policy += 1;
            return;
        }
        if length > self.cfg.max_message_size {
            self.stats.refused_too_large += 1;
            return;
        }
        let source = self
            .partial_by_source
            .get(&prefix_64(src))
            .copied()
            .unwrap_or_default();
        if source.count >= self.cfg.max_partial_per_source
            || source.bytes + length > self.cfg.max_partial_bytes_per_source
            || self.partial.len() >= self.cfg.max_partial_total
        {
            self.stats.refused_partial_limit += 1;
            return;
        }
        if self.held.count >= self.cfg.max_inbox_messages
            || self.held.bytes + length > self.cfg.max_inbox_bytes
        {
            self.stats.refused_full += 1;
            return;
        }
        let expires = now + self.cfg.partial_idle_timeout;
        self.partial.insert(
            key,
            Partial::new(dst, reply, length, topic.to_vec(), expires),
        );
        self.timers
            .reset(TimerKey::Partial(src, id), None, Some(expires));
        let use_ = self.partial_by_source.entry(prefix_64(src)).or_default();
        use_.count += 1;
        use_.bytes += length;
        self.held.count += 1;
        self.held.bytes += length;
        ack(self);
    }

    fn forget_completed(&mut self, key: InKey) {
        if let Some(c) = self.completed.remove(&key) {
            self.timers
                .reset(TimerKey::Completed(key.0, key.1), Some(c.timer), None);
        }
    }

    /// Whether a REPLY with `id` from `src` answers something of ours.
    fn reply_expected(&self, id: MessageId, src: Ipv6Addr) -> bool {
        self.waiters.contains_key(&id)
            || self.outbound.get(&id).is_some_and(|o| same_64(o.dst, src))
    }

    /// Forgets a partial message and gives back its budget.
    fn drop_partial(&mut self, key: InKey) {
        let Some(p) = self.partial.remove(&key) else {
            return;
        };
        self.timers
            .reset(TimerKey::Partial(key.0, key.1), Some(p.timer), None);
        self.unaccount_partial(key.0, p.length);
        self.release(p.length);
    }

    fn unaccount_partial(&mut self, src: Ipv6Addr, length: u64) {
        let prefix = prefix_64(src);
        if let Some(u) = self.partial_by_source.get_mut(&prefix) {
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(length);
            if u.count == 0 {
                self.partial_by_source.remove(&prefix);
            }
        }
    }

    fn release(&mut self, bytes: u64) {
        self.held.count = self.held.count.saturating_sub(1);
        self.held.bytes = self.held.bytes.saturating_sub(bytes);
    }

    fn on_chunk(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: MessageId,
        (index, offset, size): (u64, u64, u64),
        data: &[u8],
    ) {
        let key = (src, id);
        if let Some(p) = self.partial.get_mut(&key) {
            if !p.store(index, offset, data, self.cfg.min_chunk_size as u64) {
                self.stats.bad_chunks += 1;
                return;
            }
            p.expires = now + self.cfg.partial_idle_timeout;
        } else if let Some(c) = self.completed.get_mut(&key) {
            c.expires = now + self.cfg.completed_memory;
            self.stats.duplicates += 1;
        } else {
            return;
        }
        emit(
            &mut self.transmits,
            dst,
            src,
            Frame::ChunkAck {
                id,
                index,
                offset,
                size,
            },
        );
    }

    #[allow(clippy::too_many_arguments)] // one frame's fields, unpacked
    fn on_done(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_key: PublicKey,
        id: MessageId,
        chunks: u64,
        checksum: [u8; CHECKSUM_LEN],
    ) {
        let key = (src, id);
        let ack = |bus: &mut Self| {
            emit(
                &mut bus.transmits,
                dst,
                src,
                Frame::DoneAck {
                    id,
                    chunks,
                    checksum,
                },
            );
        };
        if let Some(p) = self.partial.get(&key) {
            let Some(data) = p.assemble(chunks, &checksum) else {
                self.stats.bad_dones += 1;
                return;
            };
            let Some(p) = self.partial.remove(&key) else {
                return;
            };
            self.timers
                .reset(TimerKey::Partial(src, id), Some(p.timer), None);
            self.unaccount_partial(src, p.length);
            self.forget_completed(key);
            if self.completed.len() < self.cfg.max_completed {
                let expires = now + self.cfg.completed_memory;
                self.completed.insert(
                    key,
                    Completed {
                        reply: p.reply,
                        length: p.length,
                        topic_len: p.topic.len() as u8,
                        chunks,
                        checksum,
                        expires,
                        timer: expires,
                    },
                );
                self.timers
                    .reset(TimerKey::Completed(src, id), None, Some(expires));
            }
            ack(self);
            self.stats.delivered += 1;
            self.deliver(ReceivedMessage {
                id,
                reply: p.reply,
                src,
                src_key,
                dst: p.dst,
                topic: p.topic,
                payload: Bytes::from(data),
            });
        } else if let Some(c) = self.completed.get_mut(&key) {
            if c.chunks == chunks && c.checksum == checksum {
                c.expires = now + self.cfg.completed_memory;
                self.stats.duplicates += 1;
                ack(self);
            }
        }
    }

    /// Hands a completed message (already counted in the budget) to its reader.
    fn deliver(&mut self, msg: ReceivedMessage) {
        let id = msg.id;
        if msg.reply {
            if let Some(w) = self.waiters.get_mut(&id) {
                if w.reply.is_none() {
                    w.reply = Some(msg);
                    self.events.push_back(Event::ReplyReceived { id });
                    return;
                }
            }
        }
        if let Some(socket) = self.topics.forward_socket(&msg.topic) {
            let ticket = ForwardTicket(self.next_ticket);
            self.next_ticket += 1;
            self.events.push_back(Event::Forward {
                ticket,
                socket: socket.to_path_buf(),
                message: msg.clone(),
            });
            self.forwards.insert(ticket, msg);
            return;
        }
        self.inbox.push_back(msg);
        self.events.push_back(Event::MessageReceived { id });
    }

    // ----- readers ------------------------------------------------------------

    /// The oldest inbox message, with exactly `topic` if given (an empty topic is a
    /// topic), removed unless `peek`. Either way a READ goes to its sender.
    pub fn pop(&mut self, peek: bool, topic: Option<&[u8]>) -> Option<ReceivedMessage> {
        let at = self
            .inbox
            .iter()
            .position(|m| topic.map_or(true, |t| m.topic == t))?;
        let msg = if peek {
            self.inbox.get(at).cloned()?
        } else {
            let msg = self.inbox.remove(at)?;
            self.release(msg.payload.len() as u64);
            msg
        };
        emit(
            &mut self.transmits,
            msg.dst,
            msg.src,
            Frame::Read { id: msg.id },
        );
        Some(msg)
    }

    /// Routes a reply to `id` (a message we pushed) to a waiter until `until`
    /// instead of the inbox. Registering again moves the time.
    pub fn wait_for_reply(&mut self, id: MessageId, until: Instant) -> Result<(), TooManyWaiters> {
        let old = match self.waiters.get_mut(&id) {
            Some(w) => std::mem::replace(&mut w.until, until),
            None => {
                if self.waiters.len() >= self.cfg.max_reply_waiters {
                    return Err(TooManyWaiters);
                }
                self.waiters.insert(id, Waiter { until, reply: None });
                self.timers.reset(TimerKey::Waiter(id), None, Some(until));
                return Ok(());
            }
        };
        self.timers
            .reset(TimerKey::Waiter(id), Some(old), Some(until));
        Ok(())
    }

    /// The reply a waiter received, ending the wait; `None` if none arrived yet.
    pub fn take_reply(&mut self, id: MessageId) -> Option<ReceivedMessage> {
        let w = self.waiters.get(&id)?;
        w.reply.as_ref()?;
        let w = self.waiters.remove(&id)?;
        self.timers.reset(TimerKey::Waiter(id), Some(w.until), None);
        let msg = w.reply?;
        self.release(msg.payload.len() as u64);
        Some(msg)
    }

    /// Ends a wait. A reply that arrived meanwhile goes to the inbox.
    pub fn cancel_reply_wait(&mut self, id: MessageId) {
        if let Some(w) = self.waiters.remove(&id) {
            self.timers.reset(TimerKey::Waiter(id), Some(w.until), None);
            if let Some(msg) = w.reply {
                self.inbox.push_back(msg);
                self.events.push_back(Event::MessageReceived { id });
            }
        }
    }

    /// The forward socket of an [`Event::Forward`] answered. `reply` holds what
    /// was read back: if non-empty it is sent to the message's source as a reply;
    /// if `None` (connect, write or read failed) or empty, the message goes to the
    /// inbox instead (MESSAGES.md §7.3).
    pub fn handle_forward_result(
        &mut self,
        now: Instant,
        ticket: ForwardTicket,
        reply: Option<Bytes>,
        rng: &mut impl RngCore,
    ) {
        let Some(msg) = self.forwards.remove(&ticket) else {
            return;
        };
        match reply.filter(|r| !r.is_empty()) {
            Some(payload) => {
                self.release(msg.payload.len() as u64);
                // A refused reply (full outbound store) is lost, as the socket
                // already consumed the message.
                let _ = self.push(
                    now,
                    NewMessage {
                        src: msg.dst,
                        dst: msg.src,
                        topic: Vec::new(),
                        payload,
                        reply_to: Some(msg.id),
                        try_for: None,
                    },
                    rng,
                );
            }
            None => {
                let id = msg.id;
                self.inbox.push_back(msg);
                self.events.push_back(Event::MessageReceived { id });
            }
        }
    }

    // ----- time and outputs -----------------------------------------------------

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Outbound(id) => {
                    if let Some(o) = self.outbound.get_mut(&id) {
                        o.timer = None;
                    }
                    self.service_outbound(now, id);
                }
                // Idle timers are re-armed lazily: frames only move `expires`.
                TimerKey::Partial(src, id) => {
                    let Some(p) = self.partial.get_mut(&(src, id)) else {
                        continue;
                    };
                    if p.expires <= now {
                        self.stats.partial_expired += 1;
                        if let Some(p) = self.partial.remove(&(src, id)) {
                            self.unaccount_partial(src, p.length);
                            self.release(p.length);
                        }
                    } else {
                        p.timer = p.expires;
                        let at = p.expires;
                        self.timers.reset(key, None, Some(at));
                    }
                }
                TimerKey::Completed(src, id) => {
                    let Some(c) = self.completed.get_mut(&(src, id)) else {
                        continue;
                    };
                    if c.expires <= now {
                        self.completed.remove(&(src, id));
                    } else {
                        c.timer = c.expires;
                        let at = c.expires;
                        self.timers.reset(key, None, Some(at));
                    }
                }
                TimerKey::Waiter(id) => {
                    if let Some(w) = self.waiters.remove(&id) {
                        match w.reply {
                            Some(msg) => {
                                self.inbox.push_back(msg);
                                self.events.push_back(Event::MessageReceived { id });
                            }
                            None => self.events.push_back(Event::ReplyTimedOut { id }),
                        }
                    }
                }
            }
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`MessageBus::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}
