//! Stream transports and private networks between in-process, router-only nodes
//! on loopback: a public node does not dial `tls://`; with the
//! `private` feature, nodes of one network link over TLS and a public node that
//! dials one is refused at the handshake; without it, a private network cannot
//! start.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly
// The helpers serve the private-network test too.
#![cfg_attr(not(feature = "private"), allow(dead_code, unused_imports))]

mod common;
use common::*;

use std::time::{Duration, Instant};

use mycelium_node::{Node, NodeConfig, PrivateNetwork};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::SecretKey;
use tokio_util::sync::CancellationToken;

fn config(peers: Vec<Endpoint>, port: Option<u16>, private: Option<PrivateNetwork>) -> NodeConfig {
    NodeConfig {
        peers,
        tcp_listen_port: port,
        private,
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    }
}

fn net(name: &str, key: u8) -> Option<PrivateNetwork> {
    Some(PrivateNetwork::new(name.to_owned(), [key; 32]).unwrap())
}

async fn next_hop(from: &Node, to: &Node) -> Option<String> {
    let subnet = to.subnet();
    from.routes()
        .await
        .selected
        .into_iter()
        .find(|r| r.subnet == subnet)
        .map(|r| r.next_hop)
}

#[tokio::test]
async fn a_public_node_records_but_does_not_dial_tls_peers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer: Endpoint = format!("tls://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let shutdown = CancellationToken::new();
    let (node, done) = mycelium_node::start(config(vec![peer], None, None), shutdown.clone())
        .await
        .unwrap();
    assert_eq!(node.peers().len(), 1);
    assert_eq!(node.peers()[0].endpoint, peer);
    let accepted = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(accepted.is_err(), "a public node dialled {peer}");
    shutdown.cancel();
    done.await;
}

#[cfg(not(feature = "private"))]
#[tokio::test]
async fn a_build_without_the_feature_refuses_a_private_network() {
    let net = PrivateNetwork::new("testnet".into(), [1; 32]).unwrap();
    let r = mycelium_node::start(config(vec![], None, Some(net)), CancellationToken::new()).await;
    assert!(matches!(
        r,
        Err(mycelium_node::NodeError::PrivateUnsupported)
    ));
}

#[cfg(feature = "private")]
#[tokio::test]
async fn private_nodes_link_over_tls_and_refuse_a_public_one() {
    let port = free_port();
    let shutdown = CancellationToken::new();
    let start =
        |peers, port, private| mycelium_node::start(config(peers, port, private), shutdown.clone());
    let (a, a_done) = start(vec![], Some(port), net("testnet", 3)).await.unwrap();
    // A `tcp://` peer is dialled with TLS in a private network.
    let tcp: Endpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let (b, b_done) = start(vec![tcp], None, net("testnet", 3)).await.unwrap();
    // A public node dials plain TCP: A refuses the handshake.
    let (c, c_done) = start(vec![tcp], None, None).await.unwrap();

    let began = Instant::now();
    let hops = loop {
        if let (Some(ab), Some(ba)) = (next_hop(&a, &b).await, next_hop(&b, &a).await) {
            break (ab, ba);
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "no TLS route after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A's listener is on `[::]`, so B shows there as `[::ffff:127.0.0.1]:…`.
    assert!(hops.0.starts_with("TLS [::ffff:127.0.0.1]:"), "{}", hops.0);
    assert!(hops.1.starts_with("TLS 127.0.0.1:"), "{}", hops.1);
    assert!(
        hops.1.ends_with(&format!(" <-> 127.0.0.1:{port}")),
        "{}",
        hops.1
    );
    // A lists B as an inbound TLS peer.
    assert!(
        a.peers()
            .iter()
            .any(|p| p.endpoint.to_string().starts_with("tls://")),
        "{:?}",
        a.peers()
    );

    let failures = || mycelium_node::NodeStats::get(&a.stats().tls_handshake_failures);
    while failures() == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "A never refused C"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(next_hop(&a, &c).await.is_none());
    assert!(next_hop(&c, &a).await.is_none());
    assert_eq!(
        mycelium_node::NodeStats::get(&b.stats().tls_handshake_failures),
        0
    );

    shutdown.cancel();
    a_done.await;
    b_done.await;
    c_done.await;
}
