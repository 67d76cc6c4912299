//! End-to-end: private networks (PROTOCOL.md §2.4). Real nodes (this crate's
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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mycelium");
const METRICS: &str = "[::1]:9990";

/// A set of namespaces and node processes, torn down on drop.
struct Net {
    tag: String,
    namespaces: Vec<String>,
    nodes: Vec<(String, Child)>,
    dir: tempfile::TempDir,
    links: usize,
}

fn require(cond: bool, what: &str) {
    assert!(
        cond,
        "end-to-end tests need {what}; run ./scripts/setup.sh as root"
    );
}

fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn run_ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Net {
    fn new(tag: &str) -> Self {
        require(run_ok(&["id", "-u"]).trim() == "0", "root");
        require(run(&["ip", "-V"]).status.success(), "iproute2 (ip)");
        require(run(&["ping", "-V"]).status.success(), "ping (iputils-ping)");
        require(run(&["curl", "--version"]).status.success(), "curl");
        require(Path::new("/dev/net/tun").exists(), "/dev/net/tun");
        Self {
            tag: format!("p{}{tag}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            links: 0,
        }
    }

    fn ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        run_ok(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run_ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        // Link-local addresses usable at once (no duplicate address detection).
        for scope in ["all", "default"] {
            let key = format!("net.ipv6.conf.{scope}.accept_dad=0");
            run_ok(&["ip", "netns", "exec", &ns, "sysctl", "-qw", &key]);
        }
        ns
    }

    /// Joins two namespaces with a veth pair; returns the underlay address of each end.
    fn link(&mut self, a: &str, b: &str) -> (String, String) {
        self.links += 1;
        let n = self.links;
        let (va, vb) = (format!("{}a{n}", self.tag), format!("{}b{n}", self.tag));
        run_ok(&[
            "ip", "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
        ]);
        let (aa, ab) = (format!("fd00:{n:x}::1"), format!("fd00:{n:x}::2"));
        for (ns, dev, addr) in [(a, &va, &aa), (b, &vb, &ab)] {
            let cidr = format!("{addr}/64");
            run_ok(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev, "nodad"]);
            run_ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        (aa, ab)
    }

    /// A file holding `bytes`.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn key(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(format!("{name}.key"));
        let out = Command::new(BIN)
            .args(["generate-keys", "-k"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let out = Command::new(BIN)
            .args(["inspect", "--json", "-k"])
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (path, v["address"].as_str().unwrap().to_owned())
    }

    /// Starts a node of the private network `name` (key in `psk`) in `ns`, QUIC
    /// left on by its options (private mode turns it off), metrics on
    /// [`METRICS`]; returns its overlay address.
    fn node(&mut self, ns: &str, name: &str, psk: &Path, peers: &[String]) -> String {
        self.node_with(ns, name, psk, peers, false)
    }

    /// Like [`Net::node`], with link-local discovery on if `discovery`.
    fn node_with(
        &mut self,
        ns: &str,
        name: &str,
        psk: &Path,
        peers: &[String],
        discovery: bool,
    ) -> String {
        let (key, addr) = self.key(ns);
        let log = std::fs::File::create(self.log_path(ns)).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN, "--key-file"])
            .arg(&key)
            .args(["--tcp-listen-port", "9651", "--tun-name", "myc0", "--debug"])
            .args(["--metrics-api-address", METRICS])
            .args(["--network-name", name, "--network-key-file"])
            .arg(psk);
        if !discovery {
            cmd.arg("--disable-peer-discovery");
        }
        if !peers.is_empty() {
            cmd.arg("--peers").args(peers);
        }
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.nodes.push((ns.to_owned(), child));
        addr
    }

    fn log_path(&self, ns: &str) -> PathBuf {
        self.dir.path().join(format!("{ns}.log"))
    }

    fn log(&self, ns: &str) -> String {
        std::fs::read_to_string(self.log_path(ns)).unwrap_or_default()
    }

    fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    fn ping(&self, ns: &str, addr: &str) -> bool {
        self.exec(ns, &["ping", "-6", "-c", "1", "-W", "1", addr])
            .status
            .success()
    }

    /// Pings until one answer comes back, or `limit` passes.
    fn wait_reachable(&self, ns: &str, addr: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.ping(ns, addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{addr} not reachable from {ns} within {limit:?}\n{}",
            self.logs()
        );
    }

    /// The value of a counter on the metrics endpoint of the node in `ns`.
    fn counter(&self, ns: &str, name: &str) -> Option<u64> {
        let url = format!("http://{METRICS}/metrics");
        let out = self.exec(ns, &["curl", "-s", "-g", "--max-time", "2", &url]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    /// Waits until `ns`'s counter `name` is at least `min`; returns its value.
    fn wait_counter(&self, ns: &str, name: &str, min: u64, limit: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let v = self.counter(ns, name);
            if v.is_some_and(|v| v >= min) {
                return v.unwrap();
            }
            if start.elapsed() > limit {
                panic!(
                    "{name} of {ns} is {v:?} after {limit:?}, wanted at least {min}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (ns, _) in &self.nodes {
            let log = self.log(ns);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out += &format!("--- {ns} (last lines)\n");
            for l in tail.iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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
    let mut net = Net::new("t");
    let (a, b, c) = (net.ns("a"), net.ns("b"), net.ns("c"));
    let (wrong_key, wrong_name) = (net.ns("k"), net.ns("n"));
    let (_, b_from_a) = net.link(&a, &b);
    let (_, b_from_c) = net.link(&c, &b);
    let (_, b_from_k) = net.link(&wrong_key, &b);
    let (_, b_from_n) = net.link(&wrong_name, &b);

    let psk = net.file("network.psk", &[0x5a; 32]);
    let other_psk = net.file("other.psk", &[0xa5; 32]);
    let addr_b = net.node(&b, "testnet", &psk, &[]);
    // A names B as a TLS peer; C as a TCP one, which private mode dials with TLS.
    let addr_a = net.node(&a, "testnet", &psk, &[format!("tls://[{b_from_a}]:9651")]);
    let addr_c = net.node(&c, "testnet", &psk, &[format!("tcp://[{b_from_c}]:9651")]);
    let addr_k = net.node(
        &wrong_key,
        "testnet",
        &other_psk,
        &[format!("tls://[{b_from_k}]:9651")],
    );
    let addr_n = net.node(
        &wrong_name,
        "othernet",
        &psk,
        &[format!("tls://[{b_from_n}]:9651")],
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
    net.wait_counter(
        &b,
        "mycelium_tls_handshake_failures",
        2,
        Duration::from_secs(15),
    );
    net.wait_counter(
        &wrong_key,
        "mycelium_tls_handshake_failures",
        1,
        Duration::from_secs(5),
    );
    net.wait_counter(
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
            net.counter(ns, "mycelium_tls_handshake_failures"),
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
    let mut net = Net::new("d");
    let (a, b) = (net.ns("a"), net.ns("b"));
    net.link(&a, &b);
    let psk = net.file("network.psk", &[0x33; 32]);
    net.node_with(&a, "discovery-net", &psk, &[], true);
    let addr_b = net.node_with(&b, "discovery-net", &psk, &[], true);
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
