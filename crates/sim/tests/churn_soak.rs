//! The churn soak at test size: random networks under continuous link failures and
//! crashes, messages between random pairs; no routing loop after any event and no
//! message lost that had time to arrive. The full-size run is the `churn_soak`
//! binary (see the crate README).

use std::time::Duration;

use mycelium_sim::soak::{self, SoakConfig};

fn small(seed: u64, nodes: usize, minutes: f64) -> SoakConfig {
    let mut cfg = SoakConfig::new(seed, nodes, minutes);
    // Three times the default pace, so a short run sees plenty of failures: each
    // link fails every ~133 s, each node crashes every 10 min.
    cfg.link_mtbf /= 3;
    cfg.node_mtbf /= 3;
    cfg.messages_per_sec = 2.0;
    cfg.settle = Duration::from_secs(75);
    cfg
}

fn assert_passes(cfg: SoakConfig) -> soak::SoakReport {
    let report = soak::run(cfg);
    println!("{report}");
    assert!(report.ok(), "{report}");
    report
}

#[test]
fn small_networks_under_churn_never_loop_and_lose_no_message() {
    for seed in 1..=3 {
        let r = assert_passes(small(seed, 60, 3.0));
        // The run did churn and did carry messages.
        assert!(r.churn.cuts + r.churn.silences > 30, "{:?}", r.churn);
        assert!(r.churn.exits + r.churn.power_losses > 0, "{:?}", r.churn);
        assert!(r.churn.restarts > 0, "{:?}", r.churn);
        assert!(r.messages.delivered > 100, "{:?}", r.messages);
        assert_eq!(r.messages.unjudged, 0);
        assert!(r.loop_checks.rounds >= r.sim.steps);
        assert!(r.loop_checks.paths_followed > 0);
    }
}

/// The incremental loop check against itself: after every event, no next hop
/// changed without it seeing, and a full check agrees.
#[test]
fn the_incremental_loop_check_misses_no_change() {
    let mut cfg = small(7, 16, 1.0);
    cfg.verify_incremental = true;
    cfg.settle = Duration::from_secs(70);
    assert_passes(cfg);
}

#[test]
fn the_same_seed_replays_the_same_soak() {
    let run = |seed| {
        let r = soak::run(small(seed, 20, 0.5));
        (r.sim, r.churn.total(), r.messages, r.data, r.loop_checks)
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5).0, run(6).0);
}
