//! Unit tests of single routing rules, one router driven by hand.

use std::time::Duration;

use super::*;
use crate::wire::tlv::{Hello, Ihu, RouteRequest, SeqnoRequest, Update};

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn key(n: u8) -> PublicKey {
    PublicKey::from_bytes([n; 32])
}

fn rid(n: u8) -> RouterId {
    RouterId::new(key(n), [n; 6])
}

fn router() -> Router {
    Router::new(RouterConfig::default(), rid(1), at(0))
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

fn updates_to(out: &[Transmit], to: PeerId) -> Vec<Update> {
    out.iter()
        .filter(|t| t.to == to)
        .filter_map(|t| match t.tlv {
            Tlv::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

const A: PeerId = PeerId(10);
const B: PeerId = PeerId(11);
const TCP4: LinkKind = LinkKind::Tcp { ipv4: true };

#[test]
fn new_peer_gets_our_route_and_a_table_request() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].tlv,
        Tlv::Update(Update {
            interval: Interval(30000),
            seqno: SeqNo(0),
            metric: Metric(0),
            subnet: key(1).subnet(),
            router_id: rid(1),
        })
    );
    assert_eq!(
        out[1].tlv,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None
        })
    );
}

#[test]
fn upstream_mode_sends_only_our_route_on_connect() {
    let mut r = Router::new(RouterConfig::upstream(), rid(1), at(0));
    r.handle_peer_up(at(0), A, TCP4);
    assert_eq!(drain(&mut r).len(), 1);
}

#[test]
fn hello_is_answered_with_one_ihu_carrying_the_link_cost() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    drain(&mut r);
    r.handle_tlv(
        at(5),
        A,
        Tlv::Hello(Hello {
            unicast: true,
            seqno: SeqNo(3),
            interval: Interval(2000),
        }),
    );
    let out = drain(&mut r);
    assert_eq!(
        out,
        vec![Transmit {
            to: A,
            tlv: Tlv::Ihu(Ihu {
                rx_cost: Metric(1015),
                interval: Interval(6000),
                address: None,
            }),
        }]
    );
}

#[test]
fn ihu_measures_the_time_since_our_last_hello() {
    let mut cfg = RouterConfig::upstream();
    cfg.hello_interval = Duration::from_secs(20);
    let mut r = Router::new(cfg, rid(1), at(0));
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_timeout(at(20_000));
    drain(&mut r);
    r.handle_tlv(
        at(20_040),
        A,
        Tlv::Ihu(Ihu {
            rx_cost: Metric(0),
            interval: Interval(6000),
            address: None,
        }),
    );
    // (1000 * 9 + 40) / 10 = 904, plus 15 for IPv4 TCP.
    assert_eq!(r.neighbours().collect::<Vec<_>>(), vec![(A, Metric(919))]);
}

#[test]
fn update_filters_drop_foreign_short_and_unowned_prefixes() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    let mut outside = update(2, 0, 0);
    outside.subnet = "2001:db8::/64".parse().unwrap();
    let mut short = update(2, 0, 0);
    short.subnet = Subnet::new(short.subnet.address(), 48).unwrap();
    let mut unowned = update(2, 0, 0);
    unowned.subnet = key(3).subnet();
    for u in [outside, short, unowned] {
        r.handle_tlv(at(1), A, Tlv::Update(u));
    }
    assert_eq!(r.stats().updates_filtered, 3);
    assert_eq!(r.table_size(), (0, 0));
    // A retraction may name any router id.
    let mut retraction = update(2, 0, 0xFFFF);
    retraction.router_id = rid(9);
    r.handle_tlv(at(1), A, Tlv::Update(retraction));
    assert_eq!(r.stats().updates_filtered, 3);
}

#[test]
fn updates_for_our_own_subnet_are_ignored() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(1, 5, 0)));
    assert_eq!(r.stats().updates_for_own_subnet, 1);
    assert_eq!(r.table_size(), (0, 0));
}

#[test]
fn acquired_route_is_selected_announced_and_reported() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    drain(&mut r);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 0, 0)));
    let dst = key(2).address();
    assert_eq!(r.next_hop(dst), Some(A));
    assert_eq!(r.key_for(dst), Some(key(2)));
    assert_eq!(events(&mut r), vec![Event::RouteUsable(key(2).subnet())]);
    let out = drain(&mut r);
    // Split horizon: nothing back to A; B gets the route with A's link cost added.
    assert!(updates_to(&out, A).is_empty());
    let to_b = updates_to(&out, B);
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0].metric, Metric(1015));
    assert_eq!(to_b[0].router_id, rid(2));
}

#[test]
fn unfeasible_update_asks_the_sender_for_a_newer_seqno() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 4, 100)));
    drain(&mut r);
    // We advertised (seqno 4, metric 1115) to B; B offers the same seqno with a
    // metric no better: unfeasible.
    r.handle_tlv(at(2), B, Tlv::Update(update(2, 4, 2000)));
    r.handle_peer_down(at(3), A);
    let out = drain(&mut r);
    let asked: Vec<SeqnoRequest> = out
        .iter()
        .filter_map(|t| match t.tlv {
            Tlv::SeqnoRequest(s) if t.to == B => Some(s),
            _ => None,
        })
        .collect();
    assert!(!asked.is_empty(), "{out:?}");
    assert_eq!(asked[0].seqno, SeqNo(5));
    assert_eq!(asked[0].hop_count, 64);
    assert_eq!(r.next_hop(key(2).address()), None);
}

#[test]
fn lost_route_is_retracted_with_our_own_router_id() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 0, 0)));
    drain(&mut r);
    events(&mut r);
    r.handle_peer_down(at(2), A);
    let retraction = updates_to(&drain(&mut r), B);
    assert_eq!(retraction.len(), 1);
    assert!(retraction[0].metric.is_infinite());
    assert_eq!(retraction[0].router_id, rid(1));
    assert_eq!(retraction[0].seqno, r.seqno());
    assert_eq!(events(&mut r), vec![Event::RouteLost(key(2).subnet())]);
    // The retracted entry lingers for the hold time, then goes.
    assert!(r.key_for(key(2).address()).is_some());
    r.handle_timeout(at(2 + 6_001));
    assert!(r.key_for(key(2).address()).is_none());
}

#[test]
fn seqno_bumps_are_rate_limited_and_deferred_not_dropped() {
    // Without liveness probing, so that A's silence does not make it unreachable.
    let mut r = Router::new(RouterConfig::upstream(), rid(1), at(0));
    r.handle_peer_up(at(0), A, TCP4);
    drain(&mut r);
    let ask = |seqno| {
        Tlv::SeqnoRequest(SeqnoRequest {
            seqno: SeqNo(seqno),
            hop_count: 64,
            router_id: rid(1),
            prefix: key(1).subnet(),
        })
    };
    r.handle_tlv(at(1_000), A, ask(1));
    assert_eq!(r.seqno(), SeqNo(0), "within 4 s of start");
    assert!(r.poll_timeout().unwrap() <= at(4_000));
    r.handle_timeout(at(4_000));
    assert_eq!(r.seqno(), SeqNo(1));
    let out = updates_to(&drain(&mut r), A);
    assert_eq!(out.last().unwrap().seqno, SeqNo(1));
    // A request for a seqno we already have gets no answer.
    r.handle_tlv(at(9_000), A, ask(1));
    assert_eq!(r.seqno(), SeqNo(1));
    assert!(updates_to(&drain(&mut r), A).is_empty());
}

#[test]
fn wildcard_request_is_answered_with_selected_routes_then_our_own() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 0, 0)));
    r.handle_tlv(at(1), B, Tlv::Update(update(3, 0, 0)));
    drain(&mut r);
    r.handle_tlv(
        at(2),
        B,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None,
        }),
    );
    let out = updates_to(&drain(&mut r), B);
    let subnets: Vec<Subnet> = out.iter().map(|u| u.subnet).collect();
    // Node 3's route is via B itself, so it is left out.
    assert_eq!(subnets, vec![key(2).subnet(), key(1).subnet()]);
}

#[test]
fn unknown_route_request_is_forwarded_with_its_generation_raised() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    drain(&mut r);
    let req = |generation| {
        Tlv::RouteRequest(RouteRequest {
            generation,
            prefix: Some(key(7).subnet()),
        })
    };
    r.handle_tlv(at(1), A, req(3));
    assert_eq!(drain(&mut r), vec![Transmit { to: B, tlv: req(4) }]);
    // The subnet is now being searched for: a repeat is not forwarded again.
    r.handle_tlv(at(2), A, req(3));
    assert!(drain(&mut r).is_empty());
    // Generation 15 would become 16: dropped.
    r.handle_tlv(
        at(3),
        A,
        Tlv::RouteRequest(RouteRequest {
            generation: 15,
            prefix: Some(key(8).subnet()),
        }),
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().route_requests_too_old, 1);
}

#[test]
fn resolving_an_unknown_destination_asks_every_neighbour_once() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    drain(&mut r);
    let dst = key(5).address();
    assert_eq!(
        r.resolve(at(1), dst, true),
        Resolution::Pending(key(5).subnet())
    );
    assert_eq!(drain(&mut r).len(), 2);
    assert_eq!(
        r.resolve(at(2), dst, true),
        Resolution::Pending(key(5).subnet())
    );
    assert!(drain(&mut r).is_empty());
    // Unanswered, the query expires after 15 s.
    r.handle_timeout(at(15_001));
    assert!(events(&mut r).contains(&Event::QueryExpired(key(5).subnet())));
}

#[test]
fn silent_neighbour_is_routed_around_then_welcomed_back() {
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 0, 0)));
    drain(&mut r);
    events(&mut r);
    let liveness = r.config().liveness.unwrap();
    let mut now = at(1);
    while now < at(1) + liveness.timeout + Duration::from_millis(1) {
        now = r.poll_timeout().unwrap();
        r.handle_timeout(now);
    }
    let ev = events(&mut r);
    assert!(ev.contains(&Event::PeerUnreachable(A)), "{ev:?}");
    assert!(ev.contains(&Event::RouteLost(key(2).subnet())));
    assert_eq!(r.next_hop(key(2).address()), None);
    // Its connection is not closed: no PeerDead.
    assert!(!ev.iter().any(|e| matches!(e, Event::PeerDead(_))));
    drain(&mut r);
    let ihu = Tlv::Ihu(Ihu {
        rx_cost: Metric(0),
        interval: Interval(6000),
        address: None,
    });
    // The burst that wakes it proves only that its direction works, even if it
    // holds an IHU (perhaps an old one): we answer with a Hello and wait.
    r.handle_tlv(now, A, ihu);
    assert_eq!(events(&mut r), vec![]);
    let hello = drain(&mut r);
    assert!(
        hello
            .iter()
            .any(|t| t.to == A && matches!(t.tlv, Tlv::Hello(_))),
        "{hello:?}"
    );
    assert_eq!(r.next_hop(key(2).address()), None);
    // Its answer, later than the burst, shows that it hears us.
    let now = now + Duration::from_millis(60);
    r.handle_tlv(now, A, ihu);
    assert_eq!(events(&mut r), vec![Event::PeerReachable(A)]);
    let out = drain(&mut r);
    assert!(out.iter().any(|t| t.tlv
        == Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None
        })));
}

#[test]
fn neighbour_without_ihu_for_43_seconds_is_dead() {
    let mut r = Router::new(RouterConfig::upstream(), rid(1), at(0));
    r.handle_peer_up(at(0), A, TCP4);
    let mut now = at(0);
    while now < at(60_000) {
        now = r.poll_timeout().unwrap();
        r.handle_timeout(now);
        if events(&mut r).contains(&Event::PeerDead(A)) {
            break;
        }
    }
    assert!(now > at(43_000) && now <= at(53_000), "{now:?}");
    assert_eq!(r.neighbours().count(), 0);
}

#[test]
fn routes_from_one_neighbour_are_bounded() {
    let mut cfg = RouterConfig::default();
    cfg.limits.max_routes_per_neighbour = 100;
    cfg.limits.max_subnets = 150;
    let mut r = Router::new(cfg, rid(1), at(0));
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    for i in 0..1000u32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[31] = 0xaa;
        let key = PublicKey::from_bytes(k);
        let u = Update {
            interval: Interval(30000),
            seqno: SeqNo(0),
            metric: Metric(0),
            subnet: key.subnet(),
            router_id: RouterId::new(key, [0; 6]),
        };
        r.handle_tlv(at(1), if i < 500 { A } else { B }, Tlv::Update(u));
    }
    let (subnets, routes) = r.table_size();
    assert!(
        subnets <= 150 && routes <= 150,
        "{subnets} subnets, {routes} routes"
    );
    assert_eq!(routes, 150, "A's share is capped, B fills the rest");
    assert!(r.stats().updates_over_limit >= 850);
}

/// Advances `r` from `from` to `to` in 100 ms steps; the peers in `alive` say Hello
/// at every step, the others stay silent.
fn tick(r: &mut Router, from: u64, to: u64, alive: &[PeerId]) {
    let mut now = from;
    while now < to {
        now += 100;
        for &p in alive {
            r.handle_tlv(
                at(now),
                p,
                Tlv::Hello(Hello {
                    unicast: true,
                    seqno: SeqNo(0),
                    interval: Interval(25),
                }),
            );
            // And answer our Hellos, so a silent one can come back.
            r.handle_tlv(
                at(now),
                p,
                Tlv::Ihu(Ihu {
                    rx_cost: Metric(0),
                    interval: Interval(6000),
                    address: None,
                }),
            );
        }
        while r.poll_timeout().is_some_and(|t| t <= at(now)) {
            r.handle_timeout(at(now));
        }
        drain(r);
        events(r);
    }
}

/// Node 9 under two router ids, as after a restart.
fn incarnation(n: u8, seqno: u16, metric: u16) -> Update {
    Update {
        router_id: RouterId::new(key(9), [n; 6]),
        ..update(9, seqno, metric)
    }
}

const C: PeerId = PeerId(12);

#[test]
fn a_new_router_id_must_beat_every_metric_recently_advertised_for_the_old_one() {
    // What we advertised for the old id under an older seqno counts too: a
    // neighbour may still route by it.
    let mut r = router();
    for p in [A, B, C] {
        r.handle_peer_up(at(0), p, TCP4);
    }
    r.handle_tlv(at(1), A, Tlv::Update(incarnation(1, 9, 100)));
    r.handle_tlv(at(2), A, Tlv::Update(incarnation(1, 10, 400)));
    let sent: Vec<u16> = updates_to(&drain(&mut r), C)
        .iter()
        .filter(|u| u.subnet == key(9).subnet())
        .map(|u| u.metric.0)
        .collect();
    let (low, high) = (sent[0], sent[sent.len() - 1]);
    assert!(low < high, "{sent:?}");
    // The old id is withdrawn; the new one is offered between the two.
    r.handle_tlv(at(3), A, Tlv::Update(incarnation(1, 10, 0xFFFF)));
    r.handle_tlv(at(4), B, Tlv::Update(incarnation(2, 0, low + 1)));
    assert_eq!(r.next_hop(key(9).address()), None);
    tick(&mut r, 4, 5_000, &[A, B, C]);
    assert_eq!(
        r.next_hop(key(9).address()),
        None,
        "taken within the window"
    );
    tick(&mut r, 5_000, 7_000, &[A, B, C]);
    assert_eq!(r.next_hop(key(9).address()), Some(B));
}

#[test]
fn a_silent_neighbour_keeps_the_window_open_until_it_wakes() {
    // What we sent C before it fell silent may reach it whenever it wakes.
    let mut r = router();
    for p in [A, B, C] {
        r.handle_peer_up(at(0), p, TCP4);
    }
    r.handle_tlv(at(1), A, Tlv::Update(incarnation(1, 1, 100)));
    drain(&mut r);
    tick(&mut r, 1, 2_001, &[A, B]); // C is now unreachable
    r.handle_tlv(at(2_001), A, Tlv::Update(incarnation(1, 1, 0xFFFF)));
    r.handle_tlv(at(2_001), B, Tlv::Update(incarnation(2, 0, 5_000)));
    tick(&mut r, 2_001, 12_001, &[A, B]);
    assert_eq!(r.next_hop(key(9).address()), None, "C is still silent");
    tick(&mut r, 12_001, 15_001, &[A, B, C]); // C woke at 12.1 s, answers at 12.2 s
    assert_eq!(
        r.next_hop(key(9).address()),
        None,
        "within the window of waking"
    );
    tick(&mut r, 15_001, 18_501, &[A, B, C]);
    assert_eq!(r.next_hop(key(9).address()), Some(B));
}

#[test]
fn a_neighbour_heard_one_way_only_stays_routed_around() {
    // Its Hellos get through, our Hellos do not reach it (its IHUs never come): it
    // must not be used, whatever it says meanwhile.
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_tlv(at(1), A, Tlv::Update(update(2, 0, 0)));
    tick(&mut r, 1, 2_001, &[]);
    assert_eq!(r.next_hop(key(2).address()), None);
    for t in (2_101..7_001).step_by(100) {
        r.handle_tlv(
            at(t),
            A,
            Tlv::Hello(Hello {
                unicast: true,
                seqno: SeqNo(0),
                interval: Interval(25),
            }),
        );
        r.handle_tlv(at(t), A, Tlv::Update(update(2, 0, 0)));
        while r.poll_timeout().is_some_and(|x| x <= at(t)) {
            r.handle_timeout(at(t));
        }
        drain(&mut r);
        assert!(!events(&mut r).contains(&Event::PeerReachable(A)));
        assert_eq!(r.next_hop(key(2).address()), None, "used at {t} ms");
    }
    // Its IHU, an answer to a Hello sent since it woke: it hears us. It answers our
    // table request with its routes.
    tick(&mut r, 7_001, 7_201, &[A]);
    r.handle_tlv(at(7_250), A, Tlv::Update(update(2, 0, 0)));
    assert_eq!(r.next_hop(key(2).address()), Some(A));
}

#[test]
fn router_ids_of_one_subnet_are_bounded() {
    // A peer announcing its subnet under ever new router ids cannot grow the source
    // table: past the bound, old ones make room once nothing sent for them can still
    // be on its way, and the newest waits meanwhile.
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, TCP4);
    let mut t = 1;
    for n in 0..40u8 {
        r.handle_tlv(at(t), A, Tlv::Update(incarnation(n, 1, 10)));
        r.handle_tlv(at(t), A, Tlv::Update(incarnation(n, 1, 0xFFFF)));
        tick(&mut r, t, t + 1_000, &[A, B]);
        t += 1_000;
        let per_subnet = r.table.sources_of(key(9).subnet()).count();
        assert!(
            per_subnet <= source_table::MAX_SOURCES_PER_SUBNET,
            "{per_subnet}"
        );
    }
    assert!(r.stats().sources_evicted > 0);
    // The newest is taken once room is made.
    r.handle_tlv(at(t), A, Tlv::Update(incarnation(99, 1, 10)));
    tick(&mut r, t, t + 8_000, &[A, B]);
    assert_eq!(r.next_hop(key(9).address()), Some(A));
}

#[test]
fn a_neighbour_is_named_by_its_own_metric_zero_update() {
    // One node on two links (say TCP and QUIC to different addresses): both name
    // it once its own subnet arrives at metric 0; nothing else names a neighbour.
    let mut r = router();
    r.handle_peer_up(at(0), A, TCP4);
    r.handle_peer_up(at(0), B, LinkKind::Quic { ipv4: false });
    assert_eq!(r.neighbour_router_id(A), None);
    // A route it relays (metric above 0) does not say who it is.
    r.handle_tlv(at(1), A, Tlv::Update(update(3, 0, 20)));
    // Nor does a metric-0 update the router id's key does not own (filtered).
    let forged = Update {
        router_id: rid(4),
        ..update(3, 1, 0)
    };
    r.handle_tlv(at(1), A, Tlv::Update(forged));
    // Nor one for our own subnet under our router id.
    r.handle_tlv(at(1), A, Tlv::Update(update(1, 5, 0)));
    assert_eq!(r.neighbour_router_id(A), None);
    r.handle_tlv(at(2), A, Tlv::Update(update(2, 0, 0)));
    r.handle_tlv(at(2), B, Tlv::Update(update(2, 0, 0)));
    assert_eq!(r.neighbour_router_id(A), Some(rid(2)));
    assert_eq!(
        r.neighbour_router_id(A).map(|id| id.public_key()),
        r.neighbour_router_id(B).map(|id| id.public_key())
    );
    // The first name sticks: a later metric-0 update for another owner's subnet
    // does not rename the link.
    r.handle_tlv(at(3), A, Tlv::Update(update(5, 0, 0)));
    assert_eq!(r.neighbour_router_id(A), Some(rid(2)));
    // A link that is gone, or never was, names nobody.
    r.handle_peer_down(at(4), A);
    assert_eq!(r.neighbour_router_id(A), None);
    assert_eq!(r.neighbour_router_id(PeerId(99)), None);
}
