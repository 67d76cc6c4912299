//! Invariants and convergence, checked over the whole simulated network.

use mycelium_proto::forward::{transit, Transit};
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::packet;
use mycelium_proto::wire::view::DataFrame;
use mycelium_proto::Subnet;

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

/// The pairs (from, to) of running nodes between which a data packet does not
/// arrive: one sent from `from` with hop limit 64 is carried hop by hop as a node
/// carries it ([`mycelium_proto::forward::transit`]: one hop taken per node, the
/// next hop from the node's selected route), and is lost where a node has no
/// route or the hops run out.
pub fn unreachable_pairs(sim: &Sim) -> Vec<(NodeIdx, NodeIdx)> {
    unreachable_from(sim, |_| true)
}

/// [`unreachable_pairs`] from the running full nodes only, to every running node.
/// What a network with leaves converges to: a leaf holds only the routes it uses
/// (see [`reaches`] for those).
pub fn unreachable_from_full_nodes(sim: &Sim) -> Vec<(NodeIdx, NodeIdx)> {
    unreachable_from(sim, |n| !sim.is_leaf(n))
}

/// The pairs of running nodes, the source one `source` accepts, that a data
/// packet does not join.
fn unreachable_from(sim: &Sim, source: impl Fn(NodeIdx) -> bool) -> Vec<(NodeIdx, NodeIdx)> {
    let n = sim.node_count();
    let up: Vec<NodeIdx> = (0..n).filter(|&i| sim.is_up(i)).collect();
    let mut bad = Vec::new();
    let mut frame = Vec::with_capacity(DataFrame::HEADER_LEN);
    for &dst in &up {
        for &src in up.iter().filter(|&&s| s != dst && source(s)) {
            if !delivers(sim, src, dst, &mut frame) {
                bad.push((src, dst));
            }
        }
    }
    bad
}

/// Whether a data packet from `from` arrives at `to`, carried hop by hop over
/// selected routes as in [`unreachable_pairs`]. Both must be running.
pub fn reaches(sim: &Sim, from: NodeIdx, to: NodeIdx) -> bool {
    from != to
        && sim.is_up(from)
        && sim.is_up(to)
        && delivers(
            sim,
            from,
            to,
            &mut Vec::with_capacity(DataFrame::HEADER_LEN),
        )
}

/// Carries a data packet from `src` to `dst` (`frame` is scratch space for it).
fn delivers(sim: &Sim, src: NodeIdx, dst: NodeIdx, frame: &mut Vec<u8>) -> bool {
    // A data header and no payload: what the routing of a packet looks at.
    frame.clear();
    packet::encode_header(packet::TYPE_DATA, frame);
    DataHeader {
        hop_limit: 64,
        src: sim.address(src),
        dst: sim.address(dst),
    }
    .encode(0, frame);
    let Ok(mut view) = DataFrame::new_checked(&mut frame[..]) else {
        return false;
    };
    let mut at = src;
    loop {
        let own = Subnet::v6_64(sim.address(at));
        match transit(&mut view, own, |d| sim.next_hop_node(at, d)) {
            Transit::Deliver => return at == dst,
            Transit::Forward(next) => at = next,
            Transit::Expired | Transit::Unrouted => return false,
        }
    }
}

/// Whether every running full node selects a route to every other running node (a
/// cheap count; [`unreachable_pairs`] then confirms the routes lead there). Leaves
/// hold only the routes they use, and are not counted.
pub fn all_routes_selected(sim: &Sim) -> bool {
    let up = (0..sim.node_count()).filter(|&i| sim.is_up(i)).count();
    (0..sim.node_count())
        .filter(|&i| !sim.is_leaf(i))
        .filter_map(|i| sim.router(i))
        .all(|r| r.selected_count() >= up - 1)
}

/// A node whose selected route for another node's address goes through a leaf
/// that is not that node: a leaf announces only its own subnet, so nobody may
/// route through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafTransit {
    /// The node that routes through the leaf.
    pub node: NodeIdx,
    /// The destination it routes to.
    pub destination: NodeIdx,
    /// The leaf it routes through.
    pub leaf: NodeIdx,
}

/// Finds a running node that selects a leaf as next hop towards any node (up or
/// down) other than that leaf.
pub fn leaf_transit(sim: &Sim) -> Option<LeafTransit> {
    let n = sim.node_count();
    (0..n).filter(|&u| sim.is_up(u)).find_map(|node| {
        (0..n).filter(|&d| d != node).find_map(|destination| {
            let leaf = sim.next_hop_node(node, sim.address(destination))?;
            (leaf != destination && sim.is_leaf(leaf)).then_some(LeafTransit {
                node,
                destination,
                leaf,
            })
        })
    })
}

/// Finds a running leaf that holds more subnets than its cache allows; returns
/// the leaf, the subnets held and the cache size.
pub fn overfull_leaf(sim: &Sim) -> Option<(NodeIdx, usize, usize)> {
    (0..sim.node_count()).find_map(|i| {
        let r = sim.router(i)?;
        let capacity = r.leaf_capacity()?;
        let held = r.table_size().0;
        (held > capacity).then_some((i, held, capacity))
    })
}
