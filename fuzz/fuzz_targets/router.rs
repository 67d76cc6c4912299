//! The sans-IO router driven by a script of operations read from the input, on a
//! virtual clock: peers coming and going, TLVs from them (decoded from raw bytes, or
//! built from a few known keys so that updates pass the subnet filters), our own
//! transmits played back from another peer, clock steps with timeouts, and
//! resolutions. The limits are small so they are reached.
//!
//! After every operation the router's documented invariants must hold: tables and
//! caches (the source table too) within their limits and consistent with their
//! counts, no selected route through a peer that is down or unreachable or with an
//! infinite metric, nothing learned for our own subnet, every key owning its subnet, what it sends decoding
//! back to itself and only going to neighbours, and after a timeout the next one
//! strictly in the future.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mycelium_proto::routing::{
    Event, Limits, LinkKind, Liveness, PeerId, Resolution, Router, RouterConfig, SubnetEntry,
};
use mycelium_proto::subnet::Subnet;
use mycelium_proto::time::Instant;
use mycelium_proto::wire::tlv::{Hello, Ihu, RouteRequest, SeqnoRequest, Update};
use mycelium_proto::wire::{Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId};

/// Keys of the nodes the script talks about; index 0 is our own.
const KEYS: usize = 6;
const PEERS: u64 = 4;
/// Our transmits kept to play back.
const KEPT: usize = 32;

const LIMITS: Limits = Limits {
    max_subnets: 6,
    max_routes_per_neighbour: 4,
    max_seqno_requests: 5,
    max_route_requests: 5,
};

struct Node {
    key: PublicKey,
    address: Ipv6Addr,
    subnet: Subnet,
}

/// The keys with their addresses worked out once (a BLAKE3 hash each).
fn nodes() -> &'static [Node; KEYS] {
    static N: OnceLock<[Node; KEYS]> = OnceLock::new();
    N.get_or_init(|| {
        std::array::from_fn(|i| {
            let key = PublicKey::from_bytes([i as u8 + 1; 32]);
            Node {
                key,
                address: key.address(),
                subnet: key.subnet(),
            }
        })
    })
}

/// The address of a key, without hashing for the known ones.
fn address_of(key: PublicKey) -> Ipv6Addr {
    nodes()
        .iter()
        .find(|n| n.key == key)
        .map_or_else(|| key.address(), |n| n.address)
}

fn router_id(key: usize, incarnation: u8) -> RouterId {
    RouterId::new(nodes()[key % KEYS].key, [incarnation % 3; 6])
}

/// Reads the script; past its end every read gives zeros.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
    fn peer(&mut self) -> PeerId {
        PeerId(1 + u64::from(self.u8()) % PEERS)
    }
}

/// A subnet for a TLV: mostly ones the filters let through, some they must not.
fn subnet(s: &mut Script<'_>) -> Subnet {
    let sel = s.u8();
    let node = &nodes()[usize::from(sel >> 3) % KEYS];
    let addr = node.address;
    let v6 =
        |a: Ipv6Addr, len| Subnet::new(IpAddr::V6(a), len).map_or(node.subnet, |s| s.network());
    match sel & 7 {
        0..=2 => node.subnet,
        3 => v6(addr, 80 + (sel >> 3) % 49),
        4 => v6(addr, 48),
        5 => v6(
            Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(sel), 0, 0, 0, 0),
            64,
        ),
        6 => v6(
            Ipv6Addr::new(0x400 | u16::from(sel >> 3), 0, 0, 1, 0, 0, 0, 0),
            64,
        ),
        _ => v6(Ipv6Addr::UNSPECIFIED, 0),
    }
}

fn metric(s: &mut Script<'_>) -> Metric {
    match s.u8() {
        0..=99 => Metric(u16::from(s.u8())),
        100..=179 => Metric(s.u16()),
        180..=219 => Metric::INFINITE,
        _ => Metric::MAX_FINITE,
    }
}

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

struct World {
    router: Router,
    now: u64,
    /// Peers the router holds, as far as the driver knows.
    up: BTreeSet<PeerId>,
    kept: Vec<Tlv>,
}

impl World {
    fn drain(&mut self, up_before: &BTreeSet<PeerId>) {
        while let Some(t) = self.router.poll_transmit() {
            assert!(
                up_before.contains(&t.to) || self.up.contains(&t.to),
                "{:?} sent to {} which is not a neighbour",
                t.tlv,
                t.to
            );
            let mut value = Vec::new();
            t.tlv.encode_value(&mut value);
            assert_eq!(value.len(), t.tlv.value_len());
            assert_eq!(Tlv::decode(t.tlv.tlv_type(), &value), Ok(t.tlv));
            if let Tlv::Update(u) = t.tlv {
                if !u.metric.is_infinite() {
                    assert!(
                        u.subnet.is_overlay()
                            && u.subnet.prefix_len() >= 64
                            && u.subnet
                                .contains_ip(IpAddr::V6(address_of(u.router_id.public_key()))),
                        "we announce {u:?}, which our own filters refuse"
                    );
                }
            }
            if self.kept.len() < KEPT {
                self.kept.push(t.tlv);
            } else {
                let i = (self.now as usize) % KEPT;
                self.kept[i] = t.tlv;
            }
        }
        while let Some(e) = self.router.poll_event() {
            if let Event::PeerDead(p) = e {
                assert!(self.up.remove(&p), "{p} reported dead twice or unknown");
            }
        }
    }

    fn check(&self) {
        let r = &self.router;
        let neighbours: BTreeMap<PeerId, Metric> = r.neighbours().collect();
        assert_eq!(
            neighbours.keys().copied().collect::<BTreeSet<_>>(),
            self.up,
            "the router's neighbours"
        );
        let (subnets, routes) = r.table_size();
        assert!(subnets <= LIMITS.max_subnets, "{subnets} subnets");
        let own = r.own_subnet();
        let mut counted_routes = 0;
        let mut selected = 0;
        let mut per_peer: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut listed = 0;
        for (s, e) in r.subnets() {
            listed += 1;
            let SubnetEntry::Exists { key, routes } = e else {
                continue;
            };
            let routes: Vec<_> = routes.collect();
            assert!(
                !own.contains_subnet(&s),
                "{s} inside our own subnet {own} learned from a peer"
            );
            assert!(
                s.contains_ip(IpAddr::V6(address_of(key))),
                "{s} held with a key whose address is outside it"
            );
            counted_routes += routes.len();
            for (i, route) in routes.iter().enumerate() {
                *per_peer.entry(route.neighbour).or_default() += 1;
                assert!(!route.selected || i == 0, "{s}: selected route not first");
                assert!(
                    routes[..i].iter().all(|o| o.neighbour != route.neighbour),
                    "{s}: two routes through {}",
                    route.neighbour
                );
            }
            if let Some(sel) = routes.first().filter(|r| r.selected) {
                selected += 1;
                let cost = neighbours.get(&sel.neighbour).copied();
                assert!(
                    cost.is_some(),
                    "{s}: selected route through {} which is down",
                    sel.neighbour
                );
                assert!(
                    !sel.metric.is_infinite() && cost.is_some_and(|c| !c.is_infinite()),
                    "{s}: selected route {sel:?} is unusable (link cost {cost:?})"
                );
                assert_eq!(r.selected_route(&s), Some(*sel));
            }
        }
        assert_eq!(listed, subnets);
        assert_eq!(counted_routes, routes, "route count");
        assert_eq!(selected, r.selected_count(), "selected count");
        for (p, n) in per_peer {
            assert!(
                n <= LIMITS.max_routes_per_neighbour,
                "{n} routes through {p}"
            );
        }
        let (sources, seqno_cache, rr_cache) = r.cache_sizes();
        // The source table holds at most twice as many sources as subnets.
        assert!(
            sources <= 2 * LIMITS.max_subnets,
            "{sources} sources in the source table"
        );
        assert!(
            seqno_cache <= LIMITS.max_seqno_requests,
            "{seqno_cache} seqno requests"
        );
        assert!(
            rr_cache <= LIMITS.max_route_requests,
            "{rr_cache} route requests"
        );
        assert!(r.poll_timeout().is_some());
    }

    fn timeout(&mut self) {
        let now = at(self.now);
        self.router.handle_timeout(now);
        let next = self
            .router
            .poll_timeout()
            .expect("a router always has a timer");
        assert!(next > now, "next timeout {next:?} not after {now:?}");
    }
}

fn config(setup: u8) -> RouterConfig {
    let mut cfg = if setup & 1 == 0 {
        RouterConfig::default()
    } else {
        RouterConfig::upstream()
    };
    if setup & 2 != 0 {
        cfg.request_table_on_connect = !cfg.request_table_on_connect;
    }
    if setup & 4 != 0 {
        cfg.liveness = Some(Liveness {
            probe_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
        });
    }
    cfg.limits = LIMITS;
    cfg.hash_seed = u64::from(setup >> 3);
    cfg
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let setup = s.u8();
    let now = u64::from(s.u8()) * 1000;
    let mut w = World {
        router: Router::new(config(setup), router_id(0, 0), at(now)),
        now,
        up: BTreeSet::new(),
        kept: Vec::new(),
    };
    let mut ops = 0;
    while !s.0.is_empty() && ops < 512 {
        ops += 1;
        let up_before = w.up.clone();
        let now = at(w.now);
        match s.u8() % 14 {
            0 => {
                let peer = s.peer();
                let kind = match s.u8() % 5 {
                    0 => LinkKind::Tcp { ipv4: true },
                    1 => LinkKind::Tls { ipv4: false },
                    2 => LinkKind::Quic { ipv4: true },
                    3 => LinkKind::Vsock,
                    _ => LinkKind::Virtual(u16::from(s.u8())),
                };
                w.router.handle_peer_up(now, peer, kind);
                w.up.insert(peer);
            }
            1 => {
                let peer = s.peer();
                w.router.handle_peer_down(now, peer);
                w.up.remove(&peer);
            }
            2 => {
                let peer = s.peer();
                let ty = s.u8();
                let len = usize::from(s.u8() % 128);
                if let Ok(tlv) = Tlv::decode(ty, s.bytes(len)) {
                    w.router.handle_tlv(now, peer, tlv);
                }
            }
            3 => {
                let peer = s.peer();
                let who = s.u8();
                let seqno = SeqNo(s.u16());
                let metric = metric(&mut s);
                let interval = Interval(match s.u8() {
                    0 => 0,
                    b @ 1..=127 => u16::from(b) * 100,
                    _ => 30000,
                });
                let mut subnet = subnet(&mut s);
                // Usually the subnet of the router id's key, so the update passes.
                if who & 0x80 == 0 {
                    subnet = nodes()[usize::from(who) % KEYS].subnet;
                }
                let u = Update {
                    interval,
                    seqno,
                    metric,
                    subnet,
                    router_id: router_id(usize::from(who), who >> 4),
                };
                w.router.handle_tlv(now, peer, Tlv::Update(u));
            }
            4 => {
                let peer = s.peer();
                let generation = s.u8() % 20;
                let prefix = (s.u8() % 4 != 0).then(|| subnet(&mut s));
                w.router.handle_tlv(
                    now,
                    peer,
                    Tlv::RouteRequest(RouteRequest { generation, prefix }),
                );
            }
            5 => {
                let peer = s.peer();
                let who = s.u8();
                let req = SeqnoRequest {
                    seqno: SeqNo(s.u16()),
                    hop_count: s.u8() % 70,
                    router_id: router_id(usize::from(who), who >> 4),
                    prefix: if who & 0x80 == 0 {
                        nodes()[usize::from(who) % KEYS].subnet
                    } else {
                        subnet(&mut s)
                    },
                };
                w.router.handle_tlv(now, peer, Tlv::SeqnoRequest(req));
            }
            6 => {
                let peer = s.peer();
                let hello = Hello {
                    unicast: true,
                    seqno: SeqNo(s.u16()),
                    interval: Interval(s.u16()),
                };
                w.router.handle_tlv(now, peer, Tlv::Hello(hello));
            }
            7 => {
                let peer = s.peer();
                let ihu = Ihu {
                    rx_cost: metric(&mut s),
                    interval: Interval(6000),
                    address: None,
                };
                w.router.handle_tlv(now, peer, Tlv::Ihu(ihu));
            }
            8 => {
                w.now += u64::from(s.u8()) * 20;
                w.timeout();
            }
            9 => {
                let next = w
                    .router
                    .poll_timeout()
                    .expect("a router always has a timer");
                w.now = w.now.max(next.since_epoch().as_millis() as u64 + 1);
                w.timeout();
            }
            10 => {
                let sel = s.u8();
                let local = sel & 1 == 0;
                let dst = match sel >> 1 & 3 {
                    0 => match subnet(&mut s).address() {
                        IpAddr::V6(a) => a,
                        IpAddr::V4(_) => Ipv6Addr::LOCALHOST,
                    },
                    1 => {
                        let mut a = nodes()[usize::from(sel >> 3) % KEYS].address.octets();
                        a[15] ^= s.u8();
                        Ipv6Addr::from(a)
                    }
                    _ => nodes()[usize::from(sel >> 3) % KEYS].address,
                };
                match w.router.resolve(now, dst, local) {
                    Resolution::Forward(p) => {
                        assert!(w.up.contains(&p), "forward to {p}, which is down");
                        assert_eq!(w.router.next_hop(dst), Some(p));
                        assert!(w.router.key_for(dst).is_some());
                    }
                    Resolution::Pending(sub) | Resolution::Unreachable(sub) => {
                        assert!(sub.contains_ip(IpAddr::V6(dst)), "{sub} for {dst}");
                    }
                }
            }
            11 => {
                let peer = s.peer();
                w.router.handle_peer_activity(now, peer);
            }
            12 => {
                let from = s.peer();
                let i = usize::from(s.u8());
                if !w.kept.is_empty() {
                    let tlv = w.kept[i % w.kept.len()];
                    w.router.handle_tlv(now, from, tlv);
                }
            }
            _ => {
                w.now += u64::from(s.u16()) * 1000;
                w.timeout();
            }
        }
        w.drain(&up_before);
        w.check();
    }
});
