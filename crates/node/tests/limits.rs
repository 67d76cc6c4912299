//! The node's peer limits, on loopback: inbound peers past `max_inbound_peers` are
//! closed and counted, and so are connection attempts past the rate.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;
use common::*;

use std::time::{Duration, Instant};

use mycelium_node::{Limits, Node, NodeConfig, NodeStats, PeerKind};
use mycelium_proto::routing::RouterConfig;
use mycelium_proto::SecretKey;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn config(port: u16, limits: Limits) -> NodeConfig {
    NodeConfig {
        tcp_listen_port: Some(port),
        // Upstream's timers: a silent peer lives 43 s, longer than any test here.
        router: RouterConfig::upstream(),
        limits,
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    }
}

/// Whether the node closes `s` within a second.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // Hellos and the like
        }
    }
}

fn inbound(node: &Node) -> usize {
    node.peers()
        .iter()
        .filter(|p| p.kind == PeerKind::Inbound)
        .count()
}

#[tokio::test]
async fn inbound_peers_past_the_limit_are_closed_and_counted() {
    let port = free_port();
    let limits = Limits {
        max_inbound_peers: 3,
        connections_per_second: 0,
        ..Limits::default()
    };
    let shutdown = CancellationToken::new();
    let (node, done) = mycelium_node::start(config(port, limits), shutdown.clone())
        .await
        .unwrap();
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(connect(port).await);
    }
    let began = Instant::now();
    while inbound(&node) < 3 {
        assert!(began.elapsed() < Duration::from_secs(10), "peers not kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        let mut extra = connect(port).await;
        assert!(closed(&mut extra).await, "a fourth inbound peer was kept");
    }
    assert_eq!(inbound(&node), 3);
    assert_eq!(NodeStats::get(&node.stats().connections_over_limit), 4);
    for s in &mut kept {
        assert!(!closed(s).await, "a peer within the limit was closed");
    }
    shutdown.cancel();
    done.await;
}

#[tokio::test]
async fn connection_attempts_past_the_rate_are_closed_and_counted() {
    let port = free_port();
    let limits = Limits {
        connections_per_second: 2, // a burst of 4, then 2 a second
        ..Limits::default()
    };
    let shutdown = CancellationToken::new();
    let (node, done) = mycelium_node::start(config(port, limits), shutdown.clone())
        .await
        .unwrap();
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(connect(port).await);
    }
    let mut refused = 0;
    for s in &mut streams {
        if closed(s).await {
            refused += 1;
        }
    }
    let counted = NodeStats::get(&node.stats().connections_rate_limited);
    // However slow this machine, 20 attempts take far less than the 8 s the rate
    // would need to admit them all.
    assert!(refused >= 10, "only {refused} of 20 refused");
    assert_eq!(counted, refused);
    shutdown.cancel();
    done.await;
}
