//! Graph builders: line, ring, grid and random connected graphs, and networks
//! with leaves.

use mycelium_proto::routing::{Leaf, RouterConfig};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::network::{LinkConfig, NodeIdx, Sim};

/// Adds `n` nodes joined in a line; returns them in order.
pub fn line(sim: &mut Sim, n: usize, link: LinkConfig) -> Vec<NodeIdx> {
    let nodes: Vec<NodeIdx> = (0..n).map(|_| sim.add_node()).collect();
    for w in nodes.windows(2) {
        sim.add_link(w[0], w[1], link);
    }
    nodes
}

/// Adds `n` nodes joined in a ring.
pub fn ring(sim: &mut Sim, n: usize, link: LinkConfig) -> Vec<NodeIdx> {
    let nodes = line(sim, n, link);
    if n > 2 {
        sim.add_link(nodes[n - 1], nodes[0], link);
    }
    nodes
}

/// Adds a `w` × `h` grid, row by row.
pub fn grid(sim: &mut Sim, w: usize, h: usize, link: LinkConfig) -> Vec<NodeIdx> {
    let nodes: Vec<NodeIdx> = (0..w * h).map(|_| sim.add_node()).collect();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w {
                sim.add_link(nodes[i], nodes[i + 1], link);
            }
            if y + 1 < h {
                sim.add_link(nodes[i], nodes[i + w], link);
            }
        }
    }
    nodes
}

/// Adds `n` nodes in a random connected graph of average degree about `degree`
/// (at least 2): a random tree keeps it connected, random extra links make up the
/// rest. Links never repeat or loop.
pub fn random_connected(sim: &mut Sim, n: usize, degree: usize, link: LinkConfig) -> Vec<NodeIdx> {
    let nodes: Vec<NodeIdx> = (0..n).map(|_| sim.add_node()).collect();
    let mut edges = std::collections::BTreeSet::new();
    for i in 1..n {
        let j = sim.rng().gen_range(0..i);
        edges.insert((j, i));
    }
    let target = (n * degree.max(2) / 2).min(n * n.saturating_sub(1) / 2);
    while edges.len() < target {
        let a = sim.rng().gen_range(0..n);
        let b = sim.rng().gen_range(0..n);
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    for (a, b) in edges {
        sim.add_link(nodes[a], nodes[b], link);
    }
    nodes
}

/// A network built by [`with_leaves`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafNetwork {
    /// The full nodes: the backbone.
    pub full: Vec<NodeIdx>,
    /// The leaves, in the order of their cache sizes.
    pub leaves: Vec<NodeIdx>,
}

/// Adds a network where some nodes are leaves: a random connected backbone of
/// `full` full nodes (average degree about `degree`, as [`random_connected`]),
/// then one leaf per entry of `leaf_routes`, caching that many subnets. Each
/// leaf is linked to a random full node; a third of them (at random) to a second
/// one as well, to fail over to; and one leaf in five gets a link to another
/// leaf. Every pair of nodes is joined by a path whose intermediate nodes are
/// all full nodes, so a leaf is never needed as transit (nor, announcing only
/// its own subnet, ever used as such).
///
/// The leaves run the network's configuration ([`Sim::config`]) in leaf mode.
/// With no leaves this is exactly [`random_connected`]; with no full nodes the
/// leaves are left unlinked.
pub fn with_leaves(
    sim: &mut Sim,
    full: usize,
    leaf_routes: &[usize],
    degree: usize,
    link: LinkConfig,
) -> LeafNetwork {
    let backbone = random_connected(sim, full, degree, link);
    let leaves: Vec<NodeIdx> = leaf_routes
        .iter()
        .map(|&routes| {
            let cfg = RouterConfig {
                leaf: Some(Leaf { routes }),
                ..sim.config().clone()
            };
            sim.add_node_with(cfg)
        })
        .collect();
    if backbone.is_empty() {
        return LeafNetwork {
            full: backbone,
            leaves,
        };
    }
    for &leaf in &leaves {
        let uplinks = if backbone.len() > 1 && sim.rng().gen_ratio(1, 3) {
            2
        } else {
            1
        };
        let chosen: Vec<NodeIdx> = backbone
            .choose_multiple(sim.rng(), uplinks)
            .copied()
            .collect();
        for up in chosen {
            sim.add_link(leaf, up, link);
        }
    }
    let mut pairs = std::collections::BTreeSet::new();
    if leaves.len() > 1 {
        while pairs.len() < leaves.len() / 5 {
            let a = sim.rng().gen_range(0..leaves.len());
            let b = sim.rng().gen_range(0..leaves.len());
            if a != b {
                pairs.insert((a.min(b), a.max(b)));
            }
        }
    }
    for (a, b) in pairs {
        sim.add_link(leaves[a], leaves[b], link);
    }
    LeafNetwork {
        full: backbone,
        leaves,
    }
}
