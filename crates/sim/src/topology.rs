//! Graph builders: line, ring, grid and random connected graphs.

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
