//! Message buses on the simulated nodes, and the data packets between them.
//!
//! Every running node has a [`MessageBus`]. Its frames travel as datagrams hop by
//! hop: at each node the packet takes the next hop the router selects at that
//! moment and that link's latency, and may be lost on the way (independently of
//! the control stream, which is reliable). No route, a link closing under the
//! packet, or a node that is down drops it; the bus retransmits. A crash takes the
//! node's bus with it; a restart gives it an empty one.
//!
//! A leaf holds only the routes it uses, so its data plane asks its router, as
//! the node does: a frame it originates for a destination without a selected
//! route makes it resolve the destination (a route request) and is dropped; a
//! frame it receives from a source whose key it does not hold makes it resolve
//! the source (the route carries the key) and is dropped; the bus retransmits.
//! Every other frame a leaf sends or accepts is reported as a use
//! ([`Sim::touch`]), which keeps the subnet in its cache. A full node's data
//! plane knows every route and key, and is modelled as before: no route drops
//! the frame, and a receiver takes the sender's key as it is.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use bytes::Bytes;
use mycelium_proto::messages::{BusConfig, Event, MessageBus, NewMessage, TopicConfig, Transmit};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::Subnet;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::{LinkIdx, NodeIdx, Sim};

/// Hop limit of a data packet, as the node sets it.
const HOP_LIMIT: u8 = 64;

/// A data packet on its way.
struct Packet {
    at: NodeIdx,
    /// The link it is arriving over, if any.
    on: Option<LinkIdx>,
    from: NodeIdx,
    hops_left: u8,
    t: Transmit,
}

/// Counters of the data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Data packets handed to a link.
    pub forwarded: u64,
    /// Dropped where no route was selected (or the hop limit ran out).
    pub unrouted: u64,
    /// Lost on a link.
    pub lost: u64,
    /// Dropped because the link closed, or its far end went down, under them.
    pub cut_off: u64,
    /// Handed to the receiving bus.
    pub arrived: u64,
    /// Most hops a packet took to arrive.
    pub max_hops: u8,
    /// Frames a leaf originated without a route, dropped while it asked for one.
    pub awaiting_route: u64,
    /// Frames a leaf received from a source whose key it lacked, dropped while it
    /// asked for the source's route.
    pub awaiting_key: u64,
}

/// What a bus reported, for the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Received {
        to: NodeIdx,
        src: Ipv6Addr,
        id: MessageId,
    },
    Delivered {
        from: NodeIdx,
        id: MessageId,
    },
    Failed {
        from: NodeIdx,
        id: MessageId,
    },
}

pub(crate) struct World {
    pub(crate) sim: Sim,
    buses: Vec<Option<MessageBus>>,
    bus_cfg: BusConfig,
    /// Each bus's next timeout, kept in step with the bus.
    timeouts: Vec<Option<Instant>>,
    by_prefix: BTreeMap<[u8; 8], NodeIdx>,
    /// Loss probability of a data packet on each hop.
    loss: f64,
    /// (arrival, sequence) → packet.
    in_flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    pub(crate) stats: DataStats,
    /// What the buses reported since the driver last looked, with the payloads
    /// received.
    pub(crate) outcomes: Vec<(Outcome, Option<Bytes>)>,
}

impl World {
    pub(crate) fn new(sim: Sim, loss: f64, bus_cfg: BusConfig) -> Self {
        let n = sim.node_count();
        let by_prefix = (0..n).map(|i| (prefix(sim.address(i)), i)).collect();
        let buses = (0..n)
            .map(|i| {
                sim.is_up(i)
                    .then(|| MessageBus::new(bus_cfg.clone(), TopicConfig::default()))
            })
            .collect();
        Self {
            sim,
            buses,
            bus_cfg,
            timeouts: vec![None; n],
            by_prefix,
            loss,
            in_flight: BTreeMap::new(),
            seq: 0,
            stats: DataStats::default(),
            outcomes: Vec::new(),
        }
    }

    /// The bus of a crashed node is gone; a restarted node gets an empty one.
    pub(crate) fn sync_bus(&mut self, node: NodeIdx) {
        if !self.sim.is_up(node) {
            self.buses[node] = None;
            self.timeouts[node] = None;
        } else if self.buses[node].is_none() {
            self.buses[node] = Some(MessageBus::new(
                self.bus_cfg.clone(),
                TopicConfig::default(),
            ));
        }
    }

    pub(crate) fn push(
        &mut self,
        from: NodeIdx,
        to: NodeIdx,
        payload: Bytes,
        try_for: std::time::Duration,
        rng: &mut ChaCha8Rng,
    ) -> Option<MessageId> {
        let msg = NewMessage {
            src: self.sim.address(from),
            dst: self.sim.address(to),
            topic: b"soak".to_vec(),
            payload,
            reply_to: None,
            try_for: Some(try_for),
        };
        let now = self.sim.now();
        let id = self.buses[from].as_mut()?.push(now, msg, rng).ok()?;
        self.pump_node(from);
        Some(id)
    }

    /// When the next packet arrives or bus timer fires.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let packet = self.in_flight.keys().next().map(|&(t, _)| t);
        let timer = self.timeouts.iter().flatten().min().copied();
        packet.into_iter().chain(timer).min()
    }

    /// Delivers the packets and fires the bus timers due by the current time.
    pub(crate) fn run_due(&mut self) {
        let now = self.sim.now();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            self.arrive(p);
        }
        for n in 0..self.buses.len() {
            if self.timeouts[n].is_some_and(|t| t <= now) {
                if let Some(bus) = self.buses[n].as_mut() {
                    bus.handle_timeout(now);
                }
                self.pump_node(n);
            }
        }
    }

    /// Drains one bus: its events, then its frames onto the network.
    fn pump_node(&mut self, n: NodeIdx) {
        let Some(bus) = self.buses[n].as_mut() else {
            return;
        };
        let mut frames = Vec::new();
        while let Some(e) = bus.poll_event() {
            match e {
                Event::MessageReceived { .. } => {
                    while let Some(m) = bus.pop(false, None) {
                        let o = Outcome::Received {
                            to: n,
                            src: m.src,
                            id: m.id,
                        };
                        self.outcomes.push((o, Some(m.payload)));
                    }
                }
                Event::Delivered { id } => {
                    self.outcomes
                        .push((Outcome::Delivered { from: n, id }, None));
                }
                Event::SendFailed { id } => {
                    self.outcomes.push((Outcome::Failed { from: n, id }, None));
                }
                _ => {}
            }
        }
        while let Some(t) = bus.poll_transmit() {
            frames.push(t);
        }
        self.timeouts[n] = bus.poll_timeout();
        for t in frames {
            self.route(Packet {
                at: n,
                on: None,
                from: n,
                hops_left: HOP_LIMIT,
                t,
            });
        }
    }

    /// A packet reaches the node at the far end of its link.
    fn arrive(&mut self, mut p: Packet) {
        if let Some(link) = p.on.take() {
            if !self.sim.link_connected(link) || !self.sim.is_up(p.at) {
                self.stats.cut_off += 1;
                return;
            }
        }
        self.route(p);
    }

    /// Hands a packet to its bus if it is for this node, or sends it on over the
    /// node's selected next hop.
    fn route(&mut self, mut p: Packet) {
        let Some(&dst) = self.by_prefix.get(&prefix(p.t.dst)) else {
            self.stats.unrouted += 1;
            return;
        };
        if dst == p.at {
            let now = self.sim.now();
            let Some(bus) = self.buses[dst].as_mut() else {
                self.stats.cut_off += 1;
                return;
            };
            let key = if self.sim.is_leaf(dst) {
                let src = p.t.src;
                let Some(key) = self.sim.router(dst).and_then(|r| r.key_for(src)) else {
                    self.sim.resolve(dst, src, false);
                    self.stats.awaiting_key += 1;
                    return;
                };
                self.sim.touch(dst, Subnet::v6_64(src), 1);
                key
            } else {
                self.sim.public_key(p.from)
            };
            self.stats.arrived += 1;
            self.stats.max_hops = self.stats.max_hops.max(HOP_LIMIT - p.hops_left);
            bus.handle_frame(now, p.t.src, p.t.dst, key, &p.t.frame);
            self.pump_node(dst);
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
                self.stats.awaiting_route += 1;
                return;
            }
            self.sim.touch(p.at, Subnet::v6_64(p.t.dst), 1);
        }
        let (Some(link), Some(next)) = (
            self.sim.next_hop_link(p.at, p.t.dst),
            self.sim.next_hop_node(p.at, p.t.dst),
        ) else {
            self.stats.unrouted += 1;
            return;
        };
        if p.hops_left == 0 {
            self.stats.unrouted += 1;
            return;
        }
        p.hops_left -= 1;
        if self.loss > 0.0 && self.sim.rng().gen_bool(self.loss) {
            self.stats.lost += 1;
            return;
        }
        self.stats.forwarded += 1;
        let arrival = self.sim.now() + self.sim.link_config(link).latency;
        p.at = next;
        p.on = Some(link);
        self.seq += 1;
        self.in_flight.insert((arrival, self.seq), p);
    }

    /// Packets still on their way.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

fn prefix(addr: Ipv6Addr) -> [u8; 8] {
    let o = addr.octets();
    [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
}
