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
use mycelium_proto::wire::view::{DataFrame, Ipv6Packet};
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

/// The hop limit message frames are handed to the router with (MESSAGES.md §1).
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
    /// Data packets per source and destination address (API.md §1.5).
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

    fn to_worker(&self, work: Work) {
        if self.to_worker.try_send(work).is_err() {
            NodeStats::bump(&self.stats.link_queue_full);
        }
    }

    fn to_core(&self, cmd: CoreCmd) {
        if self.to_core.try_send(cmd).is_err() {
            NodeStats::bump(&self.stats.no_route);
        }
    }

    /// Sends an IPv6 packet of `len` bytes that sits at `HEADROOM` in `buf`, from
    /// this node (PROTOCOL.md §7.3).
    pub(crate) fn send_local(
        &self,
        local: &mut Local,
        snapshot: &Snapshot,
        buf: BytesMut,
        len: usize,
    ) {
        let Some(Ok(view)) = buf.get(HEADROOM..HEADROOM + len).map(Ipv6Packet::new_checked)
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
                if self.tun.is_some() {
                    self.to_worker(Work::ToTun(icmp_build::for_tun(e, view.as_bytes())));
                }
            }
            Outbound::Reflect => self.to_worker(Work::ToTun(crate::buffer::with_headroom(
                view.as_bytes(),
            ))),
            Outbound::TooLong => NodeStats::bump(&self.stats.malformed),
        }
    }

    /// Sends a message frame (at `HEADROOM` in `buf`, from
    /// [`crate::buffer::with_headroom`]) from `src` to `dst` with hop limit 64, as
    /// the message subsystem hands it to the router (MESSAGES.md §1).
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

    /// Handles a whole data packet received from a peer (PROTOCOL.md §7.4):
    /// forwards it, or opens it and delivers it.
    pub(crate) async fn handle_data(&self, local: &mut Local, snapshot: &Snapshot, mut pkt: BytesMut) {
        let Ok(mut frame) = DataFrame::new_checked(&mut pkt[..]) else {
            NodeStats::bump(&self.stats.malformed);
            return;
        };
        let (src, dst) = (frame.src(), frame.dst());
        let next = forward::transit(&mut frame, self.own_subnet, |dst| match snapshot.route(dst) {
            Route::Via(tx, _) => Some(tx),
            Route::Ask => None,
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
    /// ICMP packet (PROTOCOL.md §7.7). Needs a key and a route for the source;
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
        if let Some(tail) = pkt.len().checked_sub(NONCE_LEN).and_then(|at| pkt.get(at..)) {
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
                let body = &pkt[HEADROOM..];
                let report = icmp_build::reported_destination(body)
                    .and_then(|orig_dst| snapshot.key_for(orig_dst))
                    .and_then(|key| {
                        let secret = local.secrets.get(&self.secret, key);
                        icmp_build::report_for_tun(secret, body, src, dst, hop)
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
                let Some(Ok(ip)) = buf.get(HEADROOM..HEADROOM + len).map(Ipv6Packet::new_checked)
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
