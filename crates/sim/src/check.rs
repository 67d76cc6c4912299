//! Invariants and convergence, checked over the whole simulated network.

use crate::network::{NodeIdx, Sim};

/// A routing loop: following next hops towards `destination` cycles through `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The destination whose next hops cycle.
    pub destination: NodeIdx,
    /// The nodes on the cycle, in next-hop order.
    pub nodes: Vec<NodeIdx>,
}

impl Loop {
    /// What each node on the loop holds for the destination, for a failure message.
    pub fn describe(&self, sim: &Sim) -> String {
        let subnet = mycelium_proto::Subnet::v6_64(sim.address(self.destination));
        let mut out = format!(
            "loop towards node {} ({subnet}) at {:?} through {:?}\n",
            self.destination,
            sim.now(),
            self.nodes
        );
        for &n in &self.nodes {
            if let Some(r) = sim.router(n) {
                let entry = r.subnets().find(|(s, _)| *s == subnet).map(|(_, e)| e);
                out += &format!("  node {n}: {entry:?}\n");
            }
        }
        out
    }
}

/// Checks that, for every running destination, following selected next hops never
/// goes round in a circle. Returns the first loop found.
pub fn find_loop(sim: &Sim) -> Option<Loop> {
    let n = sim.node_count();
    // 0 = unvisited, 1 = on the current path, 2 = known to end without a loop.
    let mut state = vec![0u8; n];
    for dst in (0..n).filter(|&d| sim.is_up(d)) {
        let addr = sim.address(dst);
        state.fill(0);
        state[dst] = 2;
        for start in 0..n {
            let mut path = Vec::new();
            let mut at = start;
            loop {
                match state[at] {
                    2 => break,
                    1 => {
                        let from = path.iter().position(|&p| p == at).unwrap_or(0);
                        return Some(Loop {
                            destination: dst,
                            nodes: path[from..].to_vec(),
                        });
                    }
                    _ => {}
                }
                state[at] = 1;
                path.push(at);
                match sim.next_hop_node(at, addr) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            for p in path {
                state[p] = 2;
            }
        }
    }
    None
}

/// The pairs (from, to) of running nodes where `from` has no selected route to
/// `to`'s subnet, or following next hops from `from` does not reach `to`.
pub fn unreachable_pairs(sim: &Sim) -> Vec<(NodeIdx, NodeIdx)> {
    let n = sim.node_count();
    let up: Vec<NodeIdx> = (0..n).filter(|&i| sim.is_up(i)).collect();
    let mut bad = Vec::new();
    for &dst in &up {
        let addr = sim.address(dst);
        for &src in &up {
            if src == dst {
                continue;
            }
            let mut at = src;
            let mut hops = 0;
            while at != dst && hops <= n {
                match sim.next_hop_node(at, addr) {
                    Some(next) => at = next,
                    None => break,
                }
                hops += 1;
            }
            if at != dst {
                bad.push((src, dst));
            }
        }
    }
    bad
}

/// Whether every running node selects a route to every other running node (a cheap
/// count; [`unreachable_pairs`] then confirms the routes lead there).
pub fn all_routes_selected(sim: &Sim) -> bool {
    let up = (0..sim.node_count()).filter(|&i| sim.is_up(i)).count();
    (0..sim.node_count())
        .filter_map(|i| sim.router(i))
        .all(|r| r.selected_count() >= up - 1)
}
