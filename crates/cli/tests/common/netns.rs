//! Network namespaces with real nodes in them, for the end-to-end tests: each test
//! makes its own namespaces, veth links (ULA underlay addresses) and node processes
//! (this crate's `mycelium` binary, each with a real TUN device), and everything is
//! removed when the [`Net`] is dropped, even when the test fails.
//!
//! Other servers a test runs in the namespaces ([`Net::server`]) are ended with
//! the nodes.
//!
//! Needs root, `ip` (iproute2), `ping` and `/dev/net/tun`; `scripts/setup.sh`
//! installs the tools. Without them a test fails, saying what is missing: these
//! tests are never skipped. A test that needs more tools checks them with
//! [`super::require`] first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{describe, poll, require, run, run_ok, runs, BIN};

/// A set of namespaces, node processes and other servers, torn down on drop.
pub(crate) struct Net {
    /// Prefix of every namespace and interface name: `m`, this process's id and the
    /// test's tag.
    pub(crate) tag: String,
    /// The namespaces made, deleted on drop.
    pub(crate) namespaces: Vec<String>,
    /// Node processes by namespace, killed on drop.
    pub(crate) nodes: Vec<(String, Child)>,
    /// Other servers by log name, killed on drop.
    pub(crate) servers: Vec<(String, Child)>,
    /// Keys, logs and whatever files a test writes.
    pub(crate) dir: tempfile::TempDir,
    /// veth pairs made so far (they number the links and their addresses).
    pub(crate) links: usize,
}

impl Net {
    /// A new, empty set; checks for root and the tools every namespace test needs.
    pub(crate) fn new(tag: &str) -> Self {
        require(run_ok(&["id", "-u"]).trim() == "0", "root");
        require(runs(&["ip", "-V"]), "iproute2 (ip)");
        require(runs(&["ping", "-V"]), "ping (iputils-ping)");
        require(Path::new("/dev/net/tun").exists(), "/dev/net/tun");
        Self {
            tag: format!("m{}{tag}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            servers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            links: 0,
        }
    }

    /// Makes the namespace `<tag>-<name>` with loopback up; returns its name.
    pub(crate) fn ns(&mut self, name: &str) -> String {
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
    pub(crate) fn link(&mut self, a: &str, b: &str) -> (String, String) {
        self.links += 1;
        let n = self.links;
        let (va, vb) = (format!("{}a{n}", self.tag), format!("{}b{n}", self.tag));
        run_ok(&[
            "ip", "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
        ]);
        let (aa, ab) = (format!("fd00:{n:x}::1"), format!("fd00:{n:x}::2"));
        for (ns, dev, addr) in [(a, &va, &aa), (b, &vb, &ab)] {
            run_ok(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            run_ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        (aa, ab)
    }

    /// A file in the test's directory holding `bytes`.
    pub(crate) fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A new node key `<name>.key`; returns its path and the overlay address it gives.
    pub(crate) fn key(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(format!("{name}.key"));
        let out = Command::new(BIN)
            .args(["generate-keys", "-k"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let out = Command::new(BIN)
            .args(["inspect", "--json", "-k"])
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (path, v["address"].as_str().unwrap().to_owned())
    }

    /// Starts a node in `ns` (TCP only); returns its overlay address.
    pub(crate) fn node(&mut self, ns: &str, peers: &[String]) -> String {
        self.node_with(ns, peers, false)
    }

    /// Starts a node in `ns`, with QUIC on if `quic`; returns its overlay address.
    pub(crate) fn node_with(&mut self, ns: &str, peers: &[String], quic: bool) -> String {
        self.node_full(ns, peers, quic, false)
    }

    /// Starts a node in `ns` with every choice explicit.
    pub(crate) fn node_full(
        &mut self,
        ns: &str,
        peers: &[String],
        quic: bool,
        discovery: bool,
    ) -> String {
        self.node_args(ns, peers, quic, discovery, &[])
    }

    /// Starts a node in `ns` with further command-line arguments: TCP on port 9651,
    /// TUN device `myc0`, debug logs in `<ns>.log`; returns its overlay address.
    pub(crate) fn node_args(
        &mut self,
        ns: &str,
        peers: &[String],
        quic: bool,
        discovery: bool,
        extra: &[&str],
    ) -> String {
        let (key, addr) = self.key(ns);
        let log = std::fs::File::create(self.log_path(ns)).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN, "--key-file"])
            .arg(&key)
            .args(["--tcp-listen-port", "9651"])
            .args(["--tun-name", "myc0", "--debug"]);
        if !discovery {
            cmd.arg("--disable-peer-discovery");
        }
        if !quic {
            cmd.arg("--disable-quic");
        }
        cmd.args(extra);
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

    /// The process id of the node in `ns` (`ip netns exec` execs the node itself).
    pub(crate) fn pid_of(&self, ns: &str) -> u32 {
        self.nodes.iter().find(|(n, _)| n == ns).unwrap().1.id()
    }

    /// Starts a long-running server (`cmd`) in `ns`, its output in `<name>.log`;
    /// it is killed with the nodes.
    pub(crate) fn server(&mut self, ns: &str, name: &str, cmd: &[&str]) {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        self.servers.push((name.to_owned(), child));
    }

    /// Runs `cmd` in `ns` and returns its output.
    pub(crate) fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Runs the `mycelium` client in `ns`, against the node there (its API is on
    /// the default loopback address).
    pub(crate) fn cli(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec![BIN];
        full.extend_from_slice(args);
        self.exec(ns, &full)
    }

    /// Like [`Net::cli`]; returns its stdout, and fails the test if it fails.
    pub(crate) fn cli_ok(&self, ns: &str, args: &[&str]) -> String {
        let out = self.cli(ns, args);
        assert!(
            out.status.success(),
            "mycelium {args:?} in {ns} failed: {}\n{}",
            describe(&out),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value of metric `name` on the node in `ns`, whose metrics listen on
    /// `listen` (0 if absent). Needs `curl`.
    pub(crate) fn metric(&self, ns: &str, listen: &str, name: &str) -> f64 {
        let url = format!("http://{listen}/metrics");
        let out = self.exec(ns, &["curl", "-sf", "-g", &url]);
        assert!(out.status.success(), "metrics of {ns}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// The sum of every series of metric family `name` (`name{...} value` lines)
    /// on the node in `ns`, whose metrics listen on `listen`. Needs `curl`.
    pub(crate) fn metric_sum(&self, ns: &str, listen: &str, name: &str) -> f64 {
        let url = format!("http://{listen}/metrics");
        let out = self.exec(ns, &["curl", "-sf", "-g", &url]);
        assert!(out.status.success(), "metrics of {ns}: {out:?}");
        let family = format!("{name}{{");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(&family))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Whether one ping from `ns` to `addr` is answered within a second.
    pub(crate) fn ping(&self, ns: &str, addr: &str) -> bool {
        self.exec(ns, &["ping", "-6", "-c", "1", "-W", "1", addr])
            .status
            .success()
    }

    /// Pings until one answer comes back, or `limit` passes (which fails the test);
    /// returns how long it took.
    pub(crate) fn wait_reachable(&self, ns: &str, addr: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        if poll(limit, || self.ping(ns, addr)) {
            return start.elapsed();
        }
        panic!(
            "{addr} not reachable from {ns} within {limit:?}\n{}",
            self.logs()
        );
    }

    /// Waits until `probe` holds; fails the test, naming `what` and showing the
    /// logs, once `limit` passes.
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, probe: impl FnMut() -> bool) {
        if !poll(limit, probe) {
            panic!("{what}: not within {limit:?}\n{}", self.logs());
        }
    }

    /// Where the output of the node in `ns` (or of the server `name`) goes.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The whole output so far of the node in `ns` (or of the server `name`).
    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The last lines of every node's and server's output, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        let names = self.nodes.iter().chain(&self.servers).map(|(n, _)| n);
        for name in names {
            let log = self.log(name);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out += &format!("--- {name} (last lines)\n");
            for l in tail.iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

/// Kills the servers and the nodes, then deletes the namespaces.
impl Drop for Net {
    fn drop(&mut self) {
        for (_, child) in self.servers.iter_mut().chain(&mut self.nodes) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
