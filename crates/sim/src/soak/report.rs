//! What a soak reports: the counts of failures, messages, loops and table sizes,
//! and their printed form.

use std::fmt;
use std::time::Duration;

use super::config::SoakConfig;
use super::loops::LoopCheckStats;
use super::world::DataStats;
use crate::network::{Sim, SimStats};
use mycelium_proto::routing::RouterStats;

/// Failures and repairs done, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChurnCounts {
    /// Links cut (the connection closes at once).
    pub cuts: u64,
    /// Links silenced (everything held, the connection stays).
    pub silences: u64,
    /// Cut links restored.
    pub cut_restores: u64,
    /// Silenced links restored.
    pub silence_restores: u64,
    /// Crashes by process exit.
    pub exits: u64,
    /// Crashes by power loss.
    pub power_losses: u64,
    /// Restarts.
    pub restarts: u64,
    /// Most links down at once.
    pub max_links_down: usize,
    /// Most nodes down at once.
    pub max_nodes_down: usize,
    /// Links down, summed over the churn events (for the average).
    links_down_sum: u64,
    /// Nodes down, summed over the churn events (for the average).
    nodes_down_sum: u64,
}

impl ChurnCounts {
    /// Every failure and repair.
    pub fn total(&self) -> u64 {
        self.cuts
            + self.silences
            + self.cut_restores
            + self.silence_restores
            + self.exits
            + self.power_losses
            + self.restarts
    }

    /// Counts what is down after a failure or repair.
    pub(super) fn note_down(&mut self, links_down: usize, nodes_down: usize) {
        self.max_links_down = self.max_links_down.max(links_down);
        self.max_nodes_down = self.max_nodes_down.max(nodes_down);
        self.links_down_sum += links_down as u64;
        self.nodes_down_sum += nodes_down as u64;
    }
}

/// What happened to the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Pushed.
    pub sent: u64,
    /// Arrived exactly once and intact (with or without an excuse).
    pub delivered: u64,
    /// Of those, reported delivered to their sender.
    pub confirmed: u64,
    /// Not delivered, excused because the sender went down in the window.
    pub excused_sender_down: u64,
    /// Excused because the receiver went down in the window.
    pub excused_receiver_down: u64,
    /// Excused because no path of working links joined the pair at some moment.
    pub excused_no_path: u64,
    /// Delivered messages that had an excuse (counted as delivered).
    pub excused_but_delivered: u64,
    /// Delivered messages whose sender or receiver is a leaf.
    pub leaf_delivered: u64,
    /// Had time to arrive and did not, arrived twice or corrupted, or arrived
    /// without its sender hearing so: failures.
    pub lost: u64,
    /// Not judged when the run ended (none once the settle time covers a window).
    pub unjudged: u64,
}

impl MessageCounts {
    /// Excused, whatever the reason.
    pub fn excused(&self) -> u64 {
        self.excused_sender_down + self.excused_receiver_down + self.excused_no_path
    }
}

/// Routing loops found, and next hops through a leaf (each one a failure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCounts {
    /// Distinct cycles found.
    pub found: u64,
    /// How long the longest one that went away lasted.
    pub longest: Duration,
    /// Events the longest (in events) one that went away lasted.
    pub longest_steps: u64,
    /// Time summed over those that went away.
    pub total_time: Duration,
    /// Those that went away within the same simulated instant (a burst of TLVs
    /// arriving together, e.g. what a silent link held).
    pub instantaneous: u64,
    /// Still there at the end.
    pub open_at_end: u64,
    /// Next hops through a leaf to another destination (each a failure).
    pub leaf_transits: u64,
}

/// What the leaves' routers counted, summed over every leaf and every run of
/// its router (a crash takes a router's counters with it: they are added up
/// first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeafCounts {
    /// Subnets evicted to make room in a cache.
    pub evictions: u64,
    /// Lookups that found no route in the cache and asked for one.
    pub misses: u64,
    /// Uses of cached subnets the data plane reported.
    pub hits: u64,
    /// Updates dropped unseen, for subnets a leaf neither held nor looked for.
    pub updates_ignored: u64,
}

impl LeafCounts {
    /// Adds a leaf router's counters.
    pub(super) fn add(&mut self, s: RouterStats) {
        self.evictions += s.leaf_evictions;
        self.misses += s.leaf_misses;
        self.hits += s.leaf_hits;
        self.updates_ignored += s.leaf_updates_ignored;
    }

    /// `retired` plus the counters of the leaves running in `sim`.
    pub(super) fn with_running(retired: Self, sim: &Sim) -> Self {
        let mut all = retired;
        for r in (0..sim.node_count()).filter_map(|i| sim.router(i)) {
            if r.is_leaf() {
                all.add(r.stats());
            }
        }
        all
    }
}

/// Routing table sizes over the running nodes: the full nodes, and apart from
/// them the leaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Running full nodes measured.
    pub nodes: usize,
    /// Subnets per table: least, most, total.
    pub subnets: (usize, usize, usize),
    /// Route entries per table: least, most, total.
    pub routes: (usize, usize, usize),
    /// Selected routes per table: least, most.
    pub selected: (usize, usize),
    /// Source-table entries and remembered requests, most in one node.
    pub sources_max: usize,
    /// Remembered seqno requests, most in one node.
    pub seqno_requests_max: usize,
    /// Remembered route requests, most in one node.
    pub route_requests_max: usize,
    /// Running leaves measured.
    pub leaves: usize,
    /// Subnets per leaf table (cached or looked for): least, most, total.
    pub leaf_subnets: (usize, usize, usize),
}

impl TableSizes {
    /// The tables of the nodes running now.
    pub(super) fn measure(sim: &Sim) -> Self {
        let mut t = Self {
            subnets: (usize::MAX, 0, 0),
            routes: (usize::MAX, 0, 0),
            selected: (usize::MAX, 0),
            leaf_subnets: (usize::MAX, 0, 0),
            ..Self::default()
        };
        for r in (0..sim.node_count()).filter_map(|i| sim.router(i)) {
            let (subnets, routes) = r.table_size();
            if r.is_leaf() {
                t.leaves += 1;
                t.leaf_subnets = (
                    t.leaf_subnets.0.min(subnets),
                    t.leaf_subnets.1.max(subnets),
                    t.leaf_subnets.2 + subnets,
                );
                continue;
            }
            t.nodes += 1;
            let selected = r.selected_count();
            let (sources, seqno, rr) = r.cache_sizes();
            t.subnets = (
                t.subnets.0.min(subnets),
                t.subnets.1.max(subnets),
                t.subnets.2 + subnets,
            );
            t.routes = (
                t.routes.0.min(routes),
                t.routes.1.max(routes),
                t.routes.2 + routes,
            );
            t.selected = (t.selected.0.min(selected), t.selected.1.max(selected));
            t.sources_max = t.sources_max.max(sources);
            t.seqno_requests_max = t.seqno_requests_max.max(seqno);
            t.route_requests_max = t.route_requests_max.max(rr);
        }
        if t.nodes == 0 {
            t.subnets.0 = 0;
            t.routes.0 = 0;
            t.selected.0 = 0;
        }
        if t.leaves == 0 {
            t.leaf_subnets.0 = 0;
        }
        t
    }

    /// The extremes of two measures: the lesser minima, the greater maxima and totals.
    pub(super) fn max_with(self, o: Self) -> Self {
        Self {
            nodes: self.nodes.max(o.nodes),
            subnets: (
                self.subnets.0.min(o.subnets.0),
                self.subnets.1.max(o.subnets.1),
                self.subnets.2.max(o.subnets.2),
            ),
            routes: (
                self.routes.0.min(o.routes.0),
                self.routes.1.max(o.routes.1),
                self.routes.2.max(o.routes.2),
            ),
            selected: (
                self.selected.0.min(o.selected.0),
                self.selected.1.max(o.selected.1),
            ),
            sources_max: self.sources_max.max(o.sources_max),
            seqno_requests_max: self.seqno_requests_max.max(o.seqno_requests_max),
            route_requests_max: self.route_requests_max.max(o.route_requests_max),
            leaves: self.leaves.max(o.leaves),
            leaf_subnets: (
                self.leaf_subnets.0.min(o.leaf_subnets.0),
                self.leaf_subnets.1.max(o.leaf_subnets.1),
                self.leaf_subnets.2.max(o.leaf_subnets.2),
            ),
        }
    }
}

/// The figures of one soak.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The configuration run.
    pub cfg: SoakConfig,
    /// Links in the graph.
    pub links: usize,
    /// Simulated time to the first full convergence.
    pub converged_in: Duration,
    /// Simulated time, from start to end.
    pub simulated: Duration,
    /// Simulated time of churn done: [`SoakConfig::churn`] unless the wall-time
    /// limit cut it short.
    pub churned: Duration,
    /// Failures and repairs.
    pub churn: ChurnCounts,
    /// Loop checks.
    pub loop_checks: LoopCheckStats,
    /// Loops found.
    pub loops: LoopCounts,
    /// Messages.
    pub messages: MessageCounts,
    /// Data packets.
    pub data: DataStats,
    /// The leaves' cache counters.
    pub leaf: LeafCounts,
    /// The simulator's counters.
    pub sim: SimStats,
    /// Simulated time from the final repair until every node reached every other;
    /// `None` if that did not happen within the settle time.
    pub healed_in: Option<Duration>,
    /// Route tables at the end.
    pub tables_end: TableSizes,
    /// Route tables, extremes over per-minute samples and the end.
    pub tables_peak: TableSizes,
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// What went wrong: a loop (the run stops there), lost messages, no healing.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// No loop, no lost message, healed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
            && self.loops.found == 0
            && self.loops.leaf_transits == 0
            && self.messages.lost == 0
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cfg;
        let ch = &self.churn;
        let churn_s = self.churned.as_secs_f64().max(1e-9);
        let m = &self.messages;
        let l = &self.loop_checks;
        let d = &self.data;
        let s = &self.sim;
        writeln!(f, "churn soak, seed {}", c.seed)?;
        writeln!(
            f,
            "network        {} nodes, {} links (degree {}), latency {:?}..{:?}, \
             control loss {}, data loss {}",
            c.nodes, self.links, c.degree, c.latency.0, c.latency.1, c.control_loss, c.data_loss
        )?;
        if c.leaf_count() > 0 {
            writeln!(
                f,
                "leaves         {} of the nodes, caching {} subnets each",
                c.leaf_count(),
                c.leaf_routes
            )?;
        }
        writeln!(
            f,
            "simulated      {:.1} s total: converged in {:.1} s, churn {:.1} s{}, settle {:.1} s",
            self.simulated.as_secs_f64(),
            self.converged_in.as_secs_f64(),
            self.churned.as_secs_f64(),
            if self.churned < c.churn {
                format!(
                    " (of {:.1} s planned: cut short by the wall-time limit)",
                    c.churn.as_secs_f64()
                )
            } else {
                String::new()
            },
            c.settle.as_secs_f64()
        )?;
        writeln!(
            f,
            "churn events   {} ({:.2}/s): {} cuts, {} silences, {} cut restores, \
             {} silence restores, {} exits, {} power losses, {} restarts",
            ch.total(),
            ch.total() as f64 / churn_s,
            ch.cuts,
            ch.silences,
            ch.cut_restores,
            ch.silence_restores,
            ch.exits,
            ch.power_losses,
            ch.restarts
        )?;
        let events = (ch.total()).max(1) as f64;
        writeln!(
            f,
            "down at once   links avg {:.1} max {}, nodes avg {:.1} max {} \
             (pace: link mtbf {:?}, node mtbf {:?}, {}% flaps)",
            ch.links_down_sum as f64 / events,
            ch.max_links_down,
            ch.nodes_down_sum as f64 / events,
            ch.max_nodes_down,
            c.link_mtbf,
            c.node_mtbf,
            (c.flap_share * 100.0).round()
        )?;
        writeln!(
            f,
            "sim            {} steps, {} TLVs sent, {} delivered, {} dropped, {} dead-peer closes",
            s.steps, s.sent, s.delivered, s.dropped, s.dead_peers
        )?;
        writeln!(
            f,
            "loop checks    {} rounds (one per event), {} tables diffed, {} paths followed, \
             {} full checks",
            l.rounds, l.tables_diffed, l.paths_followed, l.full_checks,
        )?;
        writeln!(
            f,
            "loops found    {} ({} gone within the same instant; longest {:.3} s, \
             longest {} events; {:.3} s in all; {} still there at the end)",
            self.loops.found,
            self.loops.instantaneous,
            self.loops.longest.as_secs_f64(),
            self.loops.longest_steps,
            self.loops.total_time.as_secs_f64(),
            self.loops.open_at_end
        )?;
        if c.leaf_count() > 0 {
            writeln!(
                f,
                "leaf transit   {} next hops through a leaf towards another node",
                self.loops.leaf_transits
            )?;
        }
        writeln!(
            f,
            "messages       {} sent, {} delivered ({} confirmed to sender, {} despite an excuse), \
             {} excused ({} sender down, {} receiver down, {} no path), {} LOST, {} unjudged",
            m.sent,
            m.delivered,
            m.confirmed,
            m.excused_but_delivered,
            m.excused(),
            m.excused_sender_down,
            m.excused_receiver_down,
            m.excused_no_path,
            m.lost,
            m.unjudged
        )?;
        writeln!(
            f,
            "data packets   {} forwarded, {} arrived, {} unrouted, {} lost on links, \
             {} cut off, max {} hops",
            d.forwarded, d.arrived, d.unrouted, d.lost, d.cut_off, d.max_hops
        )?;
        if c.leaf_count() > 0 {
            let lc = &self.leaf;
            writeln!(
                f,
                "leaf traffic   {} messages delivered to or from a leaf; frames dropped while \
                 a leaf asked for a route: {} to their destination, {} to their source (its \
                 key); caches: {} misses, {} hits, {} evictions, {} pushed updates ignored",
                m.leaf_delivered,
                d.awaiting_route,
                d.awaiting_key,
                lc.misses,
                lc.hits,
                lc.evictions,
                lc.updates_ignored
            )?;
        }
        for (name, t) in [
            ("tables end", &self.tables_end),
            ("tables peak", &self.tables_peak),
        ] {
            let n = t.nodes.max(1);
            writeln!(
                f,
                "{name:<14} {} nodes; subnets min {} avg {} max {}; routes min {} avg {} max {} \
                 (total {}); selected min {} max {}; sources max {}, seqno req max {}, \
                 route req max {}",
                t.nodes,
                t.subnets.0,
                t.subnets.2 / n,
                t.subnets.1,
                t.routes.0,
                t.routes.2 / n,
                t.routes.1,
                t.routes.2,
                t.selected.0,
                t.selected.1,
                t.sources_max,
                t.seqno_requests_max,
                t.route_requests_max
            )?;
            if t.leaves > 0 {
                writeln!(
                    f,
                    "{:<14} {} leaves; subnets min {} avg {} max {}",
                    "",
                    t.leaves,
                    t.leaf_subnets.0,
                    t.leaf_subnets.2 / t.leaves,
                    t.leaf_subnets.1
                )?;
            }
        }
        match self.healed_in {
            Some(h) => writeln!(
                f,
                "healed         every {} {:.1} s after the final repair",
                if c.leaf_count() > 0 {
                    "full node reaches every node"
                } else {
                    "node reaches every other"
                },
                h.as_secs_f64()
            )?,
            None => writeln!(f, "healed         NO")?,
        }
        writeln!(f, "wall time      {:.1} s", self.wall.as_secs_f64())?;
        if self.failures.is_empty() {
            writeln!(f, "result         PASS")?;
        } else {
            writeln!(
                f,
                "result         FAIL ({} loops, {} lost messages, {} failures listed)",
                self.loops.found,
                self.messages.lost,
                self.failures.len()
            )?;
            for x in self.failures.iter().take(20) {
                writeln!(f, "  {x}")?;
            }
        }
        Ok(())
    }
}
