//! Message buses over the simulated routers: every node runs a
//! [`MessageBus`]; its frames travel as data packets hop by hop, each hop taking
//! the next hop the node's router selects at that moment, the link's latency, and
//! an independent chance of loss (data packets are datagrams, unlike the control
//! stream). No route means the packet is dropped and the bus retransmits.
//!
//! Whatever the loss, and when the path in use breaks mid-message, a message whose
//! deadline allows it arrives exactly once and intact and its sender hears it was
//! delivered; a message to an unreachable node is reported failed at its deadline
//! and never arrives.
//!
//! Leaves hold only the routes they use, so their data plane asks their router:
//! a leaf sending to a destination it has no route for resolves it (a route
//! request goes out) and drops the frame; a leaf receiving a frame from a source
//! whose key it does not hold resolves the source (the route carries the key)
//! and drops the frame. The bus retransmits either way. Full nodes know every
//! route and key.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use mycelium_proto::messages::{
    BusConfig, Event, MessageBus, MessageState, NewMessage, TopicConfig, Transmit,
};
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::Subnet;
use mycelium_sim::{check, topology, LinkConfig, LinkIdx, NodeIdx, Sim};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

/// Hop limit of a data packet, as the node sets it.
const HOP_LIMIT: u8 = 64;

/// A data packet on its way: where it is, and what it carries.
struct Packet {
    at: NodeIdx,
    /// The link it is on, if on one.
    on: Option<LinkIdx>,
    from: NodeIdx,
    hops_left: u8,
    t: Transmit,
}

/// What the applications saw.
#[derive(Default)]
struct Log {
    /// (receiver, source address, id) → payloads received.
    received: BTreeMap<(NodeIdx, Ipv6Addr, MessageId), Vec<Bytes>>,
    /// (sender, id).
    delivered: BTreeSet<(NodeIdx, MessageId)>,
    failed: BTreeSet<(NodeIdx, MessageId)>,
}

struct World {
    sim: Sim,
    buses: Vec<MessageBus>,
    /// Loss probability of a data packet on each hop.
    loss: f64,
    /// (arrival, sequence) → packet.
    in_flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    log: Log,
    /// Packets dropped for want of a route, lost on a link, and on a link that
    /// was cut under them.
    unrouted: u64,
    /// Frames a leaf dropped while it asked for a route: to their destination
    /// (at their origin) or to their source (at their destination, for its key).
    awaiting_route: u64,
    awaiting_key: u64,
    lost: u64,
    cut_off: u64,
    /// Most hops a delivered packet took.
    max_hops: u8,
    /// (node, origin) → packets of that origin the node passed on.
    relayed: BTreeMap<(NodeIdx, NodeIdx), u64>,
}

fn link(latency_ms: u64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(latency_ms),
        ..LinkConfig::default()
    }
}

impl World {
    fn new(sim: Sim, loss: f64) -> Self {
        Self::with_bus_config(sim, loss, BusConfig::default())
    }

    fn with_bus_config(sim: Sim, loss: f64, cfg: BusConfig) -> Self {
        let buses = (0..sim.node_count())
            .map(|_| MessageBus::new(cfg.clone(), TopicConfig::default()))
            .collect();
        Self {
            sim,
            buses,
            loss,
            in_flight: BTreeMap::new(),
            seq: 0,
            log: Log::default(),
            unrouted: 0,
            awaiting_route: 0,
            awaiting_key: 0,
            lost: 0,
            cut_off: 0,
            max_hops: 0,
            relayed: BTreeMap::new(),
        }
    }

    fn node_of(&self, addr: Ipv6Addr) -> Option<NodeIdx> {
        (0..self.sim.node_count())
            .find(|&n| self.sim.address(n).octets()[..8] == addr.octets()[..8])
    }

    /// Runs the routers alone until every full node has a route to every node
    /// (leaves ask for routes when they need them).
    fn converge(&mut self) {
        let limit = self.sim.now() + Duration::from_secs(30);
        while !(check::all_routes_selected(&self.sim)
            && check::unreachable_from_full_nodes(&self.sim).is_empty())
        {
            assert!(self.sim.now() < limit, "routing did not converge");
            self.sim.run_for(Duration::from_millis(100));
        }
    }

    fn push(&mut self, from: NodeIdx, to: NodeIdx, payload: Bytes, try_for: Duration) -> MessageId {
        let msg = NewMessage {
            src: self.sim.address(from),
            dst: self.sim.address(to),
            topic: b"sim".to_vec(),
            payload,
            reply_to: None,
            try_for: Some(try_for),
        };
        let now = self.sim.now();
        // The bus draws message ids from the simulation's generator: one seed, one run.
        let mut rng = SimRng(&mut self.sim);
        let id = self.buses[from].push(now, msg, &mut rng).unwrap();
        self.pump();
        id
    }

    /// Drains the buses: application events, then frames onto the network.
    fn pump(&mut self) {
        for n in 0..self.buses.len() {
            while let Some(e) = self.buses[n].poll_event() {
                match e {
                    Event::MessageReceived { .. } => {
                        while let Some(m) = self.buses[n].pop(false, None) {
                            self.log
                                .received
                                .entry((n, m.src, m.id))
                                .or_default()
                                .push(m.payload.clone());
                        }
                    }
                    Event::Delivered { id } => {
                        assert!(self.log.delivered.insert((n, id)), "{id} delivered twice");
                    }
                    Event::SendFailed { id } => {
                        assert!(self.log.failed.insert((n, id)), "{id} failed twice");
                    }
                    _ => {}
                }
            }
            while let Some(t) = self.buses[n].poll_transmit() {
                self.forward(Packet {
                    at: n,
                    on: None,
                    from: n,
                    hops_left: HOP_LIMIT,
                    t,
                });
            }
        }
    }

    /// Hands a packet at a node to its bus if it is for the node, or sends it on
    /// over the node's currently selected next hop.
    fn forward(&mut self, mut p: Packet) {
        if let Some(link) = p.on.take() {
            if !self.sim.link_connected(link) {
                self.cut_off += 1;
                return;
            }
        }
        let Some(dst) = self.node_of(p.t.dst) else {
            self.unrouted += 1;
            return;
        };
        if !self.sim.is_up(p.at) {
            self.unrouted += 1;
            return;
        }
        if dst == p.at {
            let now = self.sim.now();
            let key = if self.sim.is_leaf(dst) {
                let Some(key) = self.sim.router(dst).and_then(|r| r.key_for(p.t.src)) else {
                    self.sim.resolve(dst, p.t.src, false);
                    self.awaiting_key += 1;
                    return;
                };
                self.sim.touch(dst, Subnet::v6_64(p.t.src), 1);
                key
            } else {
                self.sim.public_key(p.from)
            };
            self.max_hops = self.max_hops.max(HOP_LIMIT - p.hops_left);
            self.buses[dst].handle_frame(now, p.t.src, p.t.dst, key, &p.t.frame);
            return;
        }
        if p.at == p.from && self.sim.is_leaf(p.at) {
            if self
                .sim
                .router(p.at)
                .and_then(|r| r.next_hop(p.t.dst))
                .is_none()
            {
                self.sim.resolve(p.at, p.t.dst, true);
                self.awaiting_route += 1;
                return;
            }
            self.sim.touch(p.at, Subnet::v6_64(p.t.dst), 1);
        }
        let (Some(link), Some(next)) = (
            self.sim.next_hop_link(p.at, p.t.dst),
            self.sim.next_hop_node(p.at, p.t.dst),
        ) else {
            self.unrouted += 1;
            return;
        };
        if p.hops_left == 0 {
            self.unrouted += 1;
            return;
        }
        p.hops_left -= 1;
        if self.loss > 0.0 && self.sim.rng().gen_bool(self.loss) {
            self.lost += 1;
            return;
        }
        let arrival = self.sim.now() + self.sim.link_config(link).latency;
        if p.at != p.from {
            *self.relayed.entry((p.at, p.from)).or_default() += 1;
        }
        p.at = next;
        p.on = Some(link);
        self.seq += 1;
        self.in_flight.insert((arrival, self.seq), p);
    }

    /// Runs routers, packets and buses together until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let next_packet = self.in_flight.keys().next().map(|&(t, _)| t);
            let next_timer = self.buses.iter().filter_map(|b| b.poll_timeout()).min();
            let next = [next_packet, next_timer, self.sim.next_event_at()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&t| t <= until) else {
                self.sim.run_until(until);
                self.pump();
                return;
            };
            // The routers first: a packet arriving now sees the routes of now.
            self.sim.run_until(next.max(self.sim.now()));
            let now = self.sim.now();
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let p = entry.remove();
                self.forward(p);
            }
            for bus in &mut self.buses {
                if bus.poll_timeout().is_some_and(|t| t <= now) {
                    bus.handle_timeout(now);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        self.run_until(until);
    }

    fn state(&self, from: NodeIdx, id: MessageId) -> Option<MessageState> {
        self.buses[from]
            .message_info(self.sim.now(), id)
            .map(|i| i.state)
    }

    /// Asserts the message arrived exactly once, intact, and its sender knows.
    fn assert_delivered_once(&self, s: &Sent) {
        let src = self.sim.address(s.from);
        let got = self.log.received.get(&(s.to, src, s.id));
        assert_eq!(
            got.map(Vec::len),
            Some(1),
            "{} of {} bytes from {} to {}: received {:?} times \
             ({} packets unrouted, {} lost, {} cut off)",
            s.id,
            s.data.len(),
            s.from,
            s.to,
            got.map(Vec::len),
            self.unrouted,
            self.lost,
            self.cut_off
        );
        assert_eq!(got.unwrap()[0], s.data, "{} corrupted", s.id);
        assert!(
            self.log.delivered.contains(&(s.from, s.id)),
            "{} not reported delivered",
            s.id
        );
        assert!(
            !self.log.failed.contains(&(s.from, s.id)),
            "{} reported failed",
            s.id
        );
    }
}

/// The simulation's generator, lent to the bus (which wants `rand_core`'s trait).
struct SimRng<'a>(&'a mut Sim);

impl RngCore for SimRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.rng().next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.rng().next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.rng().fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.rng().try_fill_bytes(dest)
    }
}

/// A message expected to arrive.
struct Sent {
    from: NodeIdx,
    to: NodeIdx,
    id: MessageId,
    data: Bytes,
}

fn payload(sim: &mut Sim, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    sim.rng().fill_bytes(&mut v);
    Bytes::from(v)
}

/// Sizes around the chunk boundaries (1300-byte chunks), and a large multi-chunk one.
const SIZES: [usize; 8] = [0, 1, 1300, 1301, 2601, 5000, 40_000, 100_000];

/// A small random graph; messages of every size between random pairs, a few
/// hops apart, with `loss` on every hop of every data packet.
fn random_pairs(seed: u64, loss: f64) {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let nodes = topology::random_connected(&mut sim, 7, 3, link(10));
    let mut w = World::new(sim, loss);
    w.converge();
    let mut sent = Vec::new();
    for &len in &SIZES {
        // Random pairs that are not neighbours, so every message crosses a relay.
        let (from, to) = loop {
            let from = nodes[w.sim.rng().gen_range(0..nodes.len())];
            let to = nodes[w.sim.rng().gen_range(0..nodes.len())];
            let relayed = w.sim.next_hop_node(from, w.sim.address(to)) != Some(to);
            if to != from && relayed {
                break (from, to);
            }
        };
        let data = payload(&mut w.sim, len);
        let id = w.push(from, to, data.clone(), Duration::from_secs(300));
        sent.push(Sent { from, to, id, data });
        w.run_for(Duration::from_millis(50));
    }
    let start = w.sim.now();
    while !sent
        .iter()
        .all(|s| w.log.delivered.contains(&(s.from, s.id)))
    {
        assert!(
            w.sim.now() - start < Duration::from_secs(250),
            "not all delivered in time"
        );
        w.run_for(Duration::from_secs(1));
    }
    // Let retransmissions still in flight land: nothing arrives twice.
    w.run_for(Duration::from_secs(30));
    for s in &sent {
        w.assert_delivered_once(s);
    }
    assert_eq!(
        w.log.received.len(),
        sent.len(),
        "something unexpected arrived"
    );
    assert!(w.max_hops >= 2, "every message went one hop");
    if loss > 0.0 {
        assert!(w.lost > 0, "no packet was lost");
    }
}

#[test]
fn no_loss_delivers_everything_exactly_once() {
    random_pairs(1, 0.0);
}

#[test]
fn ten_percent_loss_per_hop_delivers_everything_exactly_once() {
    random_pairs(2, 0.10);
}

#[test]
fn thirty_percent_loss_per_hop_delivers_everything_exactly_once() {
    random_pairs(3, 0.30);
}

/// A diamond A-B-D / A-C-D: a large message from A to D starts over one side; once
/// some chunks are acknowledged, a link of the path in use is cut (`second_hop`:
/// the one into D, with packets on their way). Routing moves to the other side and
/// the message still arrives exactly once.
fn reroute_mid_message(seed: u64, loss: f64, second_hop: bool) {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let [a, b, c, d] = [(); 4].map(|_| sim.add_node());
    let ab = sim.add_link(a, b, link(10));
    let bd = sim.add_link(b, d, link(10));
    let ac = sim.add_link(a, c, link(10));
    let cd = sim.add_link(c, d, link(10));
    // Links have no bandwidth here, so a whole window flies at once and its
    // acknowledgements come back together. A small window spreads the message over
    // many round trips, so there is a middle to cut it in.
    let cfg = BusConfig {
        send_window: 8,
        ..BusConfig::default()
    };
    let mut w = World::with_bus_config(sim, loss, cfg);
    w.converge();
    let dst = w.sim.address(d);
    let via = w.sim.next_hop_node(a, dst).unwrap();
    let (first, second, other) = if via == b {
        (ab, bd, c)
    } else {
        assert_eq!(via, c);
        (ac, cd, b)
    };

    let data = payload(&mut w.sim, 100_000);
    let id = w.push(a, d, data.clone(), Duration::from_secs(300));
    let limit = w.sim.now() + Duration::from_secs(20);
    while !matches!(
        w.state(a, id),
        Some(MessageState::Sending { acked, pending, sent }) if acked > 0 && pending + sent > 0
    ) {
        assert!(w.sim.now() < limit, "the message never got under way");
        w.run_for(Duration::from_millis(1));
    }
    let relayed = |w: &World| w.relayed.get(&(other, a)).copied().unwrap_or(0);
    let before = relayed(&w);
    let cut: LinkIdx = if second_hop { second } else { first };
    w.sim.cut_link(cut);
    assert!(
        !w.log.delivered.contains(&(a, id)),
        "delivered before the cut"
    );

    let start = w.sim.now();
    while !w.log.delivered.contains(&(a, id)) {
        assert!(
            w.sim.now() - start < Duration::from_secs(120),
            "not delivered after the reroute"
        );
        w.run_for(Duration::from_millis(500));
    }
    // The rest of the message went the other way round, and stays there.
    assert!(relayed(&w) > before, "nothing went the other way");
    assert_eq!(w.sim.next_hop_node(a, dst), Some(other));
    w.run_for(Duration::from_secs(30));
    w.assert_delivered_once(&Sent {
        from: a,
        to: d,
        id,
        data,
    });
    assert_eq!(w.log.received.len(), 1);
    // Received, or read once popped from D's inbox (the READ notice is a single
    // datagram, which loss may take).
    assert!(
        matches!(
            w.state(a, id),
            Some(MessageState::Received | MessageState::Read)
        ),
        "{:?}",
        w.state(a, id)
    );
}

#[test]
fn a_reroute_at_the_first_hop_mid_message() {
    reroute_mid_message(10, 0.0, false);
}

#[test]
fn a_reroute_at_the_last_hop_mid_message() {
    reroute_mid_message(11, 0.0, true);
}

#[test]
fn a_reroute_mid_message_under_loss() {
    reroute_mid_message(12, 0.10, true);
}

/// A line A-B-C whose end C is cut off: a message to it with a short deadline is
/// reported failed when the deadline passes, and never arrives, not even once C is
/// reachable again. A message to B meanwhile goes through.
#[test]
fn a_message_to_an_unreachable_node_fails_at_its_deadline() {
    unreachable(20, 0.10);
}

fn unreachable(seed: u64, loss: f64) {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let nodes = topology::line(&mut sim, 3, link(10));
    let [a, b, c] = [nodes[0], nodes[1], nodes[2]];
    let mut w = World::new(sim, loss);
    w.converge();
    w.sim.cut_link(1);
    assert_eq!(w.sim.link_ends(1), [b, c]);

    let try_for = Duration::from_secs(3);
    let pushed = w.sim.now();
    let lost_data = payload(&mut w.sim, 5000);
    let doomed = w.push(a, c, lost_data, try_for);
    let data = payload(&mut w.sim, 3000);
    let fine = w.push(a, b, data.clone(), Duration::from_secs(300));

    // Not failed before the deadline...
    w.run_until(pushed + (try_for - Duration::from_millis(100)));
    assert!(!w.log.failed.contains(&(a, doomed)), "failed early");
    // ...failed once it passed.
    w.run_until(pushed + try_for + Duration::from_secs(1));
    assert!(w.log.failed.contains(&(a, doomed)), "not reported failed");
    assert_eq!(w.state(a, doomed), Some(MessageState::Aborted));

    // C comes back; the given-up message stays given up.
    w.sim.restore_link(1);
    w.run_for(Duration::from_secs(60));
    assert!(!w.log.delivered.contains(&(a, doomed)));
    assert!(
        w.log.received.keys().all(|&(_, _, id)| id != doomed),
        "the failed message arrived"
    );
    assert!(w.unrouted > 0, "nothing was ever unroutable");
    w.assert_delivered_once(&Sent {
        from: a,
        to: b,
        id: fine,
        data,
    });
}

/// The diamond again, but both ways into D break mid-message and stay broken past
/// the deadline: the sender reports the message failed, and the half D holds is
/// never delivered, not even once D is back.
fn cut_off_mid_message(seed: u64, loss: f64) {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let [a, b, c, d] = [(); 4].map(|_| sim.add_node());
    sim.add_link(a, b, link(10));
    let bd = sim.add_link(b, d, link(10));
    sim.add_link(a, c, link(10));
    let cd = sim.add_link(c, d, link(10));
    let cfg = BusConfig {
        send_window: 8,
        ..BusConfig::default()
    };
    let mut w = World::with_bus_config(sim, loss, cfg);
    w.converge();

    let try_for = Duration::from_secs(5);
    let pushed = w.sim.now();
    let data = payload(&mut w.sim, 100_000);
    let id = w.push(a, d, data, try_for);
    // Mid-message, or, if loss keeps it from getting under way, well before the
    // deadline.
    while !matches!(
        w.state(a, id),
        Some(MessageState::Sending { acked, pending, sent }) if acked > 0 && pending + sent > 0
    ) {
        if w.sim.now() - pushed > Duration::from_secs(3) {
            assert!(loss > 0.0, "the message never got under way");
            break;
        }
        w.run_for(Duration::from_millis(1));
    }
    w.sim.cut_link(bd);
    w.sim.cut_link(cd);
    if loss == 0.0 {
        assert_eq!(w.buses[d].usage().partial, 1, "D holds no half message");
    }
    w.run_until(pushed + try_for + Duration::from_secs(1));
    assert!(w.log.failed.contains(&(a, id)), "not reported failed");
    assert_eq!(w.state(a, id), Some(MessageState::Aborted));

    w.sim.restore_link(bd);
    w.sim.restore_link(cd);
    w.run_for(Duration::from_secs(60));
    assert!(!w.log.delivered.contains(&(a, id)));
    assert!(
        w.log.received.is_empty(),
        "part of a failed message arrived"
    );
}

#[test]
fn a_message_cut_off_mid_way_fails_at_its_deadline() {
    cut_off_mid_message(30, 0.0);
    cut_off_mid_message(31, 0.30);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(seed, RouterConfig::default());
        let nodes = topology::line(&mut sim, 4, link(10));
        let mut w = World::new(sim, 0.2);
        w.converge();
        let data = payload(&mut w.sim, 20_000);
        let id = w.push(nodes[0], nodes[3], data, Duration::from_secs(300));
        w.run_for(Duration::from_secs(60));
        (id, w.lost, w.unrouted, w.seq, w.sim.now(), w.sim.stats())
    };
    assert_eq!(run(9), run(9));
}

/// Pushes a message of `len` random bytes and runs until its sender hears it was
/// delivered (at most `limit`).
fn deliver(w: &mut World, from: NodeIdx, to: NodeIdx, len: usize, limit: Duration) -> Sent {
    let data = payload(&mut w.sim, len);
    let id = w.push(from, to, data.clone(), Duration::from_secs(300));
    let start = w.sim.now();
    while !w.log.delivered.contains(&(from, id)) {
        assert!(
            w.sim.now() - start < limit,
            "{len} bytes from {from} to {to} not delivered in {limit:?}"
        );
        w.run_for(Duration::from_millis(100));
    }
    Sent { from, to, id, data }
}

/// A network where a third of the nodes are leaves (8 full nodes, 4 leaves):
/// messages of every size from leaves to full nodes, from full nodes to leaves
/// and between leaves, all under way at once, with `loss` on every hop. The
/// leaves start with no route at all: every first frame of a leaf waits for a
/// route request, and every first frame to a leaf for its source's key.
fn leaves_exchange(seed: u64, loss: f64) {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let net = topology::with_leaves(&mut sim, 8, &[8; 4], 3, link(10));
    let mut w = World::new(sim, loss);
    w.converge();
    for &l in &net.leaves {
        assert_eq!(w.sim.router(l).unwrap().table_size().0, 0);
    }
    let mut sent = Vec::new();
    for (i, &len) in SIZES.iter().enumerate() {
        let leaf = *net.leaves.choose(w.sim.rng()).unwrap();
        let full = *net.full.choose(w.sim.rng()).unwrap();
        let other = *net
            .leaves
            .iter()
            .filter(|&&l| l != leaf)
            .collect::<Vec<_>>()
            .choose(w.sim.rng())
            .unwrap();
        let (from, to) = match i % 3 {
            0 => (leaf, full),
            1 => (full, leaf),
            _ => (leaf, *other),
        };
        let data = payload(&mut w.sim, len);
        let id = w.push(from, to, data.clone(), Duration::from_secs(300));
        sent.push(Sent { from, to, id, data });
        w.run_for(Duration::from_millis(50));
    }
    let start = w.sim.now();
    while !sent
        .iter()
        .all(|s| w.log.delivered.contains(&(s.from, s.id)))
    {
        assert!(
            w.sim.now() - start < Duration::from_secs(250),
            "not all delivered in time"
        );
        w.run_for(Duration::from_secs(1));
    }
    w.run_for(Duration::from_secs(30));
    for s in &sent {
        w.assert_delivered_once(s);
    }
    assert_eq!(w.log.received.len(), sent.len());
    assert!(w.awaiting_route > 0, "no leaf ever lacked a route");
    assert!(w.awaiting_key > 0, "no leaf ever lacked a source's key");
    assert!(check::leaf_transit(&w.sim).is_none());
}

#[test]
fn leaves_ask_for_routes_and_keys_and_every_message_arrives_exactly_once() {
    leaves_exchange(40, 0.0);
    leaves_exchange(41, 0.10);
    leaves_exchange(42, 0.30);
}

/// A leaf caching two subnets writes to, and is written to by, five nodes in
/// turn (full nodes and leaves), twice round: each new correspondent evicts the
/// least recently used, which is asked for again on its next turn. Every
/// message arrives exactly once.
#[test]
fn a_leaf_with_a_small_cache_writes_to_more_nodes_than_it_holds() {
    let mut sim = Sim::new(50, RouterConfig::default());
    let net = topology::with_leaves(&mut sim, 8, &[2, 8, 8, 8], 3, link(10));
    let small = net.leaves[0];
    let mut w = World::new(sim, 0.05);
    w.converge();
    let others: Vec<NodeIdx> = net.full[..3]
        .iter()
        .chain(&net.leaves[1..3])
        .copied()
        .collect();
    let mut sent = Vec::new();
    for round in 0..2 {
        for (i, &other) in others.iter().enumerate() {
            let (from, to) = if (round + i) % 2 == 0 {
                (small, other)
            } else {
                (other, small)
            };
            sent.push(deliver(&mut w, from, to, 3000, Duration::from_secs(60)));
            let r = w.sim.router(small).unwrap();
            assert!(r.table_size().0 <= 2, "{:?}", r.table_size());
        }
    }
    w.run_for(Duration::from_secs(30));
    for s in &sent {
        w.assert_delivered_once(s);
    }
    let stats = w.sim.router(small).unwrap().stats();
    assert!(stats.leaf_evictions >= 8, "{stats:?}");
    println!(
        "{} messages; the small leaf: {stats:?}; {} frames awaited a route, {} a key",
        sent.len(),
        w.awaiting_route,
        w.awaiting_key
    );
}

/// Every scenario over more seeds: each seed is another graph, other pairs, other
/// losses and another moment of the cut.
#[test]
fn every_scenario_over_many_seeds() {
    for seed in 100..125 {
        for loss in [0.0, 0.10, 0.30] {
            random_pairs(seed, loss);
            reroute_mid_message(seed, loss, seed % 2 == 0);
            unreachable(seed, loss);
            cut_off_mid_message(seed, loss);
            leaves_exchange(seed, loss);
        }
    }
}
