//! The router alone, without sockets or tasks: how fast it takes in updates and
//! sends a full table, for the shapes of `route_scale`.
//!
//! `cargo run --release -p mycelium-bench --bin router_updates -- [NxK ...]`
//! (default: 100000x4 20000x20). Per case: nanoseconds per update taken in (decode
//! included: every update is read from its wire bytes), the TLVs the router sent in
//! answer, the router's table memory per entry, and the time to produce a full
//! table for a new neighbour.

use std::time::{Duration, Instant as WallInstant};

use bytes::BytesMut;
use mycelium_proto::routing::{LinkKind, PeerId, Router, RouterConfig};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::tlv::{RouteRequest, Update};
use mycelium_proto::wire::{self, control, Interval, Metric, Packet, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey};
use rand::Rng;

fn main() {
    let cases: Vec<(usize, u64)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let (n, k) = a.split_once('x')?;
            Some((n.parse().ok()?, k.parse().ok()?))
        })
        .collect();
    let cases = if cases.is_empty() {
        vec![(100_000, 4), (20_000, 20)]
    } else {
        cases
    };
    println!(
        "N\tK\tentries\tns_per_update\tupdates_per_s\tsent_tlvs\ttable_B_per_entry\tfull_table_ms"
    );
    for (n, k) in cases {
        run(n, k);
    }
}

fn run(n: usize, k: u64) {
    let mut rng = rand::thread_rng();
    let owners: Vec<PublicKey> = (0..n)
        .map(|_| SecretKey::from_bytes(rng.gen()).public_key())
        .collect();
    // Every link's updates as wire bytes, interleaved as the links would deliver
    // them: subnet by subnet, link by link.
    let mut wire_bytes = BytesMut::new();
    for key in &owners {
        let id = RouterId::new(*key, rng.gen());
        for p in 0..k {
            let u = Update {
                interval: Interval::from_duration(Duration::from_secs(300)),
                seqno: SeqNo(0),
                metric: Metric(1 + (p % 4) as u16),
                subnet: key.subnet(),
                router_id: id,
            };
            control::encode(&Tlv::Update(u), &mut wire_bytes);
        }
    }
    let me = RouterId::new(SecretKey::from_bytes(rng.gen()).public_key(), [0; 6]);
    let mut now = Instant::ZERO;
    let mut router = Router::new(RouterConfig::default(), me, now);
    for p in 0..k {
        router.handle_peer_up(now, PeerId(p), LinkKind::Tcp { ipv4: false });
    }
    while router.poll_transmit().is_some() {}
    let mut sent = 0u64;
    let mut buf = &wire_bytes[..];
    let started = WallInstant::now();
    let mut taken = 0usize;
    while !buf.is_empty() {
        let Ok(d) = wire::decode(buf) else { break };
        let peer = PeerId(taken as u64 % k);
        buf = &buf[d.len..];
        if let Packet::Control(tlv) = d.packet {
            router.handle_tlv(now, peer, tlv);
        }
        taken += 1;
        if taken % 4096 == 0 {
            now += Duration::from_millis(1);
            for p in 0..k {
                router.handle_peer_activity(now, PeerId(p));
            }
        }
        while router.poll_transmit().is_some() {
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(router.selected_count(), n, "every subnet selected");
    let entries = n * k as usize;
    let per_entry = router.table_heap_bytes() as f64 / entries as f64;
    // A new neighbour asks for everything.
    let newcomer = PeerId(k);
    router.handle_peer_up(now, newcomer, LinkKind::Tcp { ipv4: false });
    while router.poll_transmit().is_some() {}
    let started = WallInstant::now();
    router.handle_tlv(
        now,
        newcomer,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None,
        }),
    );
    let mut out = BytesMut::with_capacity(n * 80);
    let mut full = 0;
    while let Some(t) = router.poll_transmit() {
        control::encode(&t.tlv, &mut out);
        full += 1;
    }
    let full_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(full > n, "the full table holds every subnet");
    println!(
        "{n}\t{k}\t{entries}\t{:.0}\t{:.0}\t{sent}\t{per_entry:.1}\t{full_ms:.1}",
        elapsed.as_nanos() as f64 / entries as f64,
        entries as f64 / elapsed.as_secs_f64(),
    );
}
