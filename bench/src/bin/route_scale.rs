//! Routing-table scale: how a real node process copes with a large table.
//!
//! `cargo run --release -p mycelium-bench --bin route_scale -- [NxK ...] [--node-bin PATH]
//! [--timeout SECS] [--node-arg ARG ...] [--leaf ROUTES | --compare-leaf ROUTES] [--keep]`
//!
//! Per case (default `100000x4 20000x20`), with a fresh node each time:
//!
//! 1. N announcements are made before any timing: fresh x25519 keys (on every core),
//!    the subnet each key owns (`PublicKey::subnet`) and a router id of that key
//!    (`RouterId::new(key, random)`); for each of the K links the N Update packets
//!    are encoded in advance (seqno 0, interval 300 s, metric `1 + link % 4`).
//! 2. `mycelium --no-tun --disable-peer-discovery --disable-quic` (the release binary
//!    next to this one, or `--node-bin`) is started on free loopback ports, with its
//!    metrics listener on. The injector opens K TCP links to it (plain TCP has no
//!    handshake: both ends just send packets) and answers every Hello with an IHU
//!    from the moment each link is up: the node probes every 250 ms and routes
//!    around a link silent for 1.25 s. Each link has a reader task and a writer
//!    task; the writer sends IHUs between chunks of the flood.
//! 3. Once the node counts K neighbours, its RSS (`VmRSS`) and CPU time
//!    (`utime + stime`) are read, and every link sends its N updates at full speed.
//!    The node's `/metrics` are polled every 50 ms (`mycelium_routes_selected`,
//!    `mycelium_routes`, answered by the core from its counters) until all N
//!    subnets are selected (`select_s`) and all N x K route entries exist
//!    (`all_s`); RSS and CPU time are read again then.
//! 4. Check: the lengths of `GET /api/v1/admin/routes/selected` and `.../fallback`
//!    must add up to N x K.
//! 5. Full table: one more link is opened and sends a wildcard route request; the
//!    time until it has received an Update for each of the N subnets is
//!    `full_table_s`, or `closed@X` if the node closed the link after X of them,
//!    or `timeout@X`.
//!
//! Leaf mode (`--leaf ROUTES`): the node is started with `--leaf --leaf-routes
//! ROUTES` too. A leaf keeps routes only for the subnets it uses, so it stores none
//! of the flood: it drops every pushed update for a subnet it neither holds nor
//! looks for. Step 3 then waits until `mycelium_leaf_updates_ignored_total` has
//! grown by N x K, i.e. the node has read and dropped the whole flood (`all_s`;
//! `select_s` is `-`). The check (4) is that the API lists hold at most ROUTES
//! entries and none of the flooded subnets, and that `mycelium_leaf_cache_subnets`
//! is at most ROUTES; the full-table link (5) must get the node's own route and
//! nothing else (`own-only`; `leaked@X` if X other subnets came). The goal
//! for a leaf is an RSS growth under 2 MiB while its neighbours push their full
//! tables: a leaf case whose settled growth is 2 MiB or more fails.
//! `--compare-leaf ROUTES` runs every case twice on the same announcements, a full
//! node and then a leaf, and ends with a `# compare` line per case: both RSS
//! growths and their ratio.
//!
//! Printed: one tab-separated row per case (and mode), and a `#` line after it
//! with what else was seen (node's own log warnings, links it closed, rate
//! limiting, updates it sent back on the flooding links, when the injector
//! finished writing). The last columns are the mode (`full` or `leaf:ROUTES`) and
//! the node's whole RSS growth in MiB, right after the flood and settled. The exit
//! status is 1 if a check failed, a case did not converge within the timeout
//! (default 120 s), the full table did not arrive (a leaf: sent anything but its
//! own route) or a leaf grew by 2 MiB or more; 2 for bad arguments.
//!
//! The node reads at most 20,000 control TLVs a second from one link after a
//! burst of 200,000 (`--link-control-rate`); the `throttled` note counts how often
//! it held a link back. `--node-arg` passes an option to the node (repeatable).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use mycelium_bench::{http, proc};
use mycelium_proto::wire::tlv::{Ihu, RouteRequest, Update};
use mycelium_proto::wire::{self, control, FrameError, Interval, Metric, Packet, SeqNo, Tlv};
use mycelium_proto::{RouterId, SecretKey, Subnet};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const DEFAULT_CASES: &[Case] = &[Case { n: 100_000, k: 4 }, Case { n: 20_000, k: 20 }];
/// Update packets per chunk the writer sends; IHUs go out between chunks.
const PACKETS_PER_CHUNK: usize = 512;
/// The interval the injected routes advertise.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(50);
/// How long after convergence the settled RSS is read.
const SETTLE: Duration = Duration::from_secs(3);
const READ_BUF: usize = 256 * 1024;
const MIB: f64 = 1024.0 * 1024.0;
/// The goal for a leaf: its RSS grows by less than this while its
/// neighbours push their full tables (settled figure).
const LEAF_GROWTH_GOAL: i64 = 2 << 20;
/// How long the full-table link of a leaf keeps listening after the node's own
/// route came, for anything the leaf should not have sent.
const LEAF_LISTEN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    k: usize,
}

/// How the node of a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A full node: it keeps every route of every neighbour.
    Full,
    /// `--leaf --leaf-routes ROUTES`: it keeps routes only for the subnets it uses.
    Leaf { routes: usize },
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Full => f.write_str("full"),
            Mode::Leaf { routes } => write!(f, "leaf:{routes}"),
        }
    }
}

struct Opts {
    cases: Vec<Case>,
    /// The modes every case runs in, in order: one, or a full node then a leaf
    /// (`--compare-leaf`).
    modes: Vec<Mode>,
    node_bin: PathBuf,
    timeout: Duration,
    node_args: Vec<String>,
    keep: bool,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: route_scale [NxK ...] [--node-bin PATH] [--timeout SECS] [--node-arg ARG ...] \
         [--leaf ROUTES | --compare-leaf ROUTES] [--keep]"
    );
    ExitCode::from(2)
}

fn parse_case(a: &str) -> Option<Case> {
    let (n, k) = a.split_once('x')?;
    let case = Case {
        n: n.replace('_', "").parse().ok()?,
        k: k.parse().ok()?,
    };
    (case.n > 0 && case.k > 0).then_some(case)
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut opts = Opts {
        cases: Vec::new(),
        node_bin: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.join("mycelium")))
            .unwrap_or_else(|| PathBuf::from("target/release/mycelium")),
        timeout: Duration::from_secs(120),
        node_args: Vec::new(),
        keep: false,
        modes: vec![Mode::Full],
    };
    let mut leaf = None;
    let mut compare = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--node-bin" => opts.node_bin = args.next().ok_or("--node-bin needs a path")?.into(),
            "--timeout" => {
                let s: f64 = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or("--timeout needs seconds")?;
                opts.timeout = Duration::from_secs_f64(s);
            }
            "--node-arg" => opts
                .node_args
                .push(args.next().ok_or("--node-arg needs a value")?),
            "--keep" => opts.keep = true,
            "--leaf" | "--compare-leaf" => {
                if leaf.is_some() {
                    return Err("give one of --leaf and --compare-leaf, once".into());
                }
                let routes: usize = args
                    .next()
                    .and_then(|s| s.replace('_', "").parse().ok())
                    .filter(|&r| r > 0)
                    .ok_or_else(|| format!("{a} needs a number of routes"))?;
                leaf = Some(Mode::Leaf { routes });
                compare = a == "--compare-leaf";
            }
            _ => opts
                .cases
                .push(parse_case(&a).ok_or_else(|| format!("bad case {a:?}, want NxK"))?),
        }
    }
    if opts.cases.is_empty() {
        opts.cases = DEFAULT_CASES.to_vec();
    }
    if let Some(leaf) = leaf {
        opts.modes = if compare {
            vec![Mode::Full, leaf]
        } else {
            vec![leaf]
        };
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("route_scale: {e}");
            return usage();
        }
    };
    if !opts.node_bin.is_file() {
        eprintln!(
            "route_scale: no node binary at {} (cargo build --release -p mycelium-cli, or --node-bin)",
            opts.node_bin.display()
        );
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = std::env::temp_dir().join(format!("route-scale-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("route_scale: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    println!("# node: {}", opts.node_bin.display());
    println!(
        "N\tK\tentries\tselect_s\tall_s\trss_before_mib\trss_after_mib\tbytes_per_entry\tsettled_B_per_entry\tcpu_s\tupdates_per_s\tfull_table_s\tcheck\tmode\tgrowth_mib\tsettled_growth_mib"
    );
    let mut failed = false;
    let mut comparisons = Vec::new();
    for (i, &case) in opts.cases.iter().enumerate() {
        let Case { n, k } = case;
        let t = Instant::now();
        // One set of announcements for every mode, so a comparison floods the
        // same subnets.
        let ann = announcements(n);
        let keygen = t.elapsed();
        eprintln!(
            "route_scale: {n}x{k}: {n} keys in {:.1} s",
            keygen.as_secs_f64()
        );
        let mut growths = Vec::new();
        for &mode in &opts.modes {
            let case_dir = dir.join(format!("{i}-{n}x{k}-{}", mode.to_string().replace(':', "")));
            let _ = std::fs::create_dir_all(&case_dir);
            eprintln!("route_scale: {n}x{k} {mode}: starting the node");
            match run_case(&rt, &opts, case, mode, &ann, keygen, &case_dir) {
                Ok(out) => {
                    println!("{}", out.row);
                    println!("# {}", out.notes);
                    failed |= !out.ok;
                    growths.push((mode, out.growth));
                }
                Err(e) => {
                    println!(
                        "{n}\t{k}\t{}\t-\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED\t{mode}\t-\t-",
                        n * k
                    );
                    println!("# {n}x{k} {mode}: {e} (node log: {})", case_dir.display());
                    failed = true;
                    growths.push((mode, Growth::default()));
                }
            }
        }
        if let [(Mode::Full, full), (Mode::Leaf { routes }, leaf)] = growths[..] {
            comparisons.push(comparison(case, full, routes, leaf));
        }
    }
    for line in comparisons {
        println!("{line}");
    }
    if opts.keep || failed {
        eprintln!("route_scale: node logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// How much the node's RSS grew over a case, in bytes: at the end of the flood
/// and once settled. `None` where it could not be read.
#[derive(Debug, Default, Clone, Copy)]
struct Growth {
    after: Option<i64>,
    settled: Option<i64>,
}

fn mib_signed(b: Option<i64>) -> String {
    b.map_or("-".to_owned(), |b| format!("{:.2}", b as f64 / MIB))
}

/// The `# compare` line of a case run as a full node and as a leaf: both RSS
/// growths, how many times more the full node grew, and whether the leaf met
/// the goal.
fn comparison(case: Case, full: Growth, routes: usize, leaf: Growth) -> String {
    let ratio = match (full.settled, leaf.settled) {
        (Some(f), Some(l)) if l > 0 => format!("{:.0}x", f as f64 / l as f64),
        (Some(_), Some(_)) => "n/a (the leaf's RSS did not grow)".to_owned(),
        _ => "-".to_owned(),
    };
    let goal = match leaf.settled {
        Some(l) if l < LEAF_GROWTH_GOAL => "met",
        Some(_) => "MISSED",
        None => "unknown",
    };
    format!(
        "# compare {}x{}: RSS growth while {} neighbours pushed {} routes each: full node {} MiB \
         at the end, {} MiB settled; leaf ({routes} routes) {} MiB at the end, {} MiB settled; \
         settled full/leaf {ratio}; leaf goal (settled < {} MiB): {goal}",
        case.n,
        case.k,
        case.k,
        case.n,
        mib_signed(full.after),
        mib_signed(full.settled),
        mib_signed(leaf.after),
        mib_signed(leaf.settled),
        LEAF_GROWTH_GOAL >> 20,
    )
}

/// N announcements with distinct subnets: a fresh key each, its subnet, and a
/// router id of that key. Made on every core (x25519 is the cost).
fn announcements(n: usize) -> Vec<(Subnet, RouterId)> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let make = |count: usize| -> Vec<(Subnet, RouterId)> {
        let mut rng = rand::thread_rng();
        (0..count)
            .map(|_| {
                let key = SecretKey::generate(&mut rng).public_key();
                (key.subnet(), RouterId::new(key, rng.gen()))
            })
            .collect()
    };
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let missing = n - out.len();
        let per = missing.div_ceil(threads);
        let batches: Vec<Vec<(Subnet, RouterId)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let count = per.min(missing.saturating_sub(t * per));
                    s.spawn(move || make(count))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("key generation thread"))
                .collect()
        });
        // Two keys owning one /64 is all but impossible; make more if it happens.
        out.extend(
            batches
                .into_iter()
                .flatten()
                .filter(|(s, _)| seen.insert(*s)),
        );
    }
    out
}

/// The N Update packets one link sends, in chunks the writer sends whole.
fn encode_flood(ann: &[(Subnet, RouterId)], metric: u16) -> Vec<Bytes> {
    ann.chunks(PACKETS_PER_CHUNK)
        .map(|chunk| {
            let mut b = BytesMut::with_capacity(chunk.len() * 72);
            for (subnet, router_id) in chunk {
                let u = Update {
                    interval: Interval::from_duration(ANNOUNCE_INTERVAL),
                    seqno: SeqNo(0),
                    metric: Metric(metric),
                    subnet: *subnet,
                    router_id: *router_id,
                };
                control::encode(&Tlv::Update(u), &mut b);
            }
            b.freeze()
        })
        .collect()
}

/// The node process, killed on drop.
struct Node {
    child: Child,
    pid: u32,
    tcp: u16,
    api: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start_node(opts: &Opts, mode: Mode, dir: &Path) -> Result<Node, String> {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (tcp, api, rpc, metrics) = (
        free_port(),
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    );
    let log = dir.join("node.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(&opts.node_bin);
    command.args(["--no-tun", "--disable-peer-discovery", "--disable-quic"]);
    if let Mode::Leaf { routes } = mode {
        command.args(["--leaf", "--leaf-routes", &routes.to_string()]);
    }
    let child = command
        .arg("--key-file")
        .arg(dir.join("node.key"))
        .args(["--tcp-listen-port", &tcp.to_string()])
        .args(["--api-addr", &api.to_string()])
        .args(["--jsonrpc-addr", &rpc.to_string()])
        .args(["--metrics-api-address", &metrics.to_string()])
        .args(&opts.node_args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", opts.node_bin.display()))?;
    let mut node = Node {
        pid: child.id(),
        child,
        tcp,
        api,
        metrics,
        log,
    };
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            return Err(format!("node exited at start-up ({status})"));
        }
        let metrics_up = scrape(&node).is_some();
        let api_up = matches!(
            http::get(node.api, "/api/v1/admin", Duration::from_secs(2)),
            Ok((200, _))
        );
        if metrics_up && api_up {
            return Ok(node);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("node's API or metrics not up after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node's `/metrics` text.
fn scrape(node: &Node) -> Option<String> {
    match http::get(node.metrics, "/metrics", Duration::from_secs(10)) {
        Ok((200, body)) => String::from_utf8(body).ok(),
        _ => None,
    }
}

fn gauge(text: &str, name: &str) -> u64 {
    http::metric(text, name, None).unwrap_or(0.0) as u64
}

/// What one link's tasks saw.
#[derive(Default)]
struct LinkStats {
    hellos: AtomicU64,
    updates: AtomicU64,
    route_requests: AtomicU64,
    /// Distinct wanted subnets received (the full-table link).
    wanted_seen: AtomicUsize,
    /// Updates for the node's own subnet received, and when the first came (the
    /// full-table link of a leaf).
    own_updates: AtomicU64,
    own_first: Mutex<Option<Instant>>,
    /// Distinct subnets received that are neither wanted nor the node's own (the
    /// full-table link of a leaf).
    others_seen: AtomicUsize,
    /// When the last wanted subnet arrived.
    complete: Mutex<Option<Instant>>,
    /// When the writer had written its flood.
    flood_written: Mutex<Option<Instant>>,
    /// When and why the stream ended.
    closed: Mutex<Option<(Instant, String)>>,
}

enum Out {
    Ihu,
    Tlv(Tlv),
    Flood(Vec<Bytes>),
}

struct Link {
    tx: mpsc::UnboundedSender<Out>,
    stats: Arc<LinkStats>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the full-table link looks for in the updates it receives.
#[derive(Clone)]
struct Watch {
    /// The flooded subnets.
    wanted: Arc<HashSet<Subnet>>,
    /// The node's own subnet, counted apart (leaf mode: the one route expected).
    own: Option<Subnet>,
}

fn connect(rt: &Runtime, port: u16, watch: Option<Watch>) -> Result<Link, String> {
    let stream = rt
        .block_on(TcpStream::connect(("127.0.0.1", port)))
        .map_err(|e| format!("connecting to the node: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (r, w) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(LinkStats::default());
    let reader = rt.spawn(read_loop(r, tx.clone(), stats.clone(), watch));
    let writer = rt.spawn(write_loop(w, rx, stats.clone()));
    Ok(Link {
        tx,
        stats,
        tasks: [reader, writer],
    })
}

async fn read_loop(
    mut r: OwnedReadHalf,
    tx: mpsc::UnboundedSender<Out>,
    stats: Arc<LinkStats>,
    watch: Option<Watch>,
) {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut seen = HashSet::new();
    let mut others = HashSet::new();
    let reason = loop {
        let mut used = 0;
        let error = loop {
            match wire::decode(&buf[used..]) {
                Ok(d) => {
                    used += d.len;
                    match d.packet {
                        Packet::Control(Tlv::Hello(_)) => {
                            stats.hellos.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send(Out::Ihu);
                        }
                        Packet::Control(Tlv::Update(u)) => {
                            stats.updates.fetch_add(1, Ordering::Relaxed);
                            let Some(watch) = &watch else { continue };
                            if u.metric.is_infinite() {
                                continue;
                            }
                            if watch.own == Some(u.subnet) {
                                stats.own_updates.fetch_add(1, Ordering::Relaxed);
                                lock(&stats.own_first).get_or_insert_with(Instant::now);
                            } else if watch.wanted.contains(&u.subnet) {
                                if seen.insert(u.subnet) {
                                    stats.wanted_seen.store(seen.len(), Ordering::Relaxed);
                                    if seen.len() == watch.wanted.len() {
                                        *lock(&stats.complete) = Some(Instant::now());
                                    }
                                }
                            } else if watch.own.is_some() && others.insert(u.subnet) {
                                stats.others_seen.store(others.len(), Ordering::Relaxed);
                            }
                        }
                        Packet::Control(Tlv::RouteRequest(_)) => {
                            stats.route_requests.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Err(FrameError::Incomplete { .. }) => break None,
                Err(e) => break Some(format!("framing error: {e}")),
            }
        };
        buf.advance(used);
        if let Some(e) = error {
            break e;
        }
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => break "end of stream".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    *lock(&stats.closed) = Some((Instant::now(), reason));
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    stats: Arc<LinkStats>,
) {
    let mut ihu = BytesMut::new();
    control::encode(
        &Tlv::Ihu(Ihu {
            rx_cost: Metric(0),
            interval: Interval::from_duration(Duration::from_secs(60)),
            address: None,
        }),
        &mut ihu,
    );
    let ihu = ihu.freeze();
    let tlv = |t: &Tlv| {
        let mut b = BytesMut::new();
        control::encode(t, &mut b);
        b.freeze()
    };
    while let Some(out) = rx.recv().await {
        let ok = match out {
            Out::Ihu => w.write_all(&ihu).await.is_ok(),
            Out::Tlv(t) => w.write_all(&tlv(&t)).await.is_ok(),
            Out::Flood(chunks) => {
                let mut ok = true;
                'flood: for chunk in &chunks {
                    if w.write_all(chunk).await.is_err() {
                        ok = false;
                        break;
                    }
                    // Chunks hold whole packets: answer the Hellos that came
                    // meanwhile before the next one.
                    while let Ok(o) = rx.try_recv() {
                        let b = match o {
                            Out::Ihu => ihu.clone(),
                            Out::Tlv(t) => tlv(&t),
                            Out::Flood(_) => continue, // one flood per link
                        };
                        if w.write_all(&b).await.is_err() {
                            ok = false;
                            break 'flood;
                        }
                    }
                }
                *lock(&stats.flood_written) = Some(Instant::now());
                ok
            }
        };
        if !ok {
            break;
        }
    }
}

struct CaseOut {
    row: String,
    notes: String,
    ok: bool,
    growth: Growth,
}

/// The node's resident memory by kind (`RssAnon`, `RssFile` of
/// `/proc/<pid>/status`), in bytes: the heap and stacks apart from the pages of
/// the binary that are read in as code first runs, which a growth figure would
/// otherwise mix in.
#[derive(Debug, Clone, Copy)]
struct RssKinds {
    anon: i64,
    file: i64,
}

impl RssKinds {
    fn read(pid: u32) -> Option<Self> {
        let kind = |field| proc::status_bytes(pid, field).and_then(|b| i64::try_from(b).ok());
        Some(Self {
            anon: kind("RssAnon")?,
            file: kind("RssFile")?,
        })
    }
}

/// The counter a leaf's progress is read from: updates it dropped unseen.
const LEAF_IGNORED: &str = "mycelium_leaf_updates_ignored_total";

/// The node's own subnet, from `GET /api/v1/admin`: the one route a leaf sends.
fn own_subnet(node: &Node) -> Result<Subnet, String> {
    let path = "/api/v1/admin";
    let body = match http::get(node.api, path, Duration::from_secs(10)) {
        Ok((200, body)) => body,
        Ok((status, _)) => return Err(format!("{path}: HTTP {status}")),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| Subnet::from_str(v.get("nodeSubnet")?.as_str()?).ok())
        .ok_or_else(|| format!("{path}: no nodeSubnet"))
}

/// The entries of an API route list (`/api/v1/admin/routes/selected`, ...).
fn api_routes(api: SocketAddr, path: &str) -> Result<Vec<serde_json::Value>, String> {
    match http::get(api, path, Duration::from_secs(120)) {
        Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Array(list)) => Ok(list),
            _ => Err(format!("{path}: not a JSON list")),
        },
        Ok((status, _)) => Err(format!("{path}: HTTP {status}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// One case in one mode, on the announcements `ann` (made in `keygen`).
fn run_case(
    rt: &Runtime,
    opts: &Opts,
    case: Case,
    mode: Mode,
    ann: &[(Subnet, RouterId)],
    keygen: Duration,
    dir: &Path,
) -> Result<CaseOut, String> {
    let Case { n, k } = case;
    let entries = n * k;
    let leaf_routes = match mode {
        Mode::Full => None,
        Mode::Leaf { routes } => Some(routes),
    };
    let floods: Vec<Vec<Bytes>> = (0..k)
        .map(|l| encode_flood(ann, 1 + (l % 4) as u16))
        .collect();
    let wanted: Arc<HashSet<Subnet>> = Arc::new(ann.iter().map(|(s, _)| *s).collect());

    let mut node = start_node(opts, mode, dir)?;
    let own = match leaf_routes {
        Some(_) => Some(own_subnet(&node)?),
        None => None,
    };
    let links: Vec<Link> = (0..k)
        .map(|_| connect(rt, node.tcp, None))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let base = loop {
        let text = scrape(&node).unwrap_or_default();
        if gauge(&text, "mycelium_neighbours") >= k as u64 {
            break text;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("the node did not count {k} neighbours within 30 s"));
        }
        std::thread::sleep(POLL);
    };
    // A few probes answered before the flood starts.
    std::thread::sleep(Duration::from_secs(1));
    let base = scrape(&node).unwrap_or(base);
    let (base_selected, base_routes) = (
        gauge(&base, "mycelium_routes_selected"),
        gauge(&base, "mycelium_routes"),
    );
    if leaf_routes.is_some() && http::metric(&base, LEAF_IGNORED, None).is_none() {
        return Err(format!(
            "the node has no {LEAF_IGNORED}: not in leaf mode (a build without it?)"
        ));
    }
    let base_ignored = gauge(&base, LEAF_IGNORED);
    let rss_before = proc::status_bytes(node.pid, "VmRSS").ok_or("no VmRSS for the node")?;
    let kinds_before = RssKinds::read(node.pid);
    let cpu_before = proc::cpu_seconds(&node.pid.to_string()).ok_or("no CPU time")?;
    let own_cpu_before = proc::cpu_seconds("self").unwrap_or(0.0);

    // Other processes share the cores: say how busy the machine was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let t0 = Instant::now();
    for (link, flood) in links.iter().zip(floods) {
        let _ = link.tx.send(Out::Flood(flood));
    }
    let mut select_t = None;
    let mut all_t = None;
    let mut failure = None;
    let mut last_progress = Instant::now();
    let (mut selected, mut routes, mut ignored) = (0, 0, 0);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            failure = Some(format!("node exited ({status})"));
            break;
        }
        if let Some((i, (at, why))) = links
            .iter()
            .enumerate()
            .find_map(|(i, l)| lock(&l.stats.closed).clone().map(|c| (i, c)))
        {
            failure = Some(format!(
                "flood link {i} closed at {} s: {why}",
                secs(at - t0)
            ));
            break;
        }
        if let Some(text) = scrape(&node) {
            selected = gauge(&text, "mycelium_routes_selected").saturating_sub(base_selected);
            routes = gauge(&text, "mycelium_routes").saturating_sub(base_routes);
            let now = t0.elapsed();
            if leaf_routes.is_some() {
                // A leaf stores none of the flood: it is done once it has read
                // and dropped every update.
                ignored = gauge(&text, LEAF_IGNORED).saturating_sub(base_ignored);
                if ignored >= entries as u64 {
                    all_t = Some(now);
                    break;
                }
            } else {
                if select_t.is_none() && selected >= n as u64 {
                    select_t = Some(now);
                }
                if select_t.is_some() && routes >= entries as u64 {
                    all_t = Some(now);
                    break;
                }
            }
        }
        if t0.elapsed() > opts.timeout {
            failure = Some(if leaf_routes.is_some() {
                format!(
                    "not done after {} s: {ignored} of {entries} updates dropped, \
                     {selected} selected, {routes} entries",
                    secs(opts.timeout)
                )
            } else {
                format!(
                    "not converged after {} s: {selected} of {n} selected, {routes} of {entries} entries",
                    secs(opts.timeout)
                )
            });
            break;
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "route_scale: {n}x{k} {mode}: {:.0} s: {selected} selected, {routes} entries{}",
                t0.elapsed().as_secs_f64(),
                if leaf_routes.is_some() {
                    format!(", {ignored} of {entries} updates dropped")
                } else {
                    String::new()
                }
            );
            last_progress = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    let cpu = proc::cpu_seconds(&node.pid.to_string()).map(|c| c - cpu_before);
    let rss_after = proc::status_bytes(node.pid, "VmRSS");
    // What stays once the queues of the flood have drained and the allocator has
    // given back what they held: the table's own cost.
    std::thread::sleep(SETTLE);
    let rss_settled = proc::status_bytes(node.pid, "VmRSS");
    let kinds_settled = RssKinds::read(node.pid);
    let own_cpu = proc::cpu_seconds("self").unwrap_or(0.0) - own_cpu_before;
    let written = links
        .iter()
        .filter_map(|l| *lock(&l.stats.flood_written))
        .max()
        .map(|at| at - t0);

    // The check, from the API's full lists (and, for a leaf, its cache gauges).
    let (api_selected, api_fallback) = if node.alive() {
        (
            api_routes(node.api, "/api/v1/admin/routes/selected"),
            api_routes(node.api, "/api/v1/admin/routes/fallback"),
        )
    } else {
        (Err("node gone".into()), Err("node gone".into()))
    };
    let check_text = scrape(&node).unwrap_or_default();
    let cache_subnets = http::metric(&check_text, "mycelium_leaf_cache_subnets", None);
    let cache_capacity = http::metric(&check_text, "mycelium_leaf_cache_capacity", None);
    // Listed routes to a flooded subnet: a leaf should hold none.
    let flooded_listed = [&api_selected, &api_fallback]
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|r| Subnet::from_str(r.get("subnet")?.as_str()?).ok())
        .filter(|s| wanted.contains(s))
        .count();
    let check_ok = match (&api_selected, &api_fallback, leaf_routes) {
        (Ok(s), Ok(f), None) => s.len() + f.len() == entries + base_routes as usize,
        (Ok(s), Ok(f), Some(cap)) => {
            let cap_f = cap as f64;
            s.len() + f.len() <= cap
                && flooded_listed == 0
                && cache_subnets.is_some_and(|c| c <= cap_f)
                && cache_capacity == Some(cap_f)
        }
        _ => false,
    };

    // The full table, to one more link; a leaf sends its own route only.
    let (full_table, full_note, full_ok) = match (failure.is_none() && node.alive(), own) {
        (false, _) => ("-".to_owned(), "full table: not tried".to_owned(), false),
        (true, Some(own)) => leaf_full_table(rt, &node, wanted.clone(), own, opts.timeout),
        (true, None) => {
            let (column, note) = full_table(rt, &node, wanted.clone(), opts.timeout);
            // A full table that did not arrive fails the case too.
            let ok = column.parse::<f64>().is_ok();
            (column, note, ok)
        }
    };

    let text = scrape(&node).unwrap_or_default();
    let counter = |name: &str| http::metric(&text, name, None).unwrap_or(-1.0) as i64;
    let defence = |d: &str| {
        http::metric(
            &text,
            "mycelium_defences_total",
            Some(&format!("defence=\"{d}\"")),
        )
        .unwrap_or(-1.0) as i64
    };
    let peak = proc::status_bytes(node.pid, "VmHWM");
    let rss_end = proc::status_bytes(node.pid, "VmRSS");
    let node_log = node.log.clone();
    drop(node);

    let fmt_opt = |d: Option<Duration>| d.map_or("-".to_owned(), secs);
    let mib = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / MIB));
    let growth = |after: Option<u64>| {
        after.map_or("-".to_owned(), |a| {
            format!("{:.0}", (a as f64 - rss_before as f64) / entries as f64)
        })
    };
    let per_entry = growth(rss_after);
    let settled_per_entry = growth(rss_settled);
    let whole_growth = Growth {
        after: rss_after.map(|a| a as i64 - rss_before as i64),
        settled: rss_settled.map(|s| s as i64 - rss_before as i64),
    };
    let rate = all_t.map_or("-".to_owned(), |t| {
        format!("{:.0}", entries as f64 / t.as_secs_f64())
    });
    // The goal, for a leaf only.
    let goal_met = whole_growth.settled.is_some_and(|g| g < LEAF_GROWTH_GOAL);
    let ok = check_ok && failure.is_none() && full_ok && (leaf_routes.is_none() || goal_met);
    let row = format!(
        "{n}\t{k}\t{entries}\t{}\t{}\t{}\t{}\t{per_entry}\t{settled_per_entry}\t{}\t{rate}\t{full_table}\t{}\t{mode}\t{}\t{}",
        fmt_opt(select_t),
        fmt_opt(all_t),
        mib(Some(rss_before)),
        mib(rss_after),
        cpu.map_or("-".to_owned(), |c| format!("{c:.2}")),
        if check_ok { "ok" } else { "FAILED" },
        mib_signed(whole_growth.after),
        mib_signed(whole_growth.settled),
    );
    let log = std::fs::read_to_string(&node_log).unwrap_or_default();
    let lines = |pat: &str| log.lines().filter(|l| l.contains(pat)).count();
    let sum = |f: fn(&LinkStats) -> u64| links.iter().map(|l| f(&l.stats)).sum::<u64>();
    let mut notes = match leaf_routes {
        None => format!("{n}x{k}: load average {load} at the start;"),
        Some(cap) => format!("{n}x{k} (leaf, {cap} routes): load average {load} at the start;"),
    };
    if let Some(f) = &failure {
        let _ = write!(notes, " FAILED: {f};");
    }
    if let (Some(cap), Some(own)) = (leaf_routes, own) {
        let _ = write!(
            notes,
            " leaf: own subnet {own}; RSS growth {} MiB at the end, {} MiB settled, goal (< {} MiB \
             settled) {}; dropped {ignored} of {entries} updates; cache {} of {} subnets (want <= {cap}), \
             hits={} misses={} evictions={}; routes_selected={selected} routes={routes}; \
             flooded subnets in the API lists: {flooded_listed};",
            mib_signed(whole_growth.after),
            mib_signed(whole_growth.settled),
            LEAF_GROWTH_GOAL >> 20,
            if goal_met { "met" } else { "MISSED" },
            cache_subnets.map_or("-".to_owned(), |c| format!("{c}")),
            cache_capacity.map_or("-".to_owned(), |c| format!("{c}")),
            counter("mycelium_leaf_cache_hits_total"),
            counter("mycelium_leaf_cache_misses_total"),
            counter("mycelium_leaf_cache_evictions_total"),
        );
    }
    let _ = write!(
        notes,
        " api selected={} fallback={}; {full_note}; injector wrote its floods in {} s, used {own_cpu:.1} CPU s, \
         got back {} updates, {} hellos, {} route requests; node peak RSS {} MiB, {} MiB at the end; \
         throttled={} update_over_limit={} update_denied={} peers_died={} links_down={}; \
         node log: {} 'not draining control packets', {} 'went silent', {} 'heard again', {} other WARN/ERROR lines; \
         keys made in {:.1} s",
        api_selected.map_or_else(|e| e, |v| v.len().to_string()),
        api_fallback.map_or_else(|e| e, |v| v.len().to_string()),
        fmt_opt(written),
        sum(|s| s.updates.load(Ordering::Relaxed)),
        sum(|s| s.hellos.load(Ordering::Relaxed)),
        sum(|s| s.route_requests.load(Ordering::Relaxed)),
        mib(peak),
        mib(rss_end),
        defence("control_rate_throttled"),
        defence("update_over_limit"),
        counter("mycelium_router_update_denied_total"),
        counter("mycelium_router_peer_died_total"),
        counter("mycelium_router_peer_removed_total"),
        lines("not draining control packets"),
        lines("went silent"),
        lines("heard again"),
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| !l.contains("no key file found"))
            .count(),
        keygen.as_secs_f64(),
    );
    if let (Some(before), Some(settled)) = (kinds_before, kinds_settled) {
        let _ = write!(
            notes,
            "; settled RSS growth by kind: anonymous {} MiB, file-backed {} MiB (the \
             binary's pages the flood first ran)",
            mib_signed(Some(settled.anon - before.anon)),
            mib_signed(Some(settled.file - before.file)),
        );
    }
    Ok(CaseOut {
        row,
        notes,
        ok,
        growth: whole_growth,
    })
}

/// Opens one more link, asks for the whole table, and says how long until all
/// wanted subnets came, or what happened instead (the column, and a note).
fn full_table(
    rt: &Runtime,
    node: &Node,
    wanted: Arc<HashSet<Subnet>>,
    timeout: Duration,
) -> (String, String) {
    let n = wanted.len();
    let t1 = Instant::now();
    let watch = Watch { wanted, own: None };
    let link = match connect(rt, node.tcp, Some(watch)) {
        Ok(l) => l,
        Err(e) => return ("error".into(), format!("full table: {e}")),
    };
    let _ = link.tx.send(Out::Tlv(Tlv::RouteRequest(RouteRequest {
        generation: 0,
        prefix: None,
    })));
    loop {
        let stats = &link.stats;
        let updates = stats.updates.load(Ordering::Relaxed);
        if let Some(at) = *lock(&stats.complete) {
            return (
                secs(at - t1),
                format!("full table: {updates} updates in {} s", secs(at - t1)),
            );
        }
        let seen = stats.wanted_seen.load(Ordering::Relaxed);
        if let Some((at, why)) = lock(&stats.closed).clone() {
            return (
                format!("closed@{seen}"),
                format!(
                    "full table: the link ended ({why}) after {} s, with {seen} of {n} subnets \
                     in {updates} updates",
                    secs(at - t1)
                ),
            );
        }
        if t1.elapsed() > timeout {
            return (
                format!("timeout@{seen}"),
                format!(
                    "full table: {seen} of {n} subnets in {updates} updates after {} s",
                    secs(timeout)
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Leaf mode: opens one more link, asks for the whole table, and listens until
/// [`LEAF_LISTEN`] after the node's own route came. A leaf answers with its own
/// route only: the column is `own-only` then, `leaked@X` if X other subnets came,
/// `closed@X` or `no-own@X` if the link ended or the own route never came; with a
/// note, and whether that is what a leaf must do.
fn leaf_full_table(
    rt: &Runtime,
    node: &Node,
    wanted: Arc<HashSet<Subnet>>,
    own: Subnet,
    timeout: Duration,
) -> (String, String, bool) {
    let n = wanted.len();
    let t1 = Instant::now();
    let watch = Watch {
        wanted,
        own: Some(own),
    };
    let link = match connect(rt, node.tcp, Some(watch)) {
        Ok(l) => l,
        Err(e) => return ("error".into(), format!("full table: {e}"), false),
    };
    let _ = link.tx.send(Out::Tlv(Tlv::RouteRequest(RouteRequest {
        generation: 0,
        prefix: None,
    })));
    loop {
        let stats = &link.stats;
        let updates = stats.updates.load(Ordering::Relaxed);
        let own_updates = stats.own_updates.load(Ordering::Relaxed);
        let flooded = stats.wanted_seen.load(Ordering::Relaxed);
        let others = stats.others_seen.load(Ordering::Relaxed);
        let seen = format!(
            "{own_updates} updates of its own route, {flooded} of {n} flooded subnets, \
             {others} other subnets, {updates} updates in all"
        );
        if let Some((at, why)) = lock(&stats.closed).clone() {
            return (
                format!("closed@{}", flooded + others),
                format!(
                    "full table: the link ended ({why}) after {} s, with {seen}",
                    secs(at - t1)
                ),
                false,
            );
        }
        match *lock(&stats.own_first) {
            Some(at) if at.elapsed() >= LEAF_LISTEN => {
                let note = format!(
                    "full table: the node's own route after {} s, then {} s more listening: {seen}",
                    secs(at - t1),
                    secs(LEAF_LISTEN)
                );
                return if flooded == 0 && others == 0 {
                    ("own-only".into(), note, true)
                } else {
                    (format!("leaked@{}", flooded + others), note, false)
                };
            }
            None if t1.elapsed() > timeout => {
                return (
                    format!("no-own@{}", flooded + others),
                    format!(
                        "full table: no update of the node's own route after {} s: {seen}",
                        secs(timeout)
                    ),
                    false,
                );
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_BYTES: i64 = 1 << 20;

    fn growth(settled_mib: f64) -> Growth {
        let bytes = (settled_mib * MIB) as i64;
        Growth {
            after: Some(bytes),
            settled: Some(bytes),
        }
    }

    #[test]
    fn the_comparison_gives_both_growths_the_ratio_and_the_goal() {
        let line = comparison(Case { n: 100_000, k: 2 }, growth(300.0), 1024, growth(1.5));
        assert!(line.starts_with("# compare 100000x2: "), "{line}");
        assert!(line.contains("full node 300.00 MiB at the end"), "{line}");
        assert!(line.contains("leaf (1024 routes) 1.50 MiB"), "{line}");
        assert!(line.contains("settled full/leaf 200x"), "{line}");
        assert!(line.ends_with("leaf goal (settled < 2 MiB): met"), "{line}");
    }

    #[test]
    fn two_mib_or_more_misses_the_goal_and_no_growth_has_no_ratio() {
        let at_goal = Growth {
            after: Some(2 * MIB_BYTES),
            settled: Some(2 * MIB_BYTES),
        };
        let line = comparison(Case { n: 10, k: 2 }, growth(30.0), 8, at_goal);
        assert!(line.ends_with("MISSED"), "{line}");
        let line = comparison(Case { n: 10, k: 2 }, growth(30.0), 8, growth(0.0));
        assert!(line.contains("n/a (the leaf's RSS did not grow)"), "{line}");
        let line = comparison(Case { n: 10, k: 2 }, growth(30.0), 8, Growth::default());
        assert!(line.ends_with("unknown"), "{line}");
    }
}
