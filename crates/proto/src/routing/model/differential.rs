//! The compact store against the reference maps: random sequences of the
//! operations the router performs, on a few subnets, neighbours and router ids
//! (one with a key that is not its subnet's), must leave both with the same
//! entries, counts, due deadlines and feasibility distances.
//!
//! Times are whole milliseconds, which the compact store keeps exactly.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::source_table::SourceTable as RefSources;
use super::table::{RouteTable as RefTable, SubnetEntry as RefEntry};
use crate::identity::{PublicKey, RouterId};
use crate::routing::neighbour::PeerId;
use crate::routing::source_table::SourceKey;
use crate::routing::table::{Due, RouteEntry, RouteTable, SubnetEntry};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::{Metric, SeqNo};

const SUBNETS: usize = 3;
const PEERS: u64 = 3;
/// Feasibility distances live this long in both.
const LIFETIME: Duration = Duration::from_millis(1500);

fn key(i: usize) -> PublicKey {
    PublicKey::from_bytes([i as u8 + 1; 32])
}

fn subnet(i: usize) -> Subnet {
    key(i).subnet()
}

/// Router id `r` of subnet `s`: two incarnations of the owner, or a stranger.
fn router_id(s: usize, r: u8) -> RouterId {
    match r {
        0 | 1 => RouterId::new(key(s), [r; 6]),
        _ => RouterId::new(key(9), [r; 6]),
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    InsertSubnet(usize, bool),
    InsertQuery(usize, u64),
    RemoveSubnet(usize),
    InsertRoute {
        s: usize,
        peer: u64,
        r: u8,
        metric: u16,
        seqno: u16,
        life: u64,
    },
    ModifyRoute {
        s: usize,
        peer: u64,
        r: u8,
        metric: u16,
        seqno: u16,
        life: Option<u64>,
        unselect: bool,
    },
    RemoveRoute(usize, u64),
    Select(usize, Option<u64>),
    Expire,
    RecordSent {
        s: usize,
        r: u8,
        seqno: u16,
        metric: Option<u16>,
        settled: bool,
    },
    Collect,
    Evict(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SUBNETS;
    let peer = 0..PEERS;
    let r = 0u8..3;
    let metric = prop_oneof![3 => 0u16..40, 1 => Just(Metric::INFINITE.0)];
    prop_oneof![
        3 => (0u64..700).prop_map(Op::Advance),
        2 => (s.clone(), prop::bool::weighted(0.1)).prop_map(|(s, other)| Op::InsertSubnet(s, other)),
        1 => (s.clone(), 1u64..2000).prop_map(|(s, l)| Op::InsertQuery(s, l)),
        1 => s.clone().prop_map(Op::RemoveSubnet),
        4 => (s.clone(), peer.clone(), r.clone(), metric.clone(), 0u16..4, 1u64..2000).prop_map(
            |(s, peer, r, metric, seqno, life)| Op::InsertRoute { s, peer, r, metric, seqno, life }
        ),
        4 => (
            s.clone(),
            peer.clone(),
            r.clone(),
            metric,
            0u16..4,
            prop::option::of(1u64..2000),
            any::<bool>()
        )
            .prop_map(|(s, peer, r, metric, seqno, life, unselect)| Op::ModifyRoute {
                s,
                peer,
                r,
                metric,
                seqno,
                life,
                unselect
            }),
        1 => (s.clone(), peer.clone()).prop_map(|(s, p)| Op::RemoveRoute(s, p)),
        3 => (s.clone(), prop::option::of(peer)).prop_map(|(s, p)| Op::Select(s, p)),
        2 => Just(Op::Expire),
        3 => (s.clone(), r, 0u16..4, prop::option::of(0u16..40), any::<bool>()).prop_map(
            |(s, r, seqno, metric, settled)| Op::RecordSent { s, r, seqno, metric, settled }
        ),
        1 => Just(Op::Collect),
        1 => (s, 0u8..8).prop_map(|(s, mask)| Op::Evict(s, mask)),
    ]
}

struct Pair {
    now: u64,
    new: RouteTable,
    old: RefTable,
    old_sources: RefSources,
}

impl Pair {
    fn apply(&mut self, op: &Op) {
        let now = at(self.now);
        match *op {
            Op::Advance(ms) => self.now += ms,
            Op::InsertSubnet(s, other) => {
                // The router fixes a key only for a subnet that does not exist.
                if !matches!(self.old.get(&subnet(s)), Some(RefEntry::Exists { .. })) {
                    let k = if other { key(9) } else { key(s) };
                    self.old.insert_subnet(subnet(s), k);
                    self.new.insert_subnet(subnet(s), k);
                }
            }
            Op::InsertQuery(s, life) => {
                let until = at(self.now + life);
                assert_eq!(
                    self.old.insert_query(subnet(s), until),
                    self.new.insert_query(subnet(s), until)
                );
            }
            Op::RemoveSubnet(s) => {
                self.old.remove_subnet(&subnet(s));
                self.new.remove_subnet(&subnet(s));
            }
            Op::InsertRoute {
                s,
                peer,
                r,
                metric,
                seqno,
                life,
            } => {
                let route = RouteEntry {
                    router_id: router_id(s, r),
                    neighbour: PeerId(peer),
                    metric: Metric(metric),
                    seqno: SeqNo(seqno),
                    selected: false,
                    expires: at(self.now + life),
                };
                assert_eq!(
                    self.old.insert_route(subnet(s), route),
                    self.new.insert_route(subnet(s), route)
                );
            }
            Op::ModifyRoute {
                s,
                peer,
                r,
                metric,
                seqno,
                life,
                unselect,
            } => {
                let id = router_id(s, r);
                let expires = life.map(|l| at(self.now + l));
                self.old.modify_route(subnet(s), PeerId(peer), |e| {
                    e.router_id = id;
                    e.metric = Metric(metric);
                    e.seqno = SeqNo(seqno);
                    if let Some(t) = expires {
                        e.expires = t;
                    }
                    if unselect {
                        e.selected = false;
                    }
                });
                self.new.modify_route(subnet(s), PeerId(peer), |e| {
                    e.router_id = id;
                    e.metric = Metric(metric);
                    e.seqno = SeqNo(seqno);
                    if let Some(t) = expires {
                        e.expires = t;
                    }
                    if unselect {
                        e.selected = false;
                    }
                });
            }
            Op::RemoveRoute(s, peer) => {
                let old = self.old.remove_route(subnet(s), PeerId(peer));
                let new = self.new.remove_route(subnet(s), PeerId(peer));
                assert_eq!(old, new);
            }
            Op::Select(s, peer) => {
                self.old.select(subnet(s), peer.map(PeerId));
                self.new.select(subnet(s), peer.map(PeerId));
            }
            Op::Expire => {
                // The compact store may wake early, never late.
                let old_next = [self.old.next_route_expiry(), self.old.next_query_expiry()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t) = old_next {
                    assert!(self.new.next_deadline().is_some_and(|n| n <= t));
                }
                let mut old_due = BTreeSet::new();
                while let Some(s) = self.old.pop_expired_query(now) {
                    self.old.remove_subnet(&s);
                    old_due.insert(Due::Query(s));
                }
                while let Some((s, p)) = self.old.pop_expired_route(now) {
                    self.old.remove_route(s, p);
                    old_due.insert(Due::Route(s, p));
                }
                let mut new_due = BTreeSet::new();
                while let Some(d) = self.new.pop_due(now) {
                    match d {
                        Due::Query(s) => {
                            let due = matches!(
                                self.new.get(&s),
                                Some(SubnetEntry::Queried { expires }) if expires <= now
                            );
                            if due {
                                self.new.remove_subnet(&s);
                                new_due.insert(d);
                            }
                        }
                        Due::Route(s, p) => {
                            if self.new.route(&s, p).is_some_and(|r| r.expires <= now) {
                                self.new.remove_route(s, p);
                                new_due.insert(d);
                            }
                        }
                    }
                }
                assert_eq!(old_due, new_due);
            }
            Op::RecordSent {
                s,
                r,
                seqno,
                metric,
                settled,
            } => {
                let key = SourceKey {
                    subnet: subnet(s),
                    router_id: router_id(s, r),
                };
                let metric = metric.map_or(Metric::INFINITE, Metric);
                self.old_sources
                    .record_sent(key, SeqNo(seqno), metric, now, LIFETIME, settled);
                self.new
                    .record_sent(key, SeqNo(seqno), metric, now, settled);
            }
            Op::Collect => {
                self.old_sources.collect(now);
                self.new.collect(now, LIFETIME);
            }
            Op::Evict(s, mask) => {
                let evictable =
                    |id: RouterId| (0..3).any(|r| mask & (1 << r) != 0 && id == router_id(s, r));
                assert_eq!(
                    self.old_sources
                        .evict_oldest(subnet(s), |id, _| evictable(id)),
                    self.new.evict_oldest(subnet(s), |id, _| evictable(id))
                );
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.old.len(), self.new.len(), "subnets");
        assert_eq!(self.old.route_count(), self.new.route_count(), "routes");
        assert_eq!(
            self.old.selected_count(),
            self.new.selected_count(),
            "selected"
        );
        for p in 0..PEERS {
            assert_eq!(self.old.routes_of(PeerId(p)), self.new.routes_of(PeerId(p)));
        }
        for s in (0..SUBNETS).map(subnet) {
            match (self.old.get(&s), self.new.get(&s)) {
                (None, None) => {}
                (
                    Some(RefEntry::Queried { expires: a }),
                    Some(SubnetEntry::Queried { expires: b }),
                ) => {
                    assert_eq!(*a, b);
                }
                (
                    Some(RefEntry::Exists { key: a, routes }),
                    Some(SubnetEntry::Exists {
                        key: b,
                        routes: new,
                    }),
                ) => {
                    assert_eq!(*a, b, "{s}: key");
                    let old: Vec<RouteEntry> = routes.clone();
                    assert_eq!(old, new.collect::<Vec<_>>(), "{s}: routes");
                }
                (a, b) => panic!("{s}: {a:?} against {b:?}"),
            }
            let mut old: Vec<_> = self
                .old_sources
                .of_subnet(s)
                .map(|(id, fd)| {
                    (
                        id,
                        fd.metric,
                        fd.seqno.0,
                        fd.last_sent,
                        fd.recent,
                        fd.recent_at,
                    )
                })
                .collect();
            let mut new: Vec<_> = self
                .new
                .sources_of(s)
                .map(|(id, fd)| {
                    (
                        id,
                        fd.metric,
                        fd.seqno.0,
                        fd.last_sent,
                        fd.recent,
                        fd.recent_at,
                    )
                })
                .collect();
            old.sort();
            new.sort();
            assert_eq!(old, new, "{s}: sources");
            // What we last said, with a router id the table no longer holds told
            // apart only as "gone".
            let held: Vec<RouterId> = old.iter().map(|e| e.0).collect();
            let norm = |l: Option<(Instant, Option<RouterId>)>| {
                l.map(|(t, id)| (t, id.map(|id| held.contains(&id).then_some(id))))
            };
            assert_eq!(
                norm(self.old_sources.latest(s)),
                norm(self.new.latest(s)),
                "{s}: latest"
            );
        }
        assert_eq!(self.old_sources.len(), self.new.source_count(), "sources");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_compact_store_does_what_the_maps_did(ops in prop::collection::vec(op(), 1..120)) {
        let mut pair = Pair {
            now: 0,
            new: RouteTable::new(7),
            old: RefTable::new(7),
            old_sources: RefSources::new(7),
        };
        for op in &ops {
            pair.apply(op);
            pair.check();
        }
    }
}
