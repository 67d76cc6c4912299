//! Networks where a third of the nodes are leaves (stubs that hold only the
//! routes they use, in a small cache): they converge, every pair that uses each
//! other reaches each other both ways, nobody routes through a leaf, no loop
//! forms at any step, a leaf whose cache is smaller than what it uses evicts and
//! asks again, and a leaf with two uplinks fails over when the one in use breaks.
//!
//! The data plane is modelled by [`send`]: a packet to a destination without a
//! selected route asks the router ([`Sim::resolve`], a route request), one with a
//! route reports the use ([`Sim::touch`]); at the receiver, a source whose key is
//! unknown is resolved and the packet dropped, as the node does.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mycelium_proto::routing::{Leaf, RouterConfig};
use mycelium_proto::wire::Tlv;
use mycelium_proto::Subnet;
use mycelium_sim::{check, topology, LinkConfig, LinkIdx, NodeIdx, Sim};
use rand::seq::SliceRandom;

/// How often every pair in use sends a packet each way.
const TICK: Duration = Duration::from_millis(100);

fn link() -> LinkConfig {
    LinkConfig::default()
}

fn leaf_config(routes: usize) -> RouterConfig {
    RouterConfig {
        leaf: Some(Leaf { routes }),
        ..RouterConfig::default()
    }
}

/// `from` sends a packet to `to`, as a node's data plane does: without a
/// selected route it asks its router for one (a route request goes out) and the
/// packet is dropped; with one it reports the use, and the packet travels over
/// selected next hops. Returns whether it arrived and was accepted.
fn send(sim: &mut Sim, from: NodeIdx, to: NodeIdx) -> bool {
    let dst = sim.address(to);
    if sim.router(from).and_then(|r| r.next_hop(dst)).is_none() {
        sim.resolve(from, dst, true);
        return false;
    }
    sim.touch(from, Subnet::v6_64(dst), 1);
    check::reaches(sim, from, to) && accept(sim, to, from)
}

/// A packet from `src` arrives at `at`: opening it takes `src`'s key, which a
/// leaf may not hold. Then it asks for the route to `src` (which carries the key)
/// and drops the packet; the sender will try again.
fn accept(sim: &mut Sim, at: NodeIdx, src: NodeIdx) -> bool {
    let src_addr = sim.address(src);
    if sim.router(at).unwrap().key_for(src_addr).is_none() {
        sim.resolve(at, src_addr, false);
        return false;
    }
    sim.touch(at, Subnet::v6_64(src_addr), 1);
    true
}

/// One round of traffic: every pair sends a packet, and a reply when it arrives.
fn traffic(sim: &mut Sim, pairs: &[(NodeIdx, NodeIdx)]) {
    for &(a, b) in pairs {
        if send(sim, a, b) {
            send(sim, b, a);
        }
    }
}

/// Every invariant of a leaf network, after every event: no loop, nobody routes
/// through a leaf, no leaf holds more than its cache.
fn assert_invariants(s: &Sim) {
    if let Some(l) = check::find_loop(s) {
        panic!("{}", l.describe(s));
    }
    if let Some(t) = check::leaf_transit(s) {
        panic!(
            "node {} routes to node {} through leaf {}",
            t.node, t.destination, t.leaf
        );
    }
    if let Some((leaf, held, cap)) = check::overfull_leaf(s) {
        panic!("leaf {leaf} holds {held} subnets, its cache {cap}");
    }
}

/// Runs `d` of simulated time with traffic between `pairs` every [`TICK`],
/// checking the invariants after every event.
fn run_with_traffic(sim: &mut Sim, pairs: &[(NodeIdx, NodeIdx)], d: Duration) {
    let until = sim.now() + d;
    while sim.now() < until {
        traffic(sim, pairs);
        assert_invariants(sim);
        let next = (sim.now() + TICK).min(until);
        sim.run_until_with(next, assert_invariants);
    }
}

fn both_ways(sim: &Sim, pairs: &[(NodeIdx, NodeIdx)]) -> bool {
    pairs
        .iter()
        .all(|&(a, b)| check::reaches(sim, a, b) && check::reaches(sim, b, a))
}

/// Runs with traffic until every pair reaches each other both ways; returns how
/// long it took, or fails after `limit`.
fn until_both_ways(sim: &mut Sim, pairs: &[(NodeIdx, NodeIdx)], limit: Duration) -> Duration {
    let start = sim.now();
    loop {
        run_with_traffic(sim, pairs, TICK);
        if both_ways(sim, pairs) {
            return sim.now() - start;
        }
        if sim.now() - start >= limit {
            let stuck: Vec<_> = pairs
                .iter()
                .filter(|&&(a, b)| !(check::reaches(sim, a, b) && check::reaches(sim, b, a)))
                .collect();
            panic!("after {limit:?}, pairs not reaching each other both ways: {stuck:?}");
        }
    }
}

/// Every update a leaf sent (and the network delivered: the trace records
/// deliveries, and these tests break no link with updates in flight but those
/// the failover cuts) was for its own subnet. Returns how many there were; the
/// trace must be on.
fn assert_leaves_announced_only_themselves(sim: &Sim) -> usize {
    let mut own = 0;
    for d in sim.trace() {
        if let (Tlv::Update(u), true) = (d.tlv, sim.is_leaf(d.from)) {
            assert_eq!(
                u.subnet,
                Subnet::v6_64(sim.address(d.from)),
                "leaf {} announced another subnet to node {} at {:?}",
                d.from,
                d.to,
                d.at
            );
            own += 1;
        }
    }
    own
}

#[test]
fn a_third_leaves_converge_and_every_used_pair_reaches_each_other() {
    const FULL: usize = 30;
    const ROOMY: usize = 10;
    const ROOMY_CACHE: usize = 12;
    const SMALL: usize = 5;
    const SMALL_CACHE: usize = 3;
    /// Destinations of a small leaf, twice its cache, used one after another.
    const SMALL_USES: usize = 6;

    let mut sim = Sim::new(21, RouterConfig::default());
    sim.set_trace(true);
    let caches: Vec<usize> = [ROOMY_CACHE; ROOMY]
        .into_iter()
        .chain([SMALL_CACHE; SMALL])
        .collect();
    // 20 ms links whose control streams lose 1 % (a 200 ms retransmission).
    let lossy = LinkConfig {
        latency: Duration::from_millis(20),
        loss: 0.01,
        ..link()
    };
    let net = topology::with_leaves(&mut sim, FULL, &caches, 4, lossy);
    let (roomy, small) = net.leaves.split_at(ROOMY);
    assert_eq!(net.leaves.len() * 3, sim.node_count(), "a third are leaves");

    // Who uses whom. A roomy leaf uses two full nodes and two roomy leaves; a
    // small one uses four full nodes and two roomy leaves. A roomy leaf must hold
    // everyone it uses and everyone who uses it, so its cache bounds both.
    let mut partners = vec![0usize; sim.node_count()];
    let mut pick_leaf = |sim: &mut Sim, me: NodeIdx, chosen: &[NodeIdx]| loop {
        let &b = roomy.choose(sim.rng()).unwrap();
        if b != me && !chosen.contains(&b) && partners[b] < ROOMY_CACHE - 2 {
            partners[b] += 1;
            break b;
        }
    };
    let mut roomy_pairs = Vec::new();
    for &a in roomy {
        let mut chosen: Vec<NodeIdx> = net.full.choose_multiple(sim.rng(), 2).copied().collect();
        for _ in 0..2 {
            let b = pick_leaf(&mut sim, a, &chosen);
            chosen.push(b);
        }
        roomy_pairs.extend(chosen.into_iter().map(|b| (a, b)));
    }
    let mut small_uses: Vec<Vec<NodeIdx>> = Vec::new();
    for &s in small {
        let mut chosen: Vec<NodeIdx> = net.full.choose_multiple(sim.rng(), 4).copied().collect();
        for _ in 0..2 {
            let b = pick_leaf(&mut sim, s, &chosen);
            chosen.push(b);
        }
        chosen.shuffle(sim.rng());
        small_uses.push(chosen);
    }
    for &a in roomy {
        let uses = roomy_pairs.iter().filter(|p| p.0 == a).count();
        assert!(uses + partners[a] <= ROOMY_CACHE, "leaf {a} would overflow");
    }

    // The full nodes converge among themselves and towards every leaf.
    let start = sim.now();
    loop {
        run_with_traffic(&mut sim, &[], TICK);
        if check::all_routes_selected(&sim) && check::unreachable_from_full_nodes(&sim).is_empty() {
            break;
        }
        assert!(
            sim.now() - start < Duration::from_secs(10),
            "no convergence"
        );
    }
    let backbone = sim.now() - start;
    for &l in &net.leaves {
        let r = sim.router(l).unwrap();
        assert_eq!(r.table_size().0, 0, "leaf {l} holds what it never used");
        assert!(
            r.stats().leaf_updates_ignored > 0,
            "leaf {l} was sent no routes"
        );
    }

    // The roomy leaves start using their destinations.
    let roomy_in = until_both_ways(&mut sim, &roomy_pairs, Duration::from_secs(5));

    // The small leaves use theirs one after another, twice over: past its cache
    // size each new destination evicts the least recently used one, and the
    // second round asks again for what the first evicted.
    let mut slowest_step = Duration::ZERO;
    for step in 0..2 * SMALL_USES {
        let current: Vec<(NodeIdx, NodeIdx)> = small
            .iter()
            .zip(&small_uses)
            .map(|(&s, uses)| (s, uses[step % SMALL_USES]))
            .collect();
        if step == SMALL_USES {
            for &(s, d) in &current {
                let r = sim.router(s).unwrap();
                assert!(
                    r.key_for(sim.address(d)).is_none(),
                    "leaf {s} still holds {d}, used {SMALL_USES} destinations ago"
                );
            }
        }
        let all: Vec<_> = roomy_pairs.iter().chain(&current).copied().collect();
        let took = until_both_ways(&mut sim, &all, Duration::from_secs(3));
        slowest_step = slowest_step.max(took);
    }
    assert!(both_ways(&sim, &roomy_pairs));

    let stats = |l: NodeIdx| sim.router(l).unwrap().stats();
    for &s in small {
        assert!(
            stats(s).leaf_evictions >= (2 * SMALL_USES - SMALL_CACHE) as u64,
            "leaf {s}: {:?}",
            stats(s)
        );
    }
    for &a in roomy {
        assert_eq!(stats(a).leaf_evictions, 0, "leaf {a} ran out of room");
    }
    let own_updates = assert_leaves_announced_only_themselves(&sim);
    assert!(
        own_updates >= net.leaves.len(),
        "the trace missed the leaves' updates"
    );
    let sum = |f: fn(mycelium_proto::routing::RouterStats) -> u64| -> u64 {
        net.leaves.iter().map(|&l| f(stats(l))).sum()
    };
    println!(
        "{} nodes ({} leaves): backbone converged in {backbone:?}, roomy leaves' {} pairs \
         both ways in {roomy_in:?}, slowest small-leaf step {slowest_step:?}; leaves: \
         {} evictions, {} misses, {} hits, {} pushed updates ignored, {} updates sent \
         (all their own); {} simulator steps",
        sim.node_count(),
        net.leaves.len(),
        roomy_pairs.len(),
        sum(|s| s.leaf_evictions),
        sum(|s| s.leaf_misses),
        sum(|s| s.leaf_hits),
        sum(|s| s.leaf_updates_ignored),
        own_updates,
        sim.stats().steps
    );
}

/// The link joining `a` and `b`.
fn link_between(sim: &Sim, a: NodeIdx, b: NodeIdx) -> LinkIdx {
    (0..sim.link_count())
        .find(|&l| {
            let e = sim.link_ends(l);
            e.contains(&a) && e.contains(&b)
        })
        .unwrap()
}

/// A leaf with uplinks to two full nodes of a small backbone uses a distant
/// full node. `break_link` takes down the uplink its route goes over: it must
/// reach the destination over the other one, and be reached, within `bound`.
/// Then the broken uplink comes back, the other one breaks, and the same holds
/// the other way round. Returns the two failover times.
fn failover(seed: u64, break_link: fn(&mut Sim, LinkIdx), bound: Duration) -> [Duration; 2] {
    let mut sim = Sim::new(seed, RouterConfig::default());
    sim.set_trace(true);
    let full = topology::random_connected(&mut sim, 12, 3, link());
    let leaf = sim.add_node_with(leaf_config(8));
    let uplinks = [full[0], full[6]];
    for &u in &uplinks {
        sim.add_link(leaf, u, link());
    }
    let dst = full[11];
    let pairs = [(leaf, dst)];
    until_both_ways(&mut sim, &pairs, Duration::from_secs(10));
    // Let link costs settle, so the route in use is stable.
    run_with_traffic(&mut sim, &pairs, Duration::from_secs(20));

    let mut took = [Duration::ZERO; 2];
    for t in &mut took {
        let via = sim.next_hop_node(leaf, sim.address(dst)).unwrap();
        assert!(uplinks.contains(&via), "the leaf routes through {via}");
        let other = if via == uplinks[0] {
            uplinks[1]
        } else {
            uplinks[0]
        };
        let broken = link_between(&sim, leaf, via);
        break_link(&mut sim, broken);
        let at = sim.now();
        loop {
            run_with_traffic(&mut sim, &pairs, Duration::from_millis(10));
            let elapsed = sim.now() - at;
            if check::reaches(&sim, leaf, dst)
                && check::reaches(&sim, dst, leaf)
                && sim.next_hop_node(leaf, sim.address(dst)) == Some(other)
            {
                *t = elapsed;
                break;
            }
            assert!(
                elapsed <= bound,
                "leaf {leaf} and node {dst} not joined over {other} {elapsed:?} after the \
                 uplink over {via} broke (bound {bound:?})"
            );
        }
        sim.restore_link(broken);
        run_with_traffic(&mut sim, &pairs, Duration::from_secs(20));
    }
    assert_eq!(sim.router(leaf).unwrap().stats().leaf_evictions, 0);
    assert!(assert_leaves_announced_only_themselves(&sim) > 0);
    took
}

#[test]
fn a_leaf_fails_over_at_once_when_its_uplink_is_cut() {
    // A closed connection is noticed at once; the other uplink answered the
    // route request too, so its route is there to select.
    for seed in 30..34 {
        let took = failover(seed, |s, l| s.cut_link(l), Duration::from_millis(500));
        println!("seed {seed}: failover after a cut in {took:?}");
    }
}

#[test]
fn a_leaf_fails_over_within_the_liveness_timeout_when_its_uplink_goes_silent() {
    let cfg = RouterConfig::default().liveness.unwrap();
    let bound = cfg.timeout + cfg.probe_interval + Duration::from_millis(500);
    assert!(bound <= Duration::from_secs(2));
    for seed in 40..44 {
        let took = failover(seed, |s, l| s.silence_link(l), bound);
        println!("seed {seed}: failover after a silence in {took:?}");
    }
}
