//! Real nodes on loopback, for the tests that drive them through their APIs and the
//! client subcommands: this crate's binary, router-only (`--no-tun`), without
//! discovery, every listener on a free port; each node is killed when dropped.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{free_port, poll, BIN};

/// How long a node gets to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// One node process on loopback, killed on drop.
pub(crate) struct Node {
    child: Child,
    /// Address of the HTTP API (`127.0.0.1:port`).
    pub(crate) api: String,
    /// Address of the JSON-RPC API.
    pub(crate) rpc: String,
    /// Address of the metrics endpoint, if the node serves one.
    pub(crate) metrics: Option<String>,
    /// The TCP and QUIC listen port.
    pub(crate) port: u16,
    /// Holds the node's key file.
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node with `peers` as its static peers; returns once its API answers.
    pub(crate) fn start(peers: &[String]) -> Self {
        Self::spawn(peers, false)
    }

    /// Like [`Node::start`], with the metrics endpoint on too.
    pub(crate) fn start_with_metrics(peers: &[String]) -> Self {
        Self::spawn(peers, true)
    }

    fn spawn(peers: &[String], metrics: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (api, rpc) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let metrics = metrics.then(|| format!("127.0.0.1:{}", free_port()));
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["--no-tun", "--disable-peer-discovery", "--key-file"])
            .arg(dir.path().join("key"))
            .args(["--api-addr", &api, "--jsonrpc-addr", &rpc]);
        if let Some(metrics) = &metrics {
            cmd.args(["--metrics-api-address", metrics]);
        }
        cmd.args(["--tcp-listen-port", &port.to_string()])
            .args(["--quic-listen-port", &port.to_string()]);
        if !peers.is_empty() {
            cmd.arg("--peers").args(peers);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = Self {
            child,
            api,
            rpc,
            metrics,
            port,
            _dir: dir,
        };
        node.wait_for(|n| n.get_json("/api/v1/admin").is_some(), "its API");
        node
    }

    /// The URL of `path` on the HTTP API.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// GET a JSON answer from the HTTP API; `None` if the API cannot be reached, the
    /// status is not 200 or the body is not JSON.
    pub(crate) fn get_json(&self, path: &str) -> Option<Value> {
        let mut resp = ureq::get(&self.url(path)).call().ok()?;
        if resp.status() != 200 {
            return None;
        }
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
    }

    /// The node's `/api/v1/admin` answer.
    pub(crate) fn info(&self) -> Value {
        self.get_json("/api/v1/admin").unwrap()
    }

    /// The node's overlay address, as its API writes it.
    pub(crate) fn ip(&self) -> String {
        self.info()["nodeIp"].as_str().unwrap().to_owned()
    }

    /// The node's /64 subnet, as its API writes it.
    pub(crate) fn subnet(&self) -> String {
        self.info()["nodeSubnet"].as_str().unwrap().to_owned()
    }

    /// Waits until `ok` holds for the node; fails the test, naming `what`, after 30 s.
    pub(crate) fn wait_for(&self, ok: impl Fn(&Self) -> bool, what: &str) {
        assert!(poll(PATIENCE, || ok(self)), "node never showed {what}");
    }

    /// Whether the node has selected a route to `subnet`.
    pub(crate) fn has_route_to(&self, subnet: &str) -> bool {
        self.get_json("/api/v1/admin/routes/selected")
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|routes| routes.iter().any(|r| r["subnet"] == subnet))
    }

    /// Runs a client subcommand against this node.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--api-addr", &self.api])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a client subcommand against this node; its stdout. Fails the test if the
    /// subcommand fails.
    pub(crate) fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two nodes started with `start` ([`Node::start`] or [`Node::start_with_metrics`]),
/// B peered to A over TCP; returns once each has a route to the other.
pub(crate) fn pair(start: fn(&[String]) -> Node) -> (Node, Node) {
    let a = start(&[]);
    let b = start(&[format!("tcp://127.0.0.1:{}", a.port)]);
    let (sa, sb) = (a.subnet(), b.subnet());
    b.wait_for(|n| n.has_route_to(&sa), "a route to A");
    a.wait_for(|n| n.has_route_to(&sb), "a route to B");
    (a, b)
}
