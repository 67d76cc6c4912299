//! Message throughput between two nodes in one process, peered over loopback TCP.
//!
//! `cargo run --release -p mycelium-bench --bin messages -- [SIZE:COUNT[:IN_FLIGHT] ...]`
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
//! The default runs include 256 in flight for small messages: more than the
//! receiver's 16 partial messages per source (`BusConfig::max_partial_per_source`),
//! so the INITs past it are refused and wait for their retransmission timeout.
//!
//! Both nodes share one tokio runtime of `MYCELIUM_THREADS` worker threads
//! (default 2).

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mycelium_node::{
    BusConfig, BusError, Messages, Node, NodeConfig, NodeStats, Pushed, TopicConfig,
};
use mycelium_proto::endpoint::{Endpoint, EndpointAddr, Protocol};
use mycelium_proto::messages::{BusStats, MessageState, PushError};
use mycelium_proto::routing::RouterConfig;
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

fn main() {
    let runs: Result<Vec<Run>, String> = std::env::args().skip(1).map(|a| parse_run(&a)).collect();
    let runs = match runs {
        Ok(r) if r.is_empty() => DEFAULT_RUNS.to_vec(),
        Ok(r) => r,
        Err(e) => {
            eprintln!("messages: {e}");
            eprintln!("usage: messages [SIZE:COUNT[:IN_FLIGHT] ...]");
            std::process::exit(2);
        }
    };
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
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("local address").port()
}

fn config(peers: Vec<Endpoint>, port: Option<u16>) -> NodeConfig {
    NodeConfig {
        secret: SecretKey::generate(&mut rand::thread_rng()),
        peers,
        tcp_listen_port: port,
        quic_listen_port: None,
        tun_name: None,
        discovery: None,
        firewall_mark: None,
        router: RouterConfig::default(),
        messages: BusConfig::default(),
        topics: TopicConfig::default(),
        vsock_listen_port: None,
        private: None,
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
                Err(BusError::Push(PushError::QueueFull)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(ids)
}
