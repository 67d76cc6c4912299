//! Real nodes (this crate's binary, router-only with `--no-tun`) peered over
//! loopback, driven through their REST API, JSON-RPC API, metrics endpoint and the
//! client subcommands: messages with topics and replies, peers, routes, statuses.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::process::{Command, Stdio};

use serde_json::Value;

use common::node::{pair, Node};
use common::BIN;

/// Two nodes with metrics, B peered to A (see [`pair`]).
fn pair_with_metrics() -> (Node, Node) {
    pair(Node::start_with_metrics)
}

fn json_line(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn messages_with_topics_and_a_reply_round_trip() {
    let (a, b) = pair_with_metrics();
    let a_ip = a.ip();
    let b_ip = b.ip();

    // Two messages on different topics; a filtered receive takes only its own.
    b.cli_ok(&["message", "send", "--topic", "news", &a_ip, "first"]);
    b.cli_ok(&["message", "send", "--topic", "chat", &a_ip, "second"]);
    let got = json_line(&a.cli_ok(&["message", "receive", "--topic", "chat", "--timeout", "10"]));
    assert_eq!(got["payload"], "second");
    assert_eq!(got["topic"], "chat");
    assert_eq!(got["srcIp"], b_ip.as_str());
    let got = json_line(&a.cli_ok(&["message", "receive", "--timeout", "10"]));
    assert_eq!(got["payload"], "first");
    // Nothing is left: a receive that times out prints nothing and succeeds.
    assert_eq!(a.cli_ok(&["message", "receive", "--timeout", "1"]), "");

    // B sends and waits for the reply; A receives and answers.
    let waiting = Command::new(BIN)
        .args([
            "--api-addr",
            &b.api,
            "message",
            "send",
            "--wait",
            "--timeout",
            "20",
        ])
        .args([&a_ip, "ping?"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let request = json_line(&a.cli_ok(&["message", "receive", "--timeout", "10"]));
    assert_eq!(request["payload"], "ping?");
    let id = request["id"].as_str().unwrap();
    a.cli_ok(&["message", "send", "--reply-to", id, &b_ip, "pong!"]);
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success());
    let reply = json_line(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(reply["payload"], "pong!");
    assert_eq!(reply["id"], id);

    // The sender sees its message read.
    b.wait_for(
        |n| {
            n.get_json(&format!("/api/v1/messages/status/{id}"))
                .is_some_and(|s| s["state"] == "read")
        },
        "the message as read",
    );
}

#[test]
fn a_megabyte_message_arrives_intact_and_statuses_follow_it() {
    let (a, b) = pair_with_metrics();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    std::fs::write(&file, &payload).unwrap();
    let sent = json_line(&b.cli_ok(&[
        "message",
        "send",
        "--msg-path",
        file.to_str().unwrap(),
        &a.ip(),
    ]));
    let id = sent["id"].as_str().unwrap().to_owned();
    let out = dir.path().join("out");
    a.cli_ok(&[
        "message",
        "receive",
        "--timeout",
        "20",
        "--msg-path",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), payload);
    let status = b
        .get_json(&format!("/api/v1/messages/status/{id}"))
        .unwrap();
    assert_eq!(status["msgLen"], 1_000_000);
    assert_eq!(
        status["deadline"].as_i64().unwrap() - status["created"].as_i64().unwrap(),
        300
    );
}

#[test]
fn peers_routes_and_keys_through_the_cli_and_both_apis() {
    let (a, b) = pair_with_metrics();
    // B's static peer is alive and has moved bytes.
    let peers: Value = serde_json::from_str(&b.cli_ok(&["peers", "list", "--json"])).unwrap();
    let peer = &peers[0];
    assert_eq!(peer["type"], "static");
    assert_eq!(peer["connectionState"], "alive");
    assert!(peer["txBytes"].as_u64().unwrap() > 0 && peer["rxBytes"].as_u64().unwrap() > 0);
    // A sees B as inbound.
    let peers = a.get_json("/api/v1/admin/peers").unwrap();
    assert_eq!(peers[0]["type"], "inbound");

    // Adding a known peer is a conflict; a new one is recorded, then removed.
    let known = format!("tcp://127.0.0.1:{}", a.port);
    assert_eq!(b.cli(&["peers", "add", &known]).status.code(), Some(1));
    let extra = format!("quic://127.0.0.1:{}", a.port);
    b.cli_ok(&["peers", "add", &extra]);
    b.wait_for(
        |n| {
            n.get_json("/api/v1/admin/peers").is_some_and(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["endpoint"]["proto"] == "quic" && p["connectionState"] == "alive")
            })
        },
        "the QUIC peer alive",
    );
    b.cli_ok(&["peers", "remove", &extra]);
    assert_eq!(
        b.get_json("/api/v1/admin/peers")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(b.cli(&["peers", "remove", &extra]).status.code(), Some(1));

    // Routes: B's selected route to A goes over the TCP link.
    let routes = b.cli_ok(&["routes", "selected"]);
    assert!(routes.contains(&a.subnet()), "{routes}");
    assert!(routes.contains("TCP "), "{routes}");

    // A's key from any address of its subnet, over REST and JSON-RPC.
    let key = a.info()["nodePubkey"].as_str().unwrap().to_owned();
    let sub = a.subnet();
    let some_ip = sub.replace("::/64", "::1234");
    let answer = b.get_json(&format!("/api/v1/pubkey/{some_ip}")).unwrap();
    assert_eq!(answer["publicKey"], key.as_str());
    let request = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "getPublicKeyFromIp", "params": [some_ip]
    });
    let rpc = ureq::post(&format!("http://{}/", b.rpc))
        .header("content-type", "application/json")
        .send(request.to_string())
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let rpc: Value = serde_json::from_str(&rpc).unwrap();
    assert_eq!(rpc["result"], key.as_str());
    // An IPv4 address is simply unknown (upstream's handler panics).
    let v4 = ureq::get(&b.url("/api/v1/pubkey/10.0.0.1")).call();
    assert!(matches!(v4, Err(ureq::Error::StatusCode(404))));

    // Packet statistics and metrics count the traffic of a message.
    b.cli_ok(&["message", "send", &a.ip(), "x"]);
    a.cli_ok(&["message", "receive", "--timeout", "10"]);
    let stats = json_line(&b.cli_ok(&["stats", "packets", "--json"]));
    assert!(!stats["byDestination"].as_array().unwrap().is_empty());
    let metrics = ureq::get(&format!("http://{}/metrics", b.metrics.as_deref().unwrap()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for family in [
        "mycelium_router_processed_tlvs_total{tlv_type=\"hello\"}",
        "mycelium_peer_tx_bytes_total{endpoint=",
        "mycelium_peers{state=\"alive\"} 1",
        "mycelium_routes_selected 1",
    ] {
        assert!(metrics.contains(family), "{family} missing from\n{metrics}");
    }
}
