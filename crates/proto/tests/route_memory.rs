//! Pins the memory a router holds per route entry, so that it cannot silently grow.
//!
//! A counting allocator sees every byte the router allocates while it learns `N`
//! subnets from each of `K` neighbours (a public node's shape), answers what it
//! must, and settles. The figure is everything the router keeps: table, source
//! table, indexes, deadlines, caches.

// A global allocator is an `unsafe impl`; it only forwards to the system's.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use mycelium_proto::routing::{LinkKind, PeerId, Router, RouterConfig};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::tlv::Update;
use mycelium_proto::wire::{Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey};
use rand::{Rng, SeedableRng};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn keys(n: usize, seed: u64) -> Vec<PublicKey> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| SecretKey::from_bytes(rng.gen()).public_key())
        .collect()
}

/// Bytes the router holds per route entry after learning `subnets` subnets from
/// each of `links` neighbours.
fn bytes_per_entry(subnets: usize, links: u64) -> (f64, f64) {
    let owners = keys(subnets, 7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let ids: Vec<RouterId> = owners
        .iter()
        .map(|k| RouterId::new(*k, rng.gen()))
        .collect();
    let me = RouterId::new(keys(1, 9)[0], [0; 6]);
    let mut now = Instant::ZERO;
    let mut router = Router::new(RouterConfig::default(), me, now);
    for p in 0..links {
        router.handle_peer_up(now, PeerId(p), LinkKind::Tcp { ipv4: false });
    }
    let drain = |r: &mut Router| {
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
    };
    drain(&mut router);
    let before = LIVE.load(Ordering::Relaxed);
    for (i, id) in ids.iter().enumerate() {
        for p in 0..links {
            let u = Update {
                interval: Interval::from_duration(Duration::from_secs(300)),
                seqno: SeqNo(0),
                metric: Metric(1 + p as u16),
                subnet: owners[i].subnet(),
                router_id: *id,
            };
            router.handle_tlv(now, PeerId(p), Tlv::Update(u));
            drain(&mut router);
        }
        if i % 1024 == 0 {
            // Keep the neighbours reachable as time passes.
            now += Duration::from_millis(1);
            for p in 0..links {
                router.handle_peer_activity(now, PeerId(p));
            }
        }
    }
    router.handle_timeout(now);
    drain(&mut router);
    let after = LIVE.load(Ordering::Relaxed);
    let entries = subnets as f64 * links as f64;
    assert_eq!(router.table_size(), (subnets, subnets * links as usize));
    assert_eq!(router.selected_count(), subnets);
    let counted = router.table_heap_bytes() as f64 / entries;
    ((after - before) as f64 / entries, counted)
}

#[test]
fn bytes_per_route_entry_stay_pinned() {
    // Both shapes of the routing-scale benchmark, scaled down.
    for (subnets, links, bound) in [(20_000, 4, 60.0), (4_000, 20, 32.0)] {
        let (live, counted) = bytes_per_entry(subnets, links);
        println!("{subnets} x {links}: {live:.1} B per entry allocated, {counted:.1} B counted by the table");
        assert!(
            live <= bound,
            "{subnets} subnets x {links} links: {live:.1} B per route entry, more than {bound}"
        );
        assert!(
            counted <= live + 1.0,
            "the table's own count is not above what it allocated"
        );
    }
}
