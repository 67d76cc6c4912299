//! Failure injection: links cut or silenced, nodes crashed, each failure's repair
//! scheduled when it happens, and which nodes the working links still join.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mycelium_proto::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::SoakConfig;
use super::report::{ChurnCounts, LeafCounts};
use super::world::World;
use crate::network::{CrashKind, LinkIdx, NodeIdx, Sim};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkFailure {
    Cut,
    Silent,
}

/// A scheduled repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Repair {
    Link(LinkIdx),
    Node(NodeIdx),
}

/// The failures in force and the repairs due.
pub(super) struct Churn {
    nodes: usize,
    /// Per link: how it failed, while it is down.
    link_down: Vec<Option<LinkFailure>>,
    /// (when, sequence) → repair.
    repairs: BTreeMap<(Instant, u64), Repair>,
    seq: u64,
    pub(super) counts: ChurnCounts,
    /// The leaf counters of the routers crashes stopped.
    pub(super) retired_leaves: LeafCounts,
}

impl Churn {
    /// Nothing down in a network of `nodes` nodes and `links` links.
    pub(super) fn new(nodes: usize, links: usize) -> Self {
        Self {
            nodes,
            link_down: vec![None; links],
            repairs: BTreeMap::new(),
            seq: 0,
            counts: ChurnCounts::default(),
            retired_leaves: LeafCounts::default(),
        }
    }

    /// Links in the network.
    pub(super) fn links(&self) -> usize {
        self.link_down.len()
    }

    /// Links down now.
    pub(super) fn links_down(&self) -> usize {
        self.link_down.iter().flatten().count()
    }

    /// When the next repair is due.
    pub(super) fn next_repair(&self) -> Option<Instant> {
        self.repairs.keys().next().map(|&(t, _)| t)
    }

    /// Takes the earliest repair due by `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Repair> {
        let entry = self.repairs.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    /// Takes every repair still scheduled, in order.
    pub(super) fn take_all(&mut self) -> Vec<Repair> {
        std::mem::take(&mut self.repairs).into_values().collect()
    }

    fn schedule_repair(&mut self, at: Instant, r: Repair) {
        self.seq += 1;
        self.repairs.insert((at, self.seq), r);
    }

    /// Cuts or silences a random link that is up, and schedules its repair: a short
    /// flap or an exponential outage. False if no such link was found.
    pub(super) fn fail_link(
        &mut self,
        w: &mut World,
        rng: &mut ChaCha8Rng,
        cfg: &SoakConfig,
    ) -> bool {
        let links = self.link_down.len();
        // A random link that is not already down.
        let Some(l) = (0..16)
            .map(|_| rng.gen_range(0..links))
            .find(|&l| self.link_down[l].is_none())
        else {
            return false;
        };
        if rng.gen_bool(0.5) {
            w.sim.cut_link(l);
            self.link_down[l] = Some(LinkFailure::Cut);
            self.counts.cuts += 1;
        } else {
            w.sim.silence_link(l);
            self.link_down[l] = Some(LinkFailure::Silent);
            self.counts.silences += 1;
        }
        let down = if rng.gen_bool(cfg.flap_share) {
            Duration::from_secs_f64(rng.gen_range(0.2..3.0))
        } else {
            let mean = cfg.link_repair.as_secs_f64();
            exp(rng, mean).min(Duration::from_secs_f64(mean * 10.0))
        };
        self.schedule_repair(w.sim.now() + down, Repair::Link(l));
        true
    }

    /// Crashes a random running node (process exit or power loss) and schedules
    /// its restart. False if no such node was found.
    pub(super) fn crash_node(
        &mut self,
        w: &mut World,
        rng: &mut ChaCha8Rng,
        cfg: &SoakConfig,
    ) -> bool {
        let n = self.nodes;
        let Some(node) = (0..16)
            .map(|_| rng.gen_range(0..n))
            .find(|&i| w.sim.is_up(i))
        else {
            return false;
        };
        if let Some(r) = w.sim.router(node).filter(|r| r.is_leaf()) {
            self.retired_leaves.add(r.stats());
        }
        if rng.gen_bool(0.5) {
            w.sim.crash(node, CrashKind::ProcessExit);
            self.counts.exits += 1;
        } else {
            w.sim.crash(node, CrashKind::PowerLoss);
            self.counts.power_losses += 1;
        }
        w.sync_bus(node);
        let mean = cfg.node_repair.as_secs_f64();
        let down =
            Duration::from_secs(1) + exp(rng, mean).min(Duration::from_secs_f64(mean * 10.0));
        self.schedule_repair(w.sim.now() + down, Repair::Node(node));
        true
    }

    /// Restores a link or restarts a node. False if it was not down.
    pub(super) fn repair(&mut self, w: &mut World, r: Repair) -> bool {
        match r {
            Repair::Link(l) => {
                match self.link_down[l].take() {
                    Some(LinkFailure::Cut) => self.counts.cut_restores += 1,
                    Some(LinkFailure::Silent) => self.counts.silence_restores += 1,
                    None => return false,
                }
                w.sim.restore_link(l);
            }
            Repair::Node(n) => {
                if w.sim.is_up(n) {
                    return false;
                }
                w.sim.restart(n);
                w.sync_bus(n);
                self.counts.restarts += 1;
            }
        }
        true
    }

    /// Counts the links and nodes down now, after a failure or repair.
    pub(super) fn note_down(&mut self, sim: &Sim) {
        let links_down = self.links_down();
        let nodes_down = (0..self.nodes).filter(|&n| !sim.is_up(n)).count();
        self.counts.note_down(links_down, nodes_down);
    }

    /// Which running nodes a path of working links joins, with only full nodes
    /// between its two ends (a leaf carries nothing for others).
    pub(super) fn reach(&self, sim: &Sim) -> Reach {
        let n = self.nodes;
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let working: Vec<[NodeIdx; 2]> = self
            .link_down
            .iter()
            .enumerate()
            .filter(|(_, down)| down.is_none())
            .map(|(l, _)| sim.link_ends(l))
            .filter(|&[a, b]| sim.is_up(a) && sim.is_up(b))
            .collect();
        for &[a, b] in working
            .iter()
            .filter(|[a, b]| !sim.is_leaf(*a) && !sim.is_leaf(*b))
        {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra] = rb;
        }
        let comp: Vec<usize> = (0..n).map(|x| root(&mut parent, x)).collect();
        // A full node enters the full nodes' graph at its own component, a leaf at
        // those of the full nodes its working links lead to.
        let mut entries: Vec<Vec<usize>> = (0..n)
            .map(|x| {
                if sim.is_leaf(x) {
                    Vec::new()
                } else {
                    vec![comp[x]]
                }
            })
            .collect();
        let mut leaf_links = BTreeSet::new();
        for &[a, b] in &working {
            match (sim.is_leaf(a), sim.is_leaf(b)) {
                (true, true) => {
                    leaf_links.insert((a.min(b), a.max(b)));
                }
                (true, false) => entries[a].push(comp[b]),
                (false, true) => entries[b].push(comp[a]),
                (false, false) => {}
            }
        }
        Reach {
            entries,
            leaf_links,
        }
    }
}

/// Which nodes a path of working links between running nodes joins, where every
/// node between the two ends is a full node: what a message needs to have time
/// to arrive. Without leaves, two nodes are joined exactly when they share a
/// component of the graph of working links.
pub(super) struct Reach {
    /// Per node, the components of the graph of working links between running
    /// full nodes that it enters: its own for a full node (up or down), those of
    /// the full nodes its working links lead to for a leaf.
    entries: Vec<Vec<usize>>,
    /// Working links between two leaves, (smaller, larger).
    leaf_links: BTreeSet<(NodeIdx, NodeIdx)>,
}

impl Reach {
    /// Whether `a` and `b` are joined.
    pub(super) fn joined(&self, a: NodeIdx, b: NodeIdx) -> bool {
        self.entries[a].iter().any(|c| self.entries[b].contains(c))
            || self.leaf_links.contains(&(a.min(b), a.max(b)))
    }
}

/// An exponential wait of mean `mean` seconds.
pub(super) fn exp(rng: &mut ChaCha8Rng, mean: f64) -> Duration {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    Duration::from_secs_f64(-u.ln() * mean)
}
