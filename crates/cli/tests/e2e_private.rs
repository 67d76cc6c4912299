//! End-to-end: private networks. Real nodes (this crate's
//! `mycelium` binary, built with the `private` feature) in network namespaces, each
//! with a real TUN device, joined by veth links with ULA underlay addresses.
//!
//! Three nodes of one network reach each other; a node with the right name and
//! another key, and one with another name, are refused at the TLS handshake and
//! reach no one.
//!
//! Run with `cargo test -p mycelium-cli --features private --test e2e_private`.
//! Needs root, `ip` (iproute2), `ping`, `curl` and `/dev/net/tun`;
//! `scripts/setup.sh` installs the tools. Without them the test fails, saying what
//! is missing. Every namespace, link and process it makes is removed when it ends.
#![cfg(feature = "private")]
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::Net;
use common::{require, runs, BIN};

/// Where every node serves its metrics, inside its own namespace.
const METRICS: &str = "[::1]:9990";

/// A new set of namespaces for these tests, which also need curl (for the metrics).
fn net(tag: &str) -> Net {
    require(runs(&["curl", "--version"]), "curl");
    Net::new(tag)
}

/// Starts a node of the private network `name` (key in `psk`) in `ns`, QUIC left
/// on by its options (private mode turns it off), metrics on [`METRICS`], link-local
/// discovery on if `discovery`; returns its overlay address.
fn private_node(
    net: &mut Net,
    ns: &str,
    name: &str,
    psk: &Path,
    peers: &[String],
    discovery: bool,
) -> String {
    let psk = psk.to_str().unwrap();
    let private = [
        "--metrics-api-address",
        METRICS,
        "--network-name",
        name,
        "--network-key-file",
        psk,
    ];
    net.node_args(ns, peers, true, discovery, &private)
}

/// The value of a counter on the metrics endpoint of the node in `ns`.
fn counter(net: &Net, ns: &str, name: &str) -> Option<u64> {
    let url = format!("http://{METRICS}/metrics");
    let out = net.exec(ns, &["curl", "-s", "-g", "--max-time", "2", &url]);
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix("_total").unwrap_or(rest);
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Waits until `ns`'s counter `name` is at least `min`; returns its value.
fn wait_counter(net: &Net, ns: &str, name: &str, min: u64, limit: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let v = counter(net, ns, name);
        if v.is_some_and(|v| v >= min) {
            return v.unwrap();
        }
        if start.elapsed() > limit {
            panic!(
                "{name} of {ns} is {v:?} after {limit:?}, wanted at least {min}\n{}",
                net.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether anything in `ns` has UDP port 9651 open (QUIC's default).
fn quic_port_open(net: &Net, ns: &str) -> bool {
    let out = net.exec(ns, &["cat", "/proc/net/udp6", "/proc/net/udp"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| local.ends_with(":25B3"))
}

#[test]
fn members_reach_each_other_and_outsiders_are_refused_at_the_handshake() {
    let mut net = net("t");
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (wrong_key, wrong_name) = (net.ns("k"), net.ns("n"));
    let (_, b_from_a) = net.link(&a, &b);
    let (_, b_from_c) = net.link(&c, &b);
    let (_, b_from_k) = net.link(&wrong_key, &b);
    let (_, b_from_n) = net.link(&wrong_name, &b);

    let psk = net.file("network.psk", &[0x5a; 32]);
    let other_psk = net.file("other.psk", &[0xa5; 32]);
    let addr_b = private_node(&mut net, &b, "testnet", &psk, &[], false);
    // A names B as a TLS peer; C as a TCP one, which private mode dials with TLS.
    let addr_a = private_node(
        &mut net,
        &a,
        "testnet",
        &psk,
        &[format!("tls://[{b_from_a}]:9651")],
        false,
    );
    let addr_c = private_node(
        &mut net,
        &c,
        "testnet",
        &psk,
        &[format!("tcp://[{b_from_c}]:9651")],
        false,
    );
    let addr_k = private_node(
        &mut net,
        &wrong_key,
        "testnet",
        &other_psk,
        &[format!("tls://[{b_from_k}]:9651")],
        false,
    );
    let addr_n = private_node(
        &mut net,
        &wrong_name,
        "othernet",
        &psk,
        &[format!("tls://[{b_from_n}]:9651")],
        false,
    );

    // The members reach each other, across B too.
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
    net.wait_reachable(&a, &addr_c, Duration::from_secs(20));
    net.wait_reachable(&c, &addr_a, Duration::from_secs(10));
    let out = net.exec(
        &a,
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &addr_c],
    );
    assert!(out.status.success(), "{}", net.logs());

    // The outsiders were refused: B counts both, each outsider its own.
    wait_counter(
        &net,
        &b,
        "mycelium_tls_handshake_failures",
        2,
        Duration::from_secs(15),
    );
    wait_counter(
        &net,
        &wrong_key,
        "mycelium_tls_handshake_failures",
        1,
        Duration::from_secs(5),
    );
    wait_counter(
        &net,
        &wrong_name,
        "mycelium_tls_handshake_failures",
        1,
        Duration::from_secs(5),
    );
    for ns in [&b, &wrong_key, &wrong_name] {
        assert!(
            net.log(ns).contains("TLS handshake with"),
            "{ns} logs no refused handshake\n{}",
            net.logs()
        );
    }
    for line in net
        .log(&b)
        .lines()
        .filter(|l| l.contains("TLS handshake"))
        .take(2)
    {
        println!("{line}");
    }
    // Members never failed a handshake with each other.
    for ns in [&a, &c] {
        assert_eq!(
            counter(&net, ns, "mycelium_tls_handshake_failures"),
            Some(0),
            "{}",
            net.logs()
        );
    }
    // Links are TLS: B's routes go over `TLS … <-> …` connections.
    let routes = net.exec(&b, &[BIN, "routes", "selected"]);
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.contains("TLS "), "{routes}");
    // QUIC is off in private mode even though no option turned it off.
    for ns in [&a, &b, &c] {
        assert!(!quic_port_open(&net, ns), "{ns} has UDP 9651 open");
    }

    // The outsiders reach no one, and no one reaches them.
    for (from, to) in [
        (&wrong_key, &addr_b),
        (&wrong_key, &addr_a),
        (&wrong_name, &addr_b),
        (&wrong_name, &addr_c),
        (&a, &addr_k),
        (&b, &addr_n),
    ] {
        assert!(
            !net.ping(from, to),
            "{from} reached {to} across the private network\n{}",
            net.logs()
        );
    }
}

#[test]
fn discovered_peers_are_dialled_with_tls() {
    let mut net = net("d");
    let (a, b) = (net.ns("a"), net.ns("b"));
    net.link(&a, &b);
    let psk = net.file("network.psk", &[0x33; 32]);
    private_node(&mut net, &a, "discovery-net", &psk, &[], true);
    let addr_b = private_node(&mut net, &b, "discovery-net", &psk, &[], true);
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
    // Whichever side dialled lists the other as a discovered TLS peer.
    let listed = [&a, &b].map(|ns| {
        let out = net.exec(ns, &[BIN, "peers", "list"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    assert!(
        listed.iter().any(|t| t
            .lines()
            .any(|l| l.contains("Tls") && l.contains("LinkLocalDiscovery"))),
        "{listed:?}"
    );
}

#[test]
fn a_key_file_of_the_wrong_length_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let psk = dir.path().join("short.psk");
    std::fs::write(&psk, [1u8; 31]).unwrap();
    let out = Command::new(BIN)
        .arg("--key-file")
        .arg(&key)
        .args([
            "--no-tun",
            "--disable-peer-discovery",
            "--tcp-listen-port",
            "0",
        ])
        .args(["--api-addr", "127.0.0.1:0", "--jsonrpc-addr", "127.0.0.1:0"])
        .args(["--network-name", "testnet", "--network-key-file"])
        .arg(&psk)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&psk.display().to_string()) && err.contains("31 bytes"),
        "{err}"
    );
}
