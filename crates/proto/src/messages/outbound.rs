//! One outbound message and its retransmission.
//!
//! The states and frames are upstream's: INIT until acknowledged, then the chunks,
//! then DONE until acknowledged, ABORTED once at the deadline. Timing differs,
//! compatibly (the receiver cannot tell): upstream resends everything unacknowledged
//! every 100 ms and sends all chunks at once; we send at most
//! [`BusConfig::send_window`] chunks ahead of the acknowledgements, resend after a
//! retransmission timeout estimated from acknowledgement round trips (RFC 6298
//! style, never below [`BusConfig::min_rto`]), and double that timeout while
//! nothing is acknowledged, up to [`BusConfig::max_rto`]. A silent receiver thus
//! costs one frame per second per message instead of ten, and a large message does
//! not flood a slow path.

use std::collections::{BTreeSet, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;

use super::chunking::{self, ChunkSpan};
use super::{BusConfig, BusStats, MessageState, Transmit};
use crate::time::Instant;
use crate::wire::message::{Frame, MessageId, CHECKSUM_LEN};

/// Queues `frame` from `src` to `dst`.
pub(super) fn emit(out: &mut VecDeque<Transmit>, src: Ipv6Addr, dst: Ipv6Addr, frame: Frame<'_>) {
    let mut bytes = Vec::with_capacity(frame.encoded_len());
    frame.encode(&mut bytes);
    out.push_back(Transmit {
        src,
        dst,
        frame: bytes,
    });
}

/// A smoothed round trip and its variation (RFC 6298), from acknowledgements.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RttEstimate {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimate {
    pub(super) fn sample(&mut self, s: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(s);
                self.rttvar = s / 2;
            }
            Some(srtt) => {
                let delta = if srtt > s { srtt - s } else { s - srtt };
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + s) / 8);
            }
        }
    }

    /// The retransmission timeout the estimate gives, once it has a sample.
    fn rto(&self, cfg: &BusConfig) -> Option<Duration> {
        // A quarter of the round trip at least on top of it: with steady samples
        // the variance vanishes, and a timeout equal to the round trip fires just
        // as the acknowledgements arrive.
        let srtt = self.srtt?;
        let margin = (self.rttvar * 4).max(srtt / 4);
        Some((srtt + margin).clamp(cfg.min_rto, cfg.max_rto))
    }
}

/// Round-trip estimate and the current retransmission timeout of one message.
#[derive(Debug)]
struct Rtt {
    estimate: RttEstimate,
    rto: Duration,
    backed_off_at: Option<Instant>,
    /// The last unambiguous sample (an acknowledgement of something sent once),
    /// not yet handed to the destination's shared estimate.
    fresh: Option<Duration>,
}

impl Rtt {
    fn new(cfg: &BusConfig) -> Self {
        Self {
            estimate: RttEstimate::default(),
            rto: cfg.initial_rto.clamp(cfg.min_rto, cfg.max_rto),
            backed_off_at: None,
            fresh: None,
        }
    }

    /// Takes `path` (what earlier messages to the same destination measured) as
    /// this message's starting estimate, if it has one.
    fn seed(&mut self, path: &RttEstimate, cfg: &BusConfig) {
        if let Some(rto) = path.rto(cfg) {
            self.estimate = *path;
            self.rto = rto;
        }
    }

    fn sample(&mut self, s: Duration, unambiguous: bool) {
        self.estimate.sample(s);
        if unambiguous {
            self.fresh = Some(s);
        }
    }

    /// Something was acknowledged: back to the estimate. Without one yet, a
    /// backed-off timeout stays (Karn): the path may simply be slower than it.
    fn progress(&mut self, cfg: &BusConfig) {
        if let Some(rto) = self.estimate.rto(cfg) {
            self.rto = rto;
        }
        self.backed_off_at = None;
    }

    /// A retransmission timer fired: double, at most once per timeout period.
    fn timed_out(&mut self, now: Instant, cfg: &BusConfig) {
        if self.backed_off_at.map_or(true, |t| now >= t + self.rto) {
            self.rto = (self.rto * 2).min(cfg.max_rto);
            self.backed_off_at = Some(now);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ChunkSend {
    span: ChunkSpan,
    sent: Option<Instant>,
    resent: bool,
    acked: bool,
}

#[derive(Debug)]
enum Phase {
    /// INIT sent (or about to be), not acknowledged.
    Init {
        first_sent: Option<Instant>,
        last_sent: Option<Instant>,
    },
    /// INIT acknowledged: chunks, then DONE.
    Sending {
        chunks: Vec<ChunkSend>,
        /// Sent, unacknowledged chunks by last send time.
        in_flight: BTreeSet<(Instant, usize)>,
        next_unsent: usize,
        acked: usize,
        done_sent: Option<Instant>,
    },
    Received,
    Read,
    Aborted,
}

/// What [`Outbound::service`] did.
pub(super) struct Serviced {
    /// When to service the message again.
    pub(super) wake: Instant,
    /// The deadline passed: the message was just aborted.
    pub(super) aborted: bool,
    /// The status retention ended: forget the message.
    pub(super) expired: bool,
}

/// An outbound message.
#[derive(Debug)]
pub(super) struct Outbound {
    pub(super) id: MessageId,
    pub(super) src: Ipv6Addr,
    pub(super) dst: Ipv6Addr,
    topic: Vec<u8>,
    reply: bool,
    /// The payload while the message is active; empty afterwards.
    data: Bytes,
    pub(super) len: u64,
    checksum: [u8; CHECKSUM_LEN],
    pub(super) created: Instant,
    pub(super) deadline: Instant,
    pub(super) expires: Instant,
    phase: Phase,
    rtt: Rtt,
    /// The deadline registered in the timer table.
    pub(super) timer: Option<Instant>,
    /// Waiting for its destination's gate
    /// ([`BusConfig::max_sending_per_destination`]): nothing is sent yet.
    pub(super) queued: bool,
}

/// Parameters of a new outbound message.
pub(super) struct NewOutbound {
    pub(super) id: MessageId,
    pub(super) src: Ipv6Addr,
    pub(super) dst: Ipv6Addr,
    pub(super) topic: Vec<u8>,
    pub(super) reply: bool,
    pub(super) data: Bytes,
    pub(super) deadline: Instant,
}

impl Outbound {
    pub(super) fn new(now: Instant, m: NewOutbound, cfg: &BusConfig) -> Self {
        Self {
            id: m.id,
            src: m.src,
            dst: m.dst,
            topic: m.topic,
            reply: m.reply,
            len: m.data.len() as u64,
            checksum: *blake3::hash(&m.data).as_bytes(),
            data: m.data,
            created: now,
            deadline: m.deadline,
            // Upstream keeps a status 600 s after push (its deadline is 300 s); a
            // longer deadline keeps it half the retention past the deadline.
            expires: (now + cfg.status_retention).max(m.deadline + cfg.status_retention / 2),
            phase: Phase::Init {
                first_sent: None,
                last_sent: None,
            },
            rtt: Rtt::new(cfg),
            timer: None,
            queued: false,
        }
    }

    /// The message is about to send its first INIT: it starts from the round
    /// trip earlier messages to that destination measured, so that on a path
    /// slower than [`BusConfig::initial_rto`] (a long one, or a busy receiver)
    /// each new message of a burst does not send its INIT twice to learn it.
    pub(super) fn start(&mut self, path: &RttEstimate, cfg: &BusConfig) {
        self.rtt.seed(path, cfg);
    }

    /// Whether the message is about to send its first INIT (it is through its
    /// gate and has sent nothing yet).
    pub(super) fn is_starting(&self) -> bool {
        !self.queued
            && matches!(
                self.phase,
                Phase::Init {
                    first_sent: None,
                    ..
                }
            )
    }

    /// The round trip the last acknowledgement measured, for the destination's
    /// shared estimate; `None` if it measured nothing unambiguous.
    pub(super) fn take_rtt_sample(&mut self) -> Option<Duration> {
        self.rtt.fresh.take()
    }

    /// Whether the message still holds its payload and sends frames.
    pub(super) fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Init { .. } | Phase::Sending { .. })
    }

    /// Bytes of payload held.
    pub(super) fn held_bytes(&self) -> usize {
        self.data.len()
    }

    pub(super) fn state(&self) -> MessageState {
        match &self.phase {
            Phase::Init { .. } => MessageState::Pending,
            Phase::Sending {
                chunks,
                in_flight,
                next_unsent,
                acked,
                ..
            } => {
                let never = chunks.len() - next_unsent;
                MessageState::Sending {
                    pending: never as u64,
                    sent: in_flight.len() as u64,
                    acked: *acked as u64,
                }
            }
            Phase::Received => MessageState::Received,
            Phase::Read => MessageState::Read,
            Phase::Aborted => MessageState::Aborted,
        }
    }

    fn finish(&mut self, phase: Phase) {
        self.phase = phase;
        self.data = Bytes::new();
        self.topic = Vec::new();
    }

    /// Sends what is due at `now` and says when to come back.
    pub(super) fn service(
        &mut self,
        now: Instant,
        cfg: &BusConfig,
        out: &mut VecDeque<Transmit>,
        stats: &mut BusStats,
    ) -> Serviced {
        let mut aborted = false;
        if self.is_active() && now >= self.deadline {
            // A message that never sent its INIT (still queued, or let through its
            // gate only now) has nothing to abort at the receiver.
            let silent = matches!(
                self.phase,
                Phase::Init {
                    first_sent: None,
                    ..
                }
            );
            if !self.queued && !silent {
                emit(out, self.src, self.dst, Frame::Aborted { id: self.id });
            }
            self.finish(Phase::Aborted);
            stats.aborted += 1;
            aborted = true;
        }
        if now >= self.expires {
            return Serviced {
                wake: now,
                aborted,
                expired: true,
            };
        }
        let (src, dst, id) = (self.src, self.dst, self.id);
        let rto = self.rtt.rto;
        let mut timed_out = false;
        let mut wake = self.expires;
        match &mut self.phase {
            Phase::Init {
                first_sent,
                last_sent,
            } => {
                if !self.queued && due(*last_sent, now, rto) {
                    if last_sent.is_some() {
                        timed_out = true;
                        stats.retransmissions += 1;
                    }
                    emit(
                        out,
                        src,
                        dst,
                        Frame::Init {
                            id,
                            reply: self.reply,
                            length: self.len,
                            topic: &self.topic,
                        },
                    );
                    first_sent.get_or_insert(now);
                    *last_sent = Some(now);
                }
            }
            Phase::Sending {
                chunks,
                in_flight,
                next_unsent,
                acked,
                done_sent,
            } => {
                // Resend what timed out.
                while let Some(&(sent, i)) = in_flight.first() {
                    if now < sent + rto {
                        break;
                    }
                    in_flight.pop_first();
                    let c = &mut chunks[i];
                    send_chunk(out, src, dst, id, i, c.span, &self.data);
                    c.sent = Some(now);
                    c.resent = true;
                    in_flight.insert((now, i));
                    timed_out = true;
                    stats.retransmissions += 1;
                }
                // Fill the window.
                while in_flight.len() < cfg.send_window.max(1) && *next_unsent < chunks.len() {
                    let i = *next_unsent;
                    let c = &mut chunks[i];
                    send_chunk(out, src, dst, id, i, c.span, &self.data);
                    c.sent = Some(now);
                    in_flight.insert((now, i));
                    *next_unsent += 1;
                }
                if *acked == chunks.len() && due(*done_sent, now, rto) {
                    if done_sent.is_some() {
                        timed_out = true;
                        stats.retransmissions += 1;
                    }
                    emit(
                        out,
                        src,
                        dst,
                        Frame::Done {
                            id,
                            chunks: chunks.len() as u64,
                            checksum: self.checksum,
                        },
                    );
                    *done_sent = Some(now);
                }
            }
            Phase::Received | Phase::Read | Phase::Aborted => {}
        }
        if timed_out {
            self.rtt.timed_out(now, cfg);
        }
        let rto = self.rtt.rto;
        match &self.phase {
            Phase::Init { last_sent, .. } => {
                if let Some(t) = last_sent {
                    wake = wake.min(*t + rto);
                }
                wake = wake.min(self.deadline);
            }
            Phase::Sending {
                in_flight,
                done_sent,
                ..
            } => {
                if let Some(&(t, _)) = in_flight.first() {
                    wake = wake.min(t + rto);
                }
                if let Some(t) = done_sent {
                    wake = wake.min(*t + rto);
                }
                wake = wake.min(self.deadline);
            }
            Phase::Received | Phase::Read | Phase::Aborted => {}
        }
        Serviced {
            wake: wake.max(now + Duration::from_millis(1)),
            aborted,
            expired: false,
        }
    }

    /// The receiver just made room (it sent a READ: a reader took a message): if
    /// this message's INIT went unanswered long enough to time out at least once,
    /// likely refused for want of room, send it again now instead of at the end of
    /// its backed-off timeout. Returns whether it was sent.
    pub(super) fn retry_refused_init(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        let Phase::Init { last_sent, .. } = &mut self.phase else {
            return false;
        };
        if self.queued || last_sent.is_none() || self.rtt.backed_off_at.is_none() {
            return false;
        }
        *last_sent = Some(now);
        emit(
            out,
            self.src,
            self.dst,
            Frame::Init {
                id: self.id,
                reply: self.reply,
                length: self.len,
                topic: &self.topic,
            },
        );
        true
    }

    /// INIT-ACK: start sending chunks. Returns whether anything changed.
    pub(super) fn on_init_ack(&mut self, now: Instant, cfg: &BusConfig) -> bool {
        let Phase::Init {
            first_sent,
            last_sent,
        } = self.phase
        else {
            return false;
        };
        // Timed from the first INIT even if it was resent: the ACK may answer a
        // later copy, so this errs long, the safe side, and it keeps a path slower
        // than the initial timeout from having every chunk sent twice. Only an
        // INIT sent once measures the path for the messages after this one.
        if let Some(t) = first_sent {
            self.rtt.sample(now - t, first_sent == last_sent);
        }
        self.rtt.progress(cfg);
        let chunks = chunking::layout(self.len, cfg.chunk_size as u64, cfg.min_chunk_size as u64)
            .into_iter()
            .map(|span| ChunkSend {
                span,
                sent: None,
                resent: false,
                acked: false,
            })
            .collect();
        self.phase = Phase::Sending {
            chunks,
            in_flight: BTreeSet::new(),
            next_unsent: 0,
            acked: 0,
            done_sent: None,
        };
        true
    }

    /// CHUNK-ACK echoing `index`, `offset` and `size`. Returns whether it
    /// acknowledged a chunk for the first time.
    pub(super) fn on_chunk_ack(
        &mut self,
        now: Instant,
        cfg: &BusConfig,
        index: u64,
        offset: u64,
        size: u64,
    ) -> bool {
        let Phase::Sending {
            chunks,
            in_flight,
            acked,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        let Some(i) = usize::try_from(index).ok().filter(|&i| i < chunks.len()) else {
            return false;
        };
        let c = &mut chunks[i];
        if c.acked || c.span != (ChunkSpan { offset, size }) {
            return false;
        }
        let Some(sent) = c.sent else {
            return false;
        };
        c.acked = true;
        *acked += 1;
        in_flight.remove(&(sent, i));
        if !c.resent {
            self.rtt.sample(now - sent, true);
        }
        self.rtt.progress(cfg);
        true
    }

    /// DONE-ACK. Returns whether the message just became received.
    pub(super) fn on_done_ack(&mut self, chunk_count: u64, checksum: &[u8; CHECKSUM_LEN]) -> bool {
        match &self.phase {
            Phase::Sending {
                chunks, done_sent, ..
            } if done_sent.is_some()
                && chunks.len() as u64 == chunk_count
                && *checksum == self.checksum =>
            {
                self.finish(Phase::Received);
                true
            }
            _ => false,
        }
    }

    /// READ. Returns whether the message just became read. A READ while our DONE
    /// awaits its acknowledgement means the DONE-ACK was lost: the message arrived.
    pub(super) fn on_read(&mut self) -> bool {
        match &self.phase {
            Phase::Received => {
                self.phase = Phase::Read;
                true
            }
            Phase::Sending { done_sent, .. } if done_sent.is_some() => {
                self.finish(Phase::Read);
                true
            }
            _ => false,
        }
    }
}

/// Whether something last sent at `last` (never: `None`) is due again.
fn due(last: Option<Instant>, now: Instant, rto: Duration) -> bool {
    match last {
        None => true,
        Some(t) => now >= t + rto,
    }
}

fn send_chunk(
    out: &mut VecDeque<Transmit>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    id: MessageId,
    index: usize,
    span: ChunkSpan,
    data: &Bytes,
) {
    // Spans come from `chunking::layout(data.len())`, so they lie inside `data`.
    let start = usize::try_from(span.offset).unwrap_or(usize::MAX);
    let end = usize::try_from(span.offset + span.size).unwrap_or(usize::MAX);
    let Some(bytes) = data.get(start..end) else {
        return;
    };
    emit(
        out,
        src,
        dst,
        Frame::Chunk {
            id,
            index: index as u64,
            offset: span.offset,
            size: span.size,
            data: bytes,
        },
    );
}
