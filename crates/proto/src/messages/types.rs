//! The bus's public types: configuration, what goes in and comes out, counters.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::identity::PublicKey;
use crate::time::Instant;
use crate::wire::message::MessageId;

#[cfg(doc)]
use super::MessageBus;

/// Every timer and bound of the bus. [`Default`] gives upstream's timers where
/// peers can observe them and our bounds where upstream has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Chunk size (1300). Keep it: upstream receivers need `ceil(len / 1300)`
    /// chunks.
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
    /// Outbound messages still being sent (100,000). The bytes bound is the one
    /// that protects memory; this one only caps the per-message overhead (README,
    /// "The message bus", gives its measured size), and is high enough that a burst
    /// of small messages well inside the byte budget is accepted.
    pub max_outbound_messages: usize,
    /// Outbound statuses kept, finished ones included (131,072, above
    /// [`BusConfig::max_outbound_messages`] so statuses never refuse a message the
    /// budgets allow); the oldest finished is forgotten first.
    pub max_statuses: usize,
    /// Outbound messages to one destination /64 being sent at once (256, what a
    /// receiver with our default [`BusConfig::max_partial_per_source`] takes;
    /// upstream receivers take any number). Later ones wait, Pending, without
    /// sending their INIT, and start in push order as earlier ones finish: INITs a
    /// receiver refuses for want of room are only retried after their
    /// retransmission timeout, so a burst past the receiver's limit would
    /// otherwise crawl. Each message costs a few round trips (INIT, chunks, DONE,
    /// each acknowledged), so this bound is also how many round trips' worth of
    /// small messages are pipelined: at 16 a 100 B message burst ran at 5,000
    /// messages a second over a sub-millisecond QUIC link, and at 53 over 100 ms.
    pub max_sending_per_destination: usize,
    /// Payload bytes of the messages being sent at once to one destination /64 (32
    /// MiB, our default [`BusConfig::max_partial_bytes_per_source`]); one message
    /// always may start, whatever its size.
    pub max_sending_bytes_per_destination: u64,
    /// Send windows of the messages being sent at once to one destination /64, in
    /// bytes: each counts the most it can have unacknowledged,
    /// min(length, [`BusConfig::send_window`] × [`BusConfig::chunk_size`]) (2.54
    /// MB: 16 full windows). Many small messages start together; large ones no
    /// more than 16 at a time, so a path without room for them is not flooded.
    pub max_sending_window_per_destination: u64,
    /// Bytes received and held: inbox, reply slots, forwards in flight, and the
    /// declared length of every partial message (64 MiB).
    pub max_inbox_bytes: u64,
    /// Messages received and held, counted like the bytes (100,000; as for
    /// [`BusConfig::max_outbound_messages`], the bytes bound comes first).
    pub max_inbox_messages: usize,
    /// Partial messages from one source /64 (256; their declared bytes are
    /// bounded separately).
    pub max_partial_per_source: usize,
    /// Declared bytes of partial messages from one source /64 (32 MiB).
    pub max_partial_bytes_per_source: u64,
    /// Partial messages in total (4096).
    pub max_partial_total: usize,
    /// A partial message with no frame for this long is dropped (300 s: no sender
    /// with upstream's window is still trying by then).
    pub partial_idle_timeout: Duration,
    /// How long a delivered message is remembered after its last frame, to
    /// acknowledge retransmissions (300 s).
    pub completed_memory: Duration,
    /// Delivered messages remembered at most (131,072, above
    /// [`BusConfig::max_inbox_messages`]); past it new ones are not.
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
            max_outbound_messages: 100_000,
            max_statuses: 131_072,
            max_sending_per_destination: 256,
            max_sending_bytes_per_destination: 32 << 20,
            max_sending_window_per_destination: 16 * 128 * 1300,
            max_inbox_bytes: 64 << 20,
            max_inbox_messages: 100_000,
            max_partial_per_source: 256,
            max_partial_bytes_per_source: 32 << 20,
            max_partial_total: 4096,
            partial_idle_timeout: Duration::from_secs(300),
            completed_memory: Duration::from_secs(300),
            max_completed: 131_072,
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
    /// An outbound budget is full; try again later.
    #[error("outbound {budget} budget full: {used} of {limit}{}", budget.unit())]
    QueueFull {
        /// The budget that refused.
        budget: Budget,
        /// How much of it is in use (for bytes, without the refused message).
        used: u64,
        /// Its size.
        limit: u64,
    },
    /// A reply with this id is still being sent.
    #[error("a message with this id is still being sent")]
    IdInUse,
}

/// An outbound budget of [`BusConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// Payload bytes being sent ([`BusConfig::max_outbound_bytes`]).
    Bytes,
    /// Messages being sent ([`BusConfig::max_outbound_messages`]).
    Messages,
    /// Statuses kept, none of them finished ([`BusConfig::max_statuses`]).
    Statuses,
}

impl Budget {
    /// Its name, as the API reports it.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Bytes => "bytes",
            Budget::Messages => "messages",
            Budget::Statuses => "statuses",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Budget::Bytes => " bytes",
            Budget::Messages | Budget::Statuses => " messages",
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
pub struct ForwardTicket(pub(super) u64);

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
    /// Write `message.payload` to the Unix socket `socket`, then
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
