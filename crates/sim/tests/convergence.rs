//! Routing scenarios over the simulator: convergence on classic topologies,
//! rerouting after failures, departures, and loop-freedom at every step.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mycelium_proto::routing::RouterConfig;
use mycelium_proto::time::Instant;
use mycelium_sim::{check, topology, CrashKind, LinkConfig, NodeIdx, Sim};

fn link() -> LinkConfig {
    LinkConfig::default()
}

/// Runs `d` of simulated time, asserting loop-freedom after every event.
fn run_loop_free(sim: &mut Sim, d: Duration) {
    let until = sim.now() + d;
    sim.run_until_with(until, |s| {
        if let Some(l) = check::find_loop(s) {
            panic!("{}", l.describe(s));
        }
    });
}

/// Runs until every pair is reachable, asserting loop-freedom throughout; returns the
/// simulated time it took.
fn converge(sim: &mut Sim, limit: Duration) -> Duration {
    let start = sim.now();
    while sim.now() - start < limit {
        run_loop_free(sim, Duration::from_millis(100));
        if check::all_routes_selected(sim) && check::unreachable_pairs(sim).is_empty() {
            return sim.now() - start;
        }
    }
    panic!(
        "no convergence within {limit:?}: {} pairs unreachable",
        check::unreachable_pairs(sim).len()
    );
}

#[test]
fn line_converges() {
    let mut sim = Sim::new(1, RouterConfig::default());
    topology::line(&mut sim, 10, link());
    converge(&mut sim, Duration::from_secs(10));
}

#[test]
fn ring_converges() {
    let mut sim = Sim::new(2, RouterConfig::default());
    topology::ring(&mut sim, 12, link());
    converge(&mut sim, Duration::from_secs(10));
}

#[test]
fn grid_converges() {
    let mut sim = Sim::new(3, RouterConfig::default());
    topology::grid(&mut sim, 5, 5, link());
    converge(&mut sim, Duration::from_secs(10));
}

#[test]
fn random_graph_converges() {
    let mut sim = Sim::new(4, RouterConfig::default());
    topology::random_connected(&mut sim, 60, 4, link());
    converge(&mut sim, Duration::from_secs(10));
}

#[test]
fn upstream_timers_converge_too() {
    let mut sim = Sim::new(5, RouterConfig::upstream());
    topology::random_connected(&mut sim, 30, 4, link());
    converge(&mut sim, Duration::from_secs(10));
}

#[test]
fn a_late_joiner_learns_every_route() {
    let mut sim = Sim::new(6, RouterConfig::default());
    let nodes = topology::random_connected(&mut sim, 20, 4, link());
    converge(&mut sim, Duration::from_secs(10));
    let late = sim.add_node();
    sim.add_link(late, nodes[7], link());
    converge(&mut sim, Duration::from_secs(5));
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(seed, RouterConfig::default());
        let nodes = topology::random_connected(
            &mut sim,
            25,
            3,
            LinkConfig {
                loss: 0.05,
                ..link()
            },
        );
        sim.run_for(Duration::from_secs(3));
        sim.crash(nodes[3], CrashKind::PowerLoss);
        sim.run_for(Duration::from_secs(5));
        let tables: Vec<_> = (0..sim.node_count())
            .filter_map(|n| sim.router(n))
            .map(|r| {
                r.subnets()
                    .map(|(s, e)| format!("{s}{e:?}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        (sim.stats(), tables)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

/// A ring of 6: A's selected path to the opposite node D goes one way round; break a
/// link on it and D must be reachable the other way round within `bound`.
fn reroute_after(break_link: impl Fn(&mut Sim, usize), bound: Duration) -> Duration {
    let mut sim = Sim::new(9, RouterConfig::default());
    let nodes = topology::ring(&mut sim, 6, link());
    converge(&mut sim, Duration::from_secs(10));
    // Let link costs settle, so the path is stable.
    run_loop_free(&mut sim, Duration::from_secs(20));
    let (a, d) = (nodes[0], nodes[3]);
    let first_hop = sim.next_hop_node(a, sim.address(d)).unwrap();
    let link_idx = (0..sim.link_count())
        .find(|&l| {
            let e = sim.link_ends(l);
            e.contains(&a) && e.contains(&first_hop)
        })
        .unwrap();
    break_link(&mut sim, link_idx);
    let broken_at = sim.now();
    loop {
        run_loop_free(&mut sim, Duration::from_millis(10));
        let elapsed = sim.now() - broken_at;
        if reaches(&sim, a, d) && sim.next_hop_node(a, sim.address(d)) != Some(first_hop) {
            assert!(
                elapsed <= bound,
                "rerouted after {elapsed:?}, bound {bound:?}"
            );
            return elapsed;
        }
        assert!(elapsed <= bound, "still unreachable after {elapsed:?}");
    }
}

fn reaches(sim: &Sim, from: NodeIdx, to: NodeIdx) -> bool {
    let mut at = from;
    for _ in 0..sim.node_count() {
        if at == to {
            return true;
        }
        match sim.next_hop_node(at, sim.address(to)) {
            Some(n) => at = n,
            None => return false,
        }
    }
    false
}

#[test]
fn cut_link_on_the_path_is_routed_around_at_once() {
    // A closed connection is noticed immediately; the alternative path needs a seqno
    // round trip at most.
    reroute_after(|s, l| s.cut_link(l), Duration::from_millis(500));
}

#[test]
fn silent_link_on_the_path_is_routed_around_within_two_seconds() {
    let cfg = RouterConfig::default().liveness.unwrap();
    let bound = cfg.timeout + cfg.probe_interval + Duration::from_millis(500);
    assert!(bound <= Duration::from_secs(2));
    reroute_after(|s, l| s.silence_link(l), bound);
}

/// The largest metric any running node holds for `subnet` on a selected route.
fn max_selected_metric(sim: &Sim, subnet: mycelium_proto::Subnet) -> u16 {
    (0..sim.node_count())
        .filter_map(|n| sim.router(n))
        .filter_map(|r| r.selected_route(&subnet))
        .map(|r| r.metric.0)
        .max()
        .unwrap_or(0)
}

#[test]
fn departed_node_is_retracted_everywhere_without_counting_to_infinity() {
    let mut sim = Sim::new(11, RouterConfig::default());
    let nodes = topology::grid(&mut sim, 4, 4, link());
    converge(&mut sim, Duration::from_secs(10));
    let gone = nodes[5];
    let subnet = sim.router(gone).unwrap().own_subnet();
    let before = max_selected_metric(&sim, subnet);
    sim.crash(gone, CrashKind::ProcessExit);
    // Within the retracted hold (plus propagation) no node keeps the subnet, no loop
    // forms on the way, and no metric towards it ever grows past what it was: stale
    // routes are never passed round in a circle with rising metrics.
    let hold = RouterConfig::default().retracted_hold;
    let until = sim.now() + hold + Duration::from_secs(2);
    sim.run_until_with(until, |s| {
        assert!(check::find_loop(s).is_none());
        let now = max_selected_metric(s, subnet);
        assert!(
            now <= before,
            "metric towards the departed node grew from {before} to {now}"
        );
    });
    for n in (0..sim.node_count()).filter(|&n| sim.is_up(n)) {
        let r = sim.router(n).unwrap();
        assert!(
            r.subnets().all(|(s, _)| s != subnet),
            "node {n} still holds the departed subnet"
        );
    }
    assert!(check::unreachable_pairs(&sim).is_empty());
}

#[test]
fn silent_crash_is_retracted_after_liveness_timeout() {
    let mut sim = Sim::new(12, RouterConfig::default());
    let nodes = topology::ring(&mut sim, 8, link());
    converge(&mut sim, Duration::from_secs(10));
    let gone = nodes[2];
    let subnet = sim.router(gone).unwrap().own_subnet();
    sim.crash(gone, CrashKind::PowerLoss);
    let cfg = RouterConfig::default();
    let bound = cfg.liveness.unwrap().timeout + cfg.retracted_hold + Duration::from_secs(2);
    run_loop_free(&mut sim, bound);
    for n in (0..sim.node_count()).filter(|&n| sim.is_up(n)) {
        assert!(sim.router(n).unwrap().subnets().all(|(s, _)| s != subnet));
    }
    assert!(check::unreachable_pairs(&sim).is_empty());
}

#[test]
fn restarted_node_is_reachable_again_under_its_new_router_id() {
    let mut sim = Sim::new(13, RouterConfig::default());
    let nodes = topology::random_connected(&mut sim, 15, 3, link());
    converge(&mut sim, Duration::from_secs(10));
    sim.crash(nodes[4], CrashKind::ProcessExit);
    run_loop_free(&mut sim, Duration::from_secs(3));
    sim.restart(nodes[4]);
    converge(&mut sim, Duration::from_secs(10));
    assert!(sim.now() > Instant::ZERO);
}
