//! Network namespaces with real nodes in them, for the end-to-end tests: each test
//! makes its own namespaces, veth links (ULA underlay addresses) and node processes
//! (this crate's `mycelium` binary, each with a real TUN device), and everything is
//! removed when the [`Net`] is dropped, even when the test fails.
//!
//! Needs root, `ip` (iproute2), `ping` and `/dev/net/tun`; `scripts/setup.sh`
//! installs the tools. Without them a test fails, saying what is missing: these
//! tests are never skipped.
#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A set of namespaces and node processes, torn down on drop.
pub(crate) struct Net {
    pub(crate) tag: String,
    pub(crate) namespaces: Vec<String>,
    pub(crate) nodes: Vec<(String, Child)>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) links: usize,
}

pub(crate) fn require(cond: bool, what: &str) {
    assert!(
        cond,
        "end-to-end tests need {what}; run ./scripts/setup.sh as root"
    );
}

pub(crate) fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    out
}

pub(crate) fn run_ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Net {
    pub(crate) fn new(tag: &str) -> Self {
        // SAFETY-free check for root: `id -u`.
        require(run_ok(&["id", "-u"]).trim() == "0", "root");
        require(run(&["ip", "-V"]).status.success(), "iproute2 (ip)");
        require(run(&["ping", "-V"]).status.success(), "ping (iputils-ping)");
        require(
            std::path::Path::new("/dev/net/tun").exists(),
            "/dev/net/tun",
        );
        Self {
            tag: format!("m{}{tag}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            links: 0,
        }
    }

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

    pub(crate) fn key(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(format!("{name}.key"));
        let out = Command::new(env!("CARGO_BIN_EXE_mycelium"))
            .args(["generate-keys", "-k"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let out = Command::new(env!("CARGO_BIN_EXE_mycelium"))
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

    /// Starts a node in `ns` with further command-line arguments.
    pub(crate) fn node_args(
        &mut self,
        ns: &str,
        peers: &[String],
        quic: bool,
        discovery: bool,
        extra: &[&str],
    ) -> String {
        let (key, addr) = self.key(ns);
        let log = std::fs::File::create(self.dir.path().join(format!("{ns}.log"))).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_mycelium"),
            "--key-file",
        ])
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

    pub(crate) fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Pings until one answer comes back, or `limit` passes.
    pub(crate) fn wait_reachable(&self, ns: &str, addr: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self
                .exec(ns, &["ping", "-6", "-c", "1", "-W", "1", addr])
                .status
                .success()
            {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{addr} not reachable from {ns} within {limit:?}\n{}",
            self.logs()
        );
    }

    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for (ns, _) in &self.nodes {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{ns}.log")))
                .unwrap_or_default();
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
