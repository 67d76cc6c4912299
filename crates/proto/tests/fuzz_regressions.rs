//! Inputs the fuzz targets in `fuzz/` found to break an invariant, replayed as plain
//! tests (the raw fuzz inputs are kept in `fuzz/regressions/<target>/`).
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use mycelium_proto::routing::{LinkKind, PeerId, Router, RouterConfig};
use mycelium_proto::subnet::Subnet;
use mycelium_proto::time::Instant;
use mycelium_proto::wire::tlv::Update;
use mycelium_proto::wire::{Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId};

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

/// fuzz/regressions/router/own-subnet-longer-prefix: a peer announced a /98 inside
/// our own /64, naming our own public key (with other random bytes) as the router
/// id. It passed the subnet filters, and only the exact own /64 was ignored, so the
/// router learned a route for part of its own subnet.
#[test]
fn router_ignores_longer_prefixes_inside_its_own_subnet() {
    let own = PublicKey::from_bytes([1; 32]);
    let mut r = Router::new(RouterConfig::default(), RouterId::new(own, [0; 6]), at(0));
    let peer = PeerId(1);
    r.handle_peer_up(at(0), peer, LinkKind::Tcp { ipv4: true });
    for len in [65, 98, 128] {
        let subnet = Subnet::new(IpAddr::V6(own.address()), len)
            .unwrap()
            .network();
        let u = Update {
            interval: Interval(30000),
            seqno: SeqNo(1),
            metric: Metric(0),
            subnet,
            router_id: RouterId::new(own, [7; 6]),
        };
        r.handle_tlv(at(10), peer, Tlv::Update(u));
        assert_eq!(r.table_size(), (0, 0), "{subnet} was learned");
    }
    assert_eq!(r.stats().updates_for_own_subnet, 3);
    assert_eq!(r.stats().updates_over_limit, 0);
}
