//! The DNS forwarder end to end, in network namespaces: node A runs it on
//! `[::]:53` with two overlay resolvers as candidates (scripted stubs on nodes B
//! and C, listening on their overlay addresses) and a fall-back stub on A's own
//! loopback, so no packet leaves the namespaces.
//!
//! Needs what every namespace test needs (`common::netns`) and `python3` for the
//! stubs and the client (`tests/fixtures`); without them the test fails.

#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::time::{Duration, Instant};

use common::netns::Net;
use common::{require, runs};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const STUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dns_stub.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dns_client.py");
/// The forwarder's per-query timeout in this test.
const TIMEOUT_MS: u64 = 1500;
/// Queries it answers at once in this test.
const IN_FLIGHT: usize = 4;
/// A candidate no node has: the forwarder keeps asking for its route.
const NOWHERE: &str = "5ff:dead:beef::53";
/// Where C serves its metrics.
const METRICS: &str = "[::1]:9100";

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x4d59, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends `msg` to A's forwarder over `transport`; the answer, or `None` on silence.
fn ask(net: &Net, ns: &str, transport: &str, msg: &[u8], wait: &str) -> Option<Vec<u8>> {
    let out = net.exec(
        ns,
        &["python3", CLIENT, transport, "::1", "53", &hex(msg), wait],
    );
    assert!(out.status.success(), "{}", common::describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (text != "timeout").then(|| unhex(&text))
}

fn answer(net: &Net, ns: &str, name: &str) -> Option<Message> {
    ask(net, ns, "udp", &query(name, RecordType::A), "4").map(|b| Message::from_vec(&b).unwrap())
}

/// The last octet of the first A record: which stub answered.
fn tag(m: &Message) -> Option<u8> {
    m.answers.iter().find_map(|r| match r.data {
        RData::A(a) => Some(a.0.octets()[3]),
        _ => None,
    })
}

fn answered_by(net: &Net, ns: &str, want: u8) -> bool {
    answer(net, ns, "www.example.").is_some_and(|m| tag(&m) == Some(want))
}

/// Route requests C's router has handled so far, from its metrics.
fn route_requests(net: &Net, ns: &str) -> u64 {
    let url = format!("http://{METRICS}/metrics");
    let script =
        format!("import urllib.request; print(urllib.request.urlopen('{url}').read().decode())");
    let out = net.exec(ns, &["python3", "-c", &script]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| {
            l.starts_with("mycelium_router_processed_tlvs_total")
                && l.contains("tlv_type=\"route_request\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no route request counter in {text}"))
}

fn kill_node(net: &mut Net, ns: &str) {
    let (_, child) = net.nodes.iter_mut().find(|(n, _)| n == ns).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn dns_forwarder_overlay_path_failover_fallback_and_bounds() {
    let mut net = Net::new("dns");
    require(runs(&["python3", "--version"]), "python3");
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (_, ub) = net.link(&a, &b);
    let (_, uc) = net.link(&a, &c);
    let ob = net.node(&b, &[]);
    let oc = net.node_args(&c, &[], false, false, &["--metrics-api-address", METRICS]);
    net.server(&b, "stub-b", &["python3", STUB, "::", "53", "2"]);
    net.server(&c, "stub-c", &["python3", STUB, "::", "53", "3"]);
    net.server(&a, "stub-fallback", &["python3", STUB, "::1", "5300", "9"]);
    let peers = [format!("tcp://[{ub}]:9651"), format!("tcp://[{uc}]:9651")];
    let (timeout, in_flight) = (TIMEOUT_MS.to_string(), IN_FLIGHT.to_string());
    net.node_args(
        &a,
        &peers,
        false,
        false,
        &[
            "--enable-dns",
            "--dns-candidate",
            NOWHERE,
            "--dns-candidate",
            &ob,
            "--dns-candidate",
            &oc,
            "--dns-fallback",
            "[::1]:5300",
            "--dns-period-ms",
            "500",
            "--dns-timeout-ms",
            &timeout,
            "--dns-max-in-flight",
            &in_flight,
        ],
    );
    let limit = Duration::from_secs(30);

    // B and C are both one hop away: the earlier candidate, B, wins the tie.
    net.wait_for("answers from B's resolver", limit, || {
        answered_by(&net, &a, 2)
    });
    let m = answer(&net, &a, "www.example.").unwrap();
    assert_eq!(m.metadata.id, 0x4d59);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        m.metadata.recursion_available,
        "the resolver's RA is relayed"
    );
    assert_eq!(m.queries.len(), 1);
    assert_eq!(
        (m.answers.len(), m.authorities.len(), m.additionals.len()),
        (1, 1, 1),
        "every section is relayed: {m:?}"
    );
    let nx = answer(&net, &a, "nx.example.").unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    assert_eq!(nx.authorities.len(), 1, "the SOA is relayed: {nx:?}");
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

    // More than a classic UDP client takes: TC set, whole over TCP.
    let big = query("big.example.", RecordType::TXT);
    let cut = Message::from_vec(&ask(&net, &a, "udp", &big, "4").unwrap()).unwrap();
    assert!(cut.metadata.truncation, "{cut:?}");
    assert!(cut.answers.is_empty());
    let whole = Message::from_vec(&ask(&net, &a, "tcp", &big, "4").unwrap()).unwrap();
    assert_eq!(whole.answers.len(), 40);
    let tcp = ask(&net, &a, "tcp", &query("www.example.", RecordType::A), "4").unwrap();
    assert_eq!(tag(&Message::from_vec(&tcp).unwrap()), Some(2));
    // A resolver that sets TC over UDP: a TCP client gets the whole answer, which
    // the forwarder asked for again over TCP; a UDP client gets TC.
    let tc = query("tc.example.", RecordType::TXT);
    let whole = Message::from_vec(&ask(&net, &a, "tcp", &tc, "4").unwrap()).unwrap();
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 40, "{whole:?}");
    assert!(
        net.log("stub-b").contains("tcp query"),
        "{}",
        net.log("stub-b")
    );
    let cut = Message::from_vec(&ask(&net, &a, "udp", &tc, "4").unwrap()).unwrap();
    assert!(cut.metadata.truncation && cut.answers.is_empty(), "{cut:?}");

    // Replies under another id or for another question, sent before the real one,
    // are not taken; the client's id comes back although the resolver saw another.
    let m = answer(&net, &a, "spoof.example.").unwrap();
    assert_eq!(m.metadata.id, 0x4d59);
    assert_eq!(tag(&m), Some(2), "{m:?}");
    let log = net.log("stub-b");
    let sent = log
        .lines()
        .find(|l| l.starts_with("udp query") && l.ends_with(" spoof"));
    let sent_id: u16 = sent
        .and_then(|l| l.split(' ').nth(3))
        .unwrap()
        .parse()
        .unwrap();
    // One chance in 65,536 that the random id is the client's.
    assert_ne!(sent_id, 0x4d59, "the client's id went out: {log}");

    // The candidate that exists nowhere: A asks its neighbours for its route, again
    // and again (the only part of the forwarder other nodes see). A request waits
    // 15 s for an answer before the next goes out, so C sees another within the
    // limit (two more could take just over 30 s).
    let before = route_requests(&net, &c);
    net.wait_for("another route request at C", limit, || {
        route_requests(&net, &c) > before
    });

    // Input filtering: a response or a datagram shorter than a header gets no
    // answer; a header with a broken question gets FORMERR and no question.
    let mut response = query("www.example.", RecordType::A);
    response[2] |= 0x80;
    assert_eq!(ask(&net, &a, "udp", &response, "1"), None);
    assert_eq!(ask(&net, &a, "udp", &[0; 11], "1"), None);
    let broken = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x',
    ];
    let formerr = Message::from_vec(&ask(&net, &a, "udp", &broken, "4").unwrap()).unwrap();
    assert_eq!(formerr.metadata.id, 0x1234);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    assert!(formerr.queries.is_empty());

    // B's route goes (its node stops): the next candidate, C.
    kill_node(&mut net, &b);
    net.wait_for("answers from C's resolver", limit, || {
        answered_by(&net, &a, 3)
    });
    // C's too: the fall-back resolver.
    kill_node(&mut net, &c);
    net.wait_for("answers from the fall-back resolver", limit, || {
        answered_by(&net, &a, 9)
    });

    // A silent resolver: SERVFAIL once the timeout has passed.
    let start = Instant::now();
    let sf = answer(&net, &a, "silent.example.").unwrap();
    let took = start.elapsed();
    assert_eq!(sf.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(sf.queries.len(), 1, "the question is echoed");
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS - 100) && took < Duration::from_secs(4),
        "SERVFAIL after {took:?}"
    );

    // A flood of queries the resolver never answers: only the bound gets an
    // answer (SERVFAIL), the rest are dropped.
    let out = net.exec(
        &a,
        &[
            "python3",
            CLIENT,
            "flood",
            "::1",
            "53",
            &hex(&query("silent.example.", RecordType::A)),
            "200",
            "4",
        ],
    );
    let answers: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(answers, IN_FLIGHT, "answers to a flood of 200");
    // And the forwarder still answers afterwards.
    assert!(answered_by(&net, &a, 9));
}

/// At the default log level the forwarder names no query and no client: a node
/// without `--debug` answers a query whose name must not appear in its output.
#[test]
fn query_names_are_not_logged_at_the_default_level() {
    let mut net = Net::new("dnsl");
    require(runs(&["python3", "--version"]), "python3");
    let a = net.ns("a");
    net.server(&a, "stub", &["python3", STUB, "::1", "5300", "9"]);
    let (key, _) = net.key(&a);
    let key = key.to_str().unwrap().to_owned();
    net.server(
        &a,
        "node",
        &[
            common::BIN,
            "--key-file",
            &key,
            "--no-tun",
            "--disable-quic",
            "--disable-peer-discovery",
            "--enable-dns",
            "--dns-listen",
            "[::1]:53",
            "--dns-no-candidates",
            "--dns-fallback",
            "[::1]:5300",
        ],
    );
    let secret = "private-name-4711.example.";
    net.wait_for(
        "an answer through the forwarder",
        Duration::from_secs(20),
        || answer(&net, &a, secret).is_some_and(|m| tag(&m) == Some(9)),
    );
    let log = net.log("node");
    assert!(log.contains("DNS forwarder"), "the node's output: {log}");
    assert!(
        !log.contains("private-name-4711"),
        "a query name at the default level: {log}"
    );
    // The client's address is on loopback: only the listener's line names it.
    let named = log
        .lines()
        .filter(|l| l.contains("[::1]:"))
        .collect::<Vec<_>>();
    assert!(
        named.iter().all(|l| l.contains("DNS forwarder on")),
        "a client address at the default level: {named:?}"
    );
}
