//! Figures for routing at public-node scale, printed by `#[ignore]`d tests:
//! `cargo test -p mycelium-node --release scale_ -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mycelium_proto::routing::PeerId;
use mycelium_proto::wire::tlv::Update;
use mycelium_proto::wire::{Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId, Subnet};

/// CPU time of the whole process (every thread), from the scheduler's counters.
pub(crate) fn process_cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

pub(crate) fn test_key(n: u64) -> PublicKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8] = 0x5a;
    PublicKey::from_bytes(b)
}

pub(crate) fn test_update(n: u64, metric: u16) -> Update {
    let key = test_key(n);
    Update {
        interval: Interval(30000),
        seqno: SeqNo(1),
        metric: Metric(metric),
        subnet: key.subnet(),
        router_id: RouterId::new(key, [1; 6]),
    }
}

#[allow(dead_code)] // the payloads are only there for the size
enum Cmd {
    One { peer: PeerId, tlv: Tlv },
    Many { peer: PeerId, tlvs: Vec<Tlv> },
    Padding([u8; 80]),
}

/// What moving 400,000 control TLVs from link tasks to the core costs: one channel
/// message per TLV (as links did) or one per read's worth of TLVs.
#[test]
#[ignore]
fn scale_link_to_core_channel() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const TLVS: usize = 400_000;
    let tlvs: Vec<Tlv> = (0..1000)
        .map(|i| Tlv::Update(test_update(i, 100)))
        .collect();
    println!(
        "size_of CoreCmd-like item: {} B",
        std::mem::size_of::<Cmd>()
    );
    for batch in [1usize, 16, 64, 256] {
        let (cpu0, t0) = (process_cpu(), Instant::now());
        let received = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Cmd>(16_384);
            // Four links, like a public node taking in four neighbours' tables.
            for link in 0..4u64 {
                let tx = tx.clone();
                let tlvs = tlvs.clone();
                tokio::spawn(async move {
                    let peer = PeerId(link + 1);
                    let mut sent = 0;
                    while sent < TLVS / 4 {
                        if batch == 1 {
                            let tlv = tlvs[sent % tlvs.len()];
                            tx.send(Cmd::One { peer, tlv }).await.ok();
                        } else {
                            let v: Vec<Tlv> =
                                (sent..sent + batch).map(|i| tlvs[i % tlvs.len()]).collect();
                            tx.send(Cmd::Many { peer, tlvs: v }).await.ok();
                        }
                        sent += batch;
                    }
                });
            }
            drop(tx);
            let mut n = 0usize;
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Cmd::One { tlv, .. } => n += usize::from(matches!(tlv, Tlv::Update(_))),
                    Cmd::Many { tlvs, .. } => {
                        n += tlvs.iter().filter(|t| matches!(t, Tlv::Update(_))).count()
                    }
                    Cmd::Padding(_) => {}
                }
            }
            n
        });
        let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
        println!(
            "link->core, {batch:>3} TLVs per message: {received} TLVs, cpu {:.1} ms, wall {:.1} ms, {:.0} ns cpu/TLV",
            cpu.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3,
            cpu.as_nanos() as f64 / received as f64
        );
    }
}

/// A router holding `subnets` subnets, each learned from `links` neighbours, and
/// the CPU time it took to take in the updates.
pub(crate) fn loaded_router(
    subnets: u64,
    links: u64,
) -> (mycelium_proto::routing::Router, Duration) {
    use mycelium_proto::routing::{LinkKind, Router, RouterConfig};
    use mycelium_proto::time::Instant as RInstant;
    let mut r = Router::new(
        RouterConfig::default(),
        RouterId::new(test_key(u64::MAX), [9; 6]),
        RInstant::ZERO,
    );
    r.track_selection_changes();
    let now = RInstant::from_epoch(Duration::from_millis(1));
    for l in 1..=links {
        r.handle_peer_up(now, PeerId(l), LinkKind::Tcp { ipv4: true });
    }
    while r.poll_transmit().is_some() {}
    let updates: Vec<Tlv> = (0..subnets)
        .map(|i| Tlv::Update(test_update(i, 100)))
        .collect();
    let cpu0 = process_cpu();
    let mut changes = Vec::new();
    for l in 1..=links {
        for u in &updates {
            r.handle_tlv(now, PeerId(l), *u);
        }
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
        changes.clear();
        r.take_selection_changes(&mut changes);
    }
    (r, process_cpu() - cpu0)
}

/// The map the snapshot was before it was kept incrementally.
type OldMap =
    std::collections::HashMap<Subnet, (PublicKey, Option<PeerId>), foldhash::fast::RandomState>;

/// What the node's snapshot was before it was kept incrementally: every known
/// subnet in one map, rebuilt whole from the router after every batch in which
/// anything changed.
fn full_rebuild(router: &mycelium_proto::routing::Router) -> (OldMap, Vec<u8>) {
    let mut subnets = std::collections::HashMap::default();
    let mut lens = Vec::new();
    for (subnet, key, hop) in router.forwarding_entries() {
        subnets.insert(subnet, (key, hop));
        if !lens.contains(&subnet.prefix_len()) {
            lens.push(subnet.prefix_len());
        }
    }
    lens.sort_unstable_by(|a, b| b.cmp(a));
    (subnets, lens)
}

/// Router ingest, and snapshot publication at 100,000 subnets: a full rebuild (as
/// before) against incremental updates of small batches, and the bytes per subnet.
#[test]
#[ignore]
fn scale_snapshot_publication() {
    use crate::snapshot::TableWriter;
    const SUBNETS: u64 = 100_000;
    let (router, ingest) = loaded_router(SUBNETS, 4);
    println!(
        "router alone: 400,000 updates (100,000 subnets x 4 links) in {:.0} ms cpu, table {:?}",
        ingest.as_secs_f64() * 1e3,
        router.table_size()
    );

    let old = full_rebuild(&router);
    let entry = std::mem::size_of::<(Subnet, (PublicKey, Option<PeerId>))>();
    println!(
        "before: map of {} subnets, capacity {}, {} B per entry: {:.1} B/subnet in table slots (twice that while a rebuild runs)",
        old.0.len(),
        old.0.capacity(),
        entry,
        (old.0.capacity() * (entry + 1)) as f64 / SUBNETS as f64,
    );
    drop(old);
    let runs = 20;
    let t0 = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(full_rebuild(&router));
    }
    let rebuild = t0.elapsed() / runs;
    println!(
        "before: full rebuild {:.2} ms per publication, whatever changed ({:.1} s for 1,500 publications)",
        rebuild.as_secs_f64() * 1e3,
        rebuild.as_secs_f64() * 1500.0
    );

    let mut w = TableWriter::new(250_000, 42);
    let t0 = Instant::now();
    w.replace_all(router.forwarding_entries());
    let first = t0.elapsed();
    let (bytes, shards) = w.heap_bytes();
    println!(
        "after: {} subnets in {} non-empty shards: {:.1} B/subnet held ({:.1} with three allocator headers of 16 B per shard); first fill {:.1} ms",
        w.len(),
        shards,
        bytes as f64 / SUBNETS as f64,
        (bytes + shards * 48) as f64 / SUBNETS as f64,
        first.as_secs_f64() * 1e3
    );
    let subnets: Vec<Subnet> = router.forwarding_entries().map(|e| e.0).collect();
    let mut round = 0u64;
    for batch in [1usize, 16, 256, 1024, 4096] {
        let publications = (20_000 / batch).clamp(20, 2_000);
        let mut changed = Vec::with_capacity(batch);
        let t0 = Instant::now();
        for p in 0..publications {
            round += 1;
            changed.clear();
            changed.extend((0..batch).map(|i| subnets[(p * 7919 + i * 104_729) % subnets.len()]));
            // Every listed subnet gets a new next hop.
            let hop = Some(PeerId(round % 4 + 1));
            w.update(&changed, |s| router.forwarding(s).map(|(k, _)| (k, hop)));
        }
        let per = t0.elapsed() / publications as u32;
        println!(
            "after: {batch:>4} changes per publication: {:>8.1} us per publication, {:.2} us per change",
            per.as_secs_f64() * 1e6,
            per.as_secs_f64() * 1e6 / batch as f64
        );
    }
    let t0 = Instant::now();
    for _ in 0..runs {
        w.replace_all(router.forwarding_entries());
    }
    println!(
        "after: comparing the whole table (when the router cannot list changes): {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3 / f64::from(runs)
    );

    // The data plane's lookups.
    let table = w.table().clone();
    let addrs: Vec<std::net::Ipv6Addr> = (0..SUBNETS).map(|i| test_key(i).address()).collect();
    let t0 = Instant::now();
    let mut found = 0;
    for _ in 0..10 {
        for a in &addrs {
            found += usize::from(table.lookup(*a).is_some());
        }
    }
    println!(
        "after: lookup {:.0} ns ({found} found)",
        t0.elapsed().as_nanos() as f64 / (10 * SUBNETS) as f64
    );
    let (old, _) = full_rebuild(&router);
    let t0 = Instant::now();
    let mut found = 0;
    for _ in 0..10 {
        for a in &addrs {
            let key = Subnet::new(std::net::IpAddr::V6(*a), 64).unwrap().network();
            found += usize::from(old.contains_key(&key));
        }
    }
    println!(
        "before: lookup {:.0} ns ({found} found)",
        t0.elapsed().as_nanos() as f64 / (10 * SUBNETS) as f64
    );
}

/// The data plane's lookups in a table of 100,000 `/64`s.
#[test]
#[ignore]
fn scale_lookup() {
    use crate::snapshot::TableWriter;
    const SUBNETS: u64 = 100_000;
    let mut w = TableWriter::new(250_000, 42);
    w.replace_all((0..SUBNETS).map(|i| {
        let k = test_key(i);
        (k.subnet(), k, Some(PeerId(i % 4 + 1)))
    }));
    let table = w.table().clone();
    let old: OldMap = (0..SUBNETS)
        .map(|i| {
            let k = test_key(i);
            (k.subnet(), (k, Some(PeerId(i % 4 + 1))))
        })
        .collect();
    let addrs: Vec<std::net::Ipv6Addr> = (0..SUBNETS).map(|i| test_key(i).address()).collect();
    for round in 0..3 {
        let t0 = Instant::now();
        let mut found = 0;
        for _ in 0..20 {
            for a in &addrs {
                found += usize::from(table.lookup(*a).is_some());
            }
        }
        let new = t0.elapsed().as_nanos() as f64 / (20 * SUBNETS) as f64;
        let t0 = Instant::now();
        let mut found_old = 0;
        for _ in 0..20 {
            for a in &addrs {
                let key = Subnet::new(std::net::IpAddr::V6(*a), 64).unwrap().network();
                found_old += usize::from(old.contains_key(&key));
            }
        }
        let before = t0.elapsed().as_nanos() as f64 / (20 * SUBNETS) as f64;
        println!(
            "round {round}: lookup {new:.0} ns ({found} found); before, one map: {before:.0} ns ({found_old} found)"
        );
    }
}

/// The whole core taking in 100,000 subnets from each of four links (400,000
/// updates), as links hand them over: CPU and wall time until every subnet is
/// selected, against the router's own share.
#[test]
#[ignore]
fn scale_core_ingest() {
    use crate::router::testing::*;
    const SUBNETS: u64 = 100_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_, router_alone) = loaded_router(SUBNETS, 4);
    rt.block_on(async {
        let shared = start_core(mycelium_proto::routing::RouterConfig::default());
        let mut links = Vec::new();
        for _ in 0..4 {
            links.push(link_up(&shared).await);
        }
        // Each link's writer drains what the core queues for it.
        let mut peers = Vec::new();
        for mut link in links {
            peers.push(link.peer);
            tokio::spawn(async move {
                while let Some(chunk) = link.control.recv().await {
                    link.control.take(chunk);
                }
            });
        }
        let (cpu0, t0) = (process_cpu(), Instant::now());
        let mut senders = Vec::new();
        for (n, peer) in peers.into_iter().enumerate() {
            let shared = shared.clone();
            senders.push(tokio::spawn(async move {
                let updates: Vec<Tlv> = (0..SUBNETS)
                    .map(|i| Tlv::Update(test_update(i, 100 + n as u16)))
                    .collect();
                receive(&shared, peer, &updates).await;
            }));
        }
        for s in senders {
            s.await.unwrap();
        }
        let sent = t0.elapsed();
        let done = wait_for(Duration::from_secs(120), || async {
            let v = router_view(&shared).await;
            v.selected == SUBNETS as usize && v.routes == 4 * SUBNETS as usize
        })
        .await;
        let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
        assert!(done, "not all selected");
        println!(
            "core: 400,000 updates handed over in {:.0} ms, all selected after {:.0} ms; cpu {:.0} ms (the router alone: {:.0} ms); whole-table comparisons: {}",
            sent.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            router_alone.as_secs_f64() * 1e3,
            shared.full_publications.load(std::sync::atomic::Ordering::Relaxed),
        );
        // The data plane finds every subnet.
        let snapshot = shared.snapshot.load();
        let routed = (0..SUBNETS)
            .filter(|&i| {
                matches!(
                    snapshot.route(test_key(i).address()),
                    crate::snapshot::Route::Via(..)
                )
            })
            .count();
        assert_eq!(routed, SUBNETS as usize);
    });
}
