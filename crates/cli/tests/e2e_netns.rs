//! End-to-end: real nodes (this crate's `mycelium` binary) in network namespaces,
//! each with a real TUN device, joined by veth links with ULA underlay addresses.
//!
//! Needs root, `ip` (iproute2), `ping` and `/dev/net/tun`; `scripts/setup.sh`
//! installs the tools. Without them the tests fail, saying what is missing: they are
//! never skipped. Every namespace, link and process a test makes is removed when it
//! ends, even when it fails.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::Net;
use common::{require, run_ok, runs, BIN};

fn ttl_of(ping_output: &str) -> Option<u32> {
    let at = ping_output.find("ttl=")?;
    ping_output[at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn ping_across_a_line(tag: &str, scheme: &str) {
    let quic = scheme == "quic";
    let mut net = Net::new(tag);
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (_, b_left) = net.link(&a, &b);
    let (b_right, _) = net.link(&b, &c);
    let addr_b = net.node_with(&b, &[], quic);
    let addr_a = net.node_with(&a, &[format!("{scheme}://[{b_left}]:9651")], quic);
    let addr_c = net.node_with(&c, &[format!("{scheme}://[{b_right}]:9651")], quic);
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
    net.wait_reachable(&a, &addr_c, Duration::from_secs(20));
    let out = net.exec(
        &a,
        &["ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", &addr_c],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", net.logs());
    assert!(text.contains(" 0% packet loss"), "{text}");
    // Every node on the way takes one hop, the two ends included:
    // 64 at the sender, minus A, B and C.
    assert_eq!(ttl_of(&text), Some(61), "{text}");
    // A hop limit that runs out at the relay comes back as an out-of-band report
    // from it, turned into ICMPv6 "time exceeded" on A's TUN.
    let out = net.exec(
        &a,
        &["ping", "-6", "-c", "1", "-t", "2", "-W", "2", &addr_c],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("Time exceeded"), "{text}\n{}", net.logs());
    // And the way back, with a full-size packet too: over QUIC it no longer fits a
    // datagram and takes the stream.
    let out = net.exec(
        &c,
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &addr_a],
    );
    assert!(out.status.success(), "{}", net.logs());
    let full = [
        "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1352", &addr_a,
    ];
    let out = net.exec(&c, &full);
    assert!(
        out.status.success(),
        "full-size ping failed\n{}",
        net.logs()
    );
}

#[test]
fn nodes_on_one_link_find_each_other_without_configured_peers() {
    let mut net = Net::new("d");
    let (a, b) = (net.ns("a"), net.ns("b"));
    net.link(&a, &b);
    net.node_full(&a, &[], false, true);
    let addr_b = net.node_full(&b, &[], false, true);
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
}

#[test]
fn ping_crosses_a_three_node_line_over_tcp() {
    ping_across_a_line("t", "tcp");
}

#[test]
fn ping_crosses_a_three_node_line_over_quic() {
    ping_across_a_line("q", "quic");
}

/// iperf3 from `from` to `to_addr` (a server must run at it) for `secs` seconds,
/// `reverse` sending the other way; returns Mbit/s received.
fn iperf3_mbits(net: &Net, from: &str, to_addr: &str, secs: u32, reverse: bool) -> f64 {
    let t = secs.to_string();
    let mut args = vec![
        "timeout", "30", "iperf3", "-6", "-c", to_addr, "-t", &t, "-J",
    ];
    if reverse {
        args.push("-R");
    }
    received_mbits(net, &net.exec(from, &args))
}

/// The Mbit/s an `iperf3 -J` client run reports received; fails the test if the
/// run failed.
fn received_mbits(net: &Net, out: &std::process::Output) -> f64 {
    assert!(
        out.status.success(),
        "iperf3 failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        net.logs()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6
}

/// The one-packet-per-read TUN path that macOS and Windows use, run here over Linux
/// TUN devices without offload: A and the relay B on it, C with offload, so both
/// directions cross a portable device and a mixed pair.
#[test]
fn portable_tun_path_carries_ping_and_streams() {
    require(runs(&["iperf3", "--version"]), "iperf3");
    let mut net = Net::new("p");
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (_, b_left) = net.link(&a, &b);
    let (b_right, _) = net.link(&b, &c);
    let portable = ["--no-tun-offload"];
    net.node_args(&b, &[], false, false, &portable);
    let addr_a = net.node_args(
        &a,
        &[format!("tcp://[{b_left}]:9651")],
        false,
        false,
        &portable,
    );
    let addr_c = net.node_args(&c, &[format!("tcp://[{b_right}]:9651")], false, false, &[]);
    net.wait_reachable(&a, &addr_c, Duration::from_secs(20));
    net.wait_reachable(&c, &addr_a, Duration::from_secs(20));
    let logs = net.logs();
    assert_eq!(logs.matches("path=Portable").count(), 2, "{logs}");
    assert_eq!(logs.matches("path=Offload").count(), 1, "{logs}");
    for (from, to) in [(&a, &addr_c), (&c, &addr_a)] {
        for size in ["56", "1352"] {
            let out = net.exec(
                from,
                &[
                    "ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", "-s", size, to,
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                text.contains(" 0% packet loss"),
                "{from} -> {to}, {size} B: {text}\n{}",
                net.logs()
            );
        }
    }
    net.server(&c, "iperf3", &["iperf3", "-s"]);
    std::thread::sleep(Duration::from_millis(500));
    let up = iperf3_mbits(&net, &a, &addr_c, 3, false);
    let down = iperf3_mbits(&net, &a, &addr_c, 3, true);
    println!("portable TUN path: {up:.0} Mbit/s from it, {down:.0} Mbit/s to it");
    // Far below what this machine carries either way: a stall or a broken batch
    // shows as a collapse, not as a few percent.
    assert!(
        up > 50.0 && down > 50.0,
        "{up:.0} / {down:.0} Mbit/s\n{}",
        net.logs()
    );
}

/// Bytes received so far on a namespace's interfaces other than `lo` and the TUN.
fn rx_bytes(net: &Net, ns: &str) -> u64 {
    let out = net.exec(ns, &["cat", "/proc/net/dev"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name == "myc0" {
                return None;
            }
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A diamond A–B1–D, A–B2–D; returns the net, the namespaces and D's address.
fn diamond(tag: &str) -> (Net, [String; 4], String) {
    let mut net = Net::new(tag);
    let (a, b1, b2, d) = (net.ns("a"), net.ns("b1"), net.ns("b2"), net.ns("d"));
    let (_, b1_from_a) = net.link(&a, &b1);
    let (_, b2_from_a) = net.link(&a, &b2);
    let (_, b1_from_d) = net.link(&d, &b1);
    let (_, b2_from_d) = net.link(&d, &b2);
    net.node(&b1, &[]);
    net.node(&b2, &[]);
    net.node(
        &a,
        &[
            format!("tcp://[{b1_from_a}]:9651"),
            format!("tcp://[{b2_from_a}]:9651"),
        ],
    );
    let addr_d = net.node(
        &d,
        &[
            format!("tcp://[{b1_from_d}]:9651"),
            format!("tcp://[{b2_from_d}]:9651"),
        ],
    );
    net.wait_reachable(&a, &addr_d, Duration::from_secs(20));
    (net, [a, b1, b2, d], addr_d)
}

/// Which relay carries A's traffic to D right now.
fn relay_in_use(net: &Net, ns: &[String; 4], addr_d: &str) -> usize {
    let before = [rx_bytes(net, &ns[1]), rx_bytes(net, &ns[2])];
    net.exec(
        &ns[0],
        &[
            "ping", "-6", "-c", "20", "-i", "0.01", "-s", "1000", "-W", "1", addr_d,
        ],
    );
    let after = [rx_bytes(net, &ns[1]), rx_bytes(net, &ns[2])];
    if after[0] - before[0] > after[1] - before[1] {
        1
    } else {
        2
    }
}

/// Pings D from A every 20 ms while `break_relay` runs, and returns the longest run
/// of lost replies as a duration (the outage), after checking D answers again.
fn outage_while(net: &Net, ns: &[String; 4], addr_d: &str, break_relay: impl FnOnce()) -> Duration {
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &ns[0], "ping", "-6", "-i", "0.02", "-c", "400", "-W", "1", addr_d,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    break_relay();
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seqs: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            let at = l.find("icmp_seq=")?;
            l[at + 9..].split(' ').next()?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    assert!(
        seqs.last().copied().unwrap_or(0) >= 390,
        "D did not answer again after the relay broke:\n{text}\n{}",
        net.logs()
    );
    let longest_gap = seqs.windows(2).map(|w| w[1] - w[0] - 1).max().unwrap_or(0);
    Duration::from_millis(u64::from(longest_gap) * 20)
}

#[test]
fn killed_relay_is_routed_around() {
    let (net, ns, addr_d) = diamond("k");
    let relay = relay_in_use(&net, &ns, &addr_d);
    let pid = net.pid_of(&ns[relay]);
    let outage = outage_while(&net, &ns, &addr_d, || {
        run_ok(&["kill", "-9", &pid.to_string()]);
    });
    println!("relay killed: outage {} ms", outage.as_millis());
    // The dead relay's links close at once (its sockets are reset), so the other
    // route takes over within a few pings; runs here lose none or one or two.
    assert!(
        outage <= KILLED_RELAY_OUTAGE,
        "a killed relay interrupted the path for {} ms (bound {} ms)\n{}",
        outage.as_millis(),
        KILLED_RELAY_OUTAGE.as_millis(),
        net.logs()
    );
}

/// The longest outage a killed relay may cause: its neighbours see their links end
/// at once; 0-40 ms on this machine, with room for a loaded CI runner.
const KILLED_RELAY_OUTAGE: Duration = Duration::from_millis(500);
/// The longest outage a relay that silently drops everything may cause: nothing
/// tells its neighbours, so they notice missing Hellos and IHUs (the router's fast
/// failure detection); about 0.9 s on this machine.
const SILENT_RELAY_OUTAGE: Duration = Duration::from_millis(2_000);

#[test]
fn silently_dropping_relay_is_routed_around() {
    let (net, ns, addr_d) = diamond("s");
    let relay = relay_in_use(&net, &ns, &addr_d);
    let relay_ns = ns[relay].clone();
    let outage = outage_while(&net, &ns, &addr_d, || {
        let rules = net.dir.path().join("blackhole.nft");
        std::fs::write(
            &rules,
            "table inet blackhole {\n\
             chain input { type filter hook input priority 0; iifname != \"lo\" drop; }\n\
             chain output { type filter hook output priority 0; oifname != \"lo\" drop; }\n\
             }\n",
        )
        .unwrap();
        let out = net.exec(&relay_ns, &["nft", "-f", rules.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    println!("relay silently dropping: outage {} ms", outage.as_millis());
    assert!(
        outage <= SILENT_RELAY_OUTAGE,
        "a silent relay interrupted the path for {} ms (bound {} ms)\n{}",
        outage.as_millis(),
        SILENT_RELAY_OUTAGE.as_millis(),
        net.logs()
    );
}

#[test]
fn iperf3_stream_survives_the_loss_of_its_relay() {
    require(runs(&["iperf3", "--version"]), "iperf3");
    let (mut net, ns, addr_d) = diamond("i");
    let relay = relay_in_use(&net, &ns, &addr_d);
    let relay_ns = ns[relay].clone();
    net.server(&ns[3], "iperf3", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(500));
    let client = Command::new("ip")
        .args([
            "netns", "exec", &ns[0], "timeout", "30", "iperf3", "-6", "-c", &addr_d, "-t", "8",
            "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    run_ok(&["kill", "-9", &net.pid_of(&relay_ns).to_string()]);
    let out = client.wait_with_output().unwrap();
    let mbits = received_mbits(&net, &out);
    assert!(mbits > 0.0);
    println!("iperf3 across a relay loss: {mbits:.0} Mbit/s average");
}

#[test]
fn messages_cross_a_relay_with_topics_and_a_reply() {
    let mut net = Net::new("msg");
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (_, b_left) = net.link(&a, &b);
    let (b_right, _) = net.link(&b, &c);
    net.node(&b, &[]);
    let addr_a = net.node(&a, &[format!("tcp://[{b_left}]:9651")]);
    let addr_c = net.node(&c, &[format!("tcp://[{b_right}]:9651")]);
    net.wait_reachable(&a, &addr_c, Duration::from_secs(20));

    // Two topics; C's filtered receive takes only the one it asks for.
    net.cli_ok(
        &a,
        &["message", "send", "--topic", "weather", &addr_c, "rain"],
    );
    net.cli_ok(
        &a,
        &["message", "send", "--topic", "news", &addr_c, "hello C"],
    );
    let got: serde_json::Value = serde_json::from_str(&net.cli_ok(
        &c,
        &["message", "receive", "--topic", "news", "--timeout", "10"],
    ))
    .unwrap();
    assert_eq!(got["payload"], "hello C");
    assert_eq!(got["srcIp"], addr_a.as_str());

    // A waits for a reply while C answers.
    let mut waiting = Command::new("ip")
        .args(["netns", "exec", &a, BIN])
        .args([
            "message",
            "send",
            "--wait",
            "--timeout",
            "20",
            &addr_c,
            "ping?",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let request = loop {
        let got: serde_json::Value =
            serde_json::from_str(&net.cli_ok(&c, &["message", "receive", "--timeout", "10"]))
                .unwrap();
        // The "weather" message is still queued ahead of the request.
        if got["payload"] == "ping?" {
            break got;
        }
        assert_eq!(got["payload"], "rain");
    };
    let id = request["id"].as_str().unwrap();
    net.cli_ok(&c, &["message", "send", "--reply-to", id, &addr_a, "pong!"]);
    let status = waiting.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(waiting.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}\n{}", net.logs());
    let reply: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(reply["payload"], "pong!");
    assert_eq!(reply["srcIp"], addr_c.as_str());
}

#[test]
fn a_message_burst_over_quic_loses_no_datagram() {
    // A QUIC link over a 1500-byte veth. QUIC packets full of small datagrams (the
    // frames of a message burst) once started at 1500 bytes of UDP payload, which
    // no 1500-byte link carries over IPv6 (1452 at most): the kernel refused each
    // one, and the datagrams in it were gone, about one in 150 of them, so the
    // message bus retransmitted hundreds of frames and stalled for seconds.
    let mut net = Net::new("qb");
    let (a, b) = (net.ns("a"), net.ns("b"));
    let (_, b_addr) = net.link(&a, &b);
    let metrics = ["--metrics-api-address", "[::1]:9999"];
    let addr_b = net.node_args(&b, &[], true, false, &metrics);
    net.node_args(
        &a,
        &[format!("quic://[{b_addr}]:9651")],
        true,
        false,
        &metrics,
    );
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));

    const COUNT: usize = 5_000;
    let mut posts = String::new();
    for i in 0..COUNT {
        if i > 0 {
            posts.push_str("next\n");
        }
        let mut payload = (i as u64).to_be_bytes().to_vec();
        payload.resize(100, b'x');
        let body = format!(
            r#"{{"dst":{{"ip":"{addr_b}"}},"payload":"{}"}}"#,
            base64_of(&payload)
        );
        posts.push_str("url = \"http://127.0.0.1:8989/api/v1/messages\"\n");
        posts.push_str(&format!("data = {:?}\n", body));
        posts.push_str("header = \"Content-Type: application/json\"\n");
        posts.push_str("output = \"/dev/null\"\nwrite-out = \"%{http_code}\\n\"\n");
    }
    let config = net.file("posts.cfg", posts.as_bytes());
    let config = config.to_str().unwrap();
    let started = std::time::Instant::now();
    let out = net.exec(
        &a,
        &[
            "curl",
            "-sS",
            "--parallel",
            "--parallel-max",
            "16",
            "-K",
            config,
        ],
    );
    let codes = String::from_utf8_lossy(&out.stdout);
    let accepted = codes.lines().filter(|c| *c == "201").count();
    assert_eq!(accepted, COUNT, "{:?}", out);
    let delivered = || net.metric(&b, "[::1]:9999", "mycelium_messages_delivered_total");
    net.wait_for("every message delivered", Duration::from_secs(60), || {
        delivered() >= COUNT as f64
    });
    let took = started.elapsed();
    // Every datagram one side sent, the other received (the stream's control
    // packets are counted too; one may be on its way as we look).
    let sent_ab = net.metric_sum(&a, "[::1]:9999", "mycelium_peer_tx_packets_total");
    let got_ab = net.metric_sum(&b, "[::1]:9999", "mycelium_peer_rx_packets_total");
    let sent_ba = net.metric_sum(&b, "[::1]:9999", "mycelium_peer_tx_packets_total");
    let got_ba = net.metric_sum(&a, "[::1]:9999", "mycelium_peer_rx_packets_total");
    let retransmitted = net.metric(&a, "[::1]:9999", "mycelium_message_retransmissions_total");
    println!(
        "{COUNT} messages over QUIC: all delivered {:.2} s after the first POST; \
         packets A->B {sent_ab} sent, {got_ab} received; B->A {sent_ba} sent, \
         {got_ba} received; {retransmitted} frames retransmitted",
        took.as_secs_f64()
    );
    assert!(sent_ab - got_ab <= 2.0, "A->B lost {}", sent_ab - got_ab);
    assert!(sent_ba - got_ba <= 2.0, "B->A lost {}", sent_ba - got_ba);
    assert_eq!(delivered(), COUNT as f64, "delivered more than sent");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
