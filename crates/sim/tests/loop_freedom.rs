//! Property: whatever fails and recovers, at no instant does any destination's
//! next-hop graph contain a cycle; and once everything is repaired, every node
//! reaches every other again.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mycelium_proto::routing::RouterConfig;
use mycelium_sim::{check, topology, CrashKind, LinkConfig, Sim};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Wait(u64),
    Cut(usize),
    Silence(usize),
    Restore(usize),
    Crash(usize, bool),
    Restart(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..3000).prop_map(Op::Wait),
        2 => any::<usize>().prop_map(Op::Cut),
        2 => any::<usize>().prop_map(Op::Silence),
        3 => any::<usize>().prop_map(Op::Restore),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, p)| Op::Crash(n, p)),
        2 => any::<usize>().prop_map(Op::Restart),
    ]
}

/// Runs until `until`, failing with a description at the first loop.
fn run_checked(sim: &mut Sim, until: mycelium_proto::time::Instant) -> Result<(), String> {
    let mut failure = None;
    sim.run_until_with(until, |s| {
        if failure.is_none() {
            failure = check::find_loop(s).map(|l| l.describe(s));
        }
    });
    failure.map_or(Ok(()), Err)
}

fn scenario(seed: u64, n: usize, degree: usize, loss: f64, ops: &[Op]) -> Result<(), String> {
    let mut sim = Sim::new(seed, RouterConfig::default());
    let link = LinkConfig {
        loss,
        ..LinkConfig::default()
    };
    let nodes = topology::random_connected(&mut sim, n, degree, link);
    let links = sim.link_count();
    // SIM_TRACE=1 adds the control traffic for the failing destination to a failure.
    sim.set_trace(std::env::var("SIM_TRACE").is_ok());
    let mut until = sim.now() + Duration::from_secs(2);
    run_checked(&mut sim, until)?;
    for op in ops {
        match *op {
            Op::Wait(ms) => until = sim.now() + Duration::from_millis(ms),
            Op::Cut(l) => sim.cut_link(l % links),
            Op::Silence(l) => sim.silence_link(l % links),
            Op::Restore(l) => sim.restore_link(l % links),
            Op::Crash(i, power) => sim.crash(
                nodes[i % n],
                if power {
                    CrashKind::PowerLoss
                } else {
                    CrashKind::ProcessExit
                },
            ),
            Op::Restart(i) => sim.restart(nodes[i % n]),
        }
        until = until.max(sim.now() + Duration::from_millis(50));
        run_checked(&mut sim, until)?;
    }
    for l in 0..links {
        sim.restore_link(l);
    }
    for &node in &nodes {
        sim.restart(node);
    }
    let repaired = sim.now();
    while sim.now() - repaired < Duration::from_secs(30) {
        if check::unreachable_pairs(&sim).is_empty() {
            return Ok(());
        }
        let step = sim.now() + Duration::from_millis(250);
        run_checked(&mut sim, step)?;
    }
    let bad = check::unreachable_pairs(&sim);
    let mut out = format!(
        "not healed 30 s after repair: {} pairs, e.g. {:?}\n",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    if let Some(&(from, to)) = bad.first() {
        let subnet = mycelium_proto::Subnet::v6_64(sim.address(to));
        for l in 0..links {
            out += &format!("  link {l}: {:?}\n", sim.link_ends(l));
        }
        for d in sim.trace() {
            use mycelium_proto::wire::Tlv;
            match d.tlv {
                Tlv::Update(u) if u.subnet == subnet => {
                    out += &format!(
                        "  {:?} {}->{} update seqno {} metric {} rid ..{}\n",
                        d.at,
                        d.from,
                        d.to,
                        u.seqno,
                        u.metric,
                        &u.router_id.to_string()[68..]
                    )
                }
                Tlv::SeqnoRequest(r) if r.prefix == subnet => {
                    out += &format!(
                        "  {:?} {}->{} seqno request {} hop {} rid ..{}\n",
                        d.at,
                        d.from,
                        d.to,
                        r.seqno,
                        r.hop_count,
                        &r.router_id.to_string()[68..]
                    )
                }
                Tlv::RouteRequest(r) if r.prefix == Some(subnet) => {
                    out += &format!(
                        "  {:?} {}->{} route request gen {}\n",
                        d.at, d.from, d.to, r.generation
                    )
                }
                _ => {}
            }
        }
        let mut at = from;
        for _ in 0..n {
            let entry = sim.router(at).and_then(|r| {
                r.subnets()
                    .find(|(s, _)| *s == subnet)
                    .map(|(_, e)| format!("{e:?}"))
            });
            out += &format!("  node {at}: {entry:?}\n");
            match sim.next_hop_node(at, sim.address(to)) {
                Some(next) if next != to => at = next,
                _ => break,
            }
        }
    }
    Err(out)
}

proptest! {
    // PROPTEST_CASES overrides the count for long runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_routing_loop_at_any_step_and_full_healing_after_repair(
        seed in any::<u64>(),
        n in 4usize..12,
        degree in 2usize..5,
        loss in prop_oneof![Just(0.0), 0.0f64..0.2],
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        if let Err(e) = scenario(seed, n, degree, loss, &ops) {
            prop_assert!(false, "{}", e);
        }
    }
}
