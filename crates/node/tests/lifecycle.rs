//! A node's start and stop over loopback: `start` returns with its listener bound,
//! and the future it returns ends only once every task the node started has ended,
//! links and dialers included, leaving its port free.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;
use common::*;

use std::time::{Duration, Instant};

use mycelium_node::{ConnectionState, NodeConfig};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::SecretKey;
use tokio_util::sync::CancellationToken;

fn config(port: Option<u16>, peers: Vec<Endpoint>) -> NodeConfig {
    NodeConfig {
        tcp_listen_port: port,
        peers,
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    }
}

#[tokio::test]
async fn start_returns_with_the_listener_bound() {
    let port = free_port();
    let shutdown = CancellationToken::new();
    let (_node, done) = mycelium_node::start(config(Some(port), vec![]), shutdown.clone())
        .await
        .unwrap();
    // One attempt, no waiting: the listener is there.
    let _stream = connect(port).await;
    shutdown.cancel();
    done.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_task_and_frees_the_port() {
    let port = free_port();
    let a_stop = CancellationToken::new();
    let (a, a_done) = mycelium_node::start(config(Some(port), vec![]), a_stop.clone())
        .await
        .unwrap();
    let b_stop = CancellationToken::new();
    let to_a = Endpoint::tcp(([127, 0, 0, 1], port).into());
    let (b, b_done) = mycelium_node::start(config(None, vec![to_a]), b_stop.clone())
        .await
        .unwrap();
    // A link, its reader and writer, an inbound and a dialling task on either side.
    let began = Instant::now();
    while !b.peers().iter().any(|p| p.state == ConnectionState::Alive) || a.peers().is_empty() {
        assert!(began.elapsed() < Duration::from_secs(10), "no link came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a_stop.cancel();
    b_stop.cancel();
    let both = async {
        a_done.await;
        b_done.await;
    };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("a node's tasks did not all end within 10 s of shutdown");
    // Every task has ended, the listener's among them: the port is free again (a
    // listener with SO_REUSEADDR, as the node's own, binds beside closed
    // connections but not beside a listener).
    tokio::net::TcpListener::bind(("::", port))
        .await
        .expect("the port is still held after shutdown");
    // The handles outlive the node and answer without it.
    assert_eq!(a.router().await.neighbours, 0);
    assert!(b.routes().await.selected.is_empty());
}
