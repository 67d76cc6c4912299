//! The driver: builds the network, runs the phases of [`run`], and after every
//! event, failure or repair checks for loops and hands what happened to the judges.

use std::time::Duration;

use bytes::Bytes;
use mycelium_proto::messages::BusConfig;
use mycelium_proto::time::Instant;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::churn::{exp, Churn, Repair};
use super::config::SoakConfig;
use super::judge::{LoopJudge, MessageJudge, Msg};
use super::loops::{LoopCheckStats, LoopWatch};
use super::report::{ChurnCounts, LeafCounts, LoopCounts, MessageCounts, SoakReport, TableSizes};
use super::world::{DataStats, World};
use crate::check;
use crate::network::{LinkConfig, NodeIdx, Sim, SimStats};
use crate::topology;

/// One soak in progress.
struct Driver {
    cfg: SoakConfig,
    w: World,
    watch: LoopWatch,
    rng: ChaCha8Rng,
    churn: Churn,
    messages: MessageJudge,
    loops: LoopJudge,
    failures: Vec<String>,
    tables_peak: Option<TableSizes>,
}

/// Runs one soak, in three phases:
///
/// 1. A random connected graph ([`topology::random_connected`]) whose links each
///    get a latency drawn log-uniformly from a range, and a loss rate (control
///    TLVs: a retransmission delay on the reliable stream; data packets: dropped).
///    With [`SoakConfig::leaf_share`] set, that graph is of the full nodes, and
///    the leaves hang off it ([`topology::with_leaves`]). The routers converge
///    (every full node reaches every node; leaves ask for routes as they need
///    them), checked for loops throughout.
/// 2. The churn phase. Failures arrive as Poisson processes: each link fails on
///    average once per [`SoakConfig::link_mtbf`] (cut or silenced, half and half),
///    each node crashes once per [`SoakConfig::node_mtbf`] (process exit or power
///    loss, half and half). Every failure schedules its own repair: a link comes back
///    after a short flap (0.2 to 3 s, a share [`SoakConfig::flap_share`] of link
///    failures, some shorter and some longer than the liveness timeout) or an
///    exponential outage (mean [`SoakConfig::link_repair`]); a node restarts after
///    1 s plus an exponential outage (mean [`SoakConfig::node_repair`]). Meanwhile
///    messages go between random running pairs at
///    [`SoakConfig::messages_per_sec`], each tried for [`SoakConfig::try_for`].
/// 3. Repair and settle: every link is restored and every node restarted; the run
///    goes on for [`SoakConfig::settle`] (outstanding messages finish), and every
///    running node (every full node, with leaves) must then reach every other.
pub fn run(cfg: SoakConfig) -> SoakReport {
    let wall = std::time::Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_50a4);
    let mut sim = Sim::new(cfg.seed, cfg.router.clone());
    let leaf_caches = vec![cfg.leaf_routes; cfg.leaf_count()];
    topology::with_leaves(
        &mut sim,
        cfg.nodes - leaf_caches.len(),
        &leaf_caches,
        cfg.degree,
        LinkConfig::default(),
    );
    let links = sim.link_count();
    let lo = cfg.latency.0.as_secs_f64();
    let hi = cfg.latency.1.as_secs_f64().max(lo);
    for l in 0..links {
        let latency = if hi > lo && lo > 0.0 {
            (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln())).exp()
        } else {
            lo
        };
        sim.set_link_config(
            l,
            LinkConfig {
                latency: Duration::from_secs_f64(latency),
                loss: cfg.control_loss,
                ..LinkConfig::default()
            },
        );
    }
    sim.set_trace(cfg.trace);
    let watch = LoopWatch::new(&mut sim);
    let addr_node = (0..cfg.nodes).map(|i| (sim.address(i), i)).collect();
    let leaves = (0..cfg.nodes).map(|i| sim.is_leaf(i)).collect();
    let w = World::new(sim, cfg.data_loss, BusConfig::default());
    let mut d = Driver {
        w,
        watch,
        rng,
        churn: Churn::new(cfg.nodes, links),
        messages: MessageJudge::new(cfg.seed, addr_node, leaves),
        loops: LoopJudge::new(cfg.seed, cfg.trace),
        failures: Vec::new(),
        tables_peak: None,
        cfg: cfg.clone(),
    };
    let mut report = SoakReport {
        cfg,
        links,
        converged_in: Duration::ZERO,
        simulated: Duration::ZERO,
        churned: Duration::ZERO,
        churn: ChurnCounts::default(),
        loop_checks: LoopCheckStats::default(),
        loops: LoopCounts::default(),
        messages: MessageCounts::default(),
        data: DataStats::default(),
        leaf: LeafCounts::default(),
        sim: SimStats::default(),
        healed_in: None,
        tables_end: TableSizes::default(),
        tables_peak: TableSizes::default(),
        wall: Duration::ZERO,
        failures: Vec::new(),
    };
    let outcome = d.run(&mut report, wall);
    if let Err(e) = outcome {
        d.failures.push(e);
    }
    report.simulated = d.w.sim.now() - Instant::ZERO;
    report.churn = d.churn.counts;
    report.loop_checks = d.watch.stats;
    report.loops = d.loops.counts();
    report.messages = d.messages.counts;
    report.data = d.w.stats;
    report.leaf = LeafCounts::with_running(d.churn.retired_leaves, &d.w.sim);
    report.sim = d.w.sim.stats();
    report.tables_end = TableSizes::measure(&d.w.sim);
    report.tables_peak = d
        .tables_peak
        .map_or(report.tables_end, |p| p.max_with(report.tables_end));
    report.failures = d.failures;
    report.wall = wall.elapsed();
    report
}

impl Driver {
    fn now(&self) -> Instant {
        self.w.sim.now()
    }

    /// Checks for loops what changed since the last check. A loop is a failure;
    /// the run goes on, to see how long it lasts.
    fn check(&mut self) -> Result<(), String> {
        let mut found = Vec::new();
        let mut transits = Vec::new();
        self.watch.check(&mut self.w.sim, &mut found, &mut transits);
        self.loops.track(&self.w.sim, found, &mut self.failures);
        for t in transits {
            self.loops.leaf_transit(&self.w.sim, t, &mut self.failures);
        }
        if self.cfg.verify_incremental {
            self.watch
                .verify(&self.w.sim)
                .map_err(|e| format!("LOOP CHECK MISSED A CHANGE (seed {}): {e}", self.cfg.seed))?;
            self.full_check()?;
        }
        Ok(())
    }

    /// Runs the routers to `until`, checking for loops after every event.
    fn advance(&mut self, until: Instant) -> Result<(), String> {
        while self.w.sim.next_event_at().is_some_and(|t| t <= until) {
            self.w.sim.step();
            self.check()?;
        }
        self.w.sim.run_until(until);
        Ok(())
    }

    /// The cross-check: a loop the incremental check has not seen stops the run.
    fn full_check(&mut self) -> Result<(), String> {
        match self.watch.full_check(&self.w.sim) {
            Ok(()) => Ok(()),
            Err(l) => self.loops.missed(&self.w.sim, l).map_or(Ok(()), Err),
        }
    }

    /// The three phases. An error is what stopped the run early (a failure).
    fn run(&mut self, report: &mut SoakReport, wall: std::time::Instant) -> Result<(), String> {
        self.check()?;
        // Converge.
        let start = self.now();
        loop {
            let t = self.now() + Duration::from_secs(1);
            self.advance(t)?;
            if check::all_routes_selected(&self.w.sim)
                && check::unreachable_from_full_nodes(&self.w.sim).is_empty()
            {
                break;
            }
            if self.now() - start > Duration::from_secs(300) {
                return Err("the network did not converge within 300 s".into());
            }
        }
        report.converged_in = self.now() - start;
        self.full_check()?;
        if self.cfg.progress {
            eprintln!(
                "converged in {:.1} s simulated, {:.1} s wall",
                report.converged_in.as_secs_f64(),
                wall.elapsed().as_secs_f64()
            );
        }

        let churn_start = self.now();
        let mut churn_end = churn_start + self.cfg.churn;
        let mut end = churn_end + self.cfg.settle;
        let links = self.churn.links() as f64;
        let nodes = self.cfg.nodes as f64;
        let link_rate = links / self.cfg.link_mtbf.as_secs_f64();
        let node_rate = nodes / self.cfg.node_mtbf.as_secs_f64();
        let mut next_link_fail = self.after(link_rate);
        let mut next_crash = self.after(node_rate);
        let mut next_msg = self.after(self.cfg.messages_per_sec);
        let mut next_full = self.now() + self.cfg.full_check_every;
        let mut next_sample = self.now() + Duration::from_secs(60);
        let mut repaired = None;
        let mut last = self.now();
        let mut stuck = 0u32;
        loop {
            let now = self.now();
            if now == last {
                stuck += 1;
                if stuck > 1_000_000 {
                    return Err(format!("no progress at {now:?}"));
                }
            } else {
                (last, stuck) = (now, 0);
            }
            let over_time = self.cfg.wall_limit.is_some_and(|l| wall.elapsed() > l);
            if over_time && now < churn_end {
                churn_end = now;
                end = churn_end + self.cfg.settle;
            }
            if now >= churn_end && repaired.is_none() {
                report.churned = now - churn_start;
                self.repair_everything()?;
                repaired = Some(now);
            }
            let churning = now < churn_end;
            let next = [
                Some(end),
                self.w.next_due(),
                self.churn.next_repair(),
                self.messages.next_verdict(),
                Some(next_full),
                Some(next_sample),
                churning.then_some(churn_end),
                churning.then_some(next_link_fail),
                churning.then_some(next_crash),
                churning.then_some(next_msg),
            ]
            .into_iter()
            .flatten()
            .filter(|&t| t >= now)
            .min()
            .unwrap_or(end);
            // The healing probe runs once a second after the final repair.
            let next = match (repaired, report.healed_in) {
                (Some(_), None) => next.min(now + Duration::from_secs(1)),
                _ => next,
            };
            self.advance(next)?;
            let now = self.now();
            self.w.run_due();
            self.take_outcomes();
            if let (Some(r), None) = (repaired, report.healed_in) {
                if check::all_routes_selected(&self.w.sim)
                    && check::unreachable_from_full_nodes(&self.w.sim).is_empty()
                {
                    report.healed_in = Some(now - r);
                }
            }
            if now >= end {
                break;
            }
            while let Some(r) = self.churn.take_due(now) {
                self.repair(r)?;
            }
            if churning && now >= next_link_fail {
                self.fail_link()?;
                next_link_fail = now + self.wait(link_rate);
            }
            if churning && now >= next_crash {
                self.crash_node()?;
                next_crash = now + self.wait(node_rate);
            }
            if churning && now >= next_msg {
                self.send_message();
                next_msg = now + self.wait(self.cfg.messages_per_sec);
            }
            self.messages.judge_due(now, &mut self.failures);
            if now >= next_full {
                self.full_check()?;
                next_full = now + self.cfg.full_check_every;
            }
            if now >= next_sample {
                let t = TableSizes::measure(&self.w.sim);
                self.tables_peak = Some(self.tables_peak.map_or(t, |p| p.max_with(t)));
                next_sample = now + Duration::from_secs(60);
                if self.cfg.progress {
                    eprintln!(
                        "t={:>6.0} s  wall {:>6.1} s  steps {:>10}  links down {:>3}  nodes down {:>3}  \
                         msgs {} sent {} delivered {} excused {} lost  packets in flight {}",
                        (now - Instant::ZERO).as_secs_f64(),
                        wall.elapsed().as_secs_f64(),
                        self.w.sim.stats().steps,
                        self.churn.links_down(),
                        (0..self.cfg.nodes).filter(|&n| !self.w.sim.is_up(n)).count(),
                        self.messages.counts.sent,
                        self.messages.counts.delivered,
                        self.messages.counts.excused(),
                        self.messages.counts.lost,
                        self.w.in_flight(),
                    );
                }
            }
        }
        self.full_check()?;
        if report.healed_in.is_none() {
            let bad = check::unreachable_from_full_nodes(&self.w.sim);
            self.failures.push(format!(
                "not healed {:?} after the final repair: {} pairs unreachable, e.g. {:?}",
                self.cfg.settle,
                bad.len(),
                &bad[..bad.len().min(5)]
            ));
        }
        self.messages.close();
        Ok(())
    }

    /// When the next event of a Poisson process of `rate` per second comes.
    fn after(&mut self, rate: f64) -> Instant {
        self.now() + self.wait(rate)
    }

    /// A wait between two events of a Poisson process of `rate` per second
    /// (practically forever if the rate is not positive).
    fn wait(&mut self, rate: f64) -> Duration {
        if rate <= 0.0 {
            return Duration::from_secs(u64::from(u32::MAX));
        }
        exp(&mut self.rng, 1.0 / rate).max(Duration::from_micros(1))
    }

    /// A random link fails; then the checks after a change.
    fn fail_link(&mut self) -> Result<(), String> {
        if self.churn.fail_link(&mut self.w, &mut self.rng, &self.cfg) {
            self.after_churn()?;
        }
        Ok(())
    }

    /// A random running node crashes; then the checks after a change.
    fn crash_node(&mut self) -> Result<(), String> {
        if self.churn.crash_node(&mut self.w, &mut self.rng, &self.cfg) {
            self.after_churn()?;
        }
        Ok(())
    }

    /// A repair; then, if something was down, the checks after a change.
    fn repair(&mut self, r: Repair) -> Result<(), String> {
        if self.churn.repair(&mut self.w, r) {
            self.after_churn()?;
        }
        Ok(())
    }

    /// The end of the churn: every link restored, every node restarted.
    fn repair_everything(&mut self) -> Result<(), String> {
        for r in self.churn.take_all() {
            self.repair(r)?;
        }
        Ok(())
    }

    /// After a failure or repair: loops, the down counts, and the messages whose
    /// pair it separated.
    fn after_churn(&mut self) -> Result<(), String> {
        self.check()?;
        self.churn.note_down(&self.w.sim);
        if self.messages.waiting() {
            let reach = self.churn.reach(&self.w.sim);
            self.messages
                .excuse_separated(self.now(), &self.w.sim, &reach);
        }
        Ok(())
    }

    /// Pushes a message of random bytes between a random running pair, for the
    /// message judge.
    fn send_message(&mut self) {
        let n = self.cfg.nodes;
        let pick = |rng: &mut ChaCha8Rng, sim: &Sim, not: Option<NodeIdx>| {
            (0..64)
                .map(|_| rng.gen_range(0..n))
                .find(|&i| sim.is_up(i) && Some(i) != not)
        };
        let Some(from) = pick(&mut self.rng, &self.w.sim, None) else {
            return;
        };
        let Some(to) = pick(&mut self.rng, &self.w.sim, Some(from)) else {
            return;
        };
        // Mostly one chunk, some a few, a tenth tens of chunks.
        let len = match self.rng.gen_range(0..10) {
            0..=5 => self.rng.gen_range(0..=1300),
            6..=8 => self.rng.gen_range(1301..=10_000),
            _ => self.rng.gen_range(10_001..=60_000),
        };
        let mut v = vec![0u8; len];
        self.rng.fill_bytes(&mut v);
        let data = Bytes::from(v);
        let try_for = self.cfg.try_for;
        let Some(id) = self.w.push(from, to, data.clone(), try_for, &mut self.rng) else {
            self.failures
                .push(format!("message from {from} to {to} refused by the bus"));
            return;
        };
        let now = self.now();
        let reach = self.churn.reach(&self.w.sim);
        let msg = Msg::new(from, to, id, &data, now, try_for);
        self.messages.sent(msg, !reach.joined(from, to));
        self.take_outcomes();
    }

    /// Hands what the buses reported to the message judge.
    fn take_outcomes(&mut self) {
        let outcomes = std::mem::take(&mut self.w.outcomes);
        self.messages.record(outcomes, &mut self.failures);
    }
}
