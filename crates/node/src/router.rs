//! The router task (the *core*): owns the router, takes link events and control
//! TLVs, runs the timers, holds packets that wait for a route, and publishes the
//! forwarding snapshot. It never waits on packet I/O: packets it held go back to
//! the data plane's worker ([`Work`]).

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use mycelium_proto::routing::{Event, LinkKind, PeerId, Resolution, Router, SubnetEntry};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::{control, Metric, Tlv};
use mycelium_proto::{PublicKey, Subnet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cmd::{CoreCmd, Query, Unrouted, Work};
use crate::control_queue::{ControlFull, ControlTx};
use crate::quic_flaps::{Admission, QuicFlaps, QuicLinkEnd, Resume, Verdict};
use crate::snapshot::{LinkTx, Snapshot, TableWriter};
use crate::stats::{NodeStats, PacketStats};
use crate::views::{RouteInfo, RouterView, RoutesView};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Packets waiting for a route, per destination `/64`.
const PENDING_PER_SUBNET: usize = 1_000;
/// Packets waiting for a route, in all.
const PENDING_TOTAL: usize = 10_000;
/// Packets from a source we have no key for yet, per source `/64` and in all.
const UNKNOWN_PER_SOURCE: usize = 100;
const UNKNOWN_TOTAL: usize = 1_000;
/// Inputs of the core queued at once (control TLVs come in batches, bounded apart).
pub(crate) const CORE_QUEUE: usize = 16_384;
/// Control TLVs read from links and queued for the core at once, over all links,
/// however they are batched (what one message per TLV allowed before).
pub(crate) const CONTROL_IN_FLIGHT: usize = 16_384;
/// The same for a leaf, which keeps few routes and drops what else its neighbours
/// push: a full node's bound would fill with updates it drops, and the allocator
/// would keep the memory they took (1.45 MiB, measured).
pub(crate) const LEAF_CONTROL_IN_FLIGHT: usize = 1_024;
/// Packets queued for the data plane's worker: everything the core may hold at
/// once, and room for ICMPv6 errors and reflected packets for the TUN. A queue
/// slot costs nothing until used.
pub(crate) const WORK_QUEUE: usize = PENDING_TOTAL + UNKNOWN_TOTAL + 4_096;
/// Control TLVs handled between two flushes at most. A flush publishes what the
/// router changed, so this bounds how late a route reaches the data plane while
/// tables pour in (about a millisecond of router work), and keeps each batch's
/// changes few enough for the router to list (beyond that the whole forwarding
/// table is compared).
const FLUSH_TLVS: usize = 1_024;
/// Commands handled between two flushes at most.
const FLUSH_COMMANDS: usize = 257;
/// How often the router is told which subnets the data plane used: a leaf keeps
/// them in its cache, and any node asks again for a used route about to expire.
const USE_REPORT: Duration = Duration::from_secs(1);

struct Link {
    control: ControlTx,
    close: CancellationToken,
    conn_id: String,
    kind: LinkKind,
    /// The peer's socket address (none for vsock).
    remote: Option<std::net::SocketAddr>,
    /// Control packets encoded during this flush, sent as one chunk at its end.
    out: BytesMut,
    out_packets: u64,
}

/// What the core is given to run with.
pub(crate) struct CoreParts {
    pub(crate) router: Router,
    /// The forwarding table, kept in step with the router's selections.
    pub(crate) forwarding: TableWriter,
    /// Where the snapshot is published for the data plane.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) rx: mpsc::Receiver<CoreCmd>,
    /// Packets handed back to the data plane.
    pub(crate) to_worker: mpsc::Sender<Work>,
    pub(crate) stats: Arc<NodeStats>,
    /// What the data plane counted, including which subnets it used.
    pub(crate) packets: Arc<PacketStats>,
    pub(crate) shutdown: CancellationToken,
    /// Pause QUIC to neighbours that keep dropping it while TCP to them is up
    /// (the default; see [`crate::quic_flaps`]).
    pub(crate) pause_flapping_quic: bool,
}

pub(crate) struct Core {
    rx: mpsc::Receiver<CoreCmd>,
    router: Router,
    epoch: tokio::time::Instant,
    links: Map<PeerId, Link>,
    link_txs: Map<PeerId, LinkTx>,
    /// Links with control packets encoded in this flush.
    links_to_send: Vec<PeerId>,
    /// The forwarding table the data plane reads, which the core keeps in step
    /// with the router's selections.
    forwarding: TableWriter,
    snapshot: Arc<ArcSwap<Snapshot>>,
    to_worker: mpsc::Sender<Work>,
    stats: Arc<NodeStats>,
    packets: Arc<PacketStats>,
    /// When the data plane's use is next reported to the router.
    next_use_report: tokio::time::Instant,
    /// Scratch: the `/64`s used, with packet counts.
    used: Vec<(u64, u64)>,
    shutdown: CancellationToken,
    /// Scratch: subnets whose forwarding changed.
    changed: Vec<Subnet>,
    links_changed: bool,
    pending: Map<Subnet, VecDeque<Unrouted>>,
    pending_total: usize,
    unknown: Map<Subnet, VecDeque<BytesMut>>,
    unknown_total: usize,
    /// QUIC neighbours that drop their links when they have large packets for us.
    flaps: QuicFlaps,
    /// Times the whole forwarding table was compared with the router's because
    /// the router could not list what changed.
    #[cfg(test)]
    pub(crate) full_publications: Arc<std::sync::atomic::AtomicU64>,
}

impl Core {
    pub(crate) fn new(parts: CoreParts) -> Self {
        let CoreParts {
            mut router,
            forwarding,
            snapshot,
            rx,
            to_worker,
            stats,
            packets,
            shutdown,
            pause_flapping_quic,
        } = parts;
        router.track_selection_changes();
        Self {
            rx,
            router,
            epoch: tokio::time::Instant::now(),
            links: Map::default(),
            link_txs: Map::default(),
            links_to_send: Vec::new(),
            forwarding,
            snapshot,
            to_worker,
            stats,
            packets,
            next_use_report: tokio::time::Instant::now() + USE_REPORT,
            used: Vec::new(),
            shutdown,
            changed: Vec::new(),
            links_changed: true,
            pending: Map::default(),
            pending_total: 0,
            unknown: Map::default(),
            unknown_total: 0,
            flaps: QuicFlaps::new(pause_flapping_quic),
            #[cfg(test)]
            full_publications: Arc::default(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_epoch(self.epoch.elapsed())
    }

    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self
                .router
                .poll_timeout()
                .map(|t| self.epoch + t.since_epoch())
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let mut tlvs = self.handle(cmd);
                    let mut commands = 1;
                    while commands < FLUSH_COMMANDS && tlvs < FLUSH_TLVS {
                        match self.rx.try_recv() {
                            Ok(cmd) => tlvs += self.handle(cmd),
                            Err(_) => break,
                        }
                        commands += 1;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.router.handle_timeout(now);
                }
                _ = tokio::time::sleep_until(self.next_use_report) => {
                    self.next_use_report += USE_REPORT;
                    self.report_use();
                }
            }
            self.flush();
        }
        for link in self.links.values() {
            link.close.cancel();
        }
    }

    /// Handles one input; returns the control TLVs it carried.
    pub(crate) fn handle(&mut self, cmd: CoreCmd) -> usize {
        let now = self.now();
        match cmd {
            CoreCmd::LinkUp {
                peer,
                kind,
                conn_id,
                remote,
                data,
                control,
                close,
            } => {
                self.link_txs.insert(peer, data);
                self.links.insert(
                    peer,
                    Link {
                        control,
                        close,
                        conn_id,
                        kind,
                        remote,
                        out: BytesMut::new(),
                        out_packets: 0,
                    },
                );
                self.links_changed = true;
                NodeStats::bump(&self.stats.links_up);
                self.router.handle_peer_up(now, peer, kind);
            }
            CoreCmd::LinkDown { peer, quic } => {
                if let Some(end) = quic {
                    // Before the router forgets who was at the other end.
                    self.quic_link_down(now, peer, &end);
                }
                self.links.remove(&peer);
                self.link_txs.remove(&peer);
                self.links_changed = true;
                NodeStats::bump(&self.stats.links_down);
                self.router.handle_peer_down(now, peer);
            }
            CoreCmd::Control { peer, tlvs, permit } => {
                let mut kinds = [0u64; 5];
                for tlv in &tlvs {
                    let kind = match tlv {
                        Tlv::Hello(_) => 0,
                        Tlv::Ihu(_) => 1,
                        Tlv::Update(_) => 2,
                        Tlv::RouteRequest(_) => 3,
                        Tlv::SeqnoRequest(_) => 4,
                    };
                    kinds[kind] += 1;
                    self.router.handle_tlv(now, peer, *tlv);
                }
                for (counter, n) in self.stats.tlvs.iter().zip(kinds) {
                    if n > 0 {
                        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                drop(permit);
                return tlvs.len();
            }
            CoreCmd::Unrouted(packet) => self.route_or_queue(now, packet),
            CoreCmd::UnknownSource { src, packet } => {
                let subnet = Subnet::v6_64(src);
                let _ = self.router.resolve(now, src, false);
                let queue = self.unknown.entry(subnet).or_default();
                if queue.len() < UNKNOWN_PER_SOURCE && self.unknown_total < UNKNOWN_TOTAL {
                    queue.push_back(packet);
                    self.unknown_total += 1;
                } else {
                    NodeStats::bump(&self.stats.no_route);
                }
            }
            CoreCmd::Query(q) => self.answer(now, q),
        }
        0
    }

    /// Tells the router which subnets the data plane sent to or received from
    /// since the last report (it forwards over the snapshot without asking).
    fn report_use(&mut self) {
        self.packets.take_recent(&mut self.used);
        let now = self.now();
        let own = self.router.own_subnet();
        for (prefix, uses) in self.used.drain(..) {
            let subnet = Subnet::v6_64(Ipv6Addr::from(u128::from(prefix) << 64));
            if subnet != own {
                self.router.touch(now, subnet, uses);
            }
        }
    }

    fn answer(&mut self, now: Instant, query: Query) {
        match query {
            Query::Routes(reply) => {
                let _ = reply.send(self.routes_view(now));
            }
            Query::KeyFor(ip, reply) => {
                let _ = reply.send(self.router.key_for(ip));
            }
            Query::Router(reply) => {
                let (subnets, routes) = self.router.table_size();
                let _ = reply.send(RouterView {
                    stats: self.router.stats(),
                    subnets,
                    routes,
                    selected: self.router.selected_count(),
                    neighbours: self.router.neighbours().count(),
                    pending_packets: self.pending_total + self.unknown_total,
                    leaf_capacity: self.router.leaf_capacity(),
                });
            }
            Query::DnsCandidates {
                addrs,
                request_routes,
                reply,
            } => {
                let metrics = addrs
                    .into_iter()
                    .map(|addr| self.candidate_metric(now, addr, request_routes))
                    .collect();
                let _ = reply.send(metrics);
            }
            Query::QuicAdmission(addr, reply) => {
                let _ = reply.send(self.quic_admission(now, addr));
            }
            Query::QuicPauses(reply) => {
                let _ = reply.send(self.flaps.pauses(now));
            }
        }
    }

    /// A link (other than `except`) that is not QUIC and leads to the node whose key
    /// is `identity`; while either key is not known, to the same IP address. Its
    /// connection identifier.
    fn stream_link_to(
        &self,
        identity: Option<PublicKey>,
        ip: std::net::IpAddr,
        except: Option<PeerId>,
    ) -> Option<&str> {
        let ip = ip.to_canonical();
        self.links
            .iter()
            .filter(|(p, l)| Some(**p) != except && !matches!(l.kind, LinkKind::Quic { .. }))
            .find(|(p, l)| {
                let theirs = self
                    .router
                    .neighbour_router_id(**p)
                    .map(|id| id.public_key());
                match (identity, theirs) {
                    (Some(ours), Some(theirs)) => ours == theirs,
                    _ => l.remote.is_some_and(|r| r.ip().to_canonical() == ip),
                }
            })
            .map(|(_, l)| l.conn_id.as_str())
    }

    /// A QUIC link ended: a neighbour that drops QUIC links when it has a large
    /// packet for us is recognised, counted and logged (once), and QUIC to it is
    /// paused while a stream link to it is up.
    fn quic_link_down(&mut self, now: Instant, peer: PeerId, end: &QuicLinkEnd) {
        let identity = self
            .router
            .neighbour_router_id(peer)
            .map(|id| id.public_key());
        let stream = self
            .stream_link_to(identity, end.remote.ip(), Some(peer))
            .map(str::to_owned);
        let verdict = self.flaps.link_down(now, end, identity, stream.is_some());
        if verdict == Verdict::Ignored {
            return;
        }
        NodeStats::bump(&self.stats.quic_oversize_drops);
        let who = match identity {
            Some(key) => format!("QUIC peer {} (node {key})", end.remote),
            None => format!("QUIC peer {}", end.remote),
        };
        let minutes = |d: Duration| d.as_secs().div_ceil(60);
        match (verdict, stream) {
            (Verdict::Counted { strikes }, _) => tracing::debug!(
                "{who} closed our QUIC link without a reason {} ms after it opened, \
                 {} data packets in ({strikes} in a row)",
                end.lived.as_millis(),
                end.data_packets
            ),
            (Verdict::Recognised { strikes, pause }, Some(tcp)) => {
                NodeStats::bump(&self.stats.quic_oversize_neighbours);
                let action = match pause {
                    Some(p) => format!(
                        "we neither dial QUIC to it nor accept QUIC from it for {} min",
                        minutes(p)
                    ),
                    None => "pausing QUIC is off (--no-quic-pause)".to_owned(),
                };
                tracing::warn!(
                    "{who} dropped our QUIC link {strikes} times in a row, each time just \
                     after it opened or carried data: it closes a QUIC connection whenever \
                     it has a packet for us too large for a datagram (as upstream mycelium \
                     v0.7 does with every full-size packet). Its traffic stays on {tcp}; \
                     {action}."
                );
            }
            (Verdict::Recognised { strikes, .. }, None) => {
                NodeStats::bump(&self.stats.quic_oversize_neighbours);
                tracing::warn!(
                    "{who} dropped our QUIC link {strikes} times in a row, each time just \
                     after it opened or carried data: it closes a QUIC connection whenever \
                     it has a packet for us too large for a datagram (as upstream mycelium \
                     v0.7 does with every full-size packet). QUIC is our only link to it, \
                     so such packets from it (bulk transfers, anything near the 1400-byte \
                     MTU) are lost and each one breaks the link; add a tcp:// peer for \
                     this node to carry them. Redialling QUIC as usual; further drops are \
                     counted in mycelium_quic_oversize_drops_total, not logged."
                );
            }
            (Verdict::Again { pause: Some(p) }, Some(tcp)) => tracing::info!(
                "{who} dropped our QUIC link again, as before: its traffic stays on {tcp}; \
                 no QUIC to or from it for {} min",
                minutes(p)
            ),
            (Verdict::Again { .. }, _) => tracing::debug!(
                "{who} dropped our QUIC link again ({} data packets in)",
                end.data_packets
            ),
            (Verdict::Ignored, _) => {}
        }
    }

    /// Whether QUIC to or from `addr` may go ahead now.
    fn quic_admission(&mut self, now: Instant, addr: std::net::SocketAddr) -> Admission {
        let stream_up = match self.flaps.paused_neighbour(addr) {
            Some(identity) => self.stream_link_to(identity, addr.ip(), None).is_some(),
            None => return Admission::Go,
        };
        let admission = self.flaps.admit(now, addr, stream_up);
        match admission {
            Admission::Resumed(Resume::Elapsed) => {
                tracing::info!("QUIC pause for {addr} over; QUIC to it again")
            }
            Admission::Resumed(Resume::StreamLinkDown) => tracing::info!(
                "QUIC pause for {addr} ended early: no TCP link to that node any more, so \
                 QUIC is all there is"
            ),
            Admission::Go | Admission::Paused(_) => {}
        }
        admission
    }

    /// The metric to `addr` over its selected route plus the cost of the link to
    /// the next hop, when finite. With no entry for the address a route request
    /// goes out if `request`; a subnet being looked for, or with only unselected
    /// routes, gets nothing.
    fn candidate_metric(&mut self, now: Instant, addr: Ipv6Addr, request: bool) -> Option<u16> {
        if let Some(route) = self.router.selected_route(&Subnet::v6_64(addr)) {
            let cost = self
                .router
                .neighbours()
                .find(|(peer, _)| *peer == route.neighbour)
                .map_or(Metric::INFINITE, |(_, cost)| cost);
            let metric = route.metric.saturating_add(cost);
            return (!metric.is_infinite()).then_some(metric.0);
        }
        if request && self.router.key_for(addr).is_none() {
            // No entry, or one being looked for: `resolve` requests only the former.
            let _ = self.router.resolve(now, addr, false);
        }
        None
    }

    fn routes_view(&self, now: Instant) -> RoutesView {
        let mut view = RoutesView::default();
        let conn = |peer: PeerId| {
            self.links
                .get(&peer)
                .map_or_else(|| peer.to_string(), |l| l.conn_id.clone())
        };
        for (subnet, entry) in self.router.subnets() {
            match entry {
                SubnetEntry::Exists { routes, .. } => {
                    for r in routes {
                        let info = RouteInfo {
                            subnet,
                            next_hop: conn(r.neighbour),
                            metric: r.metric,
                            seqno: r.seqno,
                        };
                        if r.selected {
                            view.selected.push(info);
                        } else {
                            view.fallback.push(info);
                        }
                    }
                }
                SubnetEntry::Queried { expires } => {
                    let left = expires.saturating_since(now);
                    view.queried.push((subnet, left));
                }
            }
        }
        view
    }

    fn route_or_queue(&mut self, now: Instant, packet: Unrouted) {
        let dst = packet.dst();
        let local = !matches!(packet, Unrouted::Transit { .. });
        match self.router.resolve(now, dst, local) {
            Resolution::Forward(_) => {
                // The snapshot was behind; it is republished after this batch, and
                // the packet goes back to the data plane with the queue's flush.
                self.enqueue(Subnet::v6_64(dst), packet);
            }
            Resolution::Pending(subnet) => self.enqueue(subnet, packet),
            Resolution::Unreachable(_) => {
                NodeStats::bump(&self.stats.no_route);
                // Only unselected routes: upstream reports "no route" to the source.
                if let Unrouted::Transit { pkt, .. } = packet {
                    self.hand_back(Work::Unreachable(pkt));
                }
            }
        }
    }

    fn enqueue(&mut self, subnet: Subnet, packet: Unrouted) {
        let queue = self.pending.entry(subnet).or_default();
        if queue.len() >= PENDING_PER_SUBNET || self.pending_total >= PENDING_TOTAL {
            NodeStats::bump(&self.stats.no_route);
            return;
        }
        queue.push_back(packet);
        self.pending_total += 1;
    }

    /// Hands a packet back to the data plane's worker; drops it if the worker is
    /// that far behind.
    fn hand_back(&self, work: Work) {
        if self.to_worker.try_send(work).is_err() {
            NodeStats::bump(&self.stats.no_route);
        }
    }

    /// Sends what the router produced, acts on its events, republishes the
    /// snapshot, and hands back the packets whose routes or keys appeared.
    pub(crate) fn flush(&mut self) {
        self.send_control();
        let mut usable = Vec::new();
        while let Some(e) = self.router.poll_event() {
            match e {
                Event::PeerDead(peer) => {
                    tracing::info!("{peer} sent no IHU for too long; disconnecting");
                    NodeStats::bump(&self.stats.peers_died);
                    if let Some(link) = self.links.get(&peer) {
                        link.close.cancel();
                    }
                }
                Event::PeerUnreachable(peer) => {
                    tracing::info!("{peer} went silent; routing around it")
                }
                Event::PeerReachable(peer) => tracing::info!("{peer} is heard again"),
                Event::RouteUsable(subnet) => usable.push(subnet),
                Event::RouteLost(subnet) | Event::QueryExpired(subnet) => {
                    if let Some(q) = self.pending.remove(&subnet) {
                        self.pending_total -= q.len();
                        for packet in q {
                            NodeStats::bump(&self.stats.no_route);
                            // Local packets get "no route" on the TUN; transit ones
                            // just go.
                            if let Unrouted::Local { buf, len, .. } = packet {
                                self.hand_back(Work::NoRoute { buf, len });
                            }
                        }
                    }
                }
            }
        }
        // Published before any packet goes back, so the worker finds the routes.
        self.publish();
        // Queued packets whose destination now has a route, also those queued while
        // the snapshot was behind.
        let ready: Vec<Subnet> = self
            .pending
            .keys()
            .copied()
            .filter(|s| usable.contains(s) || self.router.next_hop(s_addr(s)).is_some())
            .collect();
        for subnet in ready {
            let Some(queue) = self.pending.remove(&subnet) else {
                continue;
            };
            self.pending_total -= queue.len();
            for packet in queue {
                self.hand_back(Work::Retry(packet));
            }
        }
        if self.unknown.is_empty() {
            return;
        }
        let snapshot = self.snapshot.load();
        let known: Vec<Subnet> = self
            .unknown
            .keys()
            .copied()
            .filter(|s| snapshot.key_for(s_addr(s)).is_some())
            .collect();
        for subnet in known {
            let Some(queue) = self.unknown.remove(&subnet) else {
                continue;
            };
            self.unknown_total -= queue.len();
            for packet in queue {
                self.hand_back(Work::Deliver(packet));
            }
        }
    }
}

impl Core {
    /// Encodes every TLV the router has for each link into that link's buffer, and
    /// queues each link's buffer as one chunk: one message per link per flush, so a
    /// whole table for a new neighbour is one chunk, bounded in bytes.
    fn send_control(&mut self) {
        while let Some(t) = self.router.poll_transmit() {
            let Some(link) = self.links.get_mut(&t.to) else {
                continue;
            };
            if link.out_packets == 0 {
                self.links_to_send.push(t.to);
            }
            control::encode(&t.tlv, &mut link.out);
            link.out_packets += 1;
        }
        for peer in self.links_to_send.drain(..) {
            let Some(link) = self.links.get_mut(&peer) else {
                continue;
            };
            let bytes = link.out.split().freeze();
            let packets = std::mem::take(&mut link.out_packets);
            if let Err(why) = link.control.try_send(bytes, packets) {
                // A link that cannot take control traffic any more is stuck; a
                // stream that dropped some would confuse the peer, so close it.
                if why == ControlFull::Stuck {
                    tracing::warn!("link {peer} is not draining control packets; closing it");
                }
                link.close.cancel();
            }
        }
    }

    /// Brings the data plane's view up to date: the links if they changed, then the
    /// forwarding entries of the subnets the router changed (new links first, so a
    /// route never names a link the data plane cannot find yet).
    fn publish(&mut self) {
        if self.links_changed {
            let table = self.forwarding.table().clone();
            self.snapshot
                .store(Arc::new(Snapshot::new(self.link_txs.clone(), table)));
            self.links_changed = false;
        }
        self.changed.clear();
        if self.router.take_selection_changes(&mut self.changed) {
            if !self.changed.is_empty() {
                let router = &self.router;
                self.forwarding
                    .update(&self.changed, |subnet| router.forwarding(subnet));
            }
        } else {
            // Too many changes to list: compare everything.
            self.forwarding
                .replace_all(self.router.forwarding_entries());
            #[cfg(test)]
            self.full_publications
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A burst's list is not kept at its largest.
        if self.changed.capacity() > 4 * FLUSH_TLVS {
            self.changed = Vec::new();
        }
    }
}

fn s_addr(s: &Subnet) -> Ipv6Addr {
    match s.address() {
        std::net::IpAddr::V6(a) => a,
        std::net::IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    }
}

/// Links without sockets, driven by hand, for tests of the core.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    use mycelium_proto::routing::LinkKind;
    use mycelium_proto::{RouterId, SecretKey};
    use rand::Rng;
    use tokio::sync::{oneshot, Semaphore};

    use super::*;
    use crate::control_queue::{control_queue, control_queue_bytes, ControlRx};
    use crate::link::CONTROL_BATCH;

    /// A running core and what a link task would hold to talk to it.
    pub(crate) struct TestCore {
        pub(crate) core_tx: mpsc::Sender<CoreCmd>,
        pub(crate) control_permits: Arc<Semaphore>,
        pub(crate) control_queue_bytes: usize,
        pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
        pub(crate) full_publications: Arc<AtomicU64>,
        /// What the core hands back to the data plane.
        #[allow(dead_code)]
        pub(crate) work: mpsc::Receiver<Work>,
        next_peer: AtomicU64,
    }

    /// The far side of a link the core knows.
    pub(crate) struct FakeLink {
        pub(crate) peer: PeerId,
        pub(crate) control: ControlRx,
        pub(crate) close: CancellationToken,
        #[allow(dead_code)] // kept so the data plane's sends find an open queue
        pub(crate) data: mpsc::Receiver<bytes::Bytes>,
    }

    /// A core with these timers and bounds, on the current runtime.
    pub(crate) fn start_core(router_cfg: mycelium_proto::routing::RouterConfig) -> Arc<TestCore> {
        let mut rng = rand::thread_rng();
        let key = SecretKey::generate(&mut rng).public_key();
        let mut router_cfg = router_cfg;
        router_cfg.hash_seed = rng.gen();
        let max_subnets = router_cfg.limits.max_subnets;
        let router = Router::new(router_cfg, RouterId::new(key, rng.gen()), Instant::ZERO);
        let forwarding = TableWriter::new(max_subnets, rng.gen());
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(
            Map::default(),
            forwarding.table().clone(),
        )));
        let (core_tx, rx) = mpsc::channel(CORE_QUEUE);
        let (to_worker, work) = mpsc::channel(WORK_QUEUE);
        let core = Core::new(CoreParts {
            router,
            forwarding,
            snapshot: snapshot.clone(),
            rx,
            to_worker,
            stats: Arc::default(),
            packets: Arc::default(),
            shutdown: CancellationToken::new(),
            pause_flapping_quic: true,
        });
        let full_publications = core.full_publications.clone();
        tokio::spawn(core.run());
        Arc::new(TestCore {
            core_tx,
            control_permits: Arc::new(Semaphore::new(CONTROL_IN_FLIGHT)),
            control_queue_bytes: control_queue_bytes(max_subnets),
            snapshot,
            full_publications,
            work,
            // From 1: the forwarding table stores "no next hop" as 0.
            next_peer: AtomicU64::new(1),
        })
    }

    /// Brings a link up, as a link task does.
    pub(crate) async fn link_up(core: &TestCore) -> FakeLink {
        link_up_as(core, LinkKind::Tcp { ipv4: true }, None).await
    }

    /// Brings a link of this kind to this address up, as a link task does.
    pub(crate) async fn link_up_as(
        core: &TestCore,
        kind: LinkKind,
        remote: Option<std::net::SocketAddr>,
    ) -> FakeLink {
        let peer = PeerId(core.next_peer.fetch_add(1, Ordering::Relaxed));
        let (data_tx, data) = mpsc::channel(64);
        let (control_tx, control) = control_queue(core.control_queue_bytes);
        let close = CancellationToken::new();
        let up = CoreCmd::LinkUp {
            peer,
            kind,
            conn_id: format!("test {peer}"),
            remote,
            data: data_tx,
            control: control_tx,
            close: close.clone(),
        };
        assert!(core.core_tx.send(up).await.is_ok());
        FakeLink {
            peer,
            control,
            close,
            data,
        }
    }

    /// Hands TLVs from `peer` to the core, in batches as a link reader does.
    pub(crate) async fn receive(core: &TestCore, peer: PeerId, tlvs: &[Tlv]) {
        for chunk in tlvs.chunks(CONTROL_BATCH) {
            let Ok(permit) = core
                .control_permits
                .clone()
                .acquire_many_owned(chunk.len() as u32)
                .await
            else {
                panic!("the core's permits are gone");
            };
            let cmd = CoreCmd::Control {
                peer,
                tlvs: chunk.to_vec(),
                permit,
            };
            assert!(core.core_tx.send(cmd).await.is_ok());
        }
    }

    /// The router's figures.
    pub(crate) async fn router_view(core: &TestCore) -> RouterView {
        let (tx, rx) = oneshot::channel();
        assert!(core
            .core_tx
            .send(CoreCmd::Query(Query::Router(tx)))
            .await
            .is_ok());
        rx.await.unwrap_or_default()
    }

    /// Waits until `done` holds, for at most `limit`.
    pub(crate) async fn wait_for<F: std::future::Future<Output = bool>>(
        limit: Duration,
        mut done: impl FnMut() -> F,
    ) -> bool {
        let began = std::time::Instant::now();
        while began.elapsed() < limit {
            if done().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Every TLV in the chunks queued for `link` so far.
    pub(crate) fn drain_tlvs(link: &mut FakeLink) -> Vec<Tlv> {
        let mut out = Vec::new();
        while let Some(chunk) = link.control.try_recv() {
            let (bytes, packets) = link.control.take(chunk);
            let mut rest = &bytes[..];
            let before = out.len();
            while !rest.is_empty() {
                let Ok(d) = mycelium_proto::wire::decode(rest) else {
                    panic!("a chunk does not frame");
                };
                if let mycelium_proto::wire::Packet::Control(tlv) = d.packet {
                    out.push(tlv);
                }
                rest = &rest[d.len..];
            }
            assert_eq!((out.len() - before) as u64, packets);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mycelium_proto::wire::tlv::RouteRequest;

    use super::testing::*;
    use super::*;
    use crate::scale_tests::test_update;

    fn config(max_subnets: usize) -> mycelium_proto::routing::RouterConfig {
        let mut cfg = mycelium_proto::routing::RouterConfig::upstream();
        cfg.limits.max_subnets = max_subnets;
        cfg
    }

    const WILDCARD: Tlv = Tlv::RouteRequest(RouteRequest {
        generation: 0,
        prefix: None,
    });

    /// A core holding `routes` routes learned from one link, and that link.
    async fn core_with_routes(routes: u64, max_subnets: usize) -> (Arc<TestCore>, FakeLink) {
        let shared = start_core(config(max_subnets));
        let a = link_up(&shared).await;
        let updates: Vec<Tlv> = (0..routes)
            .map(|i| Tlv::Update(test_update(i, 100)))
            .collect();
        receive(&shared, a.peer, &updates).await;
        assert!(
            wait_for(Duration::from_secs(60), || async {
                router_view(&shared).await.selected == routes as usize
            })
            .await,
            "the routes were not selected"
        );
        (shared, a)
    }

    /// A neighbour that connects to a node holding 100,000 routes and asks for
    /// them all gets them all, and is not taken for stuck although it has not read
    /// any yet (one message per TLV into a queue of 8,192 closed it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_table_for_a_new_neighbour_does_not_close_its_link() {
        const ROUTES: u64 = 100_000;
        let (shared, a) = core_with_routes(ROUTES, 250_000).await;
        let mut b = link_up(&shared).await;
        receive(&shared, b.peer, &[WILDCARD]).await;
        // Every route, and ours, goes to b at once.
        let table_bytes = ROUTES as usize * 68;
        assert!(
            wait_for(Duration::from_secs(30), || {
                let queued = b.control.queued();
                async move { queued >= table_bytes }
            })
            .await,
            "the table was not queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !b.close.is_cancelled(),
            "the new neighbour's link was closed"
        );
        assert!(!a.close.is_cancelled());
        let tlvs = drain_tlvs(&mut b);
        let updates_for_b: std::collections::HashSet<Subnet> = tlvs
            .iter()
            .filter_map(|t| match t {
                Tlv::Update(u) => Some(u.subnet),
                _ => None,
            })
            .collect();
        assert!(
            updates_for_b.len() > ROUTES as usize,
            "{}",
            updates_for_b.len()
        );
        assert_eq!(b.control.queued(), 0);
    }

    async fn dns_candidates(
        core: &TestCore,
        addrs: &[Ipv6Addr],
        request_routes: bool,
    ) -> Vec<Option<u16>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        core.core_tx
            .send(CoreCmd::Query(Query::DnsCandidates {
                addrs: addrs.to_vec(),
                request_routes,
                reply: tx,
            }))
            .await
            .unwrap();
        rx.await.unwrap()
    }

    /// The route requests `link` receives within `wait`: the router task may flush
    /// what a command produced after it has answered a later query, so a single
    /// drain can come too early. Returns as soon as some have arrived.
    async fn route_requests_within(link: &mut FakeLink, wait: Duration) -> Vec<Option<Subnet>> {
        let start = std::time::Instant::now();
        loop {
            let got = route_requests(&drain_tlvs(link));
            if !got.is_empty() || start.elapsed() >= wait {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn route_requests(tlvs: &[Tlv]) -> Vec<Option<Subnet>> {
        tlvs.iter()
            .filter_map(|t| match t {
                Tlv::RouteRequest(r) => Some(r.prefix),
                _ => None,
            })
            .collect()
    }

    /// The DNS forwarder's question: a candidate without an entry gets one route
    /// request for its /64 (generation 0) when requests are asked for, and none
    /// otherwise or while it is being looked for; one with a selected route gets
    /// its metric plus the link's cost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dns_candidates_get_a_metric_or_a_route_request() {
        let shared = start_core(config(1_000));
        let mut a = link_up(&shared).await;
        let known = test_update(1, 100);
        receive(&shared, a.peer, &[Tlv::Update(known)]).await;
        assert!(
            wait_for(Duration::from_secs(10), || async {
                router_view(&shared).await.selected == 1
            })
            .await
        );
        drain_tlvs(&mut a);
        let unknown = Ipv6Addr::new(0x54b, 0x83ab, 0x6cb5, 0x7b38, 0, 0, 0, 1);
        let known_addr = crate::scale_tests::test_key(1).address();
        let metrics = dns_candidates(&shared, &[unknown, known_addr], false).await;
        assert_eq!(metrics[0], None);
        assert!(metrics[1].is_some());
        router_view(&shared).await;
        let quiet = Duration::from_millis(300);
        assert!(route_requests_within(&mut a, quiet).await.is_empty());
        let metrics = dns_candidates(&shared, &[unknown, known_addr], true).await;
        assert_eq!(metrics[0], None);
        let m = metrics[1].expect("a metric for the routed candidate");
        assert!(m > 100 && m < 0xffff, "{m}");
        let sent = route_requests_within(&mut a, Duration::from_secs(10)).await;
        assert_eq!(sent, vec![Some(Subnet::v6_64(unknown))]);
        assert_eq!(dns_candidates(&shared, &[unknown], true).await, vec![None]);
        assert!(route_requests_within(&mut a, quiet).await.is_empty());
    }

    /// A neighbour that asks for the table over and over and never reads is closed
    /// once its queue holds its bound, and holds no more than that meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_that_does_not_read_is_closed_at_its_bound() {
        const ROUTES: u64 = 2_000;
        let (shared, a) = core_with_routes(ROUTES, ROUTES as usize).await;
        let bound = shared.control_queue_bytes;
        let b = link_up(&shared).await;
        // Each answer is about 136 kB; the bound is about 4.3 MB.
        let asks = bound / (ROUTES as usize * 68) + 2;
        for _ in 0..asks {
            receive(&shared, b.peer, &[WILDCARD]).await;
            // One request per flush, so each answer is its own chunk.
            router_view(&shared).await;
            assert!(b.control.queued() <= bound);
        }
        assert!(
            wait_for(Duration::from_secs(10), || {
                let closed = b.close.is_cancelled();
                async move { closed }
            })
            .await,
            "a link over its bound was kept"
        );
        assert!(!a.close.is_cancelled());
    }

    /// A leaf behind a neighbour that pushes a large table stores none of it,
    /// sends nothing but its own route, and asks for a source it needs a key for;
    /// the answer is kept, and the packet waiting for it is handed back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaf_keeps_only_the_routes_it_asked_for() {
        const PUSHED: u64 = 20_000;
        let mut cfg = config(250_000);
        cfg.leaf = Some(mycelium_proto::routing::Leaf { routes: 8 });
        let shared = start_core(cfg);
        let mut a = link_up(&shared).await;
        let updates: Vec<Tlv> = (0..PUSHED)
            .map(|i| Tlv::Update(test_update(i, 100)))
            .collect();
        receive(&shared, a.peer, &updates).await;
        assert!(
            wait_for(Duration::from_secs(30), || async {
                router_view(&shared).await.stats.leaf_updates_ignored == PUSHED
            })
            .await,
            "the pushed updates were not all seen"
        );
        let view = router_view(&shared).await;
        assert_eq!((view.subnets, view.routes), (0, 0));
        assert_eq!(view.leaf_capacity, Some(8));

        // A packet from a source whose key is unknown: the leaf asks for its route.
        let src = crate::scale_tests::test_key(7).address();
        let cmd = CoreCmd::UnknownSource {
            src,
            packet: BytesMut::from(&b"sealed"[..]),
        };
        assert!(shared.core_tx.send(cmd).await.is_ok());
        let asked = route_requests_within(&mut a, Duration::from_secs(5)).await;
        assert_eq!(asked, vec![Some(Subnet::v6_64(src))]);
        receive(&shared, a.peer, &[Tlv::Update(test_update(7, 100))]).await;
        // A query handled in the batch that took the answer is answered before
        // the batch's flush hands the packet back: wait for both.
        assert!(
            wait_for(Duration::from_secs(5), || async {
                let view = router_view(&shared).await;
                view.selected == 1 && view.pending_packets == 0
            })
            .await,
            "the answer was not kept, or the packet not handed back"
        );
        assert_eq!(router_view(&shared).await.stats.leaf_misses, 1);
        for tlv in drain_tlvs(&mut a) {
            // Its own route has metric 0; anything else would be relayed.
            if let Tlv::Update(u) = tlv {
                assert_eq!(u.metric.0, 0, "a leaf announced {}", u.subnet);
            }
        }
    }

    async fn quic_admission(core: &TestCore, addr: std::net::SocketAddr) -> Admission {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let query = CoreCmd::Query(Query::QuicAdmission(addr, tx));
        assert!(core.core_tx.send(query).await.is_ok());
        rx.await.unwrap()
    }

    /// A QUIC link that the node at its other end dropped, `ms` after it opened.
    fn dropped(remote: std::net::SocketAddr, ms: u64) -> Option<QuicLinkEnd> {
        Some(QuicLinkEnd {
            remote,
            cause: crate::quic_flaps::CloseCause::PeerDropped,
            lived: Duration::from_millis(ms),
            data_packets: 1,
        })
    }

    /// A node reached over TCP on IPv4 and over QUIC on IPv6: its links are known
    /// to lead to one node by the key of its own route, so its QUIC is paused after
    /// two drops, and the pause ends when the TCP link does. A QUIC link whose
    /// node has another key is not taken for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tcp_link_to_a_dropping_quic_neighbour_is_found_by_its_key() {
        let shared = start_core(config(1_000));
        let quic_at: std::net::SocketAddr = "[2001:db8::7]:9651".parse().unwrap();
        let tcp_at: std::net::SocketAddr = "192.0.2.7:9651".parse().unwrap();
        let tcp = link_up_as(&shared, LinkKind::Tcp { ipv4: true }, Some(tcp_at)).await;
        receive(&shared, tcp.peer, &[Tlv::Update(test_update(7, 0))]).await;
        for round in 0..2 {
            let quic = link_up_as(&shared, LinkKind::Quic { ipv4: false }, Some(quic_at)).await;
            receive(&shared, quic.peer, &[Tlv::Update(test_update(7, 0))]).await;
            let down = CoreCmd::LinkDown {
                peer: quic.peer,
                quic: dropped(quic_at, 200),
            };
            assert!(shared.core_tx.send(down).await.is_ok());
            let admission = quic_admission(&shared, quic_at).await;
            if round == 0 {
                assert_eq!(admission, Admission::Go, "one drop paused it");
            } else {
                assert!(matches!(admission, Admission::Paused(_)), "{admission:?}");
            }
        }
        // Another node behind the TCP link's IP address (another port), dropping
        // its QUIC link twice: its key is not the TCP neighbour's, so it has no
        // TCP link; recognised, not paused.
        let other_at: std::net::SocketAddr = "192.0.2.7:9652".parse().unwrap();
        for _ in 0..2 {
            let quic = link_up_as(&shared, LinkKind::Quic { ipv4: true }, Some(other_at)).await;
            receive(&shared, quic.peer, &[Tlv::Update(test_update(9, 0))]).await;
            let down = CoreCmd::LinkDown {
                peer: quic.peer,
                quic: dropped(other_at, 200),
            };
            assert!(shared.core_tx.send(down).await.is_ok());
        }
        assert_eq!(quic_admission(&shared, other_at).await, Admission::Go);
        // The TCP link goes: QUIC is all there is to node 7 now.
        let down = CoreCmd::LinkDown {
            peer: tcp.peer,
            quic: None,
        };
        assert!(shared.core_tx.send(down).await.is_ok());
        assert_eq!(
            quic_admission(&shared, quic_at).await,
            Admission::Resumed(Resume::StreamLinkDown)
        );
        assert_eq!(quic_admission(&shared, quic_at).await, Admission::Go);
    }
}
