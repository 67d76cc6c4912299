//! The packet path: TUN to peer (seal), peer to peer (forward), peer to TUN (open).
//!
//! [`DataPath`] is what every packet-moving task shares: the node's key and
//! address, the forwarding snapshot, the queues to the router task, the worker and
//! the bus, the counters and the replay filter. Each task keeps its own
//! [`Local`]: its secrets, its packet tally and its TUN batch. The decisions are
//! [`mycelium_proto::forward`]'s; this module moves the bytes they decide about.
//! Nothing here waits for the router task: what the snapshot cannot answer is
//! queued for it, and it hands packets back through the worker ([`Work`]).

use std::net::Ipv6Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use mycelium_proto::crypto::{NONCE_LEN, OVERHEAD};
use mycelium_proto::forward::{self, Inbound, Outbound, Transit};
use mycelium_proto::icmp;
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::packet::{self, TYPE_DATA};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::view::{DataFrame, Ipv6Packet, OobReport};
use mycelium_proto::{PublicKey, SecretKey, Subnet};
use rand::RngCore;
use tokio::sync::mpsc;

use crate::buffer::{HEADROOM, PAYLOAD_AT};
use crate::cmd::{CoreCmd, InboundFrame, Unrouted, Work};
use crate::icmp as icmp_build;
use crate::replay::ReplayFilter;
use crate::secrets::SecretCache;
use crate::snapshot::{LinkTx, Route, Snapshot};
use crate::stats::{NodeStats, PacketStats, Tally};
use crate::tun::{self, Tun};
use crate::tun_batch::TunBatch;

/// The hop limit message frames are handed to the router with.
const MESSAGE_HOP_LIMIT: u8 = 64;

/// What every packet-moving task shares.
pub(crate) struct DataPath {
    pub(crate) secret: SecretKey,
    pub(crate) own_ip: Ipv6Addr,
    pub(crate) own_subnet: Subnet,
    /// Where packets go, published by the router task.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    /// Packets without a route, and data for us from unknown sources.
    pub(crate) to_core: mpsc::Sender<CoreCmd>,
    /// Message frames for us.
    pub(crate) to_bus: mpsc::Sender<InboundFrame>,
    /// Packets for the worker: ICMPv6 errors for our TUN, reflected packets.
    pub(crate) to_worker: mpsc::Sender<Work>,
    /// The TUN device, if the node has one.
    pub(crate) tun: Option<Arc<Tun>>,
    pub(crate) stats: Arc<NodeStats>,
    /// Data packets per source and destination address.
    pub(crate) packets: Arc<PacketStats>,
    /// Data packets opened recently, to drop replays.
    pub(crate) replays: ReplayFilter,
}

/// What one packet-moving task keeps for itself.
pub(crate) struct Local {
    secrets: SecretCache,
    /// Packet counts per address, merged into [`DataPath::packets`] after each
    /// batch.
    tally: Tally,
    /// Packets for our TUN, written after each batch.
    out: TunBatch,
}

/// The headers of a data packet we originate.
#[derive(Debug, Clone, Copy)]
struct Head {
    kind: PayloadType,
    /// As it leaves this node.
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
}

impl DataPath {
    /// A task's own state.
    pub(crate) fn local(&self) -> Local {
        Local {
            secrets: SecretCache::default(),
            tally: Tally::default(),
            out: TunBatch::new(self.tun.clone()),
        }
    }

    /// Ends a batch: writes the packets gathered for the TUN and merges the tally.
    pub(crate) async fn finish(&self, local: &mut Local) {
        local.out.flush(&self.stats).await;
        local.tally.merge(&self.packets);
    }

    /// Hands the worker an ICMPv6 error or a reflected packet for the TUN: best
    /// effort, as ICMP is; dropped when the worker is that far behind (no link's
    /// queue is full, so no link counter is charged).
    fn to_worker(&self, work: Work) {
        let _ = self.to_worker.try_send(work);
    }

    fn to_core(&self, cmd: CoreCmd) {
        if self.to_core.try_send(cmd).is_err() {
            NodeStats::bump(&self.stats.no_route);
        }
    }

    /// Sends an IPv6 packet of `len` bytes that sits at `HEADROOM` in `buf`, from
    /// this node.
    pub(crate) fn send_local(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        buf: BytesMut,
        len: usize,
    ) {
        let Some(Ok(view)) = buf
            .get(HEADROOM..HEADROOM + len)
            .map(Ipv6Packet::new_checked)
        else {
            NodeStats::bump(&self.stats.malformed);
            return;
        };
        let reflect = tun::REFLECTS_OWN_ADDRESS;
        match forward::outbound(&view, self.own_ip, self.own_subnet, reflect) {
            Outbound::Send { hop_limit } => {
                let (src, dst) = (view.src(), view.dst());
                let head = Head {
                    kind: PayloadType::Ipv6,
                    hop_limit,
                    src,
                    dst,
                };
                self.originate(local, snapshot, head, buf, len, |buf| Unrouted::Local {
                    buf,
                    len,
                    dst,
                });
            }
            Outbound::Refused(e) => {
                let counter = if e.kind == icmp::TIME_EXCEEDED {
                    &self.stats.hop_limit_exceeded
                } else {
                    &self.stats.no_route
                };
                NodeStats::bump(counter);
                self.to_worker(Work::ToTun(icmp_build::for_tun(e, view.as_bytes())));
            }
            Outbound::Reflect => {
                self.to_worker(Work::ToTun(crate::buffer::with_headroom(view.as_bytes())))
            }
            Outbound::TooLong => NodeStats::bump(&self.stats.malformed),
        }
    }

    /// Sends a message frame (at `HEADROOM` in `buf`, from
    /// [`crate::buffer::with_headroom`]) from `src` to `dst` with hop limit 64, as
    /// the message subsystem hands it to the router.
    pub(crate) fn send_frame(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        buf: BytesMut,
    ) {
        let len = buf.len() - HEADROOM;
        if len > forward::MAX_INNER_PACKET {
            NodeStats::bump(&self.stats.malformed);
            return;
        }
        let head = Head {
            kind: PayloadType::Message,
            hop_limit: MESSAGE_HOP_LIMIT - 1,
            src,
            dst,
        };
        self.originate(local, snapshot, head, buf, len, |buf| Unrouted::Message {
            src,
            dst,
            buf,
        });
    }

    /// Seals and sends a packet we originate (`len` bytes at `HEADROOM` in `buf`)
    /// when the snapshot has a route for it; hands it to the router task, as
    /// `unrouted` makes it, when it has not.
    fn originate(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        head: Head,
        buf: BytesMut,
        len: usize,
        unrouted: impl FnOnce(BytesMut) -> Unrouted,
    ) {
        match snapshot.route(head.dst) {
            Route::Via(tx, key) => self.seal_and_send(local, tx, key, head, buf, len),
            Route::Ask => self.to_core(CoreCmd::Unrouted(unrouted(buf))),
        }
    }

    /// Seals the `len` bytes at `HEADROOM` in `buf` for `key`, writes the headers
    /// in front and queues the packet on `tx`.
    fn seal_and_send(
        &self,
        local: &mut Local,
        tx: &LinkTx,
        key: PublicKey,
        head: Head,
        mut buf: BytesMut,
        len: usize,
    ) {
        let secret = local.secrets.get(&self.secret, key);
        buf.truncate(HEADROOM + len);
        buf.resize(HEADROOM + len + OVERHEAD, 0);
        buf[PAYLOAD_AT..HEADROOM].copy_from_slice(&payload::header(head.kind));
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        if secret.seal_in_place(nonce, &mut buf[PAYLOAD_AT..]).is_err() {
            return;
        }
        // Fits: callers refuse longer packets (`forward::MAX_INNER_PACKET`).
        let payload_len = (buf.len() - PAYLOAD_AT) as u16;
        let mut out = &mut buf[..PAYLOAD_AT];
        packet::encode_header(TYPE_DATA, &mut out);
        DataHeader {
            hop_limit: head.hop_limit,
            src: head.src,
            dst: head.dst,
        }
        .encode(payload_len, &mut out);
        local
            .tally
            .count(&self.packets, head.src, head.dst, payload_len as usize);
        if tx.try_send(buf.freeze()).is_err() {
            NodeStats::bump(&self.stats.link_queue_full);
        }
    }

    /// Handles a whole data packet received from a peer:
    /// forwards it, or opens it and delivers it.
    pub(crate) async fn handle_data(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        mut pkt: BytesMut,
    ) {
        let Ok(mut frame) = DataFrame::new_checked(&mut pkt[..]) else {
            NodeStats::bump(&self.stats.malformed);
            return;
        };
        let (src, dst) = (frame.src(), frame.dst());
        let next = forward::transit(&mut frame, self.own_subnet, |dst| {
            match snapshot.route(dst) {
                Route::Via(tx, _) => Some(tx),
                Route::Ask => None,
            }
        });
        match next {
            Transit::Expired => {
                NodeStats::bump(&self.stats.hop_limit_exceeded);
                self.report_to_source(local, snapshot, &pkt, icmp::TIME_EXCEEDED, 0);
            }
            Transit::Deliver => self.deliver(local, snapshot, pkt).await,
            Transit::Forward(tx) => {
                NodeStats::bump(&self.stats.forwarded);
                local
                    .tally
                    .count(&self.packets, src, dst, pkt.len() - PAYLOAD_AT);
                if tx.try_send(pkt.freeze()).is_err() {
                    NodeStats::bump(&self.stats.link_queue_full);
                }
            }
            Transit::Unrouted => self.to_core(CoreCmd::Unrouted(Unrouted::Transit { pkt, dst })),
        }
    }

    /// Reports a transit packet we cannot carry to its source, in an out-of-band
    /// ICMP packet. Needs a key and a route for the source;
    /// without either the packet is just dropped.
    pub(crate) fn report_to_source(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        orig: &[u8],
        kind: u8,
        code: u8,
    ) {
        let Ok(orig) = DataFrame::new_checked(orig) else {
            return;
        };
        let src = orig.src();
        let (Some(key), Route::Via(tx, _)) = (snapshot.key_for(src), snapshot.route(src)) else {
            return;
        };
        let std::net::IpAddr::V6(reporter) = self.own_subnet.address() else {
            return;
        };
        let secret = local.secrets.get(&self.secret, key);
        if let Some(report) = icmp_build::report(secret, reporter, &orig, kind, code) {
            let _ = tx.try_send(report.freeze());
        }
    }

    /// Opens a data packet addressed to us and writes what it carries to the TUN
    /// (or the bus).
    pub(crate) async fn deliver(&self, local: &mut Local, snapshot: &Snapshot, mut pkt: BytesMut) {
        let Ok(frame) = DataFrame::new_checked(&pkt[..]) else {
            NodeStats::bump(&self.stats.malformed);
            return;
        };
        let (hop, src, dst) = (frame.hop_limit(), frame.src(), frame.dst());
        let Some(key) = snapshot.key_for(src) else {
            // The router task asks for the route and hands it back once known.
            let _ = self
                .to_core
                .try_send(CoreCmd::UnknownSource { src, packet: pkt });
            return;
        };
        local
            .tally
            .count(&self.packets, src, dst, pkt.len() - PAYLOAD_AT);
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
        let secret = local.secrets.get(&self.secret, key);
        let Ok(n) = secret.open_in_place(&mut pkt[PAYLOAD_AT..]) else {
            NodeStats::bump(&self.stats.decrypt_failures);
            return;
        };
        // Authentic, but perhaps a copy of one delivered before (upstream's format
        // has no sequence numbers; see `ReplayFilter`).
        if self.replays.seen(src, &nonce) {
            NodeStats::bump(&self.stats.replayed);
            return;
        }
        pkt.truncate(PAYLOAD_AT + n);
        match forward::inbound(src, dst, hop, &mut pkt[PAYLOAD_AT..]) {
            Inbound::Ipv6 => {
                // The IPv6 packet now sits at HEADROOM, where a TUN batch expects it.
                local.out.push(&self.stats, pkt).await;
            }
            Inbound::Message => {
                let frame = pkt.split_off(HEADROOM).freeze();
                let msg = InboundFrame {
                    src,
                    dst,
                    key,
                    frame,
                };
                if self.to_bus.try_send(msg).is_err() {
                    // The sender retransmits what the bus could not take.
                    NodeStats::bump(&self.stats.bus_queue_full);
                }
            }
            Inbound::OobIcmp => {
                let report = OobReport::new_checked(&pkt[HEADROOM..])
                    .ok()
                    .and_then(|r| Some((snapshot.key_for(r.original_dst())?, r)))
                    .and_then(|(key, r)| {
                        let secret = local.secrets.get(&self.secret, key);
                        icmp_build::report_for_tun(secret, &r, src, dst, hop)
                    });
                match report {
                    Some(icmp_packet) => local.out.push(&self.stats, icmp_packet).await,
                    None => NodeStats::bump(&self.stats.malformed),
                }
            }
            Inbound::Spoofed => NodeStats::bump(&self.stats.spoofed),
            Inbound::Malformed => NodeStats::bump(&self.stats.malformed),
        }
    }

    /// Does what the router task handed back.
    pub(crate) async fn work(&self, local: &mut Local, snapshot: &Snapshot, work: Work) {
        match work {
            Work::Retry(Unrouted::Local { buf, len, .. }) => {
                self.send_local(local, snapshot, buf, len)
            }
            Work::Retry(Unrouted::Message { src, dst, buf }) => {
                self.send_frame(local, snapshot, src, dst, buf)
            }
            Work::Retry(Unrouted::Transit { pkt, .. }) => {
                self.handle_data(local, snapshot, pkt).await
            }
            Work::Deliver(pkt) => self.deliver(local, snapshot, pkt).await,
            Work::NoRoute { buf, len } => {
                // "No route", from the packet's own source as upstream sends it.
                let Some(Ok(ip)) = buf
                    .get(HEADROOM..HEADROOM + len)
                    .map(Ipv6Packet::new_checked)
                else {
                    return;
                };
                let e = forward::IcmpError {
                    src: ip.src(),
                    dst: ip.src(),
                    hop_limit: ip.hop_limit(),
                    kind: icmp::DESTINATION_UNREACHABLE,
                    code: icmp::CODE_NO_ROUTE,
                };
                local
                    .out
                    .push(&self.stats, icmp_build::for_tun(e, ip.as_bytes()))
                    .await;
            }
            Work::Unreachable(pkt) => self.report_to_source(
                local,
                snapshot,
                &pkt,
                icmp::DESTINATION_UNREACHABLE,
                icmp::CODE_NO_ROUTE,
            ),
            Work::ToTun(packet) => local.out.push(&self.stats, packet).await,
        }
    }
}

/// The forwarding rules, exercised on a data path without a TUN device or sockets:
/// links, the router task, the worker and the bus are queues the tests read.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use mycelium_proto::crypto::SharedSecret;
    use mycelium_proto::routing::PeerId;
    use mycelium_proto::wire::view::Ipv6Packet;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::snapshot::TableWriter;

    /// A data path at `me`, with two links: one towards `a` (peer 1, also a
    /// neighbour sending us packets) and one towards `c` (peer 2). `d`'s key is
    /// known without a route; `e` is unknown.
    struct Bench {
        path: DataPath,
        snapshot: Snapshot,
        me: SecretKey,
        a: SecretKey,
        c: SecretKey,
        d: SecretKey,
        e: SecretKey,
        to_a: mpsc::Receiver<Bytes>,
        to_c: mpsc::Receiver<Bytes>,
        core: mpsc::Receiver<CoreCmd>,
        work: mpsc::Receiver<Work>,
        bus: mpsc::Receiver<InboundFrame>,
    }

    fn key() -> SecretKey {
        SecretKey::generate(&mut rand::thread_rng())
    }

    fn bench() -> Bench {
        let (me, a, c, d, e) = (key(), key(), key(), key(), key());
        let (tx_a, to_a) = mpsc::channel(16);
        let (tx_c, to_c) = mpsc::channel(16);
        let links = [(PeerId(1), tx_a), (PeerId(2), tx_c)].into_iter().collect();
        let mut table = TableWriter::new(16, 1);
        table.replace_all(
            [
                (a.public_key().subnet(), a.public_key(), Some(PeerId(1))),
                (c.public_key().subnet(), c.public_key(), Some(PeerId(2))),
                (d.public_key().subnet(), d.public_key(), None),
            ]
            .into_iter(),
        );
        let snapshot = Snapshot::new(links, table.table().clone());
        let (to_core, core) = mpsc::channel(16);
        let (to_worker, work) = mpsc::channel(16);
        let (to_bus, bus) = mpsc::channel(16);
        let path = DataPath {
            secret: me.clone(),
            own_ip: me.public_key().address(),
            own_subnet: me.public_key().subnet(),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::new(
                Default::default(),
                table.table().clone(),
            ))),
            to_core,
            to_bus,
            to_worker,
            tun: None,
            stats: Arc::default(),
            packets: Arc::default(),
            replays: ReplayFilter::default(),
        };
        Bench {
            path,
            snapshot,
            me,
            a,
            c,
            d,
            e,
            to_a,
            to_c,
            core,
            work,
            bus,
        }
    }

    fn ipv6(hop: u8, src: Ipv6Addr, dst: Ipv6Addr, body: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + body];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(body as u16).to_be_bytes());
        p[6] = 59;
        p[7] = hop;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p
    }

    /// A data packet from `from` to `to`'s address, carrying `inner` as `kind`,
    /// sealed with the secret they share.
    fn sealed(
        from: &SecretKey,
        to: PublicKey,
        hop: u8,
        kind: PayloadType,
        inner: &[u8],
    ) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.resize(PAYLOAD_AT, 0);
        buf.extend_from_slice(&payload::header(kind));
        buf.extend_from_slice(inner);
        buf.resize(buf.len() + OVERHEAD, 0);
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        SharedSecret::new(from, &to)
            .seal_in_place(nonce, &mut buf[PAYLOAD_AT..])
            .unwrap();
        let len = (buf.len() - PAYLOAD_AT) as u16;
        let mut head = &mut buf[..PAYLOAD_AT];
        packet::encode_header(TYPE_DATA, &mut head);
        DataHeader {
            hop_limit: hop,
            src: from.public_key().address(),
            dst: to.address(),
        }
        .encode(len, &mut head);
        buf
    }

    fn addr(k: &SecretKey) -> Ipv6Addr {
        k.public_key().address()
    }

    fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_transit_packet_goes_on_with_one_hop_less_from_two_hops_up() {
        let mut b = bench();
        let mut local = b.path.local();
        for hop in [2, 3, 64, 255] {
            let pkt = sealed(&b.a, b.c.public_key(), hop, PayloadType::Ipv6, &[1; 48]);
            b.path
                .handle_data(&mut local, &b.snapshot, pkt.clone())
                .await;
            let out = b.to_c.try_recv().unwrap();
            let frame = DataFrame::new_checked(&out[..]).unwrap();
            assert_eq!(frame.hop_limit(), hop - 1);
            assert_eq!(out[PAYLOAD_AT..], pkt[PAYLOAD_AT..], "the payload changed");
        }
        assert_eq!(count(&b.path.stats.forwarded), 4);
        assert!(b.to_a.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_transit_packet_without_hops_to_give_is_reported_to_its_source() {
        let mut b = bench();
        let mut local = b.path.local();
        for hop in [0, 1] {
            let pkt = sealed(&b.a, b.c.public_key(), hop, PayloadType::Ipv6, &[1; 48]);
            b.path
                .handle_data(&mut local, &b.snapshot, pkt.clone())
                .await;
            assert!(b.to_c.try_recv().is_err(), "hop {hop} went on");
            // The report goes back towards the source, sealed for it, and quotes
            // the packet's sealed payload.
            let mut report = BytesMut::from(&b.to_a.try_recv().unwrap()[..]);
            let frame = DataFrame::new_checked(&report[..]).unwrap();
            assert_eq!((frame.dst(), frame.hop_limit()), (addr(&b.a), 63));
            let secret = SharedSecret::new(&b.a, &b.me.public_key());
            let n = secret.open_in_place(&mut report[PAYLOAD_AT..]).unwrap();
            let plain = &report[PAYLOAD_AT..PAYLOAD_AT + n];
            let (kind, body) = payload::decode(plain).unwrap();
            assert_eq!(kind, PayloadType::OobIcmp);
            assert_eq!(body[..16], addr(&b.c).octets());
            let icmp_packet = Ipv6Packet::new_checked(&body[16..]).unwrap();
            assert_eq!(icmp_packet.dst(), addr(&b.a));
            assert_eq!(icmp_packet.payload()[0], icmp::TIME_EXCEEDED);
            assert_eq!(icmp_packet.payload()[8..], pkt[PAYLOAD_AT..]);
        }
        assert_eq!(count(&b.path.stats.hop_limit_exceeded), 2);
    }

    #[tokio::test]
    async fn a_packet_for_an_unknown_destination_goes_to_the_router_unchanged() {
        let mut b = bench();
        let mut local = b.path.local();
        for to in [b.e.public_key(), b.d.public_key()] {
            let pkt = sealed(&b.a, to, 9, PayloadType::Ipv6, &[1; 48]);
            b.path
                .handle_data(&mut local, &b.snapshot, pkt.clone())
                .await;
            match b.core.try_recv() {
                Ok(CoreCmd::Unrouted(Unrouted::Transit { pkt: held, dst })) => {
                    assert_eq!(held, pkt);
                    assert_eq!(dst, to.address());
                }
                _ => panic!("the router task was not asked"),
            }
        }
        assert!(b.to_a.try_recv().is_err() && b.to_c.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_packet_for_us_is_opened_with_the_outer_hop_limit() {
        let b = bench();
        let mut local = b.path.local();
        let inner = ipv6(64, addr(&b.a), addr(&b.me), 20);
        let pkt = sealed(&b.a, b.me.public_key(), 10, PayloadType::Ipv6, &inner);
        b.path.handle_data(&mut local, &b.snapshot, pkt).await;
        let out = local.out.queued();
        assert_eq!(out.len(), 1);
        let ip = Ipv6Packet::new_checked(&out[0][HEADROOM..]).unwrap();
        assert_eq!(ip.hop_limit(), 9);
        assert_eq!(ip.payload(), &inner[40..]);
    }

    #[tokio::test]
    async fn a_replayed_packet_is_delivered_once() {
        let b = bench();
        let mut local = b.path.local();
        let inner = ipv6(64, addr(&b.a), addr(&b.me), 20);
        let pkt = sealed(&b.a, b.me.public_key(), 10, PayloadType::Ipv6, &inner);
        for _ in 0..3 {
            b.path
                .handle_data(&mut local, &b.snapshot, pkt.clone())
                .await;
        }
        assert_eq!(local.out.queued().len(), 1);
        assert_eq!(count(&b.path.stats.replayed), 2);
    }

    #[tokio::test]
    async fn inner_addresses_outside_the_outer_subnets_are_dropped() {
        let b = bench();
        let mut local = b.path.local();
        let forged_src = ipv6(64, addr(&b.c), addr(&b.me), 20);
        let forged_dst = ipv6(64, addr(&b.a), addr(&b.c), 20);
        for inner in [forged_src, forged_dst] {
            let pkt = sealed(&b.a, b.me.public_key(), 10, PayloadType::Ipv6, &inner);
            b.path.handle_data(&mut local, &b.snapshot, pkt).await;
        }
        assert!(local.out.queued().is_empty());
        assert_eq!(count(&b.path.stats.spoofed), 2);
    }

    #[tokio::test]
    async fn short_mislabelled_and_unopenable_packets_are_counted() {
        let b = bench();
        let mut local = b.path.local();
        let good = sealed(&b.a, b.me.public_key(), 10, PayloadType::Ipv6, &[0; 48]);
        let short = BytesMut::from(&good[..PAYLOAD_AT - 1]);
        let mut wrong_len = good.clone();
        wrong_len.truncate(good.len() - 1);
        b.path.handle_data(&mut local, &b.snapshot, short).await;
        b.path.handle_data(&mut local, &b.snapshot, wrong_len).await;
        assert_eq!(count(&b.path.stats.malformed), 2);
        // Sealed for someone else: does not open.
        let mut other = sealed(&b.a, b.c.public_key(), 10, PayloadType::Ipv6, &[0; 48]);
        other[PAYLOAD_AT - 16..PAYLOAD_AT].copy_from_slice(&addr(&b.me).octets());
        b.path.handle_data(&mut local, &b.snapshot, other).await;
        assert_eq!(count(&b.path.stats.decrypt_failures), 1);
        // Opens, but holds no IPv6 header.
        let empty = sealed(&b.a, b.me.public_key(), 10, PayloadType::Ipv6, &[0x60; 8]);
        b.path.handle_data(&mut local, &b.snapshot, empty).await;
        assert_eq!(count(&b.path.stats.malformed), 3);
        assert!(local.out.queued().is_empty());
    }

    #[tokio::test]
    async fn a_packet_from_an_unknown_source_waits_for_its_key() {
        let mut b = bench();
        let mut local = b.path.local();
        let pkt = sealed(&b.e, b.me.public_key(), 10, PayloadType::Ipv6, &[0; 48]);
        b.path.handle_data(&mut local, &b.snapshot, pkt).await;
        match b.core.try_recv() {
            Ok(CoreCmd::UnknownSource { src, packet }) => {
                assert_eq!(src, addr(&b.e));
                // Its hop was taken on arrival; delivery does not take another.
                assert_eq!(DataFrame::new_checked(&packet[..]).unwrap().hop_limit(), 9);
            }
            _ => panic!("the router task was not asked for the key"),
        }
    }

    #[tokio::test]
    async fn a_message_frame_goes_to_the_bus() {
        let mut b = bench();
        let mut local = b.path.local();
        let pkt = sealed(&b.a, b.me.public_key(), 10, PayloadType::Message, b"frame");
        b.path.handle_data(&mut local, &b.snapshot, pkt).await;
        let f = b.bus.try_recv().unwrap();
        assert_eq!(
            (f.src, f.key, &f.frame[..]),
            (addr(&b.a), b.a.public_key(), &b"frame"[..])
        );
    }

    /// Sends `inner` from our TUN.
    fn from_tun(b: &Bench, local: &mut Local, inner: &[u8]) {
        let buf = crate::buffer::with_headroom(inner);
        b.path.send_local(local, &b.snapshot, buf, inner.len());
    }

    #[tokio::test]
    async fn a_local_packet_is_sealed_for_its_destination_with_one_hop_less() {
        let mut b = bench();
        let mut local = b.path.local();
        let inner = ipv6(2, addr(&b.me), addr(&b.c), 20);
        from_tun(&b, &mut local, &inner);
        let mut out = BytesMut::from(&b.to_c.try_recv().unwrap()[..]);
        let frame = DataFrame::new_checked(&out[..]).unwrap();
        assert_eq!((frame.hop_limit(), frame.dst()), (1, addr(&b.c)));
        let secret = SharedSecret::new(&b.c, &b.me.public_key());
        let n = secret.open_in_place(&mut out[PAYLOAD_AT..]).unwrap();
        assert_eq!(out[HEADROOM..PAYLOAD_AT + n], inner[..]);
    }

    #[tokio::test]
    async fn local_packets_that_cannot_leave_get_an_icmp_error_back() {
        let mut b = bench();
        let mut local = b.path.local();
        let mut neighbour_in_our_64 = addr(&b.me).octets();
        neighbour_in_our_64[15] ^= 1;
        let cases = [
            (
                ipv6(64, addr(&b.me), neighbour_in_our_64.into(), 8),
                icmp::DESTINATION_UNREACHABLE,
            ),
            (
                ipv6(64, "fd00::1".parse().unwrap(), addr(&b.c), 8),
                icmp::DESTINATION_UNREACHABLE,
            ),
            (ipv6(1, addr(&b.me), addr(&b.c), 8), icmp::TIME_EXCEEDED),
            (ipv6(0, addr(&b.me), addr(&b.c), 8), icmp::TIME_EXCEEDED),
        ];
        for (inner, kind) in cases {
            from_tun(&b, &mut local, &inner);
            let Ok(Work::ToTun(reply)) = b.work.try_recv() else {
                panic!("no ICMPv6 error")
            };
            let ip = Ipv6Packet::new_checked(&reply[HEADROOM..]).unwrap();
            assert_eq!(ip.payload()[0], kind);
        }
        assert!(b.to_c.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_local_packet_too_long_to_seal_is_dropped() {
        let mut b = bench();
        let mut local = b.path.local();
        let inner = ipv6(
            64,
            addr(&b.me),
            addr(&b.c),
            forward::MAX_INNER_PACKET + 1 - 40,
        );
        from_tun(&b, &mut local, &inner);
        assert!(b.to_c.try_recv().is_err());
        assert_eq!(count(&b.path.stats.malformed), 1);
        // One byte less fits.
        let inner = ipv6(64, addr(&b.me), addr(&b.c), forward::MAX_INNER_PACKET - 40);
        from_tun(&b, &mut local, &inner);
        let out = b.to_c.try_recv().unwrap();
        assert_eq!(out.len(), PAYLOAD_AT + u16::MAX as usize);
    }

    #[tokio::test]
    async fn held_packets_come_back_to_be_sent_again_without_a_second_hop_taken() {
        let mut b = bench();
        let mut local = b.path.local();
        let pkt = sealed(&b.a, b.e.public_key(), 9, PayloadType::Ipv6, &[1; 48]);
        b.path.handle_data(&mut local, &b.snapshot, pkt).await;
        let Ok(CoreCmd::Unrouted(held)) = b.core.try_recv() else {
            panic!("not held")
        };
        // The route appears: e is reached through a.
        let mut table = TableWriter::new(16, 1);
        table.replace_all(
            [(b.e.public_key().subnet(), b.e.public_key(), Some(PeerId(1)))].into_iter(),
        );
        let (tx_a, mut to_a) = mpsc::channel(4);
        let snapshot = Snapshot::new(
            [(PeerId(1), tx_a)].into_iter().collect(),
            table.table().clone(),
        );
        b.path.work(&mut local, &snapshot, Work::Retry(held)).await;
        let out = to_a.try_recv().unwrap();
        assert_eq!(DataFrame::new_checked(&out[..]).unwrap().hop_limit(), 8);
    }

    #[tokio::test]
    async fn a_report_about_our_packet_becomes_an_icmp_error_on_our_tun() {
        let mut b = bench();
        let mut local = b.path.local();
        // We send c a packet; a, on the way, reports that it ran out of hops.
        let inner = ipv6(2, addr(&b.me), addr(&b.c), 20);
        from_tun(&b, &mut local, &inner);
        let sent = b.to_c.try_recv().unwrap();
        let sent = DataFrame::new_checked(&sent[..]).unwrap();
        let std::net::IpAddr::V6(reporter) = b.a.public_key().subnet().address() else {
            panic!("an IPv6 subnet")
        };
        let secret = SharedSecret::new(&b.a, &b.me.public_key());
        let report = icmp_build::report(&secret, reporter, &sent, icmp::TIME_EXCEEDED, 0).unwrap();
        b.path.handle_data(&mut local, &b.snapshot, report).await;
        // Our TUN gets the error from the reporter, quoting what we sent.
        let out = local.out.queued();
        assert_eq!(out.len(), 1);
        let ip = Ipv6Packet::new_checked(&out[0][HEADROOM..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (reporter, addr(&b.me)));
        assert_eq!(ip.payload()[0], icmp::TIME_EXCEEDED);
        assert_eq!(ip.payload()[8..], inner[..]);
        // A report that does not open for us is dropped and counted.
        let forged = SharedSecret::new(&b.d, &b.me.public_key());
        let sent_again = sealed(&b.me, b.c.public_key(), 9, PayloadType::Ipv6, &inner);
        let sent_again = DataFrame::new_checked(&sent_again[..]).unwrap();
        // From a's subnet, so opened with a's key, which opens nothing d sealed.
        let bogus =
            icmp_build::report(&forged, reporter, &sent_again, icmp::TIME_EXCEEDED, 0).unwrap();
        b.path.handle_data(&mut local, &b.snapshot, bogus).await;
        assert_eq!(local.out.queued().len(), 1);
        assert_eq!(count(&b.path.stats.decrypt_failures), 1);
    }
}
