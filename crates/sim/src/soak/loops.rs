//! Loop-freedom checked after every event, incrementally.
//!
//! A full check ([`crate::check::find_loop`]) follows next hops from every node
//! towards every destination: N² lookups, too many to repeat after each of tens of
//! millions of events in a 500-node network. This watch does the same job with
//! less work, and is exact rather than sampled:
//!
//! - Per destination, the next hops form a graph in which every node has at most
//!   one outgoing edge. Only a node whose router took an input (the simulator
//!   reports those, [`Sim::set_track_touched`]) can have changed an edge, and it can
//!   only have done so if its table generation moved. Every other change is an edge
//!   vanishing (a connection closing), which cannot make a cycle.
//! - For such a node the watch compares the next hop (the neighbour's connection
//!   id, never reused) with the one it saw last time, towards every destination
//!   whose selection the router says changed
//!   ([`mycelium_proto::routing::Router::take_selection_changes`]), or towards
//!   every destination after a restart or when the router's log overflowed.
//! - If the graph had no cycle before the event, any cycle after it goes through a
//!   node whose edge changed. So following next hops from each changed node, for
//!   each destination whose edge changed, finds every new cycle.
//!
//! Unlike `find_loop`, destinations that are down are checked too: stale routes to
//! a crashed node must not loop either.
//!
//! The same walk checks that nobody routes through a leaf: a next hop that is a
//! leaf must be the destination itself. A new such edge is a changed edge, so
//! it is seen when it appears.

use std::net::Ipv6Addr;

use mycelium_proto::routing::PeerId;
use mycelium_proto::Subnet;

use crate::check::{LeafTransit, Loop};
use crate::network::{NodeIdx, Sim};

/// Counters of the watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCheckStats {
    /// Times the watch ran: once after every event and every failure or repair.
    pub rounds: u64,
    /// Routing tables compared because their generation moved.
    pub tables_diffed: u64,
    /// (node, destination) next hops that changed and were followed to the end.
    pub paths_followed: u64,
    /// Full checks of every destination from every node (a cross-check of the
    /// incremental one).
    pub full_checks: u64,
}

/// The incremental loop check over one simulated network of fixed size.
#[derive(Debug)]
pub(crate) struct LoopWatch {
    n: usize,
    addrs: Vec<Ipv6Addr>,
    /// Each destination's /64, the only prefixes in a simulated network.
    subnets: Vec<Subnet>,
    /// Per node: the table generation at the last comparison; `None` when the
    /// node is down or was never compared (a restarted router counts afresh).
    generations: Vec<Option<u64>>,
    /// `hops[node * n + destination]`: the next hop last seen.
    hops: Vec<Option<PeerId>>,
    touched: Vec<NodeIdx>,
    /// Destination index by its /64.
    index: std::collections::HashMap<Subnet, NodeIdx>,
    /// Per node: whether it is a leaf.
    leaves: Vec<bool>,
    /// Scratch: the subnets a router reported changed, then the destinations.
    changed: Vec<Subnet>,
    dests: Vec<NodeIdx>,
    /// Visit marks for a walk; a walk owns the current stamp.
    marks: Vec<u32>,
    stamp: u32,
    pub(crate) stats: LoopCheckStats,
}

impl LoopWatch {
    /// A watch over `sim`, which it sets to track touched nodes. The first
    /// [`LoopWatch::check`] compares every node.
    pub(crate) fn new(sim: &mut Sim) -> Self {
        let n = sim.node_count();
        sim.set_track_touched(true);
        Self {
            n,
            addrs: (0..n).map(|i| sim.address(i)).collect(),
            subnets: (0..n).map(|i| Subnet::v6_64(sim.address(i))).collect(),
            generations: vec![None; n],
            hops: vec![None; n * n],
            touched: (0..n).collect(),
            index: (0..n).map(|i| (Subnet::v6_64(sim.address(i)), i)).collect(),
            leaves: (0..n).map(|i| sim.is_leaf(i)).collect(),
            changed: Vec::new(),
            dests: Vec::new(),
            marks: vec![0; n],
            stamp: 0,
            stats: LoopCheckStats::default(),
        }
    }

    /// Checks what the events since the last call can have changed; adds the new
    /// cycles found to `found`, and the new next hops through a leaf to
    /// `transits`.
    pub(crate) fn check(
        &mut self,
        sim: &mut Sim,
        found: &mut Vec<Loop>,
        transits: &mut Vec<LeafTransit>,
    ) {
        self.stats.rounds += 1;
        let mut touched = std::mem::take(&mut self.touched);
        let mut more = Vec::new();
        sim.take_touched(&mut more);
        touched.append(&mut more);
        for &u in &touched {
            self.recheck(sim, u, found, transits);
        }
        touched.clear();
        self.touched = touched;
    }

    fn recheck(
        &mut self,
        sim: &mut Sim,
        u: NodeIdx,
        found: &mut Vec<Loop>,
        transits: &mut Vec<LeafTransit>,
    ) {
        let n = self.n;
        let Some(router) = sim.router_mut(u) else {
            if self.generations[u].take().is_some() {
                self.hops[u * n..(u + 1) * n].fill(None);
            }
            return;
        };
        let generation = router.table_generation();
        if self.generations[u] == Some(generation) {
            return;
        }
        // A router seen for the first time (or restarted) is compared in full,
        // and from then on tells which subnets changed.
        let fresh = self.generations[u].is_none();
        router.track_selection_changes();
        self.changed.clear();
        let listed = router.take_selection_changes(&mut self.changed);
        self.generations[u] = Some(generation);
        self.stats.tables_diffed += 1;
        self.dests.clear();
        if fresh || !listed {
            self.dests.extend(0..n);
        } else {
            let index = &self.index;
            self.dests
                .extend(self.changed.iter().filter_map(|s| index.get(s).copied()));
        }
        let sim: &Sim = sim;
        let Some(router) = sim.router(u) else {
            return;
        };
        for i in 0..self.dests.len() {
            let d = self.dests[i];
            // The selected route of the destination's /64 is what `next_hop` finds:
            // nodes announce nothing else. (An exact lookup, without the
            // longest-prefix search: this loop is most of the check's cost.)
            let hop = if d == u {
                None
            } else {
                router.selected_route(&self.subnets[d]).map(|r| r.neighbour)
            };
            if self.hops[u * n + d] == hop {
                continue;
            }
            self.hops[u * n + d] = hop;
            if hop.is_some() {
                if let Some(next) = sim.next_hop_node(u, self.addrs[d]) {
                    if next != d && self.leaves[next] {
                        transits.push(LeafTransit {
                            node: u,
                            destination: d,
                            leaf: next,
                        });
                    }
                }
                self.stats.paths_followed += 1;
                if let Err(l) = self.follow(sim, u, d) {
                    found.push(l);
                }
            }
        }
    }

    /// Follows next hops from `u` towards `d` until they end or repeat.
    fn follow(&mut self, sim: &Sim, u: NodeIdx, d: NodeIdx) -> Result<(), Loop> {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
        let addr = self.addrs[d];
        let mut at = u;
        loop {
            if at == d {
                return Ok(());
            }
            if self.marks[at] == self.stamp {
                return Err(cycle_from(sim, at, addr, d));
            }
            self.marks[at] = self.stamp;
            match sim.next_hop_node(at, addr) {
                Some(next) => at = next,
                None => return Ok(()),
            }
        }
    }

    /// Confirms that the next hops the watch last saw are every node's next hops
    /// now: that no change escaped it.
    pub(crate) fn verify(&self, sim: &Sim) -> Result<(), String> {
        let n = self.n;
        for u in 0..n {
            for d in 0..n {
                let now = if d == u {
                    None
                } else {
                    sim.router(u).and_then(|r| r.next_hop(self.addrs[d]))
                };
                let seen = self.hops[u * n + d];
                if now != seen {
                    return Err(format!(
                        "node {u} towards {d}: next hop {now:?}, the watch saw {seen:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every destination, up or down, from every node.
    pub(crate) fn full_check(&mut self, sim: &Sim) -> Result<(), Loop> {
        self.stats.full_checks += 1;
        full_check(sim)
    }
}

/// Whether the cycle `l` is still there.
pub(crate) fn still_loops(sim: &Sim, l: &Loop) -> bool {
    let addr = sim.address(l.destination);
    let Some(&first) = l.nodes.first() else {
        return false;
    };
    let mut at = first;
    for &expected in l.nodes.iter().skip(1).chain(std::iter::once(&first)) {
        match sim.next_hop_node(at, addr) {
            Some(next) if next == expected => at = next,
            _ => return false,
        }
    }
    true
}

/// The cycle through `start` towards `d`.
fn cycle_from(sim: &Sim, start: NodeIdx, addr: Ipv6Addr, d: NodeIdx) -> Loop {
    let mut nodes = vec![start];
    let mut at = start;
    while let Some(next) = sim.next_hop_node(at, addr) {
        if next == start || nodes.len() > sim.node_count() {
            break;
        }
        nodes.push(next);
        at = next;
    }
    Loop {
        destination: d,
        nodes,
    }
}

/// Every destination (up or down) from every node: the full check.
pub(crate) fn full_check(sim: &Sim) -> Result<(), Loop> {
    let n = sim.node_count();
    // 0 = unvisited, 1 = on the current path, 2 = known to end without a cycle.
    let mut state = vec![0u8; n];
    let mut path = Vec::new();
    for d in 0..n {
        let addr = sim.address(d);
        state.fill(0);
        state[d] = 2;
        for start in 0..n {
            path.clear();
            let mut at = start;
            loop {
                match state[at] {
                    2 => break,
                    1 => return Err(cycle_from(sim, at, addr, d)),
                    _ => {}
                }
                state[at] = 1;
                path.push(at);
                match sim.next_hop_node(at, addr) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            for &p in &path {
                state[p] = 2;
            }
        }
    }
    Ok(())
}
