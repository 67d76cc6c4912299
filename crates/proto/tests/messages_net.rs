//! Message buses on a lossy virtual network: frames are lost, duplicated, delayed
//! out of order, and for a while all dropped (a reroute), on a virtual clock driven
//! by one seeded generator, so a failing seed replays exactly.
//!
//! Whatever the network does, a message whose deadline allows it arrives exactly
//! once and intact and its sender hears it was delivered; a message whose deadline
//! passes in the dark is reported failed and never arrives; replies come back to
//! the waiting sender.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use mycelium_proto::identity::SecretKey;
use mycelium_proto::messages::{
    BusConfig, BusUsage, Event, MessageBus, MessageState, NewMessage, TopicConfig, Transmit,
};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::PublicKey;
use proptest::prelude::*;
use rand_core::RngCore;

/// SplitMix64: small, seedable, good enough to schedule losses.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
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

/// How the network treats frames.
#[derive(Debug, Clone, Copy)]
struct Conditions {
    loss: f64,
    duplicate: f64,
    latency: Duration,
    /// Extra random delay, up to this: reorders frames.
    jitter: Duration,
    /// Everything sent in this window is dropped.
    blackout: Option<(Instant, Instant)>,
}

struct Node {
    bus: MessageBus,
    key: PublicKey,
    ip: Ipv6Addr,
}

/// What the applications on the nodes saw.
#[derive(Default)]
struct Log {
    /// (receiver, source, id) → payloads received.
    received: BTreeMap<(usize, Ipv6Addr, MessageId), Vec<Bytes>>,
    /// (sender, id): a reply has the id of the message it answers.
    delivered: BTreeSet<(usize, MessageId)>,
    failed: BTreeSet<(usize, MessageId)>,
    replies: BTreeMap<MessageId, Bytes>,
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    /// (arrival, sequence) → (receiving node, sender key, frame).
    in_flight: BTreeMap<(Instant, u64), (usize, PublicKey, Transmit)>,
    seq: u64,
    rng: Rng,
    cond: Conditions,
    log: Log,
    frames_sent: u64,
}

/// Topic on which receivers answer with the payload reversed.
const ASK: &[u8] = b"ask";

impl Net {
    fn new(n: u8, seed: u64, cond: Conditions) -> Self {
        let nodes = (1..=n)
            .map(|i| {
                let key = SecretKey::from_bytes([i; 32]).public_key();
                Node {
                    bus: MessageBus::new(BusConfig::default(), TopicConfig::default()),
                    key,
                    ip: key.address(),
                }
            })
            .collect();
        Self {
            now: Instant::ZERO,
            nodes,
            in_flight: BTreeMap::new(),
            seq: 0,
            rng: Rng(seed),
            cond,
            log: Log::default(),
            frames_sent: 0,
        }
    }

    fn push(
        &mut self,
        from: usize,
        to: usize,
        topic: &[u8],
        payload: Bytes,
        try_for: Duration,
    ) -> MessageId {
        let msg = NewMessage {
            src: self.nodes[from].ip,
            dst: self.nodes[to].ip,
            topic: topic.to_vec(),
            payload,
            reply_to: None,
            try_for: Some(try_for),
        };
        let now = self.now;
        let id = self.nodes[from].bus.push(now, msg, &mut self.rng).unwrap();
        if topic == ASK {
            self.nodes[from]
                .bus
                .wait_for_reply(id, now + try_for)
                .unwrap();
        }
        self.route();
        id
    }

    /// Moves every queued frame onto the wire, through the conditions.
    fn route(&mut self) {
        for from in 0..self.nodes.len() {
            while let Some(t) = self.nodes[from].bus.poll_transmit() {
                self.frames_sent += 1;
                let to = self
                    .nodes
                    .iter()
                    .position(|n| n.ip.octets()[..8] == t.dst.octets()[..8])
                    .unwrap();
                let dark = self
                    .cond
                    .blackout
                    .is_some_and(|(a, b)| self.now >= a && self.now < b);
                if dark || self.rng.chance(self.cond.loss) {
                    continue;
                }
                let copies = if self.rng.chance(self.cond.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let jitter = self.rng.below(self.cond.jitter.as_micros() as u64 + 1);
                    let at = self.now + self.cond.latency + Duration::from_micros(jitter);
                    self.seq += 1;
                    self.in_flight
                        .insert((at, self.seq), (to, self.nodes[from].key, t.clone()));
                }
            }
        }
    }

    /// Lets the applications react to their buses' events.
    fn apps(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(e) = self.nodes[i].bus.poll_event() {
                match e {
                    Event::MessageReceived { .. } => {
                        while let Some(m) = self.nodes[i].bus.pop(false, None) {
                            self.log
                                .received
                                .entry((i, m.src, m.id))
                                .or_default()
                                .push(m.payload.clone());
                            if m.topic == ASK && !m.reply {
                                let answer: Vec<u8> = m.payload.iter().rev().copied().collect();
                                let reply = NewMessage {
                                    src: m.dst,
                                    dst: m.src,
                                    topic: Vec::new(),
                                    payload: Bytes::from(answer),
                                    reply_to: Some(m.id),
                                    try_for: None,
                                };
                                let now = self.now;
                                self.nodes[i].bus.push(now, reply, &mut self.rng).unwrap();
                            }
                        }
                    }
                    Event::ReplyReceived { id } => {
                        let r = self.nodes[i].bus.take_reply(id).unwrap();
                        assert!(self.log.replies.insert(id, r.payload).is_none());
                    }
                    Event::Delivered { id } => {
                        assert!(self.log.delivered.insert((i, id)), "{id} delivered twice");
                    }
                    Event::SendFailed { id } => {
                        self.log.failed.insert((i, id));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Runs until `until`.
    fn run(&mut self, until: Instant) {
        loop {
            self.apps();
            self.route();
            let next_frame = self.in_flight.keys().next().map(|&(t, _)| t);
            let next_timer = self.nodes.iter().filter_map(|n| n.bus.poll_timeout()).min();
            let Some(next) = [next_frame, next_timer].into_iter().flatten().min() else {
                return;
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (to, key, t) = entry.remove();
                self.nodes[to]
                    .bus
                    .handle_frame(self.now, t.src, t.dst, key, &t.frame);
            }
            for n in &mut self.nodes {
                if n.bus.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.bus.handle_timeout(self.now);
                }
            }
        }
    }
}

fn at(secs: f64) -> Instant {
    Instant::ZERO + Duration::from_secs_f64(secs)
}

fn payload(rng: &mut Rng, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    Bytes::from(v)
}

/// A message the scenario expects to arrive.
struct Sent {
    from: usize,
    to: usize,
    id: MessageId,
    data: Bytes,
    ask: bool,
}

const SIZES: [usize; 12] = [
    0, 1, 249, 250, 1300, 1301, 1549, 2600, 2601, 5000, 40_000, 100_000,
];

/// Three nodes send each other messages of every interesting size, some before,
/// some during and some after a reroute, some asking for a reply; one message is
/// sent in the dark with a deadline that ends before the light comes back. With
/// `expect_mid_message`, the reroute starts, no earlier than planned, the moment a
/// message is half acknowledged.
fn scenario(seed: u64, cond: Conditions, sizes: &[usize], expect_mid_message: bool) {
    let mut net = Net::new(3, seed, cond);
    let mut data_rng = Rng(seed ^ 0xdead_beef);
    let mut sent = Vec::new();
    let pairs = [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0), (2, 1)];
    let long = Duration::from_secs(300);
    for (k, &len) in sizes.iter().enumerate() {
        let (from, to) = pairs[k % pairs.len()];
        let ask = k % 3 == 0;
        net.run(at(0.1 * k as f64));
        let data = payload(&mut data_rng, len);
        let topic: &[u8] = if ask { ASK } else { b"data" };
        let id = net.push(from, to, topic, data.clone(), long);
        sent.push(Sent {
            from,
            to,
            id,
            data,
            ask,
        });
    }
    // Doomed: pushed in the dark, given up before it ends.
    let blackout = cond.blackout.map(|(start, end)| {
        let len = end - start;
        let start = if expect_mid_message {
            // Lights out the moment a message is half acknowledged.
            net.cond.blackout = None;
            net.run(start);
            while !sent.iter().any(|s| {
                matches!(
                    net.nodes[s.from].bus.message_info(net.now, s.id).map(|i| i.state),
                    Some(MessageState::Sending { acked, pending, sent }) if acked > 0 && pending + sent > 0
                )
            }) {
                assert!(net.now < start + Duration::from_secs(10), "nothing was ever mid-message");
                let next = net.now + Duration::from_millis(1);
                net.run(next);
            }
            net.cond.blackout = Some((net.now, net.now + len));
            net.now
        } else {
            start
        };
        (start, start + len)
    });
    let doomed = blackout.map(|(start, end)| {
        net.run(start + Duration::from_millis(10));
        let try_for = (end - start) / 2;
        let id = net.push(0, 1, b"doomed", Bytes::from_static(b"never"), try_for);
        (id, start + Duration::from_millis(10) + try_for)
    });
    // After the reroute (or at once without one), more traffic.
    net.run(blackout.map_or(at(2.0), |(_, end)| end + Duration::from_secs(1)));
    for (k, &len) in sizes.iter().enumerate().take(4) {
        let (to, from) = pairs[k % pairs.len()];
        let data = payload(&mut data_rng, len);
        let id = net.push(from, to, b"after", data.clone(), long);
        sent.push(Sent {
            from,
            to,
            id,
            data,
            ask: false,
        });
    }
    net.run(at(400.0));

    let log = &net.log;
    for s in &sent {
        let src = net.nodes[s.from].ip;
        let got = log.received.get(&(s.to, src, s.id));
        assert_eq!(
            got.map(Vec::len),
            Some(1),
            "{} of {} bytes from {} to {}: received {:?} times",
            s.id,
            s.data.len(),
            s.from,
            s.to,
            got.map(Vec::len)
        );
        assert_eq!(got.unwrap()[0], s.data, "{} corrupted", s.id);
        assert!(
            log.delivered.contains(&(s.from, s.id)),
            "{} not reported delivered",
            s.id
        );
        assert!(
            !log.failed.contains(&(s.from, s.id)),
            "{} reported failed",
            s.id
        );
        if s.ask {
            let want: Vec<u8> = s.data.iter().rev().copied().collect();
            assert_eq!(
                log.replies.get(&s.id).map(|r| &r[..]),
                Some(&want[..]),
                "reply to {}",
                s.id
            );
        }
    }
    if let Some((id, deadline)) = doomed {
        assert!(
            log.failed.contains(&(0, id)),
            "doomed message not reported failed"
        );
        assert!(!log.delivered.contains(&(0, id)));
        assert!(log.received.keys().all(|&(_, _, got)| got != id));
        let info = net.nodes[0].bus.message_info(deadline, id).unwrap();
        assert_eq!(info.state, MessageState::Aborted);
    }
    // Exactly what was sent arrived, nothing else; replies went to their waiters.
    assert_eq!(log.received.len(), sent.len());
    assert_eq!(log.replies.len(), sent.iter().filter(|s| s.ask).count());
    // Everything settled: nothing is held but what is remembered for a while.
    for n in &net.nodes {
        let u = n.bus.usage();
        assert_eq!(
            (
                u.sending,
                u.sending_bytes,
                u.partial,
                u.held,
                u.held_bytes,
                u.waiters
            ),
            (0, 0, 0, 0, 0, 0),
            "{u:?}"
        );
    }
    // And once the memories end, nothing at all.
    net.run(at(2000.0));
    for n in &net.nodes {
        let u = n.bus.usage();
        assert_eq!(u, BusUsage::default());
        assert_eq!(n.bus.poll_timeout(), None);
    }
}

fn conditions(loss: f64, duplicate: f64, blackout: Option<(f64, f64)>) -> Conditions {
    Conditions {
        loss,
        duplicate,
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(40),
        blackout: blackout.map(|(a, b)| (at(a), at(b))),
    }
}

#[test]
fn a_perfect_network_delivers_everything_once() {
    scenario(1, conditions(0.0, 0.0, None), &SIZES, false);
}

#[test]
fn ten_percent_loss_with_duplicates_and_reordering() {
    scenario(2, conditions(0.1, 0.05, None), &SIZES, false);
}

#[test]
fn thirty_percent_loss_with_duplicates_and_reordering() {
    scenario(3, conditions(0.3, 0.1, None), &SIZES, false);
}

#[test]
fn a_reroute_mid_message_delays_but_loses_nothing() {
    // The largest messages are still in flight at 1.0 s when the light goes out.
    scenario(4, conditions(0.1, 0.05, Some((1.0, 21.0))), &SIZES, true);
}

#[test]
fn a_reroute_under_heavy_loss() {
    scenario(5, conditions(0.3, 0.1, Some((0.6, 10.0))), &SIZES, true);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut net = Net::new(2, seed, conditions(0.2, 0.1, None));
        let id = net.push(
            0,
            1,
            b"t",
            Bytes::from(vec![3u8; 20_000]),
            Duration::from_secs(300),
        );
        net.run(at(60.0));
        (id, net.frames_sent, net.now)
    };
    assert_eq!(run(9), run(9));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_loss_schedule_delivers_exactly_once(
        seed in any::<u64>(),
        loss in 0.0f64..0.4,
        duplicate in 0.0f64..0.2,
        blackout in proptest::option::of((0.0f64..3.0, 1.0f64..30.0)),
    ) {
        let blackout = blackout.map(|(start, len)| (start, start + len));
        scenario(seed, conditions(loss, duplicate, blackout), &[0, 1, 1301, 2601, 5000, 30_000], false);
    }
}

#[test]
fn a_slow_path_is_not_flooded_with_retransmissions() {
    let mut net = Net::new(
        2,
        7,
        Conditions {
            loss: 0.0,
            duplicate: 0.0,
            latency: Duration::from_millis(300),
            jitter: Duration::ZERO,
            blackout: None,
        },
    );
    let data = Bytes::from(vec![1u8; 200_000]);
    net.push(0, 1, b"t", data, Duration::from_secs(300));
    net.run(at(60.0));
    let chunks = 200_000u64.div_ceil(1300);
    let resent = net.nodes[0].bus.stats().retransmissions;
    assert_eq!(net.log.received.len(), 1);
    assert!(
        resent < chunks / 4,
        "{resent} retransmissions for {chunks} chunks"
    );
}
