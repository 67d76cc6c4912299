//! Leaf mode, one router driven by hand.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::wire::tlv::{RouteRequest, SeqnoRequest, Update};

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn key(n: u8) -> PublicKey {
    PublicKey::from_bytes([n; 32])
}

fn rid(n: u8) -> RouterId {
    RouterId::new(key(n), [n; 6])
}

fn addr(n: u8) -> Ipv6Addr {
    key(n).address()
}

fn leaf(routes: usize) -> Router {
    let cfg = RouterConfig {
        leaf: Some(Leaf { routes }),
        ..RouterConfig::default()
    };
    Router::new(cfg, rid(1), at(0))
}

fn drain(r: &mut Router) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Router) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn update(origin: u8, seqno: u16, metric: u16) -> Update {
    Update {
        interval: Interval(30000),
        seqno: SeqNo(seqno),
        metric: Metric(metric),
        subnet: key(origin).subnet(),
        router_id: rid(origin),
    }
}

fn request(n: u8) -> Tlv {
    Tlv::RouteRequest(RouteRequest {
        generation: 0,
        prefix: Some(key(n).subnet()),
    })
}

/// Every update the router sent is for its own subnet.
fn only_own_updates(r: &Router, out: &[Transmit]) {
    for t in out {
        if let Tlv::Update(u) = t.tlv {
            assert_eq!(u.subnet, r.own_subnet(), "a leaf announced {:?}", u.subnet);
            assert_eq!(u.router_id, r.router_id());
        }
    }
}

const A: PeerId = PeerId(10);
const B: PeerId = PeerId(11);
const TCP4: LinkKind = LinkKind::Tcp { ipv4: true };

/// A leaf with neighbours A and B, greeted and drained.
fn leaf_with_two(routes: usize) -> Router {
    let mut r = leaf(routes);
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    drain(&mut r);
    r
}

#[test]
fn a_new_neighbour_gets_our_route_and_no_table_request() {
    let mut r = leaf(8);
    r.handle_peer_up(at(0), A, TCP4);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].tlv, Tlv::Update(u) if u.subnet == r.own_subnet()));
}

#[test]
fn pushed_routes_for_unused_subnets_are_not_stored() {
    let mut r = leaf_with_two(8);
    for n in 2..200 {
        r.handle_tlv(at(10), A, Tlv::Update(update(n, 0, 100)));
    }
    assert_eq!(r.table_size(), (0, 0));
    assert_eq!(r.stats().leaf_updates_ignored, 198);
    assert!(drain(&mut r).is_empty(), "an ignored update caused traffic");
}

#[test]
fn an_unknown_destination_is_asked_for_and_usable_once_answered() {
    let mut r = leaf_with_two(8);
    assert_eq!(
        r.resolve(at(10), addr(7), true),
        Resolution::Pending(key(7).subnet())
    );
    let out = drain(&mut r);
    let asked: Vec<PeerId> = out
        .iter()
        .filter(|t| t.tlv == request(7))
        .map(|t| t.to)
        .collect();
    assert_eq!(asked, vec![A, B]);
    assert_eq!(r.stats().leaf_misses, 1);

    r.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    r.handle_tlv(at(21), B, Tlv::Update(update(7, 0, 80)));
    assert_eq!(events(&mut r), vec![Event::RouteUsable(key(7).subnet())]);
    assert_eq!(r.resolve(at(30), addr(7), true), Resolution::Forward(A));
    assert_eq!(r.key_for(addr(7)), Some(key(7)));
    // Both answers are kept, so losing A fails over to B at once.
    r.handle_peer_down(at(40), A);
    assert_eq!(r.resolve(at(41), addr(7), true), Resolution::Forward(B));
    let out = drain(&mut r);
    only_own_updates(&r, &out);
}

#[test]
fn a_leaf_answers_for_its_own_subnet_only_and_carries_nothing_on() {
    let mut r = leaf_with_two(8);
    r.resolve(at(10), addr(7), true);
    r.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    drain(&mut r);

    // A wildcard request: our own route, not the cached one.
    r.handle_tlv(
        at(30),
        B,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None,
        }),
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    only_own_updates(&r, &out);

    // A request for the cached subnet, or one we do not know: no answer, not
    // forwarded.
    r.handle_tlv(at(31), B, request(7));
    r.handle_tlv(at(32), B, request(9));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.table_size().0, 1, "a forwarded request made an entry");

    // A request for our own subnet is answered.
    r.handle_tlv(at(33), B, request(1));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    only_own_updates(&r, &out);

    // A seqno request for the cached route: nothing. For ours: a bump.
    r.handle_tlv(
        at(34),
        B,
        Tlv::SeqnoRequest(SeqnoRequest {
            seqno: SeqNo(1),
            hop_count: 64,
            router_id: rid(7),
            prefix: key(7).subnet(),
        }),
    );
    assert!(drain(&mut r).is_empty());
    r.handle_tlv(
        at(5_000),
        B,
        Tlv::SeqnoRequest(SeqnoRequest {
            seqno: SeqNo(1),
            hop_count: 64,
            router_id: rid(1),
            prefix: key(1).subnet(),
        }),
    );
    let out = drain(&mut r);
    assert_eq!(r.seqno(), SeqNo(1));
    assert_eq!(out.len(), 2, "the bump goes to both neighbours");
    only_own_updates(&r, &out);

    // A better route and a retraction change the selection: no triggered update.
    r.handle_tlv(at(5_100), B, Tlv::Update(update(7, 1, 10)));
    r.handle_tlv(at(5_200), B, Tlv::Update(update(7, 1, 0xFFFF)));
    let out = drain(&mut r);
    only_own_updates(&r, &out);
}

#[test]
fn the_least_recently_used_subnet_makes_room() {
    let mut r = leaf_with_two(2);
    for (n, t) in [(2u8, 10u64), (3, 11)] {
        r.resolve(at(t), addr(n), true);
        r.handle_tlv(at(t), A, Tlv::Update(update(n, 0, 50)));
    }
    events(&mut r);
    // 2 is used again, so 3 is the one to go.
    assert!(r.touch(at(20), key(2).subnet(), 5));
    assert_eq!(r.stats().leaf_hits, 5);
    r.resolve(at(30), addr(4), true);
    assert_eq!(events(&mut r), vec![Event::RouteLost(key(3).subnet())]);
    assert_eq!(r.stats().leaf_evictions, 1);
    assert!(r.key_for(addr(3)).is_none());
    assert!(r.key_for(addr(2)).is_some());
    assert_eq!(r.table_size().0, 2);
    // Pushed updates for the evicted subnet are ignored again.
    r.handle_tlv(at(31), A, Tlv::Update(update(3, 1, 50)));
    assert!(r.key_for(addr(3)).is_none());
    // A query still waiting is evicted too, and its packets are dropped.
    r.resolve(at(40), addr(5), true);
    r.resolve(at(41), addr(6), true);
    assert_eq!(
        events(&mut r),
        vec![
            Event::RouteLost(key(2).subnet()),
            Event::QueryExpired(key(4).subnet())
        ]
    );
}

/// An evicted subnet used again is asked for again at once. The route-request
/// cache, which keeps a request from going to the same neighbours twice within
/// `route_request_ttl` (15 s), must not hold back the new request: the old one
/// was answered, and the answer forgotten.
#[test]
fn an_evicted_subnet_used_again_is_asked_for_again_at_once() {
    let mut r = leaf_with_two(2);
    for (n, t) in [(2u8, 10u64), (3, 11)] {
        r.resolve(at(t), addr(n), true);
        r.handle_tlv(at(t), A, Tlv::Update(update(n, 0, 50)));
    }
    r.resolve(at(20), addr(4), true);
    assert_eq!(r.stats().leaf_evictions, 1);
    assert!(r.key_for(addr(2)).is_none());
    drain(&mut r);
    events(&mut r);

    assert_eq!(
        r.resolve(at(1_000), addr(2), true),
        Resolution::Pending(key(2).subnet())
    );
    let asked: Vec<PeerId> = drain(&mut r)
        .iter()
        .filter(|t| t.tlv == request(2))
        .map(|t| t.to)
        .collect();
    assert_eq!(
        asked,
        vec![A, B],
        "the evicted subnet was not asked for again"
    );
    r.handle_tlv(at(1_010), B, Tlv::Update(update(2, 0, 60)));
    assert_eq!(r.resolve(at(1_020), addr(2), true), Resolution::Forward(B));
}

/// A seqno request naming the leaf's own router id but another subnet, one the
/// leaf caches: no honest node sends it (a leaf's router id is only ever the
/// source of its own subnet), and the leaf must not answer it with the cached
/// route, which would announce a subnet other than its own.
#[test]
fn a_seqno_request_for_a_cached_subnet_under_our_router_id_is_not_answered() {
    let mut r = leaf_with_two(8);
    r.resolve(at(10), addr(7), true);
    r.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    drain(&mut r);
    r.handle_tlv(
        at(30),
        B,
        Tlv::SeqnoRequest(SeqnoRequest {
            seqno: SeqNo(1),
            hop_count: 64,
            router_id: rid(1),
            prefix: key(7).subnet(),
        }),
    );
    let out = drain(&mut r);
    only_own_updates(&r, &out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn an_evicted_subnet_is_asked_for_again_at_once() {
    let mut r = leaf_with_two(1);
    r.resolve(at(10), addr(2), true);
    r.handle_tlv(at(11), A, Tlv::Update(update(2, 0, 50)));
    r.resolve(at(20), addr(3), true);
    drain(&mut r);
    // 2 was evicted a moment ago, well within the route request memory (15 s).
    assert_eq!(
        r.resolve(at(30), addr(2), true),
        Resolution::Pending(key(2).subnet())
    );
    let asked: Vec<PeerId> = drain(&mut r)
        .iter()
        .filter(|t| t.tlv == request(2))
        .map(|t| t.to)
        .collect();
    assert_eq!(asked, vec![A, B]);
}

#[test]
fn a_neighbour_back_from_silence_is_asked_for_the_cached_subnets() {
    let mut r = leaf_with_two(8);
    r.resolve(at(10), addr(7), true);
    r.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    drain(&mut r);
    // B falls silent, its routes go; it answers a Hello again later.
    r.handle_timeout(at(3_000));
    r.handle_tlv(
        at(3_100),
        B,
        Tlv::Ihu(crate::wire::tlv::Ihu {
            rx_cost: Metric(10),
            interval: Interval(6000),
            address: None,
        }),
    );
    r.handle_timeout(at(3_400));
    r.handle_tlv(
        at(3_500),
        B,
        Tlv::Ihu(crate::wire::tlv::Ihu {
            rx_cost: Metric(10),
            interval: Interval(6000),
            address: None,
        }),
    );
    let out = drain(&mut r);
    assert!(
        out.iter().any(|t| t.to == B && t.tlv == request(7)),
        "{out:?}"
    );
}

#[test]
fn a_used_route_about_to_expire_is_asked_for_again() {
    let mut r = leaf_with_two(8);
    r.resolve(at(10), addr(7), true);
    r.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    drain(&mut r);
    // Held 3.5 x 300 s; 20 s before that, a use asks again.
    let late = at(20 + 1_050_000 - 10_000);
    assert!(r.touch(late, key(7).subnet(), 1));
    let out = drain(&mut r);
    assert!(out.iter().any(|t| t.tlv == request(7)), "{out:?}");
    // A full node does the same.
    let mut full = Router::new(RouterConfig::default(), rid(1), at(0));
    full.handle_peer_up(at(0), A, TCP4);
    full.handle_tlv(at(20), A, Tlv::Update(update(7, 0, 50)));
    drain(&mut full);
    assert!(full.touch(late, key(7).subnet(), 1));
    assert!(drain(&mut full).iter().any(|t| t.tlv == request(7)));
    assert_eq!(full.stats().leaf_hits, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Resolve(u8),
    Touch(u8),
    Update(bool, u8, u16, u16),
    Request(bool, Option<u8>),
    Seqno(bool, u8),
    Down(bool),
    Up(bool),
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (2u8..40).prop_map(Op::Resolve),
        2 => (2u8..40).prop_map(Op::Touch),
        6 => (any::<bool>(), 2u8..40, 0u16..4, prop_oneof![Just(0xFFFFu16), 0u16..500])
            .prop_map(|(b, n, s, m)| Op::Update(b, n, s, m)),
        1 => (any::<bool>(), proptest::option::of(1u8..40)).prop_map(|(b, n)| Op::Request(b, n)),
        1 => (any::<bool>(), 1u8..40).prop_map(|(b, n)| Op::Seqno(b, n)),
        1 => any::<bool>().prop_map(Op::Down),
        1 => any::<bool>().prop_map(Op::Up),
        2 => (0u16..20_000).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Whatever its neighbours send and whatever it is asked to resolve, a leaf
    /// holds at most its cache's worth of subnets and announces nothing but its
    /// own subnet; a route it resolves to goes through a neighbour it has.
    #[test]
    fn a_leaf_stays_a_bounded_stub(ops in proptest::collection::vec(op(), 1..120), cap in 1usize..6) {
        let mut r = leaf(cap);
        let mut now = 0u64;
        let mut up = [true, true];
        r.handle_peer_up(at(0), A, TCP4);
        r.handle_peer_up(at(0), B, TCP4);
        for op in ops {
            now += 1;
            let peer = |b: bool| if b { A } else { B };
            match op {
                Op::Resolve(n) => {
                    if let Resolution::Forward(p) = r.resolve(at(now), addr(n), true) {
                        prop_assert!(up[usize::from(p == B)]);
                    }
                }
                Op::Touch(n) => { r.touch(at(now), key(n).subnet(), 1); }
                Op::Update(b, n, s, m) => {
                    r.handle_tlv(at(now), peer(b), Tlv::Update(update(n, s, m)));
                }
                Op::Request(b, n) => r.handle_tlv(
                    at(now),
                    peer(b),
                    Tlv::RouteRequest(RouteRequest { generation: 0, prefix: n.map(|n| key(n).subnet()) }),
                ),
                Op::Seqno(b, n) => r.handle_tlv(
                    at(now),
                    peer(b),
                    Tlv::SeqnoRequest(SeqnoRequest {
                        seqno: SeqNo(3), hop_count: 64, router_id: rid(n), prefix: key(n).subnet(),
                    }),
                ),
                Op::Down(b) => {
                    r.handle_peer_down(at(now), peer(b));
                    up[usize::from(!b)] = false;
                }
                Op::Up(b) => {
                    r.handle_peer_up(at(now), peer(b), TCP4);
                    up[usize::from(!b)] = true;
                }
                Op::Tick(ms) => {
                    now += u64::from(ms);
                    r.handle_timeout(at(now));
                }
            }
            prop_assert!(r.table_size().0 <= cap, "{} subnets held", r.table_size().0);
            let out = drain(&mut r);
            for t in &out {
                if let Tlv::Update(u) = t.tlv {
                    prop_assert_eq!(u.subnet, r.own_subnet());
                }
                if let Tlv::RouteRequest(rr) = t.tlv {
                    prop_assert!(rr.prefix.is_some(), "a leaf asked for a whole table");
                }
            }
            events(&mut r);
        }
    }
}
