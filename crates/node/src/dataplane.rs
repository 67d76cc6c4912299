//! The packet path: TUN to peer (seal), peer to peer (forward), peer to TUN (open).
//!
//! Packets are worked on in place in one buffer from the read to the send: a packet
//! read from the TUN lands behind room for the outer, data and payload headers, is
//! sealed where it lies, and the headers are written in front; a forwarded packet
//! only has its hop-limit byte changed. Keys come from the snapshot; the X25519
//! secret for each peer key is computed once per task and cached.

use std::net::Ipv6Addr;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_proto::crypto::{SharedSecret, NONCE_LEN, OVERHEAD};
use mycelium_proto::icmp;
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::packet::{self, TYPE_DATA};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::view::{DataFrame, Ipv6Packet};
use mycelium_proto::{PublicKey, SecretKey};
use rand::RngCore;
use tokio::sync::mpsc;

use crate::core::{CoreCmd, Shared, Unrouted};
use crate::snapshot::{Route, Snapshot};
use crate::stats::{NodeStats, Tally};
use crate::tun::{self, Coalescer, Tun, TunPath, BATCH, MTU, SUPER_PACKET};

/// Bytes in front of an IPv6 packet in a buffer: outer header, data header, payload
/// header.
pub(crate) const HEADROOM: usize = packet::HEADER_LEN + DataHeader::LEN + payload::HEADER_LEN;
/// Offset of the sealed payload in a data packet on the wire.
const PAYLOAD_AT: usize = packet::HEADER_LEN + DataHeader::LEN;
/// Size of a buffer that holds any packet we read from the TUN, sealed.
const BUF_LEN: usize = HEADROOM + MTU as usize + OVERHEAD + 64;

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What one packet-moving task keeps for itself: shared secrets by peer key,
/// computed on first use, and its packet tally (merged after every batch).
#[derive(Default)]
pub(crate) struct SecretCache {
    secrets: Map<PublicKey, SharedSecret>,
    pub(crate) tally: Tally,
}

/// Secrets kept per task before the cache starts over.
const SECRET_CACHE_MAX: usize = 4096;

impl SecretCache {
    pub(crate) fn get(&mut self, ours: &SecretKey, theirs: PublicKey) -> &SharedSecret {
        if self.secrets.len() >= SECRET_CACHE_MAX && !self.secrets.contains_key(&theirs) {
            self.secrets.clear();
        }
        self.secrets
            .entry(theirs)
            .or_insert_with(|| SharedSecret::new(ours, &theirs))
    }
}

/// The IPv6 address at byte `at` of `buf` (the caller checked the length).
fn addr_at(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&buf[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Reads the TUN device until shutdown, sending each packet on its way.
///
/// Packets are read in batches (a segmentation-offload super-packet split into
/// MTU-sized packets, or on the portable path what is waiting) into one arena; each packet is then an owned piece of the arena
/// with room for its headers, tag and nonce, so nothing is allocated per packet.
pub(crate) async fn tun_reader(shared: Arc<Shared>, tun: Arc<Tun>) {
    let mut cache = SecretCache::default();
    let mut original = vec![0u8; SUPER_PACKET];
    let mut sizes = vec![0usize; BATCH];
    let mut arena = BytesMut::new();
    // A full super-packet splits into at most 65535 / (1400 - 60) < 49 packets.
    // Arenas stay under malloc's mmap threshold (128 KiB), so their memory is
    // recycled from the heap instead of being mapped and faulted in each time.
    const MIN_FREE: usize = 49;
    const ARENA: usize = 80;
    loop {
        if arena.len() < MIN_FREE * BUF_LEN {
            // Reuses the arena's memory when every packet cut from it has been sent
            // and dropped (the usual case), and allocates a fresh one otherwise.
            arena.clear();
            arena.reserve(ARENA * BUF_LEN);
            arena.resize(ARENA * BUF_LEN, 0);
        }
        let n = {
            let mut bufs: Vec<&mut [u8]> = arena.chunks_mut(BUF_LEN).collect();
            let count = bufs.len();
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = tun.recv_batch(&mut original, &mut bufs, &mut sizes[..count], HEADROOM) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!("reading the TUN device: {e}");
                        NodeStats::bump(&shared.stats.malformed);
                        continue;
                    }
                },
            }
        };
        let snapshot = shared.snapshot.load();
        for &size in &sizes[..n] {
            NodeStats::bump(&shared.stats.tun_rx);
            let mut packet = arena.split_to(BUF_LEN);
            if size == 0 {
                continue;
            }
            packet.truncate(HEADROOM + size);
            send_local(&shared, &mut cache, &snapshot, packet, size);
        }
        cache.tally.merge(&shared.packets);
    }
}

/// Packets for our TUN gathered by one task while it works through what it read,
/// written in one batch (coalesced by the kernel where it can) when the task has
/// nothing more at hand. Written from the task itself: no hand-off per packet.
///
/// Coalescing (GRO) appends the segments of one TCP flow to the buffer of the run's
/// first packet, and only does so when that buffer has room for a whole 64 KiB
/// super-packet. Packets cut from a link's read buffer have none, so the first
/// packet of each run is moved into a large buffer kept for reuse: one copy of one
/// packet buys one write per run instead of one per packet. A run ends where GRO
/// would end it: another flow, other TCP options (a new timestamp), or a segment
/// after one with PSH set.
pub(crate) struct TunBatch {
    packets: Vec<BytesMut>,
    coalescer: Coalescer,
    /// Large buffers to reuse, at most [`SPARE_SUPER_BUFFERS`].
    spare: Vec<BytesMut>,
    /// What GRO compares of the last packet added, to see where a run starts.
    last: Option<RunKey>,
}

/// The flow (next header, addresses, ports), the TCP header length and options of
/// a packet, and whether it ends a run (PSH).
#[derive(Clone, Copy, PartialEq, Eq)]
struct RunKey {
    flow: [u8; 37],
    options: [u8; 41],
    psh: bool,
}

impl RunKey {
    /// For a TCP packet over IPv6 (`ip` from its first byte); `None` otherwise.
    fn of(ip: &[u8]) -> Option<Self> {
        if ip.len() < 60 || ip[6] != 6 {
            return None;
        }
        let mut flow = [0u8; 37];
        flow[0] = ip[6];
        flow[1..].copy_from_slice(&ip[8..44]);
        let tcp = &ip[40..];
        let header_len = usize::from(tcp[12] >> 4) * 4;
        let mut options = [0u8; 41];
        options[0] = tcp[12];
        if let Some(opts) = tcp.get(20..header_len) {
            options[1..1 + opts.len().min(40)].copy_from_slice(&opts[..opts.len().min(40)]);
        }
        Some(Self {
            flow,
            options,
            psh: tcp[13] & 0x08 != 0,
        })
    }

    /// Whether a packet with key `self` continues the run of `last`.
    fn continues(&self, last: &Option<Self>) -> bool {
        last.is_some_and(|l| !l.psh && l.flow == self.flow && l.options == self.options)
    }
}

/// Room for a coalesced super-packet behind the headroom.
const SUPER_BUFFER: usize = HEADROOM + 65_535;
/// Large buffers one task keeps between batches.
const SPARE_SUPER_BUFFERS: usize = 8;

impl Default for TunBatch {
    fn default() -> Self {
        Self {
            packets: Vec::with_capacity(BATCH),
            coalescer: Coalescer::default(),
            spare: Vec::new(),
            last: None,
        }
    }
}

impl TunBatch {
    /// Adds a packet (IPv6 at `HEADROOM`); writes the batch first if it is full.
    async fn push(&mut self, shared: &Shared, mut packet: BytesMut) {
        if self.packets.len() >= BATCH {
            self.flush(shared).await;
        }
        // Only a device with offload coalesces; elsewhere packets go one by one.
        let coalesces = shared
            .tun
            .as_ref()
            .is_some_and(|t| t.path() == TunPath::Offload);
        let key = RunKey::of(packet.get(HEADROOM..).unwrap_or_default()).filter(|_| coalesces);
        let starts_run = key.is_some_and(|k| !k.continues(&self.last));
        if starts_run && packet.capacity() < SUPER_BUFFER {
            let mut big = self
                .spare
                .pop()
                .unwrap_or_else(|| BytesMut::with_capacity(SUPER_BUFFER));
            big.clear();
            big.extend_from_slice(&packet);
            packet = big;
        }
        self.last = key;
        self.packets.push(packet);
    }

    /// Writes what was gathered.
    pub(crate) async fn flush(&mut self, shared: &Shared) {
        if self.packets.is_empty() {
            return;
        }
        if let Some(tun) = &shared.tun {
            let count = self.packets.len() as u64;
            match tun
                .send_batch(&mut self.coalescer, &mut self.packets, HEADROOM)
                .await
            {
                Ok(_) => {
                    shared
                        .stats
                        .tun_tx
                        .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("writing to the TUN device: {e}"),
            }
        }
        for mut p in self.packets.drain(..) {
            if p.capacity() >= SUPER_BUFFER && self.spare.len() < SPARE_SUPER_BUFFERS {
                p.clear();
                self.spare.push(p);
            }
        }
        self.last = None;
    }
}

/// Writes the ICMPv6 errors queued for our TUN (by the TUN reader and the core), in
/// batches.
pub(crate) async fn tun_writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<BytesMut>) {
    let mut out = TunBatch::default();
    loop {
        let first = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        out.push(&shared, first).await;
        while let Ok(p) = rx.try_recv() {
            out.push(&shared, p).await;
        }
        out.flush(&shared).await;
    }
}

/// Sends an IPv6 packet of `len` bytes that sits at `HEADROOM` in `buf`, from this
/// node (PROTOCOL.md §7.3).
pub(crate) fn send_local(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    buf: BytesMut,
    len: usize,
) {
    let Ok(view) = Ipv6Packet::new_checked(&buf[HEADROOM..HEADROOM + len]) else {
        NodeStats::bump(&shared.stats.malformed);
        return;
    };
    let (hop, src, dst) = (view.hop_limit(), view.src(), view.dst());
    let ip = view.as_bytes();
    if tun::reflects(dst, shared.own_ip) {
        if let Some(tun_tx) = &shared.tun_tx {
            let mut back = BytesMut::with_capacity(HEADROOM + len);
            back.resize(HEADROOM, 0);
            back.extend_from_slice(ip);
            let _ = tun_tx.try_send(back);
        }
        return;
    }
    if shared.own_subnet.contains_ip(dst.into()) {
        // An address of our /64 that is not ours: nobody is there.
        NodeStats::bump(&shared.stats.no_route);
        icmp_to_tun(
            shared,
            shared.own_ip,
            src,
            64,
            icmp::DESTINATION_UNREACHABLE,
            icmp::CODE_ADDRESS_UNREACHABLE,
            ip,
        );
        return;
    }
    if src.octets()[0] & 0xfe != 0x04 {
        NodeStats::bump(&shared.stats.no_route);
        icmp_to_tun(
            shared,
            shared.own_ip,
            src,
            64,
            icmp::DESTINATION_UNREACHABLE,
            icmp::CODE_SOURCE_POLICY,
            ip,
        );
        return;
    }
    if hop < 2 {
        NodeStats::bump(&shared.stats.hop_limit_exceeded);
        // Upstream sends this one from the packet's own source to itself.
        icmp_to_tun(shared, src, src, hop, icmp::TIME_EXCEEDED, 0, ip);
        return;
    }
    let head = Head {
        kind: PayloadType::Ipv6,
        hop_limit: hop - 1,
        src,
        dst,
    };
    originate(shared, cache, snapshot, head, buf, len, |buf| {
        Unrouted::Local { buf, len }
    });
}

/// The headers of a data packet we originate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) kind: PayloadType,
    /// As it leaves this node.
    pub(crate) hop_limit: u8,
    pub(crate) src: Ipv6Addr,
    pub(crate) dst: Ipv6Addr,
}

/// Seals the `len` bytes at `HEADROOM` in `buf` for `key`, writes the headers in
/// front and queues the packet on `tx`.
fn seal_and_send(
    shared: &Shared,
    cache: &mut SecretCache,
    tx: &crate::snapshot::LinkTx,
    key: PublicKey,
    head: Head,
    mut buf: BytesMut,
    len: usize,
) {
    let secret = cache.get(&shared.secret, key);
    buf.truncate(HEADROOM + len);
    buf.resize(HEADROOM + len + OVERHEAD, 0);
    buf[PAYLOAD_AT..HEADROOM].copy_from_slice(&payload::header(head.kind));
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    if secret.seal_in_place(nonce, &mut buf[PAYLOAD_AT..]).is_err() {
        return;
    }
    let payload_len = (buf.len() - PAYLOAD_AT) as u16;
    let mut out = &mut buf[..PAYLOAD_AT];
    packet::encode_header(TYPE_DATA, &mut out);
    DataHeader {
        hop_limit: head.hop_limit,
        src: head.src,
        dst: head.dst,
    }
    .encode(payload_len, &mut out);
    cache
        .tally
        .count(&shared.packets, head.src, head.dst, payload_len as usize);
    if tx.try_send(buf.freeze()).is_err() {
        NodeStats::bump(&shared.stats.link_queue_full);
    }
}

/// Room a message frame needs in a buffer: headers in front, tag and nonce behind.
pub(crate) fn frame_buffer(frame: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADROOM + frame.len() + OVERHEAD);
    buf.resize(HEADROOM, 0);
    buf.extend_from_slice(frame);
    buf
}

/// Sends a message frame (at `HEADROOM` in `buf`, from [`frame_buffer`]) from
/// `src` to `dst` with hop limit 64 as the message subsystem hands it to the router
/// (MESSAGES.md §1); the core holds it while a route is looked for.
pub(crate) fn send_frame(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    buf: BytesMut,
) {
    let len = buf.len() - HEADROOM;
    let head = Head {
        kind: PayloadType::Message,
        hop_limit: MESSAGE_HOP_LIMIT - 1,
        src,
        dst,
    };
    originate(shared, cache, snapshot, head, buf, len, |buf| {
        Unrouted::Message { src, dst, buf }
    });
}

/// Seals and sends a packet we originate (`len` bytes at `HEADROOM` in `buf`) when
/// the snapshot has a route for it; hands it to the core, as `unrouted` makes it,
/// when it has not.
fn originate(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    head: Head,
    buf: BytesMut,
    len: usize,
    unrouted: impl FnOnce(BytesMut) -> Unrouted,
) {
    match snapshot.route(head.dst) {
        Route::Via(tx, key) => seal_and_send(shared, cache, tx, key, head, buf, len),
        Route::Ask => {
            if shared
                .core_tx
                .try_send(CoreCmd::Unrouted(unrouted(buf)))
                .is_err()
            {
                NodeStats::bump(&shared.stats.no_route);
            }
        }
    }
}

/// The hop limit message frames are handed to the router with.
const MESSAGE_HOP_LIMIT: u8 = 64;

/// Writes an ICMPv6 error about `offending` to our TUN, if we have one.
pub(crate) fn icmp_to_tun(
    shared: &Shared,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp_type: u8,
    code: u8,
    offending: &[u8],
) {
    let Some(tun_tx) = &shared.tun_tx else {
        return;
    };
    let mut packet = BytesMut::with_capacity(HEADROOM + 48 + offending.len().min(icmp::MAX_QUOTE));
    packet.resize(HEADROOM, 0);
    icmp::encode_error(src, dst, hop_limit, icmp_type, code, offending, &mut packet);
    let _ = tun_tx.try_send(packet);
}

/// Reports a transit packet we cannot carry to its source, in an out-of-band ICMP
/// packet (PROTOCOL.md §7.7): we cannot read its encrypted payload, so the report
/// quotes it, sealed as it is, for the source to open. Needs a key and a route for
/// the source; without either the packet is just dropped.
pub(crate) fn report_to_source(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    orig: &[u8],
    icmp_type: u8,
    code: u8,
) {
    let Ok(orig) = DataFrame::new_checked(orig) else {
        return;
    };
    let (orig_src, orig_dst) = (orig.src(), orig.dst());
    let (Some(key), Route::Via(tx, _)) = (snapshot.key_for(orig_src), snapshot.route(orig_src))
    else {
        return;
    };
    let quoted = orig.payload();
    let quoted = if quoted.len() <= icmp::MAX_QUOTE {
        quoted
    } else {
        &[][..]
    };
    let reporter = match shared.own_subnet.address() {
        std::net::IpAddr::V6(a) => a,
        std::net::IpAddr::V4(_) => return,
    };
    let mut buf = BytesMut::with_capacity(PAYLOAD_AT + 4 + 16 + 48 + quoted.len() + OVERHEAD);
    buf.resize(PAYLOAD_AT, 0);
    buf.extend_from_slice(&payload::header(PayloadType::OobIcmp));
    buf.extend_from_slice(&orig_dst.octets());
    icmp::encode_error(reporter, orig_src, 64, icmp_type, code, quoted, &mut buf);
    buf.resize(buf.len() + OVERHEAD, 0);
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    if cache
        .get(&shared.secret, key)
        .seal_in_place(nonce, &mut buf[PAYLOAD_AT..])
        .is_err()
    {
        return;
    }
    let payload_len = (buf.len() - PAYLOAD_AT) as u16;
    let mut head = &mut buf[..PAYLOAD_AT];
    packet::encode_header(TYPE_DATA, &mut head);
    // Sent from 64, and like every packet we originate it leaves with one hop taken.
    DataHeader {
        hop_limit: 63,
        src: reporter,
        dst: orig_src,
    }
    .encode(payload_len, &mut head);
    let _ = tx.try_send(buf.freeze());
}

/// Turns an out-of-band ICMP report about a packet we sent into an ICMPv6 packet for
/// our TUN (PROTOCOL.md §7.7): the report quotes our own sealed payload, which we
/// open with the key of its original destination.
fn oob_report_to_icmp(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    body: &[u8],
    reporter: Ipv6Addr,
    outer_dst: Ipv6Addr,
    hop: u8,
) -> Option<BytesMut> {
    if !(16 + 40 + 8 + 16..=1280 + 16).contains(&body.len()) {
        return None;
    }
    // The original destination, then the ICMPv6 packet: its 8-byte header, then
    // our sealed payload as quoted.
    let original_dst = addr_at(body, 0);
    let ip = Ipv6Packet::new_checked(&body[16..]).ok()?;
    if ip.next_header() != icmp::NEXT_HEADER_ICMPV6 {
        return None;
    }
    let message = ip.payload();
    let (icmp_type, code) = (message[0], message[1]);
    let key = snapshot.key_for(original_dst)?;
    let mut quoted = BytesMut::from(&message[8..]);
    let n = cache
        .get(&shared.secret, key)
        .open_in_place(&mut quoted)
        .ok()?;
    let original_ip = quoted.get(payload::HEADER_LEN..n)?;
    let mut out = BytesMut::with_capacity(HEADROOM + 48 + original_ip.len());
    out.resize(HEADROOM, 0);
    icmp::encode_error(
        reporter,
        outer_dst,
        hop,
        icmp_type,
        code,
        original_ip,
        &mut out,
    );
    Some(out)
}

/// Handles a whole data packet received from a peer (PROTOCOL.md §7.4): forwards it,
/// or opens it and delivers it.
pub(crate) async fn handle_data(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    mut pkt: BytesMut,
    out: &mut TunBatch,
) {
    let Ok(mut frame) = DataFrame::new_checked(&mut pkt[..]) else {
        NodeStats::bump(&shared.stats.malformed);
        return;
    };
    let (hop, src, dst) = (frame.hop_limit(), frame.src(), frame.dst());
    if hop < 2 {
        NodeStats::bump(&shared.stats.hop_limit_exceeded);
        report_to_source(shared, cache, snapshot, &pkt, icmp::TIME_EXCEEDED, 0);
        return;
    }
    frame.set_hop_limit(hop - 1);
    if shared.own_subnet.contains_ip(dst.into()) {
        deliver(shared, cache, snapshot, pkt, out).await;
        return;
    }
    match snapshot.route(dst) {
        Route::Via(tx, _) => {
            NodeStats::bump(&shared.stats.forwarded);
            cache
                .tally
                .count(&shared.packets, src, dst, pkt.len() - PAYLOAD_AT);
            if tx.try_send(pkt.freeze()).is_err() {
                NodeStats::bump(&shared.stats.link_queue_full);
            }
        }
        Route::Ask => {
            if shared
                .core_tx
                .try_send(CoreCmd::Unrouted(Unrouted::Transit(pkt)))
                .is_err()
            {
                NodeStats::bump(&shared.stats.no_route);
            }
        }
    }
}

/// Opens a data packet addressed to us and writes what it carries to the TUN.
pub(crate) async fn deliver(
    shared: &Shared,
    cache: &mut SecretCache,
    snapshot: &Snapshot,
    mut pkt: BytesMut,
    out: &mut TunBatch,
) {
    let Ok(frame) = DataFrame::new_checked(&pkt[..]) else {
        NodeStats::bump(&shared.stats.malformed);
        return;
    };
    let (hop, src, dst) = (frame.hop_limit(), frame.src(), frame.dst());
    let Some(key) = snapshot.key_for(src) else {
        let _ = shared
            .core_tx
            .try_send(CoreCmd::UnknownSource { src, packet: pkt });
        return;
    };
    cache
        .tally
        .count(&shared.packets, src, dst, pkt.len() - PAYLOAD_AT);
    // The nonce is the payload's last 12 bytes; opening leaves it alone, but it
    // is taken first so the replay check does not depend on that.
    let mut nonce = [0u8; NONCE_LEN];
    if let Some(tail) = pkt
        .len()
        .checked_sub(NONCE_LEN)
        .and_then(|at| pkt.get(at..))
    {
        nonce.copy_from_slice(tail);
    }
    let secret = cache.get(&shared.secret, key);
    let Ok(n) = secret.open_in_place(&mut pkt[PAYLOAD_AT..]) else {
        NodeStats::bump(&shared.stats.decrypt_failures);
        return;
    };
    // Authentic, but perhaps a copy of one delivered before (upstream's format has
    // no sequence numbers; see `ReplayFilter`).
    if shared.replays.seen(src, &nonce) {
        NodeStats::bump(&shared.stats.replayed);
        return;
    }
    let plain = &mut pkt[PAYLOAD_AT..PAYLOAD_AT + n];
    match payload::decode(plain) {
        Ok((PayloadType::Ipv6, _)) => {}
        Ok((PayloadType::OobIcmp, body)) => {
            if let Some(icmp_packet) =
                oob_report_to_icmp(shared, cache, snapshot, body, src, dst, hop)
            {
                if let Some(tun_tx) = &shared.tun_tx {
                    let _ = tun_tx.try_send(icmp_packet);
                }
            } else {
                NodeStats::bump(&shared.stats.malformed);
            }
            return;
        }
        Ok((PayloadType::Message, _)) => {
            pkt.truncate(PAYLOAD_AT + n);
            let frame = pkt.split_off(PAYLOAD_AT + payload::HEADER_LEN).freeze();
            let msg = crate::messages::BusCmd::Frame {
                src,
                dst,
                key,
                frame,
            };
            if shared.bus_tx.try_send(msg).is_err() {
                // The sender retransmits what the bus could not take.
                NodeStats::bump(&shared.stats.bus_queue_full);
            }
            return;
        }
        Err(_) => {
            NodeStats::bump(&shared.stats.malformed);
            return;
        }
    }
    // Upstream checks nothing here. We require the inner addresses to lie in the
    // outer ones' /64s, so a packet cannot be turned round (src and dst swapped on
    // the outer header) and delivered as if the peer had sent it.
    let Ok(mut ip) = Ipv6Packet::new_checked(&mut plain[payload::HEADER_LEN..]) else {
        NodeStats::bump(&shared.stats.malformed);
        return;
    };
    if !mycelium_proto::Subnet::v6_64(src).contains_ip(ip.src().into())
        || !mycelium_proto::Subnet::v6_64(dst).contains_ip(ip.dst().into())
    {
        NodeStats::bump(&shared.stats.spoofed);
        return;
    }
    ip.set_hop_limit(hop);
    if shared.tun.is_none() {
        return;
    }
    // The IPv6 packet now sits at HEADROOM, where a TUN batch expects it.
    pkt.truncate(PAYLOAD_AT + n);
    out.push(shared, pkt).await;
}
