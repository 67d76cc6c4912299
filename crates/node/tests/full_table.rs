//! A full routing table over loopback TCP: a node that learned 100,000 routes from
//! one raw-socket peer answers another's wildcard route request with all of them,
//! through the real link reader (TLVs to the core in batches) and writer (one chunk
//! of control packets per flush), and keeps both connections.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;
use common::*;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mycelium_node::NodeConfig;
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::wire::tlv::{RouteRequest, Update};
use mycelium_proto::wire::{self, control, Interval, Metric, Packet, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey, Subnet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const ROUTES: u64 = 100_000;

/// The update announcing the `/64` of made-up key `n`.
fn update(n: u64) -> Tlv {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8] = 0xa5;
    let key = PublicKey::from_bytes(b);
    Tlv::Update(Update {
        interval: Interval(30000),
        seqno: SeqNo(1),
        metric: Metric(100),
        subnet: key.subnet(),
        router_id: RouterId::new(key, [3; 6]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_neighbour_gets_a_full_table_of_100_000_routes_and_stays() {
    let port = free_port();
    let cfg = NodeConfig {
        tcp_listen_port: Some(port),
        // Upstream's timers: a peer that sends no Hellos lives 43 s, longer than
        // this test.
        router: RouterConfig::upstream(),
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    };
    let shutdown = CancellationToken::new();
    let (node, done) = mycelium_node::start(cfg, shutdown.clone()).await.unwrap();

    // The first peer announces 100,000 subnets.
    let mut a = connect(port).await;
    let mut bytes = Vec::new();
    for n in 0..ROUTES {
        control::encode(&update(n), &mut bytes);
    }
    a.write_all(&bytes).await.unwrap();
    let began = Instant::now();
    while node.router().await.selected < ROUTES as usize {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "routes not selected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The second asks for everything and reads it all.
    let mut b = connect(port).await;
    let mut ask = Vec::new();
    control::encode(
        &Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None,
        }),
        &mut ask,
    );
    b.write_all(&ask).await.unwrap();
    let mut subnets: HashSet<Subnet> = HashSet::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let began = Instant::now();
    while subnets.len() <= ROUTES as usize {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "got {} subnets",
            subnets.len()
        );
        let n = tokio::time::timeout(Duration::from_secs(10), b.read(&mut chunk))
            .await
            .expect("the node stopped sending")
            .unwrap();
        assert!(n > 0, "the node closed the new neighbour's connection");
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(d) = wire::decode(&buf[used..]) {
            if let Packet::Control(Tlv::Update(u)) = d.packet {
                subnets.insert(u.subnet);
            }
            used += d.len;
        }
        buf.drain(..used);
    }
    // Every route, and the node's own subnet.
    assert!(subnets.contains(&node.subnet()));
    assert_eq!(subnets.len(), ROUTES as usize + 1);
    // Both peers are still connected.
    assert_eq!(node.peers().len(), 2);
    let mut probe = [0u8; 1];
    for s in [&mut a, &mut b] {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await {
            Err(_) => {}                           // nothing to read: open
            Ok(Ok(n)) => assert!(n > 0, "closed"), // a Hello or the like: open
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    shutdown.cancel();
    done.await;
}
