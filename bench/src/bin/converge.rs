//! Routing convergence at scale: random connected graphs of average degree 4, run in
//! the simulator until every node selects a route to every other node.
//!
//! `cargo run --release -p mycelium-bench --bin converge -- [NODES...]`
//! (default: 1000 10000). Prints one line per size: wall time, simulated time,
//! messages exchanged, peak memory.

use std::time::{Duration, Instant as WallInstant};

use mycelium_proto::routing::RouterConfig;
use mycelium_sim::{check, topology, LinkConfig, Sim};
use rand::Rng;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    println!(
        "nodes\tlinks\twall_s\tsim_s\tmessages\tpeak_rss_mib\ttable_B_per_pair\tverified_pairs"
    );
    for n in sizes {
        run(n);
    }
}

fn run(n: usize) {
    let started = WallInstant::now();
    let mut sim = Sim::new(n as u64, RouterConfig::default());
    sim.set_encode_on_wire(false);
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    let nodes = topology::random_connected(&mut sim, n, 4, link);
    let step = Duration::from_millis(500);
    let limit = Duration::from_secs(600);
    while !check::all_routes_selected(&sim) && sim.now().since_epoch() < limit {
        sim.run_for(step);
    }
    let wall = started.elapsed();
    let converged = check::all_routes_selected(&sim);
    // Confirm with sampled pairs that next hops lead to the destination.
    let mut ok = 0;
    let samples = 2000;
    for _ in 0..samples {
        let a = nodes[sim.rng().gen_range(0..n)];
        let b = nodes[sim.rng().gen_range(0..n)];
        if a == b || reaches(&sim, a, b) {
            ok += 1;
        }
    }
    let rss = mycelium_bench::peak_rss_bytes().map_or(0.0, |b| b as f64 / (1 << 20) as f64);
    // What the routers' tables hold per (node, destination) pair; the rest of the
    // peak is the simulator's (mostly TLVs in flight at the height of the flood).
    let table: usize = (0..n)
        .filter_map(|i| sim.router(i))
        .map(|r| r.table_heap_bytes())
        .sum();
    let per_pair = table as f64 / (n as f64 * (n as f64 - 1.0));
    println!(
        "{n}\t{}\t{:.1}\t{:.1}\t{}\t{rss:.0}\t{per_pair:.0}\t{ok}/{samples}{}",
        sim.link_count(),
        wall.as_secs_f64(),
        sim.now().since_epoch().as_secs_f64(),
        sim.stats().delivered,
        if converged { "" } else { "\tNOT CONVERGED" }
    );
}

fn reaches(sim: &Sim, from: usize, to: usize) -> bool {
    let addr = sim.address(to);
    let mut at = from;
    for _ in 0..sim.node_count() {
        if at == to {
            return true;
        }
        match sim.next_hop_node(at, addr) {
            Some(n) => at = n,
            None => return false,
        }
    }
    false
}
