//! The reliable message bus, sans-IO.
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
//! Each item answers a defect of upstream's:
//!
//! * **Short last chunk**: we send `L mod 1300 ∈ 1..249` tails rebalanced so
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
//! * **Retransmission storm**: upstream resends everything unacknowledged every
//!   100 ms for 300 s and sends all chunks at once. We keep at most
//!   [`BusConfig::send_window`] chunks unacknowledged, resend after a timeout
//!   estimated from round trips (remembered per destination /64, so that each
//!   new message of a burst over a slow path starts from what the earlier ones
//!   measured), and back off to [`BusConfig::max_rto`] while
//!   nothing is acknowledged. The outbound store is bounded too. At most
//!   [`BusConfig::max_sending_per_destination`] messages to one /64 are being sent
//!   at once; the rest wait their turn instead of sending INITs the receiver would
//!   refuse for want of room and only retry after a timeout.
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
mod receive;
mod timers;
mod topics;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use rand_core::RngCore;

pub use topics::{TopicConfig, TopicConfigError, TopicRule};
pub use types::{
    Budget, BusConfig, BusStats, BusUsage, Event, ForwardTicket, MessageInfo, MessageState,
    NewMessage, PushError, ReceivedMessage, TooManyWaiters, Transmit,
};

use inbound::{Completed, Partial};
use outbound::{emit, NewOutbound, Outbound, RttEstimate};
use timers::{TimerKey, Timers};

use crate::identity::PublicKey;
use crate::time::Instant;
use crate::wire::message::{Frame, MessageId, MAX_TOPIC_LEN};

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    count: usize,
    bytes: u64,
}

/// The outbound messages to one destination /64 being sent, and those waiting
/// their turn ([`BusConfig::max_sending_per_destination`]).
#[derive(Debug, Default)]
struct Gate {
    sending: Usage,
    /// The send windows of the messages being sent
    /// ([`BusConfig::max_sending_window_per_destination`]).
    window: u64,
    /// The messages being sent (at most the gate's bound).
    active: Vec<MessageId>,
    /// Waiting to start, in push order. A message that ends while waiting
    /// (aborted, forgotten) stays until it reaches the front and is skipped there:
    /// removing it from the middle costs the queue's length, and a burst of
    /// 100,000 aborted at once would cost 100,000 times that.
    queued: VecDeque<MessageId>,
}

impl Gate {
    /// Whether a message of `len` bytes may start now. One always may when
    /// nothing is being sent, whatever its size.
    fn fits(&self, cfg: &BusConfig, len: u64) -> bool {
        self.sending.count == 0
            || (self.sending.count < cfg.max_sending_per_destination
                && self.sending.bytes + len <= cfg.max_sending_bytes_per_destination
                && self.window + window(cfg, len) <= cfg.max_sending_window_per_destination)
    }

    fn enter(&mut self, cfg: &BusConfig, id: MessageId, len: u64) {
        self.sending.count += 1;
        self.sending.bytes += len;
        self.window += window(cfg, len);
        self.active.push(id);
    }

    fn leave(&mut self, cfg: &BusConfig, id: MessageId, len: u64) {
        self.sending.count = self.sending.count.saturating_sub(1);
        self.sending.bytes = self.sending.bytes.saturating_sub(len);
        self.window = self.window.saturating_sub(window(cfg, len));
        if let Some(i) = self.active.iter().position(|&a| a == id) {
            self.active.swap_remove(i);
        }
    }
}

/// The most a message of `len` bytes has unacknowledged at once.
fn window(cfg: &BusConfig, len: u64) -> u64 {
    len.min(cfg.send_window.max(1) as u64 * cfg.chunk_size as u64)
}

/// Destinations whose round trip is remembered for the next message to them, at
/// most. Only acknowledgements of messages we chose to send make entries.
const PATH_MEMORY: usize = 1024;

/// How long a destination's round trip is remembered after its last sample.
const PATH_MEMORY_FOR: Duration = Duration::from_secs(120);

/// The round trip to one destination /64, shared by the messages sent to it.
#[derive(Debug)]
struct PathMemory {
    estimate: RttEstimate,
    updated: Instant,
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

/// Adds a round-trip sample to the memory of destination `prefix`. A new
/// destination in a full memory takes the place of the one sampled longest ago.
fn remember_path(
    paths: &mut BTreeMap<u64, PathMemory>,
    prefix: u64,
    sample: Duration,
    now: Instant,
) {
    if let Some(p) = paths.get_mut(&prefix) {
        if now >= p.updated + PATH_MEMORY_FOR {
            // Too old to go on from: start over.
            p.estimate = RttEstimate::default();
        }
        p.estimate.sample(sample);
        p.updated = now;
        return;
    }
    if paths.len() >= PATH_MEMORY {
        if let Some(oldest) = paths.iter().min_by_key(|(_, p)| p.updated).map(|(&k, _)| k) {
            paths.remove(&oldest);
        }
    }
    let mut estimate = RttEstimate::default();
    estimate.sample(sample);
    paths.insert(
        prefix,
        PathMemory {
            estimate,
            updated: now,
        },
    );
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
    /// Per destination /64: messages being sent and messages waiting to start.
    gates: BTreeMap<u64, Gate>,
    /// Per destination /64: the round trip its acknowledgements measured, so that
    /// a new message starts from it instead of from [`BusConfig::initial_rto`].
    paths: BTreeMap<u64, PathMemory>,
    /// Messages that just got through their gate, to service once the current
    /// one is done (a loop, not recursion: starting one may finish another).
    to_start: Vec<MessageId>,
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
            gates: BTreeMap::new(),
            paths: BTreeMap::new(),
            to_start: Vec::new(),
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
        // Bytes first: they are what could exhaust the node.
        let max_bytes = self.cfg.max_outbound_bytes as u64;
        if self.outbound_active.bytes + len > max_bytes {
            return Err(PushError::QueueFull {
                budget: Budget::Bytes,
                used: self.outbound_active.bytes,
                limit: max_bytes,
            });
        }
        if self.outbound_active.count >= self.cfg.max_outbound_messages {
            return Err(PushError::QueueFull {
                budget: Budget::Messages,
                used: self.outbound_active.count as u64,
                limit: self.cfg.max_outbound_messages as u64,
            });
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
                None => {
                    return Err(PushError::QueueFull {
                        budget: Budget::Statuses,
                        used: self.outbound.len() as u64,
                        limit: self.cfg.max_statuses as u64,
                    })
                }
            }
        }
        let try_for = msg.try_for.unwrap_or(self.cfg.default_try_for);
        let mut o = Outbound::new(
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
        let gate = self.gates.entry(prefix_64(o.dst)).or_default();
        if gate.fits(&self.cfg, len) {
            gate.enter(&self.cfg, id, len);
        } else {
            o.queued = true;
            gate.queued.push_back(id);
        }
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
            self.leave_gate(id, o.dst, o.queued, o.len);
        } else {
            self.finished.remove(&(o.expires, id));
        }
    }

    /// Services an outbound message and re-arms its timer, then the messages its
    /// end let through their gate.
    fn service_outbound(&mut self, now: Instant, id: MessageId) {
        self.service_one(now, id);
        while let Some(next) = self.to_start.pop() {
            self.service_one(now, next);
        }
    }

    fn service_one(&mut self, now: Instant, id: MessageId) {
        let Some(o) = self.outbound.get_mut(&id) else {
            return;
        };
        if o.is_starting() {
            if let Some(p) = self
                .paths
                .get(&prefix_64(o.dst))
                .filter(|p| now < p.updated + PATH_MEMORY_FOR)
            {
                o.start(&p.estimate, &self.cfg);
            }
        }
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
            let (dst, queued, len) = (o.dst, o.queued, o.len);
            self.leave_gate(id, dst, queued, len);
        }
    }

    /// An outbound message of `len` bytes to `dst` stopped being active: it gives
    /// back its place at the gate, or leaves the queue if it never got through.
    /// The next queued message to that /64 that fits goes to `to_start`.
    fn leave_gate(&mut self, id: MessageId, dst: Ipv6Addr, queued: bool, len: u64) {
        let prefix = prefix_64(dst);
        let Some(gate) = self.gates.get_mut(&prefix) else {
            return;
        };
        // A message that ends while queued is skipped when it reaches the front.
        if !queued {
            gate.leave(&self.cfg, id, len);
        }
        while let Some(&next) = gate.queued.front() {
            let Some(o) = self
                .outbound
                .get_mut(&next)
                .filter(|o| o.queued && o.is_active())
            else {
                gate.queued.pop_front();
                continue;
            };
            if !gate.fits(&self.cfg, o.len) {
                break;
            }
            gate.queued.pop_front();
            gate.enter(&self.cfg, next, o.len);
            o.queued = false;
            self.to_start.push(next);
        }
        if gate.sending.count == 0 && gate.queued.is_empty() {
            self.gates.remove(&prefix);
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
                self.retry_refused_init(now, src);
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
        if let Some(sample) = o.take_rtt_sample() {
            remember_path(&mut self.paths, prefix_64(src), sample, now);
        }
        if was_active && o.state() == MessageState::Read {
            // The DONE-ACK was lost, but the READ says the message arrived.
            self.events.push_back(Event::Delivered { id });
        }
        self.settle_outbound(id, was_active, held);
        self.service_outbound(now, id);
        true
    }

    /// A READ from `src` says a reader there took a message, so its inbox has
    /// room for one more: one of our messages to it whose INIT timed out (refused
    /// for want of room, most likely) is offered again now. Without this, a
    /// sender backed off to [`BusConfig::max_rto`] leaves a reader that emptied
    /// the inbox with nothing to read for up to that long.
    fn retry_refused_init(&mut self, now: Instant, src: Ipv6Addr) {
        let Some(gate) = self.gates.get(&prefix_64(src)) else {
            return;
        };
        for &id in &gate.active {
            let Some(o) = self.outbound.get_mut(&id).filter(|o| o.dst == src) else {
                continue;
            };
            if o.retry_refused_init(now, &mut self.transmits) {
                self.stats.retransmissions += 1;
                return;
            }
        }
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
    /// inbox instead.
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
