//! The recorded upstream session fed into our router, in the listener's place: the
//! selected route must be the one the recorded listener reported.
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

mod common;

use std::time::Duration;

use common::{fixture, key_fixture};
use mycelium_proto::routing::{LinkKind, PeerId, Router, RouterConfig, SubnetEntry};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::{self, Packet, Tlv};
use mycelium_proto::{RouterId, Subnet};

#[test]
fn recorded_updates_select_the_route_the_listener_reported() {
    let listener = key_fixture("tcp-session/listener.key.hex").public_key();
    let mut router = Router::new(
        RouterConfig::upstream(),
        RouterId::new(listener, [0; 6]),
        Instant::ZERO,
    );
    let dialer = PeerId(1);
    // The recorded link was TCP over IPv6 (fd00:78::/64 addresses).
    router.handle_peer_up(Instant::ZERO, dialer, LinkKind::Tcp { ipv4: false });

    let stream = fixture("tcp-session/dialer_to_listener.bin");
    let mut at = 0;
    let mut updates = 0;
    let mut now = Instant::ZERO;
    while let Ok(d) = wire::decode(&stream[at..]) {
        if let Packet::Control(tlv) = d.packet {
            updates += usize::from(matches!(tlv, Tlv::Update(_)));
            router.handle_tlv(now, dialer, tlv);
        }
        at += d.len;
        now += Duration::from_millis(10);
    }
    assert!(updates > 0);

    let answer: serde_json::Value =
        serde_json::from_slice(&fixture("tcp-session/listener_routes_selected.json")).unwrap();
    let reported = answer.as_array().unwrap();
    let selected: Vec<(Subnet, u16, u16)> = router
        .subnets()
        .filter_map(|(s, e)| match e {
            SubnetEntry::Exists { mut routes, .. } => routes
                .find(|r| r.selected)
                .map(|r| (s, r.metric.0, r.seqno.0)),
            SubnetEntry::Queried { .. } => None,
        })
        .collect();
    assert_eq!(selected.len(), reported.len());
    for (route, want) in selected.iter().zip(reported) {
        assert_eq!(route.0.to_string(), want["subnet"].as_str().unwrap());
        assert_eq!(u64::from(route.1), want["metric"].as_u64().unwrap());
        assert_eq!(u64::from(route.2), want["seqno"].as_u64().unwrap());
    }
    let dialer_addr = "5e4:42a4:26f:d028:5f57:fa72:18b4:4702".parse().unwrap();
    assert_eq!(router.next_hop(dialer_addr), Some(dialer));
}
