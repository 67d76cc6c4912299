//! A hostile peer against a real node (issue 9).
//!
//! Three namespaces: the victim node A, an honest node B peered with it, and an
//! attacker M, which is this test itself speaking the wire protocol over TCP with
//! its own key. M sends garbage, a truncated frame, an oversized control packet,
//! thousands of fake subnets, an update for A's own subnet, a flood of valid
//! Hellos, replays of an authentic data packet, and data packets with forged
//! sources. Throughout, a UDP socket on A's overlay address (behind A's TUN) and A's
//! message API show what A delivered: exactly the authentic datagrams, once each,
//! and nothing forged. At the end A is still running, B still reaches it, A's
//! memory stayed under its bound, and every defence shows in A's metrics.
//!
//! Needs what the other namespace tests need (root, iproute2, /dev/net/tun).
#![cfg(target_os = "linux")] // network namespaces, entered with setns
#![allow(clippy::unwrap_used)] // set-up failures should fail loudly

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::Net;
use common::wait_for;
use mycelium_proto::crypto::{SharedSecret, OVERHEAD};
use mycelium_proto::wire::control::{BABEL_VERSION, MAGIC};
use mycelium_proto::wire::data::{DataHeader, DataPacket};
use mycelium_proto::wire::packet::{TYPE_CONTROL, TYPE_DATA, VERSION};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::tlv::{Hello, Ihu, Update};
use mycelium_proto::wire::{control, Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey};

/// Routes A takes from one neighbour in this test (`--max-routes-per-peer`).
const ROUTES_PER_PEER: usize = 1_000;
/// Fake subnets M announces.
const FAKE_SUBNETS: usize = 3_000;
/// A's control TLV rate per link (`--link-control-rate`); the burst is ten
/// seconds' worth.
const CONTROL_RATE: u32 = 2_000;
/// Valid Hellos M floods A with: three times the burst.
const HELLO_FLOOD: usize = 60_000;
/// A's peak resident memory must stay under this.
const MEMORY_BOUND_KIB: u64 = 160 * 1024;
/// The UDP port A listens on, on its overlay address.
const PORT: u16 = 7777;

/// Runs `f` on a thread inside namespace `ns`: sockets it opens live there.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let handle = std::fs::File::open(format!("/var/run/netns/{ns}"))
                .unwrap_or_else(|e| panic!("opening namespace {ns}: {e}"));
            nix::sched::setns(handle, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
            f()
        })
        .join()
        .unwrap()
    })
}

/// A GET on a node's loopback API in `ns`; the body, or `None` for a 204.
fn get(ns: &str, url: &str) -> Option<String> {
    in_ns(ns, || {
        let mut resp = ureq::get(url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (resp.status() != 204).then(|| resp.body_mut().read_to_string().unwrap())
    })
}

fn json(ns: &str, url: &str) -> serde_json::Value {
    serde_json::from_str(&get(ns, url).unwrap_or_default()).unwrap()
}

/// A's defence counters from its metrics.
fn defences(ns: &str) -> BTreeMap<String, u64> {
    let text = get(ns, "http://[::1]:9090/metrics").unwrap_or_default();
    let prefix = "mycelium_defences_total{defence=\"";
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (name, rest) = l.split_once("\"} ")?;
            Some((name.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn selected_routes(ns: &str) -> Vec<serde_json::Value> {
    json(ns, "http://127.0.0.1:8989/api/v1/admin/routes/selected")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has_route(ns: &str, subnet: &str) -> bool {
    selected_routes(ns).iter().any(|r| r["subnet"] == subnet)
}

/// A's memory figures from /proc, in KiB: (resident now, peak).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn control_packet(tlv: Tlv) -> Vec<u8> {
    let mut out = Vec::new();
    control::encode(&tlv, &mut out);
    out
}

fn update(key: &SecretKey, seqno: u16) -> Tlv {
    let public = key.public_key();
    Tlv::Update(Update {
        interval: Interval(30_000),
        seqno: SeqNo(seqno),
        metric: Metric(0),
        subnet: public.subnet(),
        router_id: RouterId::new(public, [7; 6]),
    })
}

/// A key from a number, for the attacker's throw-away identities.
fn numbered_key(n: u64) -> SecretKey {
    let mut bytes = [0x5a; 32];
    // Not in the first byte, whose low bits X25519 clears.
    bytes[8..16].copy_from_slice(&n.to_le_bytes());
    SecretKey::from_bytes(bytes)
}

/// The one's-complement sum of `bytes` as 16-bit words.
fn sum(mut acc: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        acc += hi | pair.get(1).map_or(0, |&b| u32::from(b));
    }
    acc
}

/// An IPv6 packet carrying a UDP datagram, checksum included.
fn udp_packet(src: Ipv6Addr, dst: Ipv6Addr, port: u16, data: &[u8]) -> Vec<u8> {
    let udp_len = 8 + data.len();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&40_000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc += udp_len as u32 + 17;
    acc = sum(acc, &udp);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let check = match !(acc as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// A whole data packet: `plain` (payload header included) sealed with `secret`.
fn data_packet(secret: &SharedSecret, src: Ipv6Addr, dst: Ipv6Addr, plain: &[u8]) -> Vec<u8> {
    let mut sealed = plain.to_vec();
    sealed.resize(plain.len() + OVERHEAD, 0);
    // Distinct for every packet sealed here, as a sender's random nonces are.
    static NONCES: AtomicU64 = AtomicU64::new(1);
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&NONCES.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    secret.seal_in_place(nonce, &mut sealed).unwrap();
    let mut out = Vec::new();
    let packet = DataPacket {
        header: DataHeader {
            hop_limit: 64,
            src,
            dst,
        },
        payload: &sealed,
    };
    assert!(packet.encode(&mut out));
    out
}

fn ipv6_payload(ip: &[u8]) -> Vec<u8> {
    let mut plain = payload::header(PayloadType::Ipv6).to_vec();
    plain.extend_from_slice(ip);
    plain
}

/// A connection from M to A.
struct Session {
    stream: TcpStream,
}

impl Session {
    fn open(ns: &str, a: SocketAddr) -> Self {
        let stream = in_ns(ns, || {
            TcpStream::connect_timeout(&a, Duration::from_secs(5))
        })
        .unwrap_or_else(|e| panic!("connecting to A at {a}: {e}"));
        Self { stream }
    }

    /// Reads and drops whatever A sends, on a thread of its own, so that A's writes
    /// never block.
    fn drain(&self) {
        let mut reader = self.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Whether A closes the connection within `limit` (what A sends meanwhile is
    /// read and dropped).
    fn closed_by_peer(&mut self, limit: Duration) -> bool {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        while start.elapsed() < limit {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), TimedOut | WouldBlock) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Keeps M's session alive: a Hello and an IHU every 200 ms until dropped.
struct KeepAlive {
    stop: Arc<AtomicBool>,
}

impl KeepAlive {
    fn start(session: &Session) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut stream = session.stream.try_clone().unwrap();
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut seqno = 0u16;
            while !flag.load(Ordering::Relaxed) {
                seqno = seqno.wrapping_add(1);
                let mut out = control_packet(hello(seqno));
                out.extend(control_packet(Tlv::Ihu(Ihu {
                    rx_cost: Metric(96),
                    interval: Interval(6000),
                    address: None,
                })));
                if stream.write_all(&out).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self { stop }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn hello(seqno: u16) -> Tlv {
    Tlv::Hello(Hello {
        unicast: true,
        seqno: SeqNo(seqno),
        interval: Interval(25),
    })
}

/// Datagrams that reached the UDP socket on A's overlay address.
fn receive_all(sock: &UdpSocket, quiet: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
fn a_hostile_peer_cannot_crash_fill_or_fool_a_node() {
    let mut net = Net::new("hx");
    let (va, vb, vm) = (net.ns("a"), net.ns("b"), net.ns("m"));
    let (a_to_b, _b_side) = net.link(&va, &vb);
    let (a_to_m, _m_side) = net.link(&va, &vm);
    let (routes_limit, rate_limit) = (ROUTES_PER_PEER.to_string(), CONTROL_RATE.to_string());
    let a_addr = net.node_args(
        &va,
        &[],
        false,
        false,
        &[
            "--metrics-api-address",
            "[::1]:9090",
            "--max-routes-per-peer",
            &routes_limit,
            "--link-control-rate",
            &rate_limit,
        ],
    );
    let b_addr = net.node(&vb, &[format!("tcp://[{a_to_b}]:9651")]);
    let a_ip: Ipv6Addr = a_addr.parse().unwrap();
    let b_ip: Ipv6Addr = b_addr.parse().unwrap();
    let a_subnet = format!("{}", mycelium_proto::Subnet::v6_64(a_ip));
    let b_subnet = format!("{}", mycelium_proto::Subnet::v6_64(b_ip));
    wait_for("API of A", Duration::from_secs(20), || {
        in_ns(&va, || {
            ureq::get("http://127.0.0.1:8989/api/v1/admin")
                .call()
                .is_ok()
        })
    });
    wait_for("route from A to B", Duration::from_secs(20), || {
        has_route(&va, &b_subnet)
    });
    wait_for("route from B to A", Duration::from_secs(20), || {
        has_route(&vb, &a_subnet)
    });
    let info = json(&va, "http://127.0.0.1:8989/api/v1/admin");
    let a_key: PublicKey = info["nodePubkey"].as_str().unwrap().parse().unwrap();
    let a_pid = net.pid_of(&va);
    let a_listen: SocketAddr = format!("[{a_to_m}]:9651").parse().unwrap();

    // What A delivers to its TUN is what this socket receives.
    let inbox = in_ns(&va, || UdpSocket::bind((a_ip, PORT)).unwrap());

    // ----- 1. Bytes that do not frame: each closes its own link, nothing more.
    let mut garbage = Session::open(&vm, a_listen);
    let noise: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.send(&noise);
    assert!(
        garbage.closed_by_peer(Duration::from_secs(10)),
        "A kept a link that sent garbage"
    );
    // A data packet cut short, then the connection ends.
    let mut truncated = Session::open(&vm, a_listen);
    let _ = truncated.send(&[VERSION, TYPE_DATA, 0, 0, 0, 0xff, 0xff, 64, 4, 0, 0]);
    drop(truncated);
    // A control packet whose declared body (64 KiB) holds no valid TLV: skipped.
    let mut oversized = Session::open(&vm, a_listen);
    let mut big = vec![
        VERSION,
        TYPE_CONTROL,
        0,
        0,
        MAGIC,
        BABEL_VERSION,
        0xff,
        0xff,
    ];
    big.extend(std::iter::repeat_n(0xee, 0xffff));
    let _ = oversized.send(&big);
    // A packet claiming a version from the future.
    let _ = oversized.send(&[9, 0, 0, 0]);
    assert!(oversized.closed_by_peer(Duration::from_secs(10)));

    // ----- 2. M joins properly with its own key and subnet.
    let m_key = numbered_key(u64::MAX);
    let m_ip = m_key.public_key().address();
    let m_subnet = format!("{}", m_key.public_key().subnet());
    let mut m = Session::open(&vm, a_listen);
    m.drain();
    let _alive = KeepAlive::start(&m);
    m.send(&control_packet(update(&m_key, 1))).unwrap();
    wait_for("A's route to M", Duration::from_secs(20), || {
        has_route(&va, &m_subnet)
    });
    let to_a = SharedSecret::new(&m_key, &a_key);

    // ----- 3. Data: one authentic datagram replayed, forged sources, and B's traffic.
    let genuine = data_packet(
        &to_a,
        m_ip,
        a_ip,
        &ipv6_payload(&udp_packet(m_ip, a_ip, PORT, b"genuine from M")),
    );
    for _ in 0..50 {
        m.send(&genuine).unwrap();
    }
    // Outer source B, sealed with M's key: A opens it with B's key and fails.
    for i in 0..20 {
        let text = format!("forged outer source {i}");
        let ip = udp_packet(b_ip, a_ip, PORT, text.as_bytes());
        m.send(&data_packet(&to_a, b_ip, a_ip, &ipv6_payload(&ip)))
            .unwrap();
    }
    // Outer source M (it opens), inner source B: turned away on delivery.
    for i in 0..20 {
        let text = format!("forged inner source {i}");
        let ip = udp_packet(b_ip, a_ip, PORT, text.as_bytes());
        m.send(&data_packet(&to_a, m_ip, a_ip, &ipv6_payload(&ip)))
            .unwrap();
    }
    // A message frame claiming to come from B.
    let mut frame = payload::header(PayloadType::Message).to_vec();
    frame.extend_from_slice(&[0; 64]);
    for _ in 0..5 {
        m.send(&data_packet(&to_a, b_ip, a_ip, &frame)).unwrap();
    }
    // Meanwhile B sends its own datagrams, each once.
    in_ns(&vb, || {
        let sock = UdpSocket::bind("[::]:0").unwrap();
        for i in 0..20 {
            sock.send_to(format!("from B {i}").as_bytes(), (a_ip, PORT))
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut got = receive_all(&inbox, Duration::from_secs(3));
    got.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("from B {i}")).collect();
    expected.push("genuine from M".to_owned());
    expected.sort();
    assert_eq!(
        got, expected,
        "A delivered something forged, a replay, or lost B's traffic"
    );
    assert_eq!(
        get(&va, "http://127.0.0.1:8989/api/v1/messages?timeout=0"),
        None,
        "a forged message reached A's message API"
    );

    // ----- 4. Thousands of fake subnets, and an update for A's own subnet.
    let mut burst = Vec::new();
    for n in 0..FAKE_SUBNETS as u64 {
        burst.extend(control_packet(update(&numbered_key(n), 1)));
    }
    burst.extend(control_packet(Tlv::Update(Update {
        interval: Interval(30_000),
        seqno: SeqNo(40_000),
        metric: Metric(0),
        subnet: a_key.subnet(),
        router_id: RouterId::new(a_key, [9; 6]),
    })));
    m.send(&burst).unwrap();
    wait_for("the fake subnets refused", Duration::from_secs(30), || {
        defences(&va)
            .get("update_for_own_subnet")
            .copied()
            .unwrap_or(0)
            >= 1
    });
    let routes = selected_routes(&va).len();
    assert!(
        routes <= ROUTES_PER_PEER + 2,
        "A selected {routes} routes; M's share is bounded at {ROUTES_PER_PEER}"
    );

    // ----- 5. Valid Hellos at a flood rate.
    let one = control_packet(hello(1));
    let flood: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * HELLO_FLOOD)
        .collect();
    m.send(&flood).unwrap();
    wait_for("the flood throttled", Duration::from_secs(30), || {
        defences(&va)
            .get("control_rate_throttled")
            .copied()
            .unwrap_or(0)
            >= 1
    });

    // ----- 6. A is up, B still reaches it, memory stayed bounded, defences counted.
    in_ns(&vb, || {
        let sock = UdpSocket::bind("[::]:0").unwrap();
        for i in 0..10 {
            sock.send_to(format!("after {i}").as_bytes(), (a_ip, PORT))
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let after = receive_all(&inbox, Duration::from_secs(3));
    assert_eq!(after.len(), 10, "B's traffic after the attack: {after:?}");
    assert!(has_route(&vb, &a_subnet) && has_route(&va, &b_subnet));
    let d = defences(&va);
    eprintln!("A's defences: {d:#?}");
    for (defence, at_least) in [
        ("framing_error", 2),
        ("control_packet_skipped", 1),
        ("replayed_packet", 49),
        ("decryption_failed", 25),
        ("spoofed_inner_address", 20),
        ("update_over_limit", (FAKE_SUBNETS - ROUTES_PER_PEER) as u64),
        ("update_for_own_subnet", 1),
        ("control_rate_throttled", 1),
    ] {
        let n = d.get(defence).copied().unwrap_or(0);
        assert!(
            n >= at_least,
            "defence {defence} counted {n}, expected at least {at_least}"
        );
    }
    let (rss, peak) = memory_kib(a_pid);
    eprintln!("A's memory: {rss} KiB resident, {peak} KiB at most");
    assert!(
        peak < MEMORY_BOUND_KIB,
        "A peaked at {peak} KiB, over its {MEMORY_BOUND_KIB} KiB bound"
    );
    assert!(
        net.nodes
            .iter_mut()
            .all(|(_, c)| c.try_wait().unwrap().is_none()),
        "a node exited\n{}",
        net.logs()
    );
}
