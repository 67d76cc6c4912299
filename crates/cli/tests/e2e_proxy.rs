//! End-to-end: the SOCKS5 proxy client between two real nodes (this
//! crate's `mycelium` binary) in network namespaces, each with a real TUN device,
//! joined by a veth link with ULA underlay addresses.
//!
//! Node A runs a real SOCKS5 server (`microsocks`, no authentication) on its overlay
//! address, port 1080, and a small HTTP server (Python's `http.server`) serving a
//! file of random bytes. Node B probes through its API, finds A's proxy, connects,
//! and `curl --socks5-hostname [::1]:1080` in B's namespace fetches the file over
//! the overlay, once and then 100 times in parallel. After `proxy disconnect`
//! nothing listens on B's port 1080 any more.
//!
//! Needs root, `/dev/net/tun`, `ip` (iproute2), `ping`, `microsocks`, `curl`, `ss`
//! and `python3`; `scripts/setup.sh` installs them. Without them the test fails,
//! saying what is missing: it is never skipped. Every namespace and process the
//! test makes is removed when it ends, even when it fails.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::Net;
use common::{describe, require, runs};

/// The size of the file fetched through the proxy.
const FILE_SIZE: u64 = 256 * 1024;
/// Fetches at once through the proxy.
const PARALLEL: usize = 100;
/// The HTTP server's port on A.
const HTTP_PORT: &str = "8080";

/// Serves a directory over HTTP on one address, with a listen backlog that takes
/// a hundred connections at once (`python3 -m http.server` listens with 5).
/// `/hold` promises a megabyte and sends a byte every 100 ms for 30 s: a transfer
/// that stays in progress.
const HTTP_SERVER: &str = "\
import functools, http.server, socket, sys, time
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 512
    daemon_threads = True
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path != '/hold':
            return super().do_GET()
        self.send_response(200)
        self.send_header('Content-Length', '1000000')
        self.end_headers()
        for _ in range(300):
            self.wfile.write(b'x')
            self.wfile.flush()
            time.sleep(0.1)
handler = functools.partial(Quiet, directory=sys.argv[1])
Server((sys.argv[2], int(sys.argv[3])), handler).serve_forever()
";

/// A new set of namespaces, after checking for the tools this test needs beyond
/// what every namespace test needs.
fn net(tag: &str) -> Net {
    require(runs(&["ss", "-V"]), "ss (iproute2)");
    require(runs(&["curl", "--version"]), "curl");
    require(runs(&["python3", "--version"]), "python3");
    // microsocks has no version option; `-h` prints its usage to stderr, exit status 1.
    let microsocks = Command::new("microsocks").arg("-h").output();
    require(
        microsocks.is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("SOCKS5")),
        "microsocks",
    );
    Net::new(tag)
}

/// Established TCP connections from or to port 1080 in `ns` (both ends of every
/// forwarded connection: the local client's and the one to the remote proxy).
fn established_1080(net: &Net, ns: &str) -> usize {
    let out = net.exec(
        ns,
        &[
            "ss",
            "-H",
            "-t",
            "-n",
            "state",
            "established",
            "(",
            "sport",
            "=",
            ":1080",
            "or",
            "dport",
            "=",
            ":1080",
            ")",
        ],
    );
    assert!(out.status.success(), "ss: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Whether anything listens on TCP port 1080 in `ns`.
fn listening_on_1080(net: &Net, ns: &str) -> bool {
    let out = net.exec(ns, &["ss", "-H", "-t", "-l", "-n", "sport", "=", ":1080"]);
    assert!(out.status.success(), "ss: {}", describe(&out));
    !out.stdout.is_empty()
}

#[test]
fn socks_proxy_on_another_node_carries_http_fetches() {
    let started = Instant::now();
    let mut net = net("p");
    let (a, b) = (net.ns("a"), net.ns("b"));
    let (a_under, _) = net.link(&a, &b);
    let addr_a = net.node(&a, &[]);
    let addr_b = net.node(&b, &[format!("tcp://[{a_under}]:9651")]);
    net.wait_for(
        "B reaches A over the overlay",
        Duration::from_secs(20),
        || net.ping(&b, &addr_a),
    );

    // A: the file, the HTTP server and the SOCKS5 server, both on A's overlay address.
    let www = net.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let mut blob = Vec::new();
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .take(FILE_SIZE)
        .read_to_end(&mut blob)
        .unwrap();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let www_dir = www.to_str().unwrap().to_owned();
    net.server(
        &a,
        "http",
        &["python3", "-c", HTTP_SERVER, &www_dir, &addr_a, HTTP_PORT],
    );
    net.server(&a, "socks", &["microsocks", "-i", &addr_a, "-p", "1080"]);
    let url = format!("http://[{addr_a}]:{HTTP_PORT}/blob");
    // Both answer inside A before B starts probing (the first probe round runs at
    // once; the next would be a minute later).
    let direct = format!("[{addr_a}]:1080");
    net.wait_for(
        "A's SOCKS and HTTP servers answer",
        Duration::from_secs(10),
        || {
            net.exec(
                &a,
                &[
                    "curl",
                    "-sSf",
                    "-o",
                    "/dev/null",
                    "--socks5-hostname",
                    &direct,
                    &url,
                ],
            )
            .status
            .success()
        },
    );

    // B: probing finds A's proxy.
    assert_eq!(net.cli_ok(&b, &["proxy", "probe", "start"]), "");
    let mut listed = String::new();
    net.wait_for("B's probe lists A's proxy", Duration::from_secs(10), || {
        listed = net.cli_ok(&b, &["proxy", "list", "--json"]);
        let list: Vec<String> = serde_json::from_str(&listed).unwrap();
        list == [addr_a.clone()]
    });
    net.cli_ok(&b, &["proxy", "probe", "stop"]);

    // Connect to the best proxy: A's.
    let chosen = net.cli_ok(&b, &["proxy", "connect", "--json"]);
    assert_eq!(
        chosen.trim(),
        format!("\"[{addr_a}]:1080\""),
        "proxy connect chose another proxy"
    );
    assert!(listening_on_1080(&net, &b), "B does not listen on 1080");

    // One fetch through B's local listener, over the overlay to A's SOCKS server.
    let fetched = net.dir.path().join("one");
    let out = net.exec(
        &b,
        &[
            "curl",
            "-sSf",
            "--max-time",
            "20",
            "--socks5-hostname",
            "[::1]:1080",
            "-o",
            fetched.to_str().unwrap(),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "fetch: {}\n{}",
        describe(&out),
        net.logs()
    );
    assert!(
        std::fs::read(&fetched).unwrap() == blob,
        "the file fetched through the proxy differs"
    );
    // IPv4 loopback is served too; another node, over the overlay, is not: B is
    // nobody's open relay.
    for (ns, via, served) in [
        (&b, "127.0.0.1:1080".to_owned(), true),
        (&a, format!("[{addr_b}]:1080"), false),
    ] {
        let out = net.exec(
            ns,
            &[
                "curl",
                "-sSf",
                "--max-time",
                "20",
                "--socks5-hostname",
                &via,
                "-o",
                "/dev/null",
                &url,
            ],
        );
        assert_eq!(
            out.status.success(),
            served,
            "fetch via {via} from {ns}: {}",
            describe(&out)
        );
        // Refused by B itself: the connection was made, then closed unserved (not
        // curl's 7, cannot connect, nor 28, timed out).
        if !served {
            let code = out.status.code();
            assert!(
                !matches!(code, Some(7 | 28)),
                "{code:?}: {}",
                describe(&out)
            );
        }
    }

    // A hundred at once.
    let outs: Vec<PathBuf> = (0..PARALLEL)
        .map(|i| net.dir.path().join(format!("par{i}")))
        .collect();
    let mut args: Vec<String> = [
        "curl",
        "-sSf",
        "--max-time",
        "40",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "100",
        "--socks5-hostname",
        "[::1]:1080",
    ]
    .map(String::from)
    .to_vec();
    for out in &outs {
        args.extend([
            "-o".to_owned(),
            out.to_str().unwrap().to_owned(),
            url.clone(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = net.exec(&b, &args);
    assert!(
        out.status.success(),
        "parallel fetches: {}\n{}",
        describe(&out),
        net.logs()
    );
    for (i, path) in outs.iter().enumerate() {
        let got = std::fs::read(path).unwrap_or_default();
        assert!(
            got == blob,
            "parallel fetch {i} differs ({} bytes)",
            got.len()
        );
    }

    // Every forwarded connection closed with its client: no socket left over.
    net.wait_for(
        "B's forwarded connections close after the fetches",
        Duration::from_secs(5),
        || established_1080(&net, &b) == 0,
    );

    // A fetch in progress is cut by disconnect, and the listener is closed
    // before the command returns.
    let mut slow = Command::new("ip")
        .args(["netns", "exec", &b, "curl", "-sS", "--max-time", "30"])
        .args(["--socks5-hostname", "[::1]:1080", "-o", "/dev/null"])
        .arg(format!("http://[{addr_a}]:{HTTP_PORT}/hold"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    net.wait_for(
        "the held fetch is forwarded",
        Duration::from_secs(5),
        || {
            // Curl's socket, the accepted one and the one to A.
            established_1080(&net, &b) >= 3
        },
    );
    assert_eq!(net.cli_ok(&b, &["proxy", "disconnect"]), "");
    let cut = Instant::now();
    let status = loop {
        if let Some(status) = slow.try_wait().unwrap() {
            break status;
        }
        if cut.elapsed() > Duration::from_secs(5) {
            let _ = slow.kill();
            let _ = slow.wait();
            panic!("a forwarded fetch outlived disconnect\n{}", net.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "the held fetch finished before disconnect"
    );
    assert_eq!(
        established_1080(&net, &b),
        0,
        "forwarded connections outlived disconnect"
    );
    assert!(
        !listening_on_1080(&net, &b),
        "B still listens on 1080 after disconnect"
    );
    let out = net.exec(
        &b,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--socks5-hostname",
            "[::1]:1080",
            "-o",
            "/dev/null",
            &url,
        ],
    );
    // curl's exit status 7: could not connect (to the proxy).
    assert_eq!(
        out.status.code(),
        Some(7),
        "a fetch after disconnect did not find the port closed: {}",
        describe(&out)
    );
    // Still known after disconnect; connecting by name works and a bad name is
    // refused by the client.
    let listed = net.cli_ok(&b, &["proxy", "list", "--json"]);
    assert!(listed.contains(&addr_a), "{listed}");
    let out = net.cli(&b, &["proxy", "connect", "--remote", "nonsense"]);
    assert!(!out.status.success());
    let named = net.cli_ok(&b, &["proxy", "connect", "--remote", &direct]);
    assert_eq!(named.trim(), direct);
    assert!(listening_on_1080(&net, &b));
    net.cli_ok(&b, &["proxy", "disconnect"]);
    assert!(!listening_on_1080(&net, &b));
    println!("proxy end-to-end: {:?}", started.elapsed());
}
