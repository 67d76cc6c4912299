//! The simulated network: nodes, links, the event queue and the virtual clock.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

use mycelium_proto::routing::{Event, LinkKind, PeerId, Resolution, Router, RouterConfig};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::{self, Packet, Tlv};
use mycelium_proto::{PublicKey, RouterId, Subnet};

use crate::inflight::{Interner, Packed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Index of a node.
pub type NodeIdx = usize;
/// Index of a link.
pub type LinkIdx = usize;

/// How a link behaves. Links carry control TLVs the way a TCP or QUIC stream does:
/// in order, and without loss. A lost segment costs a retransmission delay and holds
/// up everything behind it; a silent link holds everything until it is restored or
/// the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay of every message.
    pub latency: Duration,
    /// Probability that a message is lost once and retransmitted.
    pub loss: f64,
    /// What a retransmission costs.
    pub retransmit_delay: Duration,
    /// Static link cost the routers add (TCP over IPv6 is 10).
    pub cost: u16,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(5),
            loss: 0.0,
            retransmit_delay: Duration::from_millis(200),
            cost: 10,
        }
    }
}

/// How a node goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// The process exits: its neighbours see their connections close at once.
    ProcessExit,
    /// The host vanishes: its neighbours hear nothing more but keep their
    /// connections until they notice.
    PowerLoss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Physical {
    Up,
    Cut,
    Silent,
}

#[derive(Debug)]
struct Link {
    ends: [NodeIdx; 2],
    cfg: LinkConfig,
    physical: Physical,
    /// The peer ids of the current connection on each side, if connected.
    connection: Option<[PeerId; 2]>,
    /// Bumped on every new connection, so messages of an old one are dropped.
    epoch: u32,
    reconnect_pending: bool,
    /// Per direction (towards `ends[i]`): when the stream is next free, so delivery
    /// stays in order.
    busy_until: [Instant; 2],
    /// Per direction: what a silent link holds back.
    held: [Vec<Packed>; 2],
}

#[derive(Debug)]
struct Node {
    router: Option<Router>,
    key: PublicKey,
    /// The node's own configuration (a leaf's differs from a full node's); every
    /// restart runs a fresh router with it.
    cfg: RouterConfig,
    peers: BTreeMap<PeerId, LinkIdx>,
    timer: Option<Instant>,
    timer_gen: u64,
}

#[derive(Debug)]
enum Job {
    Deliver {
        link: u32,
        side: u8,
        epoch: u32,
        tlv: Packed,
    },
    Timer {
        node: NodeIdx,
        generation: u64,
    },
    Reconnect {
        link: LinkIdx,
    },
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// TLVs handed to links.
    pub sent: u64,
    /// TLVs delivered to a router.
    pub delivered: u64,
    /// TLVs lost: sent on a cut link or a closed connection, or to a crashed node.
    pub dropped: u64,
    /// Events processed.
    pub steps: u64,
    /// Connections closed because a router declared its neighbour dead.
    pub dead_peers: u64,
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    /// What [`Sim::add_node`] gives a node.
    cfg: RouterConfig,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// Jobs by due time, in the order they were scheduled: most share an instant
    /// (every TLV a router sends in one go arrives after the same latency), so a
    /// queue per instant costs a push and a pop per job, where a heap over
    /// millions of jobs would cost a logarithm of cache misses.
    queue: BTreeMap<Instant, VecDeque<Job>>,
    /// Queues of instants run, kept for reuse.
    spare: Vec<VecDeque<Job>>,
    /// What routers produced, drained by `after_input`; kept for its allocation.
    out: Vec<mycelium_proto::routing::Transmit>,
    events: Vec<Event>,
    /// What TLVs in flight point into.
    interner: Interner,
    rng: ChaCha8Rng,
    next_peer: u64,
    encode: bool,
    /// Delay before a connection closed by a dead-peer verdict is redialled
    /// (upstream redials every 5 s).
    pub reconnect_delay: Duration,
    stats: SimStats,
    trace: Option<Vec<Delivery>>,
    /// Nodes whose router took an input since the last [`Sim::take_touched`], when
    /// tracking is on.
    touched: Option<Vec<NodeIdx>>,
}

/// One TLV delivered, as recorded by [`Sim::set_trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrived.
    pub at: Instant,
    /// The sender.
    pub from: NodeIdx,
    /// The receiver.
    pub to: NodeIdx,
    /// What it was.
    pub tlv: Tlv,
}

impl Sim {
    /// An empty network whose routers use `cfg` (unless added with
    /// [`Sim::add_node_with`]), with randomness from `seed`.
    pub fn new(seed: u64, cfg: RouterConfig) -> Self {
        Self {
            now: Instant::ZERO,
            cfg,
            nodes: Vec::new(),
            links: Vec::new(),
            queue: BTreeMap::new(),
            spare: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
            interner: Interner::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_peer: 0,
            encode: true,
            reconnect_delay: Duration::from_secs(5),
            stats: SimStats::default(),
            trace: None,
            touched: None,
        }
    }

    /// Whether every TLV is encoded to bytes and decoded again on its way (on by
    /// default; benchmarks turn it off to measure the router alone).
    pub fn set_encode_on_wire(&mut self, encode: bool) {
        self.encode = encode;
    }

    /// Starts (or stops) recording every delivered TLV.
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// Starts (or stops) recording which nodes' routers took an input (a TLV, a
    /// timeout, a neighbour coming or going, a crash or a restart, a
    /// [`Sim::resolve`] or [`Sim::touch`] from the data plane): only those can have
    /// changed their routes. Incremental checkers drain it with
    /// [`Sim::take_touched`].
    pub fn set_track_touched(&mut self, on: bool) {
        self.touched = on.then(Vec::new);
    }

    /// Moves the nodes touched since the last call into `out` (cleared first), in
    /// the order touched, with repeats.
    pub fn take_touched(&mut self, out: &mut Vec<NodeIdx>) {
        out.clear();
        if let Some(t) = self.touched.as_mut() {
            std::mem::swap(t, out);
        }
    }

    /// Records that `node`'s router took an input, for [`Sim::take_touched`].
    fn note_input(&mut self, node: NodeIdx) {
        if let Some(t) = self.touched.as_mut() {
            t.push(node);
        }
    }

    /// The deliveries recorded since tracing started.
    pub fn trace(&self) -> &[Delivery] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Number of nodes (crashed ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The two nodes a link joins.
    pub fn link_ends(&self, link: LinkIdx) -> [NodeIdx; 2] {
        self.links[link].ends
    }

    /// Whether the link is physically up and connected.
    pub fn link_connected(&self, link: LinkIdx) -> bool {
        let l = &self.links[link];
        l.physical == Physical::Up && l.connection.is_some()
    }

    /// The router of a running node.
    pub fn router(&self, node: NodeIdx) -> Option<&Router> {
        self.nodes[node].router.as_ref()
    }

    /// A node's router, to change how it reports (not to feed it inputs: those go
    /// through the simulated network, or [`Sim::resolve`] and [`Sim::touch`]).
    pub fn router_mut(&mut self, node: NodeIdx) -> Option<&mut Router> {
        self.nodes[node].router.as_mut()
    }

    /// Whether the node is running.
    pub fn is_up(&self, node: NodeIdx) -> bool {
        self.nodes[node].router.is_some()
    }

    /// The node's overlay address.
    pub fn address(&self, node: NodeIdx) -> Ipv6Addr {
        self.nodes[node].key.address()
    }

    /// The node's public key (its identity; the overlay address derives from it).
    pub fn public_key(&self, node: NodeIdx) -> PublicKey {
        self.nodes[node].key
    }

    /// The link's current configuration.
    pub fn link_config(&self, link: LinkIdx) -> LinkConfig {
        self.links[link].cfg
    }

    /// The configuration [`Sim::add_node`] gives a node.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// A node's configuration, which its restarts keep.
    pub fn node_config(&self, node: NodeIdx) -> &RouterConfig {
        &self.nodes[node].cfg
    }

    /// Whether the node runs in leaf mode (whether or not it is running now).
    pub fn is_leaf(&self, node: NodeIdx) -> bool {
        self.nodes[node].cfg.leaf.is_some()
    }

    /// Adds a running node with a fresh identity and the network's configuration.
    pub fn add_node(&mut self) -> NodeIdx {
        self.add_node_with(self.cfg.clone())
    }

    /// Adds a running node with a fresh identity and its own configuration (a
    /// leaf, say); the simulator still draws its hash seed.
    pub fn add_node_with(&mut self, cfg: RouterConfig) -> NodeIdx {
        let key = PublicKey::from_bytes(self.rng.gen());
        let idx = self.nodes.len();
        self.nodes.push(Node {
            router: None,
            key,
            cfg,
            peers: BTreeMap::new(),
            timer: None,
            timer_gen: 0,
        });
        self.start_router(idx);
        idx
    }

    fn start_router(&mut self, node: NodeIdx) {
        let id = RouterId::new(self.nodes[node].key, self.rng.gen());
        let cfg = RouterConfig {
            hash_seed: self.rng.gen(),
            ..self.nodes[node].cfg.clone()
        };
        self.nodes[node].router = Some(Router::new(cfg, id, self.now));
        self.nodes[node].timer = None;
        self.after_input(node);
    }

    /// What a node's data plane does with a packet for `dst` it has no route in
    /// its snapshot for: asks its router ([`Router::resolve`], which may send
    /// route or seqno requests, and on a leaf makes room in its cache), and sends
    /// what the router produced. `local` is true for a packet the node originates.
    /// `None` if the node is down.
    pub fn resolve(&mut self, node: NodeIdx, dst: Ipv6Addr, local: bool) -> Option<Resolution> {
        let now = self.now;
        let resolution = self.nodes[node].router.as_mut()?.resolve(now, dst, local);
        self.after_input(node);
        Some(resolution)
    }

    /// What a node's data plane reports after using `subnet` `uses` times
    /// ([`Router::touch`]: a leaf keeps it in its cache, a route close to expiry
    /// is asked for again), and sends what the router produced. Returns whether
    /// the subnet has a selected route (false if the node is down).
    pub fn touch(&mut self, node: NodeIdx, subnet: Subnet, uses: u64) -> bool {
        let now = self.now;
        let Some(router) = self.nodes[node].router.as_mut() else {
            return false;
        };
        let selected = router.touch(now, subnet, uses);
        self.after_input(node);
        selected
    }

    /// Joins two nodes with a link and connects it.
    pub fn add_link(&mut self, a: NodeIdx, b: NodeIdx, cfg: LinkConfig) -> LinkIdx {
        let idx = self.links.len();
        self.links.push(Link {
            ends: [a, b],
            cfg,
            physical: Physical::Up,
            connection: None,
            epoch: 0,
            reconnect_pending: false,
            busy_until: [Instant::ZERO; 2],
            held: [Vec::new(), Vec::new()],
        });
        self.connect(idx);
        idx
    }

    fn connect(&mut self, link: LinkIdx) {
        let l = &self.links[link];
        let [a, b] = l.ends;
        if l.connection.is_some() || l.physical != Physical::Up || !self.is_up(a) || !self.is_up(b)
        {
            return;
        }
        let kind = LinkKind::Virtual(l.cfg.cost);
        let pa = PeerId(self.next_peer);
        let pb = PeerId(self.next_peer + 1);
        self.next_peer += 2;
        let l = &mut self.links[link];
        l.connection = Some([pb, pa]);
        l.epoch = l.epoch.wrapping_add(1);
        // Node a knows the connection as `pb` (its peer is b), and vice versa.
        self.nodes[a].peers.insert(pb, link);
        self.nodes[b].peers.insert(pa, link);
        let now = self.now;
        if let Some(r) = self.nodes[a].router.as_mut() {
            r.handle_peer_up(now, pb, kind);
        }
        if let Some(r) = self.nodes[b].router.as_mut() {
            r.handle_peer_up(now, pa, kind);
        }
        self.after_input(a);
        self.after_input(b);
    }

    fn disconnect(&mut self, link: LinkIdx) {
        let Some([pa, pb]) = self.links[link].connection.take() else {
            return;
        };
        for side in 0..2 {
            let held = std::mem::take(&mut self.links[link].held[side]);
            self.stats.dropped += held.len() as u64;
            for tlv in held {
                self.interner.unpack(tlv);
            }
        }
        let [a, b] = self.links[link].ends;
        let now = self.now;
        for (node, peer) in [(a, pa), (b, pb)] {
            self.nodes[node].peers.remove(&peer);
            if let Some(r) = self.nodes[node].router.as_mut() {
                r.handle_peer_down(now, peer);
            }
            self.after_input(node);
        }
    }

    /// Cuts a link: the connection closes and both ends notice at once.
    pub fn cut_link(&mut self, link: LinkIdx) {
        self.links[link].physical = Physical::Cut;
        self.disconnect(link);
    }

    /// Makes a link drop everything silently: both ends keep their connection.
    pub fn silence_link(&mut self, link: LinkIdx) {
        self.links[link].physical = Physical::Silent;
    }

    /// Brings a cut or silent link back: what a silent link held is delivered, a
    /// closed connection is re-established.
    pub fn restore_link(&mut self, link: LinkIdx) {
        self.links[link].physical = Physical::Up;
        for side in 0..2 {
            let held = std::mem::take(&mut self.links[link].held[side]);
            for tlv in held {
                self.enqueue(link, side, tlv);
            }
        }
        self.connect(link);
    }

    /// Changes a link's latency, loss or cost (the cost applies to new connections).
    pub fn set_link_config(&mut self, link: LinkIdx, cfg: LinkConfig) {
        self.links[link].cfg = cfg;
    }

    /// Stops a node.
    pub fn crash(&mut self, node: NodeIdx, kind: CrashKind) {
        if self.nodes[node].router.take().is_none() {
            return;
        }
        self.note_input(node);
        self.nodes[node].timer = None;
        let links: Vec<LinkIdx> = self.nodes[node].peers.values().copied().collect();
        for link in links {
            match kind {
                CrashKind::ProcessExit => self.disconnect(link),
                CrashKind::PowerLoss => {
                    // The other end keeps its connection until it gives up on it.
                    // Our side is gone with the process.
                    let side = usize::from(self.links[link].ends[1] == node);
                    if let Some(conn) = self.links[link].connection {
                        self.nodes[node].peers.remove(&conn[side]);
                    }
                }
            }
        }
    }

    /// Restarts a crashed node with a new router id (a fresh process); its
    /// physically intact links reconnect.
    pub fn restart(&mut self, node: NodeIdx) {
        if self.is_up(node) {
            return;
        }
        // Connections the crash left half-open are gone for good.
        let stale: Vec<LinkIdx> = (0..self.links.len())
            .filter(|&l| self.links[l].ends.contains(&node) && self.links[l].connection.is_some())
            .collect();
        self.start_router(node);
        for link in stale {
            self.disconnect(link);
        }
        let links: Vec<LinkIdx> = (0..self.links.len())
            .filter(|&l| self.links[l].ends.contains(&node))
            .collect();
        for link in links {
            self.connect(link);
        }
    }

    fn schedule(&mut self, at: Instant, job: Job) {
        let spare = &mut self.spare;
        self.queue
            .entry(at)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push_back(job);
    }

    /// Drains what a router produced after an input and re-arms its timer.
    fn after_input(&mut self, node: NodeIdx) {
        self.note_input(node);
        let Some(router) = self.nodes[node].router.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        while let Some(t) = router.poll_transmit() {
            out.push(t);
        }
        let mut events = std::mem::take(&mut self.events);
        while let Some(e) = router.poll_event() {
            events.push(e);
        }
        let deadline = router.poll_timeout();
        for t in out.drain(..) {
            self.transmit(node, t.to, t.tlv);
        }
        self.out = out;
        for e in events.drain(..) {
            if let Event::PeerDead(peer) = e {
                self.stats.dead_peers += 1;
                if let Some(&link) = self.nodes[node].peers.get(&peer) {
                    self.disconnect(link);
                    if !self.links[link].reconnect_pending {
                        self.links[link].reconnect_pending = true;
                        let at = self.now + self.reconnect_delay;
                        self.schedule(at, Job::Reconnect { link });
                    }
                }
            }
        }
        if deadline != self.nodes[node].timer {
            self.nodes[node].timer = deadline;
            self.nodes[node].timer_gen += 1;
            if let Some(at) = deadline {
                let generation = self.nodes[node].timer_gen;
                self.schedule(at.max(self.now), Job::Timer { node, generation });
            }
        }
    }

    fn transmit(&mut self, from: NodeIdx, peer: PeerId, tlv: Tlv) {
        self.stats.sent += 1;
        let Some(&link) = self.nodes[from].peers.get(&peer) else {
            self.stats.dropped += 1;
            return;
        };
        let l = &self.links[link];
        if l.connection.is_none() || l.physical == Physical::Cut {
            self.stats.dropped += 1;
            return;
        }
        let tlv = if self.encode {
            let mut bytes = Vec::with_capacity(80);
            Packet::Control(tlv).encode(&mut bytes);
            match wire::decode(&bytes).map(|d| d.packet) {
                Ok(Packet::Control(t)) => t,
                other => panic!("the codec failed to round-trip {tlv:?}: {other:?}"),
            }
        } else {
            tlv
        };
        let tlv = self.interner.pack(tlv);
        let side = usize::from(l.ends[0] == from);
        if l.physical == Physical::Silent {
            self.links[link].held[side].push(tlv);
            return;
        }
        self.enqueue(link, side, tlv);
    }

    /// Puts a TLV on the stream towards `ends[side]`, behind what is already on it.
    fn enqueue(&mut self, link: LinkIdx, side: usize, tlv: Packed) {
        let l = &self.links[link];
        let mut at = self.now + l.cfg.latency;
        if l.cfg.loss > 0.0 && self.rng.gen_bool(l.cfg.loss) {
            at += l.cfg.retransmit_delay;
        }
        let at = at.max(l.busy_until[side]);
        let epoch = l.epoch;
        self.links[link].busy_until[side] = at;
        self.schedule(
            at,
            Job::Deliver {
                link: u32::try_from(link).expect("fewer than 2^32 links"),
                side: side as u8,
                epoch,
                tlv,
            },
        );
    }

    /// When the next event is due.
    pub fn next_event_at(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(at, _)| *at)
    }

    /// Processes one event. Returns false when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(mut first) = self.queue.first_entry() else {
            return false;
        };
        let at = *first.key();
        let Some(job) = first.get_mut().pop_front() else {
            return true;
        };
        if first.get().is_empty() {
            let emptied = first.remove();
            if self.spare.len() < 64 {
                self.spare.push(emptied);
            }
        }
        self.now = self.now.max(at);
        self.stats.steps += 1;
        match job {
            Job::Timer { node, generation } => {
                let n = &mut self.nodes[node];
                if n.timer_gen != generation {
                    return true;
                }
                n.timer = None;
                let now = self.now;
                if let Some(r) = n.router.as_mut() {
                    r.handle_timeout(now);
                }
                self.after_input(node);
            }
            Job::Deliver {
                link,
                side,
                epoch,
                tlv,
            } => {
                let (link, side) = (link as usize, usize::from(side));
                let l = &self.links[link];
                let node = l.ends[side];
                let (Some(conn), true) = (l.connection, l.epoch == epoch) else {
                    self.stats.dropped += 1;
                    self.interner.unpack(tlv);
                    return true;
                };
                if l.physical == Physical::Silent {
                    self.links[link].held[side].push(tlv);
                    return true;
                }
                let now = self.now;
                let tlv = self.interner.unpack(tlv);
                let Some(r) = self.nodes[node].router.as_mut() else {
                    self.stats.dropped += 1;
                    return true;
                };
                r.handle_tlv(now, conn[side], tlv);
                self.stats.delivered += 1;
                if let Some(trace) = self.trace.as_mut() {
                    trace.push(Delivery {
                        at: now,
                        from: self.links[link].ends[1 - side],
                        to: node,
                        tlv,
                    });
                }
                self.after_input(node);
            }
            Job::Reconnect { link } => {
                self.links[link].reconnect_pending = false;
                if self.links[link].connection.is_none() {
                    if self.links[link].physical == Physical::Up {
                        self.connect(link);
                    } else {
                        // A silent link fails its connection attempts; try again later.
                        self.links[link].reconnect_pending = true;
                        let at = self.now + self.reconnect_delay;
                        self.schedule(at, Job::Reconnect { link });
                    }
                }
            }
        }
        true
    }

    /// Runs every event due up to `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        self.run_until_with(until, |_| {});
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Like [`Sim::run_until`], calling `check` after every event.
    pub fn run_until_with(&mut self, until: Instant, mut check: impl FnMut(&Sim)) {
        while self.next_event_at().is_some_and(|t| t <= until) {
            self.step();
            check(self);
        }
        self.now = self.now.max(until);
    }

    /// The node a packet for `dst` leaves `node` towards, over its selected route.
    pub fn next_hop_node(&self, node: NodeIdx, dst: Ipv6Addr) -> Option<NodeIdx> {
        let peer = self.router(node)?.next_hop(dst)?;
        let link = *self.nodes[node].peers.get(&peer)?;
        let l = &self.links[link];
        Some(if l.ends[0] == node {
            l.ends[1]
        } else {
            l.ends[0]
        })
    }

    /// The connected link a packet for `dst` leaves `node` on, over its selected
    /// route.
    pub fn next_hop_link(&self, node: NodeIdx, dst: Ipv6Addr) -> Option<LinkIdx> {
        let peer = self.router(node)?.next_hop(dst)?;
        let link = *self.nodes[node].peers.get(&peer)?;
        self.link_connected(link).then_some(link)
    }

    /// A random number from the simulation's generator, for tests that choose what to
    /// break.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}
