//! The message bus driven by a script of operations read from the input: frames
//! from three sources (two in one /64), pushes, pops, reply waits, forward results,
//! clock steps with timeouts, and frames the bus sent played back to it as if the
//! other side had answered (so the fuzzer reaches whole exchanges without forging
//! checksums). The bounds are small so they are reached. After every operation the
//! bus's usage must stay within its configuration.
#![no_main]

use std::net::Ipv6Addr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mycelium_proto::messages::{
    BusConfig, Event, ForwardTicket, MessageBus, NewMessage, TopicConfig, Transmit,
};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::{PublicKey, SecretKey};

const OWN: Ipv6Addr = Ipv6Addr::new(0x400, 0, 0, 1, 0, 0, 0, 1);
/// Peers: two addresses in one /64, one in another.
const PEERS: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x400, 0, 0, 2, 0, 0, 0, 1),
    Ipv6Addr::new(0x400, 0, 0, 2, 0, 0, 0, 2),
    Ipv6Addr::new(0x5a6, 0, 0, 3, 0, 0, 0, 1),
];
/// Frames the bus sent, kept to play back.
const KEPT: usize = 64;
const TICKETS: usize = 16;
const IDS: usize = 16;

fn keys() -> &'static [PublicKey; 3] {
    static KEYS: OnceLock<[PublicKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [1u8, 2, 3].map(|b| SecretKey::from_bytes([b; 32]).public_key()))
}

fn config() -> BusConfig {
    BusConfig {
        send_window: 4,
        max_message_size: 16 << 10,
        max_outbound_bytes: 32 << 10,
        max_outbound_messages: 6,
        max_statuses: 8,
        max_sending_per_destination: 2,
        max_sending_bytes_per_destination: 12 << 10,
        max_sending_window_per_destination: 8 << 10,
        max_inbox_bytes: 24 << 10,
        max_inbox_messages: 6,
        max_partial_per_source: 3,
        max_partial_bytes_per_source: 20 << 10,
        max_partial_total: 4,
        max_completed: 8,
        max_reply_waiters: 3,
        ..BusConfig::default()
    }
}

/// A counter, not a random generator: the ids the bus draws repeat across runs.
struct Counter(u64);

impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

struct Harness {
    bus: MessageBus,
    cfg: BusConfig,
    now: Instant,
    rng: Counter,
    kept: Vec<Transmit>,
    tickets: Vec<ForwardTicket>,
    /// Ids of messages we pushed or received, for replies and waits.
    ids: Vec<MessageId>,
}

impl Harness {
    fn remember(&mut self, id: MessageId) {
        if self.ids.len() == IDS {
            self.ids.remove(0);
        }
        self.ids.push(id);
    }

    fn id(&self, sel: u8) -> MessageId {
        match self.ids.len() {
            0 => MessageId([sel; 8]),
            n => self.ids[usize::from(sel) % n],
        }
    }

    /// Drains every output, keeping the latest frames and forward tickets.
    fn drain(&mut self) {
        while let Some(t) = self.bus.poll_transmit() {
            assert!(
                t.src == OWN || PEERS.contains(&t.src),
                "sent from {}",
                t.src
            );
            if self.kept.len() == KEPT {
                self.kept.remove(0);
            }
            self.kept.push(t);
        }
        while let Some(e) = self.bus.poll_event() {
            match e {
                Event::Forward { ticket, .. } => {
                    if self.tickets.len() < TICKETS {
                        self.tickets.push(ticket);
                    } else {
                        // Nobody answers: the message goes to the inbox.
                        self.bus
                            .handle_forward_result(self.now, ticket, None, &mut self.rng);
                    }
                }
                Event::MessageReceived { id } | Event::ReplyReceived { id } => self.remember(id),
                _ => {}
            }
        }
    }

    fn check(&self) {
        let u = self.bus.usage();
        let c = &self.cfg;
        assert!(u.sending <= c.max_outbound_messages, "{u:?}");
        assert!(u.sending_bytes <= c.max_outbound_bytes as u64, "{u:?}");
        assert!(u.sending <= u.statuses, "{u:?}");
        assert!(u.statuses <= c.max_statuses.max(1), "{u:?}");
        assert!(u.partial <= c.max_partial_total, "{u:?}");
        assert!(u.held <= c.max_inbox_messages, "{u:?}");
        assert!(u.held_bytes <= c.max_inbox_bytes, "{u:?}");
        assert!(u.completed <= c.max_completed, "{u:?}");
        assert!(u.waiters <= c.max_reply_waiters, "{u:?}");
        // Everything held is in the inbox, a forward, a partial message or a reply
        // slot; without waiters there are no reply slots.
        let parts = u.inbox + u.forwards + u.partial;
        assert!(parts <= u.held, "{u:?}");
        if u.waiters == 0 {
            assert_eq!(parts, u.held, "{u:?}");
        }
        assert_eq!(u.forwards, self.tickets.len(), "{u:?}");
        if let Some(t) = self.bus.poll_timeout() {
            // Timers never lie far in the past: `handle_timeout` ran at `now`.
            assert!(t > self.now, "timer {t:?} due at {:?} survived", self.now);
        }
    }
}

fn topics(sel: u8) -> TopicConfig {
    let mut t = TopicConfig::default();
    if sel & 1 != 0 {
        t.set_default_accept(false);
    }
    if sel & 2 != 0 {
        t.add_source(b"t".to_vec(), mycelium_proto::Subnet::v6_64(PEERS[0]));
    }
    if sel & 4 != 0 {
        t.add_topic(b"f".to_vec());
        t.add_source(b"f".to_vec(), mycelium_proto::Subnet::v6_64(PEERS[2]));
        t.set_forward_socket(b"f", "/nonexistent/forward.sock".into());
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(setup) = input.byte() else {
        return;
    };
    let cfg = config();
    let mut h = Harness {
        bus: MessageBus::new(cfg.clone(), topics(setup)),
        cfg,
        now: Instant::from_epoch(Duration::from_secs(1)),
        rng: Counter(u64::from(setup)),
        kept: Vec::new(),
        tickets: Vec::new(),
        ids: Vec::new(),
    };
    while let Some(op) = input.byte() {
        match op % 10 {
            // A frame from a peer.
            0 | 1 => {
                let Some(sel) = input.byte() else { break };
                let Some(len) = input.u16() else { break };
                let frame = input.take(usize::from(len));
                let p = usize::from(sel) % PEERS.len();
                h.bus.handle_frame(h.now, PEERS[p], OWN, keys()[p], frame);
            }
            // A frame we sent, answered by its receiver: delivered to us with the
            // addresses swapped, optionally with one byte changed.
            2 | 3 => {
                let Some(sel) = input.byte() else { break };
                let Some(flip) = input.u16() else { break };
                if h.kept.is_empty() {
                    continue;
                }
                let t = h.kept.remove(usize::from(sel) % h.kept.len());
                let mut frame = t.frame;
                if op % 10 == 3 && !frame.is_empty() {
                    let at = usize::from(flip >> 8) % frame.len();
                    frame[at] ^= (flip as u8) | 1;
                }
                let p = PEERS.iter().position(|&a| a == t.dst).unwrap_or(0);
                h.bus.handle_frame(h.now, t.dst, t.src, keys()[p], &frame);
            }
            // Time passes.
            4 => {
                let Some(step) = input.byte() else { break };
                let step = match step {
                    0..=199 => Duration::from_millis(u64::from(step) * 5),
                    _ => Duration::from_secs(u64::from(step - 199) * 30),
                };
                h.now += step;
                h.bus.handle_timeout(h.now);
            }
            // A push, maybe a reply to a known id.
            5 => {
                let (Some(sel), Some(len)) = (input.byte(), input.u16()) else {
                    break;
                };
                let len = usize::from(len) % (20 << 10);
                let topic = match sel >> 4 {
                    0 => b"t".to_vec(),
                    1 => b"f".to_vec(),
                    2 => vec![b'x'; 256],
                    _ => Vec::new(),
                };
                let msg = NewMessage {
                    src: OWN,
                    dst: PEERS[usize::from(sel) % PEERS.len()],
                    topic,
                    payload: Bytes::from(vec![sel; len]),
                    reply_to: (sel & 8 != 0).then(|| h.id(sel)),
                    try_for: (sel & 4 != 0).then(|| Duration::from_secs(u64::from(sel & 3) * 7)),
                };
                if let Ok(id) = h.bus.push(h.now, msg, &mut h.rng) {
                    h.remember(id);
                    assert!(h.bus.message_info(h.now, id).is_some());
                }
            }
            // A reader.
            6 => {
                let Some(sel) = input.byte() else { break };
                let topic: Option<&[u8]> = match sel % 4 {
                    0 => None,
                    1 => Some(b""),
                    2 => Some(b"t"),
                    _ => Some(b"f"),
                };
                let before = h.bus.inbox_len();
                let got = h.bus.pop(sel & 4 != 0, topic);
                if sel & 4 != 0 || got.is_none() {
                    assert_eq!(h.bus.inbox_len(), before);
                } else {
                    assert_eq!(h.bus.inbox_len(), before - 1);
                }
            }
            // Reply waits.
            7 => {
                let Some(sel) = input.byte() else { break };
                let id = h.id(sel >> 2);
                match sel % 4 {
                    0 | 1 => {
                        let until = h.now + Duration::from_millis(u64::from(sel) * 20 + 20);
                        let _ = h.bus.wait_for_reply(id, until);
                    }
                    2 => {
                        if let Some(m) = h.bus.take_reply(id) {
                            assert!(m.reply);
                            assert_eq!(m.id, id);
                        }
                    }
                    _ => h.bus.cancel_reply_wait(id),
                }
            }
            // A forward socket answers.
            8 => {
                let (Some(sel), Some(len)) = (input.byte(), input.byte()) else {
                    break;
                };
                if h.tickets.is_empty() {
                    continue;
                }
                let ticket = h.tickets.remove(usize::from(sel) % h.tickets.len());
                let reply = (sel & 0x80 == 0).then(|| Bytes::from(vec![sel; usize::from(len)]));
                h.bus
                    .handle_forward_result(h.now, ticket, reply, &mut h.rng);
            }
            // Topic configuration changes (they apply to the next INIT).
            _ => {
                let Some(sel) = input.byte() else { break };
                *h.bus.topics_mut() = topics(sel);
            }
        }
        h.drain();
        h.check();
    }
    // Much later, everything ends: partial messages idle out, statuses expire.
    for _ in 0..3 {
        h.now += Duration::from_secs(700);
        h.bus.handle_timeout(h.now);
        h.drain();
        h.check();
    }
    let u = h.bus.usage();
    assert_eq!(u.sending, 0, "{u:?}");
    assert_eq!(u.partial, 0, "{u:?}");
    assert_eq!(u.completed, 0, "{u:?}");
    assert_eq!(u.waiters, 0, "{u:?}");
});
