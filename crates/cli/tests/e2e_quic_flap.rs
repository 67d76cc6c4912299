//! End-to-end: a neighbour that drops QUIC links whenever it has a large packet for
//! us, as upstream v0.7.10 does.
//!
//! ```text
//!   A (ours) ---tcp--- U (upstream-like) ===tcp+quic=== B (ours)
//! ```
//!
//! U is our own node with upstream's timers (`--upstream-timers`) and upstream's
//! QUIC data sending (`--upstream-quic-datagrams`): every data packet goes as a
//! datagram, and one too large for a datagram drops the whole connection. B dials
//! U over TCP and over QUIC; bulk traffic flows from A to B through U.
//!
//! Needs root, `ip`, `ping`, `curl`, `iperf3` and `/dev/net/tun`; fails, saying what
//! is missing, without them.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::netns::Net;
use common::{require, runs};

/// Where every node serves its metrics, inside its own namespace.
const METRICS: &str = "[::1]:9100";
/// What U passes to stand in for an upstream node.
const UPSTREAM: [&str; 4] = [
    "--upstream-timers",
    "--upstream-quic-datagrams",
    "--metrics-api-address",
    METRICS,
];
/// The runs measure throughput and loss on a 2-core machine: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Chain {
    net: Net,
    a: String,
    b: String,
    addr_b: String,
    /// U's address on the link to B, as B dials it.
    u_for_b: String,
}

/// A — U — B. `u_extra`: U's options; `b_schemes`: how B dials U; `b_extra`: B's
/// options (metrics are always on).
fn chain(tag: &str, u_extra: &[&str], b_schemes: &[&str], b_extra: &[&str]) -> Chain {
    require(runs(&["curl", "--version"]), "curl");
    require(runs(&["iperf3", "--version"]), "iperf3");
    let mut net = Net::new(tag);
    let (a, u, b) = (net.ns("a"), net.ns("u"), net.ns("b"));
    let (_, u_for_a) = net.link(&a, &u);
    let (u_for_b, _) = net.link(&u, &b);
    net.node_args(&u, &[], true, false, u_extra);
    net.node_args(
        &a,
        &[format!("tcp://[{u_for_a}]:9651")],
        false,
        false,
        &["--metrics-api-address", METRICS],
    );
    let b_peers: Vec<String> = b_schemes
        .iter()
        .map(|s| format!("{s}://[{u_for_b}]:9651"))
        .collect();
    let mut b_args = vec!["--metrics-api-address", METRICS];
    b_args.extend_from_slice(b_extra);
    let addr_b = net.node_args(&b, &b_peers, true, false, &b_args);
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
    Chain {
        net,
        a,
        b,
        addr_b,
        u_for_b,
    }
}

/// The value of metric `name` on the node in `ns` (0 if absent).
fn metric(net: &Net, ns: &str, name: &str) -> f64 {
    net.metric(ns, METRICS, name)
}

/// Every node's drop counters, for a failure message.
fn drops(c: &Chain) -> String {
    let url = format!("http://{METRICS}/metrics");
    let mut out = String::new();
    for ns in [&c.a, &format!("{}-u", c.net.tag), &c.b] {
        let text = c.net.exec(ns, &["curl", "-sf", "-g", &url]);
        for l in String::from_utf8_lossy(&text.stdout).lines() {
            if l.starts_with("mycelium_dropped_packets_total") && !l.ends_with(" 0") {
                out += &format!("{ns}: {l}\n");
            }
        }
    }
    out
}

/// QUIC links that came up in `log`.
fn quic_ups(log: &str) -> usize {
    log.matches(" up: QUIC -> ").count()
}

/// QUIC links that went down in `log`.
fn quic_downs(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" down (") && l.contains("QUIC -> "))
        .count()
}

/// The line B logs when it recognises the neighbour.
const RECOGNISED: &str = "dropped our QUIC link 2 times in a row";

/// Warnings about a neighbour that drops QUIC links, in `log` (the nodes log at
/// debug level, where later drops are noted too).
fn warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" WARN ") && l.contains("dropped our QUIC link"))
        .count()
}

/// Pings from `from` to `to` every 20 ms, `count` times, `size` bytes of payload,
/// in the background.
fn ping_stream(from: &str, to: &str, count: u32, size: u32) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", from, "ping", "-6", "-n", "-i", "0.02", "-W", "1",
        ])
        .args(["-c", &count.to_string(), "-s", &size.to_string(), to])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The sequence numbers of the pings a run sent that got no answer.
fn unanswered(child: Child, count: u32) -> Vec<u32> {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let answered: std::collections::HashSet<u32> = text
        .lines()
        .filter_map(|l| {
            let at = l.find("icmp_seq=")?;
            l[at + 9..].split(' ').next()?.parse().ok()
        })
        .collect();
    (1..=count).filter(|s| !answered.contains(s)).collect()
}

/// iperf3 from `from` to `to` for `secs` s, in the background (a server must run);
/// at most `rate` (iperf3's `-b`, "0" for no limit); killed if it has not ended
/// within `secs` + 10 s.
fn iperf3(from: &str, to: &str, secs: u32, rate: &str) -> Child {
    let limit = (secs + 10).to_string();
    Command::new("ip")
        .args(["netns", "exec", from, "timeout", &limit])
        .args([
            "iperf3",
            "-6",
            "-c",
            to,
            "-t",
            &secs.to_string(),
            "-b",
            rate,
            "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What an `iperf3 -J` run reports: Mbit/s received (0 if it failed), and the TCP
/// segments its sender retransmitted in each second, as (start of the second,
/// segments).
fn iperf3_report(child: Child) -> (f64, Vec<(f64, u64)>) {
    let out = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mbits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e6;
    let seconds = report["intervals"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|i| {
                    let sum = &i["sum"];
                    (
                        sum["start"].as_f64().unwrap_or(0.0),
                        sum["retransmits"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (mbits, seconds)
}

/// Mbit/s an `iperf3 -J` run reports received (0 if it failed).
fn mbits(child: Child) -> f64 {
    iperf3_report(child).0
}

/// What one bulk run from A to B measured.
struct Run {
    secs: u32,
    mbits: f64,
    retransmits: u64,
    /// Those retransmitted from the first whole second after the recognition.
    retransmits_after: u64,
    pings: u32,
    lost: usize,
    /// When B recognised U, from the start of the traffic.
    recognised_at: Option<Duration>,
    /// Pings sent after that (half a second after, for those on their way) that
    /// got no answer.
    lost_after: usize,
    /// The sequence numbers of the pings lost.
    lost_seqs: Vec<u32>,
    /// QUIC links of B to U that went down during the run.
    quic_downs: usize,
    /// B's log up to the recognition, and after it.
    log_before: String,
    log_after: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} s of iperf3: {:.0} Mbit/s, {} retransmitted segments; pings every 20 ms: \
             {} of {} lost ({:.2} %); QUIC link drops: {}",
            self.secs,
            self.mbits,
            self.retransmits,
            self.lost,
            self.pings,
            100.0 * self.lost as f64 / f64::from(self.pings),
            self.quic_downs
        )?;
        match self.recognised_at {
            Some(t) => write!(
                f,
                "; recognised {:.1} s in; after that {} pings lost and {} segments \
                 retransmitted",
                t.as_secs_f64(),
                self.lost_after,
                self.retransmits_after
            ),
            None => write!(f, "; not recognised"),
        }
    }
}

/// iperf3 from A to B for `secs` s with a ping every 20 ms beside it, watching B's
/// log for the line that says U was recognised.
fn bulk_run(c: &mut Chain, secs: u32) -> Run {
    c.net.server(&c.b, "iperf3", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let b_log = c.net.log_path(&c.b);
    let downs_before = quic_downs(&c.net.log(&c.b));
    let pings = secs * 50;
    let start = Instant::now();
    let ping = ping_stream(&c.a, &c.addr_b, pings, 56);
    let bulk = iperf3(&c.a, &c.addr_b, secs, BULK_RATE);
    let mut recognised_at = None;
    let mut log_at = 0;
    while start.elapsed() < Duration::from_secs(u64::from(secs) + 2) {
        if recognised_at.is_none() {
            let log = std::fs::read_to_string(&b_log).unwrap_or_default();
            if let Some(at) = log.find(RECOGNISED) {
                recognised_at = Some(start.elapsed());
                log_at = at;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mbits, seconds) = iperf3_report(bulk);
    let retransmits = seconds.iter().map(|(_, n)| n).sum();
    let retransmits_after = recognised_at.map_or(0, |t| {
        let from = t.as_secs_f64().ceil();
        seconds
            .iter()
            .filter(|(start, _)| *start >= from)
            .map(|(_, n)| n)
            .sum()
    });
    let lost = unanswered(ping, pings);
    let log = c.net.log(&c.b);
    let lost_after = recognised_at.map_or(0, |t| {
        let from = t + Duration::from_millis(500);
        lost.iter()
            .filter(|&&s| Duration::from_millis(u64::from(s - 1) * 20) > from)
            .count()
    });
    let (before, after) = if recognised_at.is_some() {
        log.split_at(log_at)
    } else {
        (log.as_str(), "")
    };
    Run {
        secs,
        mbits,
        retransmits,
        retransmits_after,
        pings,
        lost: lost.len(),
        lost_seqs: lost.clone(),
        recognised_at,
        lost_after,
        quic_downs: quic_downs(&log) - downs_before,
        log_before: before.to_owned(),
        log_after: after.to_owned(),
    }
}

/// Seconds of bulk traffic per run. U, with upstream's timers, sends its first
/// Hellos 20 s after it starts; from then on its TCP link to B measures cheaper
/// than a freshly dialled QUIC link, and U stops choosing QUIC towards B by itself
/// (until the QUIC link's measured cost catches up, minutes later). A run starts
/// about 2 s after U and ends about then.
const BULK_SECS: u32 = 18;
/// The bulk transfer's rate: full-size packets, well below what the path carries
/// (about 3 Gbit/s here). A TCP flow without a limit fills the overlay's link
/// queues and loses a few packets there on any link, TCP alone included; below
/// it, what a run loses is what the QUIC link drops cost.
const BULK_RATE: &str = "500M";

/// The recommended set-up against an upstream node, TCP and QUIC, with the pause
/// off: every QUIC link B brings up is dropped at U's first full-size packet,
/// for as long as U prefers QUIC. These are the figures "before", run by hand
/// (`cargo test --test e2e_quic_flap -- --ignored`): 25 s the suite's time budget
/// keeps for tests of what the node does.
#[test]
#[ignore = "hand-run figure: the flapping without the pause (the README's \"before\")"]
fn without_the_pause_the_quic_link_keeps_flapping() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = chain("qb", &UPSTREAM, &["tcp", "quic"], &["--no-quic-pause"]);
    let run = bulk_run(&mut c, BULK_SECS);
    println!("TCP + QUIC to an upstream-like relay, pause off: {run}");
    let net = &c.net;
    assert!(
        run.quic_downs >= 3,
        "the QUIC link was not dropped again and again: {run}\n{}",
        net.logs()
    );
    // Recognised and logged once all the same, never paused.
    assert!(run.recognised_at.is_some(), "{run}\n{}", net.logs());
    assert_eq!(
        metric(net, &c.b, "mycelium_quic_oversize_neighbours_total"),
        1.0
    );
    assert!(metric(net, &c.b, "mycelium_quic_oversize_drops_total") >= 3.0);
    assert_eq!(metric(net, &c.b, "mycelium_quic_paused_peers"), 0.0);
    assert_eq!(warnings(&net.log(&c.b)), 1, "{}", net.log(&c.b));
    assert!(quic_ups(&run.log_after) >= 1, "{}", net.logs());
}

/// The same with the pause on (the default): after the two drops that identify
/// U, B dials QUIC to it no more, U's traffic for B stays on TCP, and nothing is
/// lost. These are the figures "after".
#[test]
fn with_tcp_and_quic_the_neighbour_is_kept_on_tcp() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = chain("qa", &UPSTREAM, &["tcp", "quic"], &[]);
    let run = bulk_run(&mut c, BULK_SECS);
    println!("TCP + QUIC to an upstream-like relay, pause on: {run}");
    let net = &c.net;
    let Some(at) = run.recognised_at else {
        panic!("U was not recognised: {run}\n{}", net.logs());
    };
    assert!(at < Duration::from_secs(12), "{run}");
    // The two drops that identify it, and no QUIC link after them.
    assert_eq!(run.quic_downs, 2, "{run}\n{}", net.logs());
    assert_eq!(
        quic_ups(&run.log_after),
        0,
        "QUIC redialled:\n{}",
        run.log_after
    );
    assert!(
        run.log_before.contains("QUIC -> "),
        "no QUIC link before: {}",
        run.log_before
    );
    assert_eq!(
        run.lost_after,
        0,
        "{run}: lost {:?}\n{}{}",
        run.lost_seqs,
        drops(&c),
        net.logs()
    );
    assert!(run.mbits > 250.0, "{run}\n{}", net.logs());
    // Nor did TCP lose segments to a dropped link: one costs the flow 40 to 100
    // retransmissions at this rate (a few from the start-up of the flow), and a
    // run over TCP alone has none to a few.
    assert!(run.retransmits_after < 20, "{run}");
    // Counted, and the log says why, once.
    assert_eq!(
        metric(net, &c.b, "mycelium_quic_oversize_neighbours_total"),
        1.0
    );
    assert_eq!(metric(net, &c.b, "mycelium_quic_oversize_drops_total"), 2.0);
    assert_eq!(metric(net, &c.b, "mycelium_quic_paused_peers"), 1.0);
    let log = net.log(&c.b);
    assert_eq!(warnings(&log), 1, "{log}");
    assert!(log.contains("Its traffic stays on TCP"), "{log}");
    assert!(log.contains("for 5 min"), "{log}");
    let endpoint = format!("quic://[{}]:9651", c.u_for_b);
    let left = metric(
        net,
        &c.b,
        &format!("mycelium_quic_pause_seconds{{endpoint=\"{endpoint}\"}}"),
    );
    assert!(left > 240.0 && left <= 300.0, "{left}");
    // The peer list stays truthful: the QUIC peer is not connected.
    let peers: serde_json::Value =
        serde_json::from_str(&net.cli_ok(&c.b, &["peers", "list", "--json"])).unwrap();
    let quic = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["endpoint"]["proto"] == "quic")
        .unwrap();
    assert_eq!(quic["connectionState"], "dead", "{peers}");
    // U dropped exactly those two connections.
    let u_log = net.log(&format!("{}-u", net.tag));
    assert_eq!(
        u_log.matches("upstream QUIC emulation").count(),
        2,
        "{u_log}"
    );
}

/// QUIC is B's only link to U: nothing better exists, so B keeps redialling, and
/// its log says once, clearly, why large packets from U fail.
#[test]
fn with_quic_only_the_log_says_why_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = chain("qq", &UPSTREAM, &["quic"], &[]);
    c.net.server(&c.b, "iperf3", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let net = &c.net;
    // Full-size pings (1400-byte IPv6 packets): each one U forwards to B breaks
    // the link. A bulk transfer beside them gets nowhere.
    let count = 15 * 50;
    let ping = ping_stream(&c.a, &c.addr_b, count, 1352);
    let mbits = mbits(iperf3(&c.a, &c.addr_b, 5, BULK_RATE));
    let lost = unanswered(ping, count);
    let log = net.log(&c.b);
    println!(
        "QUIC only to an upstream-like relay: iperf3 {mbits:.1} Mbit/s; {} of {count} \
         full-size pings lost; QUIC link drops: {}",
        lost.len(),
        quic_downs(&log)
    );
    assert_eq!(warnings(&log), 1, "not said once:\n{log}");
    assert!(log.contains("QUIC is our only link to it"), "{log}");
    assert!(log.contains("add a tcp:// peer"), "{log}");
    assert!(quic_downs(&log) >= 3, "{log}");
    assert!(quic_ups(&log) >= 3, "QUIC not redialled:\n{log}");
    assert!(lost.len() > count as usize / 2, "{}", lost.len());
    assert_eq!(
        metric(net, &c.b, "mycelium_quic_oversize_neighbours_total"),
        1.0
    );
    assert!(metric(net, &c.b, "mycelium_quic_oversize_drops_total") >= 3.0);
    assert_eq!(metric(net, &c.b, "mycelium_quic_paused_peers"), 0.0);
}

/// A neighbour of ours puts packets too large for a datagram on the stream: a
/// bulk transfer over QUIC alone keeps its one link, and nothing is recognised.
#[test]
fn a_neighbour_of_ours_keeps_quic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = chain("qo", &["--metrics-api-address", METRICS], &["quic"], &[]);
    c.net.server(&c.b, "iperf3", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let net = &c.net;
    let count = 5 * 50;
    let ping = ping_stream(&c.a, &c.addr_b, count, 1352);
    let mbits = mbits(iperf3(&c.a, &c.addr_b, 5, BULK_RATE));
    let lost = unanswered(ping, count);
    println!(
        "QUIC only to a relay of ours: iperf3 {mbits:.0} Mbit/s, {} of {count} \
         full-size pings lost",
        lost.len()
    );
    let log = net.log(&c.b);
    assert_eq!(quic_ups(&log), 1, "{log}");
    assert_eq!(quic_downs(&log), 0, "{log}");
    assert!(lost.is_empty(), "{lost:?}\n{}", net.logs());
    assert!(mbits > 250.0, "{mbits}\n{}", net.logs());
    assert_eq!(metric(net, &c.b, "mycelium_quic_oversize_drops_total"), 0.0);
    assert!(!log.contains("dropped our QUIC link"), "{log}");
}

/// U dials B over QUIC (upstream dials from its listening port), B dials U over
/// TCP: once U is recognised, B refuses U's QUIC connections for the pause, and
/// U's traffic for B stays on TCP.
#[test]
fn inbound_quic_from_it_is_refused_while_paused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    require(runs(&["curl", "--version"]), "curl");
    require(runs(&["iperf3", "--version"]), "iperf3");
    let mut net = Net::new("qi");
    let (a, u, b) = (net.ns("a"), net.ns("u"), net.ns("b"));
    let (_, u_for_a) = net.link(&a, &u);
    let (u_for_b, b_for_u) = net.link(&u, &b);
    let u_peers = [format!("quic://[{b_for_u}]:9651")];
    net.node_args(&u, &u_peers, true, false, &UPSTREAM);
    net.node_args(&a, &[format!("tcp://[{u_for_a}]:9651")], false, false, &[]);
    let b_peers = [format!("tcp://[{u_for_b}]:9651")];
    let addr_b = net.node_args(
        &b,
        &b_peers,
        true,
        false,
        &["--metrics-api-address", METRICS],
    );
    net.wait_reachable(&a, &addr_b, Duration::from_secs(20));
    net.server(&b, "iperf3", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let (mbits, _) = iperf3_report(iperf3(&a, &addr_b, 14, BULK_RATE));
    let log = net.log(&b);
    let refusals = metric(&net, &b, "mycelium_quic_paused_refusals_total");
    println!(
        "inbound QUIC from an upstream-like relay: iperf3 {mbits:.0} Mbit/s; QUIC link \
         drops {}; connections refused while paused {refusals}",
        quic_downs(&log)
    );
    let Some(at) = log.find(RECOGNISED) else {
        panic!("U was not recognised\n{}", net.logs());
    };
    // Known by its key, from its own route: the TCP link is the same node.
    let line = log.lines().find(|l| l.contains(RECOGNISED)).unwrap_or("");
    assert!(
        line.contains("(node ") && line.contains("stays on TCP"),
        "{line}"
    );
    assert_eq!(quic_ups(&log[at..]), 0, "QUIC accepted again:\n{log}");
    assert!(refusals >= 1.0, "{log}");
    assert_eq!(metric(&net, &b, "mycelium_quic_paused_peers"), 1.0);
    assert!(mbits > 250.0, "{mbits}\n{}", net.logs());
}
