//! Message throughput between two nodes in one process, peered over loopback TCP.
//!
//! `cargo run --release -p mycelium-bench --bin messages -- [SIZE:COUNT[:IN_FLIGHT] ...] [--no-http]`
//!
//! Two router-only nodes (no TUN, no discovery, no QUIC): A listens on a free
//! loopback port, B has A as its static peer. Once each has a selected route to the
//! other, B pushes COUNT messages of SIZE bytes to A through its message handle
//! (what both APIs call), keeping at most IN_FLIGHT (default 16) pushed but not yet
//! popped at A, while a reader pops them at A. Printed per run: time from the first
//! push to the last pop, messages per second, payload MB/s (10^6 bytes), when the
//! sender's statuses all said Received or Read (checked once the last message was
//! popped), frames the sender retransmitted, and INITs the receiver left
//! unacknowledged for want of room (`BusStats::refused_partial_limit` and
//! `refused_full`).
//!
//! The default runs include 256 in flight for small messages: as many as the
//! receiver's partial messages per source (`BusConfig::max_partial_per_source`).
//! The sender starts at most that many at a time per destination
//! (`BusConfig::max_sending_per_destination`); without that, the INITs past the
//! receiver's limit are refused and wait out their retransmission timeout
//! (`refused_inits` and `retransmitted` show it).
//!
//! `bench/netns_message_burst.sh` makes the burst below with curl across two
//! network namespaces, over QUIC or TCP on a 1500-byte veth link.
//!
//! Both nodes share one tokio runtime of `MYCELIUM_THREADS` worker threads
//! (default 2).
//!
//! Then, for reference and unless `--no-http` is given, the same runs through the
//! HTTP API of two `mycelium` processes (the release binary next to this one, if
//! it was built): `POST /api/v1/messages` at B, long-poll `GET /api/v1/messages`
//! at A, over up to 8 keep-alive connections each, payloads in base64 JSON.
//!
//! `--overhead` measures the memory a held message costs beyond its payload, at
//! the sender and at the receiver.
//!
//! `--burst COUNT[:SIZE]` (repeatable) runs the burst scenario instead, through the
//! HTTP API of two `mycelium` processes: COUNT messages of SIZE bytes (default 100)
//! POSTed to B for A at full speed over 16 connections (no window: a 503 is counted
//! as refused, not retried), while 16 connections drain A with long polls
//! (`GET /api/v1/messages?timeout=3`). Printed: accepted and refused (with the
//! first refusal's body), when the last accepted message arrived, the receive rate
//! in each second of the run, its median and minimum over the full seconds, and
//! the message defences both nodes counted. Every accepted message must arrive
//! exactly once.

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_node::{BusError, Messages, Node, NodeConfig, NodeStats, Pushed};
use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol};
use mycelium_proto::messages::{BusStats, MessageState, PushError};
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::SecretKey;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// One measurement: message size, how many, how many in flight at most.
#[derive(Debug, Clone, Copy)]
struct Run {
    size: usize,
    count: usize,
    in_flight: usize,
}

const DEFAULT_IN_FLIGHT: usize = 16;
const DEFAULT_RUNS: &[Run] = &[
    Run {
        size: 100,
        count: 20_000,
        in_flight: 16,
    },
    Run {
        size: 100,
        count: 2_000,
        in_flight: 256,
    },
    Run {
        size: 1 << 20,
        count: 50,
        in_flight: 16,
    },
];
/// A message must be popped within this long of the previous one.
const STALL: Duration = Duration::from_secs(30);

fn parse_run(a: &str) -> Result<Run, String> {
    let mut parts = a.split(':');
    let mut next = |what: &str| -> Result<Option<usize>, String> {
        parts
            .next()
            .map(|p| p.parse().map_err(|_| format!("bad {what} in {a}")))
            .transpose()
    };
    let size = next("size")?.ok_or_else(|| format!("expected SIZE:COUNT, got {a}"))?;
    let count = next("count")?.ok_or_else(|| format!("expected SIZE:COUNT, got {a}"))?;
    let in_flight = next("in-flight count")?.unwrap_or(DEFAULT_IN_FLIGHT);
    if parts.next().is_some() {
        return Err(format!("expected SIZE:COUNT[:IN_FLIGHT], got {a}"));
    }
    if size < 8 || count == 0 || in_flight == 0 {
        return Err(format!(
            "{a}: size must be at least 8, count and in-flight at least 1"
        ));
    }
    Ok(Run {
        size,
        count,
        in_flight,
    })
}

/// One burst: COUNT messages of SIZE bytes offered at full speed.
#[derive(Debug, Clone, Copy)]
struct Burst {
    count: usize,
    size: usize,
}

fn parse_burst(a: &str) -> Result<Burst, String> {
    let (count, size) = a.split_once(':').unwrap_or((a, "100"));
    let count = count.parse().map_err(|_| format!("bad count in {a}"))?;
    let size = size.parse().map_err(|_| format!("bad size in {a}"))?;
    if size < 8 || count == 0 {
        return Err(format!("{a}: size must be at least 8, count at least 1"));
    }
    Ok(Burst { count, size })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_http = !args.iter().any(|a| a == "--no-http");
    let mut bursts = Vec::new();
    let mut runs = Vec::new();
    let mut it = args
        .iter()
        .filter(|a| *a != "--no-http" && *a != "--overhead");
    let parsed: Result<(), String> = (|| {
        while let Some(a) = it.next() {
            if a == "--burst" {
                let b = it.next().ok_or("--burst needs COUNT[:SIZE]")?;
                bursts.push(parse_burst(b)?);
            } else {
                runs.push(parse_run(a)?);
            }
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        eprintln!("messages: {e}");
        eprintln!(
            "usage: messages [SIZE:COUNT[:IN_FLIGHT] ...] [--no-http] [--burst COUNT[:SIZE] ...]"
        );
        std::process::exit(2);
    }
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("mycelium")))
        .filter(|p| p.exists());
    if args.iter().any(|a| a == "--overhead") {
        overhead();
        return;
    }
    if !bursts.is_empty() {
        let Some(bin) = bin else {
            eprintln!("messages: no mycelium binary next to this one (cargo build --release -p mycelium-cli)");
            std::process::exit(1);
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        if let Err(e) = rt.block_on(http::bursts(bin, &bursts)) {
            println!("# burst: {e}");
            std::process::exit(1);
        }
        return;
    }
    if runs.is_empty() {
        runs = DEFAULT_RUNS.to_vec();
    }
    let runs = runs;
    let threads = std::env::var("MYCELIUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench(&runs, threads));
    if !with_http {
        return;
    }
    match bin {
        Some(bin) => {
            if let Err(e) = rt.block_on(http::bench(bin, &runs)) {
                println!("# HTTP: {e}");
            }
        }
        None => println!(
            "# HTTP: skipped, no mycelium binary next to this one \
             (cargo build --release -p mycelium-cli)"
        ),
    }
}

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `--overhead`: the memory a held message costs beyond its payload, measured on
/// the sans-IO bus (no node, no API): 100,000 messages of 100 bytes pushed and held
/// by a sender whose receiver never answers, then the same number delivered into a
/// receiver's inbox and held there.
fn overhead() {
    use mycelium_proto::messages::{BusConfig, MessageBus, NewMessage, TopicConfig};
    use mycelium_proto::time::Instant;
    const COUNT: usize = 100_000;
    const SIZE: usize = 100;
    let ka = SecretKey::generate(&mut rand::thread_rng()).public_key();
    let kb = SecretKey::generate(&mut rand::thread_rng()).public_key();
    let (ia, ib) = (ka.address(), kb.address());
    let new = || MessageBus::new(BusConfig::default(), TopicConfig::default());
    let msg = |i: usize| NewMessage {
        src: ia,
        dst: ib,
        topic: Vec::new(),
        payload: payload(SIZE, i as u64),
        reply_to: None,
        try_for: None,
    };
    let mut rng = rand::thread_rng();
    let before = resident();
    let mut sender = new();
    for i in 0..COUNT {
        sender
            .push(Instant::ZERO, msg(i), &mut rng)
            .expect("inside the budgets");
    }
    while sender.poll_transmit().is_some() {}
    let held = resident().saturating_sub(before);
    println!(
        "sender: {COUNT} x {SIZE} B held in {:.1} MB: {} B a message beyond its payload",
        held as f64 / 1e6,
        (held / COUNT as u64).saturating_sub(SIZE as u64)
    );
    // The receiver: every message delivered, none popped. The sender above stays,
    // so its memory is not reused; each message's own sender is dropped as it
    // completes.
    let before = resident();
    let mut receiver = new();
    let now = Instant::ZERO;
    for i in 0..COUNT {
        let mut s = new();
        s.push(now, msg(i), &mut rng).expect("inside the budgets");
        while receiver.inbox_len() < i + 1 {
            while let Some(t) = s.poll_transmit() {
                receiver.handle_frame(now, ia, ib, ka, &t.frame);
            }
            while let Some(t) = receiver.poll_transmit() {
                s.handle_frame(now, ib, ia, kb, &t.frame);
            }
        }
        while receiver.poll_event().is_some() {}
    }
    let held = resident().saturating_sub(before);
    println!(
        "receiver: {COUNT} x {SIZE} B held in {:.1} MB: {} B a message beyond its payload \
         (inbox and the memory of delivered ids)",
        held as f64 / 1e6,
        (held / COUNT as u64).saturating_sub(SIZE as u64)
    );
    drop(sender);
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("local address").port()
}

fn config(peers: Vec<Endpoint>, port: Option<u16>) -> NodeConfig {
    NodeConfig {
        peers,
        tcp_listen_port: port,
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    }
}

async fn has_route(from: &Node, to: &Node) -> bool {
    let subnet = to.subnet();
    from.routes()
        .await
        .selected
        .iter()
        .any(|r| r.subnet == subnet)
}

async fn bench(runs: &[Run], threads: usize) {
    let shutdown = CancellationToken::new();
    let port = free_port();
    let (a, a_done) = mycelium_node::start(config(Vec::new(), Some(port)), shutdown.clone())
        .await
        .expect("node A starts");
    // `start` returns before A's listener is bound; a dial that comes too early
    // is retried only seconds later, so B starts once A accepts connections.
    let listening = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if listening.elapsed() > Duration::from_secs(10) {
            eprintln!("messages: node A does not listen on port {port}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peer = Endpoint::new(
        Protocol::Tcp,
        EndpointAddr::Socket(SocketAddr::from(([127, 0, 0, 1], port))),
    )
    .expect("a TCP endpoint");
    let (b, b_done) = mycelium_node::start(config(vec![peer], None), shutdown.clone())
        .await
        .expect("node B starts");
    let a_done = tokio::spawn(a_done);
    let b_done = tokio::spawn(b_done);

    let started = Instant::now();
    while !(has_route(&a, &b).await && has_route(&b, &a).await) {
        if started.elapsed() > Duration::from_secs(30) {
            eprintln!("messages: the nodes found no route to each other in 30 s");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "# two nodes over tcp://127.0.0.1:{port}, routes after {:.2} s; {threads} runtime threads",
        started.elapsed().as_secs_f64(),
    );
    println!("size_B\tcount\tin_flight\tsecs\tmsg/s\tMB/s\tall_acked_s\tretransmitted\trefused_inits\tdropped");
    for r in runs {
        let before = (
            drops(&a) + drops(&b),
            bus_stats(&a).await,
            bus_stats(&b).await,
        );
        let result = run(&a, &b, *r).await;
        let dropped = drops(&a) + drops(&b) - before.0;
        let (a_stats, b_stats) = (bus_stats(&a).await, bus_stats(&b).await);
        let refused = (a_stats.refused_partial_limit + a_stats.refused_full)
            - (before.1.refused_partial_limit + before.1.refused_full);
        let retransmitted = b_stats.retransmissions - before.2.retransmissions;
        let Run {
            size,
            count,
            in_flight,
        } = *r;
        match result {
            Ok(t) => {
                let secs = t.popped.as_secs_f64();
                let mb = (size * count) as f64 / 1e6;
                println!(
                    "{size}\t{count}\t{in_flight}\t{secs:.3}\t{:.0}\t{:.1}\t{:.3}\t{retransmitted}\t{refused}\t{dropped}",
                    count as f64 / secs,
                    mb / secs,
                    t.acknowledged.as_secs_f64(),
                );
            }
            Err(e) => println!("{size}\t{count}\t{in_flight}\tfailed: {e}"),
        }
    }
    shutdown.cancel();
    let _ = a_done.await;
    let _ = b_done.await;
}

/// Packets a node dropped for a full queue (link or bus) or want of a route.
fn drops(n: &Node) -> u64 {
    let s = n.stats();
    NodeStats::get(&s.link_queue_full)
        + NodeStats::get(&s.bus_queue_full)
        + NodeStats::get(&s.no_route)
}

async fn bus_stats(n: &Node) -> BusStats {
    n.messages().stats().await.unwrap_or_default()
}

struct Timing {
    /// First push to last pop.
    popped: Duration,
    /// First push to the moment every status was Received or Read.
    acknowledged: Duration,
}

/// The payload of message `seq`: its number, then filler.
fn payload(size: usize, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(seq);
    b.resize(size, 0x5a);
    b.freeze()
}

async fn run(a: &Node, b: &Node, r: Run) -> Result<Timing, String> {
    let Run {
        size,
        count,
        in_flight,
    } = r;
    let dst = a.address();
    let window = Arc::new(Semaphore::new(in_flight));
    let start = Instant::now();
    let sender = tokio::spawn(send_all(
        b.messages().clone(),
        dst,
        size,
        count,
        window.clone(),
    ));
    let mut seen = HashSet::with_capacity(count);
    while seen.len() < count {
        let Some(msg) = a.messages().pop(false, STALL, None).await else {
            sender.abort();
            return Err(format!("stalled after {} messages", seen.len()));
        };
        if msg.payload.len() != size {
            return Err(format!(
                "a message of {} bytes, not {size}",
                msg.payload.len()
            ));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&msg.payload[..8]);
        if !seen.insert(u64::from_be_bytes(seq)) {
            return Err("a message arrived twice".into());
        }
        window.add_permits(1);
    }
    let popped = start.elapsed();
    let ids = sender
        .await
        .map_err(|e| format!("sender: {e}"))?
        .map_err(|e| format!("push: {e}"))?;
    // Every message arrived, so every status reaches Received or Read soon; the
    // ones still short of it are waited for in order.
    for id in ids {
        loop {
            let state = b.messages().status(id).await.map(|s| s.info.state);
            match state {
                Some(MessageState::Received | MessageState::Read) => break,
                Some(MessageState::Aborted) | None => {
                    return Err(format!("message {id} ended as {state:?}"));
                }
                Some(_) => {
                    if start.elapsed() > popped + STALL {
                        return Err(format!("message {id} still {state:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    Ok(Timing {
        popped,
        acknowledged: start.elapsed(),
    })
}

/// Pushes `count` messages, each after taking a permit from `window` (given back by
/// the reader per pop). A full outbound store is waited out.
async fn send_all(
    messages: Messages,
    dst: Ipv6Addr,
    size: usize,
    count: usize,
    window: Arc<Semaphore>,
) -> Result<Vec<MessageId>, BusError> {
    let mut ids = Vec::with_capacity(count);
    for seq in 0..count as u64 {
        window
            .acquire()
            .await
            .map_err(|_| BusError::Stopped)?
            .forget();
        let data = payload(size, seq);
        loop {
            match messages.push(dst, Vec::new(), data.clone(), None).await {
                Ok(Pushed::Sent(id) | Pushed::TimedOut(id) | Pushed::Reply(id, _)) => {
                    ids.push(id);
                    break;
                }
                Err(BusError::Push(PushError::QueueFull { .. })) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(ids)
}

/// The same runs through the HTTP API of two `mycelium` processes (the binary next
/// to this one), for reference: each message is a `POST /api/v1/messages` at B and
/// a `GET /api/v1/messages` at A, over a few keep-alive connections each.
mod http {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use base64::Engine as _;
    use serde_json::Value;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::sync::{Mutex, Semaphore};

    use super::{free_port, Burst, Run, STALL};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    /// Connections each side uses at most.
    const CONNECTIONS: usize = 8;

    /// A node process, killed on drop.
    struct Proc {
        child: Child,
        api: SocketAddr,
        metrics: SocketAddr,
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn spawn(bin: &Path, dir: &Path, name: &str, port: u16, peer: Option<u16>) -> Proc {
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let rpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(bin);
        cmd.args(["--no-tun", "--disable-peer-discovery", "--disable-quic"])
            .arg("--key-file")
            .arg(dir.join(format!("{name}.key")))
            .args(["--api-addr", &api.to_string()])
            .args(["--jsonrpc-addr", &rpc.to_string()])
            .args(["--metrics-api-address", &metrics.to_string()])
            .args(["--tcp-listen-port", &port.to_string()]);
        if let Some(p) = peer {
            cmd.args(["--peers", &format!("tcp://127.0.0.1:{p}")]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proc {
            child,
            api,
            metrics,
        }
    }

    /// One keep-alive HTTP/1.1 connection.
    struct Conn {
        stream: BufReader<TcpStream>,
        /// The `Host` header: the API answers only requests for a loopback host.
        host: String,
    }

    impl Conn {
        async fn open(addr: SocketAddr) -> std::io::Result<Self> {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Self {
                stream: BufReader::new(s),
                host: addr.to_string(),
            })
        }

        async fn call(
            &mut self,
            method: &str,
            path: &str,
            body: &[u8],
        ) -> std::io::Result<(u16, Vec<u8>)> {
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.host,
                body.len()
            );
            let s = self.stream.get_mut();
            s.write_all(head.as_bytes()).await?;
            s.write_all(body).await?;
            let bad =
                |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
            let mut line = String::new();
            self.stream.read_line(&mut line).await?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("status line"))?;
            let mut len = 0usize;
            let mut chunked = false;
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').ok_or_else(|| bad("header"))?;
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    len = v.parse().map_err(|_| bad("content-length"))?;
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
            let mut out = Vec::new();
            if chunked {
                loop {
                    line.clear();
                    self.stream.read_line(&mut line).await?;
                    let n = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk"))?;
                    let mut chunk = vec![0; n + 2];
                    self.stream.read_exact(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
            } else {
                out.resize(len, 0);
                self.stream.read_exact(&mut out).await?;
            }
            Ok((status, out))
        }

        async fn get_json(&mut self, path: &str) -> Option<Value> {
            match self.call("GET", path, b"").await {
                Ok((200, body)) => serde_json::from_slice(&body).ok(),
                _ => None,
            }
        }
    }

    async fn wait_for<T>(
        what: &str,
        mut f: impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>> + Send>>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("no {what} after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn info(api: SocketAddr) -> Option<Value> {
        Conn::open(api).await.ok()?.get_json("/api/v1/admin").await
    }

    async fn has_route(api: SocketAddr, subnet: String) -> Option<()> {
        let routes = Conn::open(api)
            .await
            .ok()?
            .get_json("/api/v1/admin/routes/selected")
            .await?;
        routes
            .as_array()?
            .iter()
            .any(|r| r["subnet"] == subnet.as_str())
            .then_some(())
    }

    /// Two node processes, B peered with A, once each has a route to the other;
    /// and A's address.
    async fn pair(bin: &Path, dir: &Path) -> Result<(Proc, Proc, String), String> {
        let port = free_port();
        let a = spawn(bin, dir, "a", port, None);
        let b = spawn(bin, dir, "b", free_port(), Some(port));
        let (a_api, b_api) = (a.api, b.api);
        let a_info = wait_for("API at A", || Box::pin(info(a_api))).await?;
        let b_info = wait_for("API at B", || Box::pin(info(b_api))).await?;
        let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let (a_ip, a_net, b_net) = (
            field(&a_info, "nodeIp"),
            field(&a_info, "nodeSubnet"),
            field(&b_info, "nodeSubnet"),
        );
        wait_for("route from B to A", || {
            Box::pin(has_route(b_api, a_net.clone()))
        })
        .await?;
        wait_for("route from A to B", || {
            Box::pin(has_route(a_api, b_net.clone()))
        })
        .await?;
        Ok((a, b, a_ip))
    }

    /// Runs `runs` through the HTTP APIs of two `bin` processes and prints a row
    /// per run.
    pub(super) async fn bench(bin: PathBuf, runs: &[Run]) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("mycelium-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let result = async {
            let (a, b, a_ip) = pair(&bin, &dir).await?;
            let (a_api, b_api) = (a.api, b.api);
            println!("# through the HTTP API of two {} processes", bin.display());
            for r in runs {
                match run(a_api, b_api, &a_ip, *r).await {
                    Ok(secs) => println!(
                        "{}\t{}\t{}\t{secs:.3}\t{:.0}\t{:.1}\t(http)",
                        r.size,
                        r.count,
                        r.in_flight,
                        r.count as f64 / secs,
                        (r.size * r.count) as f64 / 1e6 / secs,
                    ),
                    Err(e) => println!("{}\t{}\t{}\tfailed: {e}", r.size, r.count, r.in_flight),
                }
            }
            drop((a, b));
            Ok(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn run(a: SocketAddr, b: SocketAddr, dst: &str, r: Run) -> Result<f64, String> {
        let conns = r.in_flight.min(CONNECTIONS);
        let window = Arc::new(Semaphore::new(r.in_flight));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(HashSet::with_capacity(r.count)));
        let finished = Arc::new(std::sync::OnceLock::new());
        let start = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..conns {
            let (window, next, dst) = (window.clone(), next.clone(), dst.to_owned());
            senders.push(tokio::spawn(async move {
                let mut c = Conn::open(b).await.map_err(|e| e.to_string())?;
                let filler = vec![0x5au8; r.size - 8];
                loop {
                    let permit = window.acquire().await.map_err(|e| e.to_string())?;
                    let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seq >= r.count {
                        return Ok::<_, String>(());
                    }
                    permit.forget();
                    let mut payload = (seq as u64).to_be_bytes().to_vec();
                    payload.extend_from_slice(&filler);
                    let body = format!(
                        r#"{{"dst":{{"ip":"{dst}"}},"payload":"{}"}}"#,
                        B64.encode(&payload)
                    );
                    loop {
                        let (status, _) = c
                            .call("POST", "/api/v1/messages", body.as_bytes())
                            .await
                            .map_err(|e| e.to_string())?;
                        match status {
                            201 => break,
                            // Outbound store full: try again shortly.
                            503 | 507 => tokio::time::sleep(Duration::from_millis(1)).await,
                            s => return Err(format!("push answered {s}")),
                        }
                    }
                }
            }));
        }
        let mut readers = Vec::new();
        for _ in 0..conns {
            let (window, seen, finished) = (window.clone(), seen.clone(), finished.clone());
            readers.push(tokio::spawn(async move {
                let mut c = Conn::open(a).await.map_err(|e| e.to_string())?;
                let mut idle = Duration::ZERO;
                loop {
                    if seen.lock().await.len() >= r.count {
                        return Ok::<_, String>(());
                    }
                    let (status, body) = c
                        .call("GET", "/api/v1/messages?timeout=1", b"")
                        .await
                        .map_err(|e| e.to_string())?;
                    match status {
                        200 => {}
                        204 => {
                            idle += Duration::from_secs(1);
                            if idle > STALL {
                                return Err("stalled".into());
                            }
                            continue;
                        }
                        s => return Err(format!("pop answered {s}")),
                    }
                    let seq = sequence(&body, r.size)?;
                    idle = Duration::ZERO;
                    let mut seen = seen.lock().await;
                    if !seen.insert(seq) {
                        return Err("a message arrived twice".into());
                    }
                    if seen.len() >= r.count {
                        let _ = finished.set(start.elapsed());
                        window.close();
                    }
                    drop(seen);
                    window.add_permits(1);
                }
            }));
        }
        for h in readers {
            h.await.map_err(|e| e.to_string())??;
        }
        let secs = finished
            .get()
            .copied()
            .unwrap_or_else(|| start.elapsed())
            .as_secs_f64();
        window.close();
        for h in senders {
            match h.await.map_err(|e| e.to_string())? {
                Ok(()) => {}
                // The window closes under senders with nothing left to send.
                Err(e) if e.contains("closed") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(secs)
    }

    /// The sequence number of a popped message (`GET /api/v1/messages` body), whose
    /// payload must be `size` bytes.
    fn sequence(body: &[u8], size: usize) -> Result<u64, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let payload = B64
            .decode(v["payload"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if payload.len() != size {
            return Err(format!("a message of {} bytes", payload.len()));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&payload[..8]);
        Ok(u64::from_be_bytes(seq))
    }

    /// Connections that POST, and connections that drain, in the burst scenario.
    const BURST_PARALLEL: usize = 16;

    /// Runs each burst between a fresh pair of node processes.
    pub(super) async fn bursts(bin: PathBuf, bursts: &[Burst]) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("mycelium-burst-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let result = async {
            for r in bursts {
                let (a, b, a_ip) = pair(&bin, &dir).await?;
                burst(&a, &b, &a_ip, *r).await?;
                for (name, p) in [("A (receiver)", &a), ("B (sender)", &b)] {
                    println!("# {name}: {}", message_defences(p.metrics).await);
                }
                drop((a, b));
            }
            Ok(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// The message-related counters of a node's metrics, on one line.
    async fn message_defences(metrics: SocketAddr) -> String {
        let Ok(mut c) = Conn::open(metrics).await else {
            return "no metrics".into();
        };
        let Ok((200, body)) = c.call("GET", "/metrics", b"").await else {
            return "no metrics".into();
        };
        let text = String::from_utf8_lossy(&body);
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("mycelium_message") {
                if let Some((name, value)) = rest.split_once(' ') {
                    out.push(format!(
                        "message{}={value}",
                        name.trim_end_matches("_total")
                    ));
                }
                continue;
            }
            let Some(rest) = line.strip_prefix("mycelium_defences_total{defence=\"") else {
                continue;
            };
            let Some((name, value)) = rest.split_once("\"} ") else {
                continue;
            };
            if (name.starts_with("message_") || name == "link_queue_full") && value != "0" {
                out.push(format!("{name}={value}"));
            }
        }
        if out.is_empty() {
            "no message defence counted".into()
        } else {
            out.join(" ")
        }
    }

    #[derive(Default)]
    struct Received {
        seen: HashSet<u64>,
        duplicates: usize,
        /// Messages received in each second since the start.
        per_second: Vec<usize>,
        last: Duration,
    }

    /// One burst: `r.count` POSTs at full speed over [`BURST_PARALLEL`]
    /// connections to B, drained at A by as many long polls.
    async fn burst(a: &Proc, b: &Proc, dst: &str, r: Burst) -> Result<(), String> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let first_refusal = Arc::new(std::sync::OnceLock::<String>::new());
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut readers = Vec::new();
        for _ in 0..BURST_PARALLEL {
            let (received, stop, api) = (received.clone(), stop.clone(), a.api);
            readers.push(tokio::spawn(async move {
                let mut c = Conn::open(api).await.map_err(|e| e.to_string())?;
                while !stop.load(Relaxed) {
                    let (status, body) = c
                        .call("GET", "/api/v1/messages?timeout=3", b"")
                        .await
                        .map_err(|e| e.to_string())?;
                    match status {
                        200 => {}
                        204 => continue,
                        s => return Err(format!("pop answered {s}")),
                    }
                    let at = start.elapsed();
                    let seq = sequence(&body, r.size)?;
                    let mut rx = received.lock().await;
                    if !rx.seen.insert(seq) {
                        rx.duplicates += 1;
                    }
                    let second = at.as_secs() as usize;
                    if rx.per_second.len() <= second {
                        rx.per_second.resize(second + 1, 0);
                    }
                    rx.per_second[second] += 1;
                    rx.last = at;
                }
                Ok::<_, String>(())
            }));
        }
        let mut senders = Vec::new();
        for _ in 0..BURST_PARALLEL {
            let (next, accepted, refused, first_refusal) = (
                next.clone(),
                accepted.clone(),
                refused.clone(),
                first_refusal.clone(),
            );
            let (api, dst) = (b.api, dst.to_owned());
            senders.push(tokio::spawn(async move {
                let mut c = Conn::open(api).await.map_err(|e| e.to_string())?;
                let filler = vec![0x5au8; r.size - 8];
                loop {
                    let seq = next.fetch_add(1, Relaxed);
                    if seq >= r.count {
                        return Ok::<_, String>(());
                    }
                    let mut payload = (seq as u64).to_be_bytes().to_vec();
                    payload.extend_from_slice(&filler);
                    let body = format!(
                        r#"{{"dst":{{"ip":"{dst}"}},"payload":"{}"}}"#,
                        B64.encode(&payload)
                    );
                    let (status, answer) = c
                        .call("POST", "/api/v1/messages", body.as_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                    match status {
                        201 => {
                            accepted.fetch_add(1, Relaxed);
                        }
                        503 | 507 => {
                            refused.fetch_add(1, Relaxed);
                            let _ = first_refusal
                                .set(format!("{status} {}", String::from_utf8_lossy(&answer)));
                        }
                        s => return Err(format!("push answered {s}")),
                    }
                }
            }));
        }
        for h in senders {
            h.await.map_err(|e| e.to_string())??;
        }
        let offered = start.elapsed();
        let accepted = accepted.load(Relaxed);
        // Wait for every accepted message, as long as they keep coming.
        let mut progress = (0, Instant::now());
        loop {
            let n = received.lock().await.seen.len();
            if n >= accepted {
                break;
            }
            if n != progress.0 {
                progress = (n, Instant::now());
            } else if progress.1.elapsed() > STALL {
                break;
            }
            if readers.iter().any(|h| h.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Relaxed);
        // A reader that failed says why; the others are stopped mid-poll.
        for h in readers {
            if h.is_finished() {
                h.await.map_err(|e| e.to_string())??;
            } else {
                h.abort();
            }
        }
        // Nothing more may come: a copy of a delivered message would show here.
        let mut c = Conn::open(a.api).await.map_err(|e| e.to_string())?;
        let (status, _) = c
            .call("GET", "/api/v1/messages?timeout=1", b"")
            .await
            .map_err(|e| e.to_string())?;
        let rx = received.lock().await;
        let extra = usize::from(status == 200);
        let lost = accepted.saturating_sub(rx.seen.len());
        println!(
            "burst {} x {} B: offered in {:.2} s; accepted {accepted}, refused {}{}",
            r.count,
            r.size,
            offered.as_secs_f64(),
            refused.load(Relaxed),
            first_refusal
                .get()
                .map(|b| format!(" (first refusal: {b})"))
                .unwrap_or_default(),
        );
        println!(
            "  received {} in {:.2} s ({:.0} msg/s); lost {lost}, duplicated {}",
            rx.seen.len(),
            rx.last.as_secs_f64(),
            rx.seen.len() as f64 / rx.last.as_secs_f64().max(1e-3),
            rx.duplicates + extra,
        );
        let rates = &rx.per_second;
        println!(
            "  received per second: {}",
            rates
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        // The last second is partial: leave it out unless it is the only one.
        let full = if rates.len() > 1 {
            &rates[..rates.len() - 1]
        } else {
            &rates[..]
        };
        let mut sorted = full.to_vec();
        sorted.sort_unstable();
        if let (Some(&min), Some(&median)) = (sorted.first(), sorted.get(sorted.len() / 2)) {
            println!(
                "  full seconds: median {median}/s, minimum {min}/s ({:.2} of the median)",
                min as f64 / median.max(1) as f64
            );
        }
        if lost > 0 || rx.duplicates + extra > 0 {
            return Err(format!("{lost} lost, {} duplicated", rx.duplicates + extra));
        }
        Ok(())
    }
}
