//! The core task: owns the router, takes link events and control TLVs, runs the
//! timers, holds packets that wait for a route, and publishes the forwarding
//! snapshot.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use mycelium_proto::routing::{Event, LinkKind, PeerId, Resolution, Router, SubnetEntry};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::view::{DataFrame, Ipv6Packet};
use mycelium_proto::wire::{control, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey, Subnet};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::dataplane::{self, SecretCache};
use crate::limits::{Limits, ReplayFilter, TokenBucket};
use crate::link::{ControlFull, ControlTx};
use crate::registry::Registry;
use crate::snapshot::{LinkTx, Snapshot, TableWriter};
use crate::stats::{NodeStats, PacketStats};
use crate::tun::Tun;
use crate::NodeConfig;
use crate::{RouteInfo, RouterView, RoutesView};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Packets waiting for a route, per destination `/64`.
const PENDING_PER_SUBNET: usize = 1_000;
/// Packets waiting for a route, in all.
const PENDING_TOTAL: usize = 10_000;
/// Packets from a source we have no key for yet, per source `/64` and in all.
const UNKNOWN_PER_SOURCE: usize = 100;
const UNKNOWN_TOTAL: usize = 1_000;
/// Packets queued for the TUN writer.
const TUN_QUEUE: usize = 4_096;
/// Inputs of the core queued at once (control TLVs come in batches, bounded apart).
const CORE_QUEUE: usize = 16_384;
/// Control TLVs read from links and queued for the core at once, over all links,
/// however they are batched (what one message per TLV allowed before).
const CONTROL_IN_FLIGHT: usize = 16_384;
/// Control TLVs handled between two flushes at most. A flush publishes what the
/// router changed, so this bounds how late a route reaches the data plane while
/// tables pour in (about a millisecond of router work), and keeps each batch's
/// changes few enough for the router to list (beyond that the whole forwarding
/// table is compared).
const FLUSH_TLVS: usize = 1_024;
/// Commands handled between two flushes at most.
const FLUSH_COMMANDS: usize = 257;

/// What every task shares.
pub(crate) struct Shared {
    pub(crate) secret: SecretKey,
    pub(crate) own_ip: Ipv6Addr,
    pub(crate) own_subnet: Subnet,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) core_tx: mpsc::Sender<CoreCmd>,
    /// The TUN device, written in batches by the tasks that deliver.
    pub(crate) tun: Option<Arc<Tun>>,
    /// Where ICMPv6 errors for our TUN go (the TUN writer batches them).
    pub(crate) tun_tx: Option<mpsc::Sender<BytesMut>>,
    /// Where message frames for us go.
    pub(crate) bus_tx: mpsc::Sender<crate::messages::BusCmd>,
    pub(crate) stats: NodeStats,
    /// Data packets per source and destination address (API.md §1.5).
    pub(crate) packets: PacketStats,
    /// Every peer the node knows.
    pub(crate) registry: Registry,
    /// The QUIC endpoint, once it is set up (QUIC peers are dialled from it).
    pub(crate) quic: OnceLock<quinn::Endpoint>,
    /// Linux `SO_MARK` for peer sockets.
    pub(crate) mark: Option<u32>,
    /// When the node started, for the API.
    pub(crate) started: SystemTime,
    pub(crate) shutdown: CancellationToken,
    /// Bounds on peers and links.
    pub(crate) limits: Limits,
    /// The proxy client's settings.
    pub(crate) proxy: crate::ProxySettings,
    /// Inbound connection attempts, across listeners.
    pub(crate) accepts: Mutex<TokenBucket>,
    /// Data packets opened recently, to drop replays.
    pub(crate) replays: ReplayFilter,
    /// Control bytes one link may have queued (see `link::control_queue_bytes`).
    pub(crate) control_queue_bytes: usize,
    /// One permit per control TLV queued for the core ([`CONTROL_IN_FLIGHT`]): link
    /// readers take them before sending, the core gives them back once handled.
    pub(crate) control_permits: Arc<Semaphore>,
    /// Times the whole forwarding table was compared with the router's because
    /// the router could not list what changed.
    #[cfg(test)]
    pub(crate) full_publications: AtomicU64,
    next_peer: AtomicU64,
}

impl Shared {
    pub(crate) fn new_peer_id(&self) -> PeerId {
        PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether an inbound connection attempt may go ahead (counted if not).
    pub(crate) fn admit_connection(&self) -> bool {
        let admitted = self
            .accepts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take(1, std::time::Instant::now());
        if !admitted {
            NodeStats::bump(&self.stats.connections_rate_limited);
        }
        admitted
    }
}

/// The receiving ends of the queues the core creates, for the tasks that drain them.
pub(crate) struct Receivers {
    /// ICMPv6 errors for the TUN writer, when there is a TUN.
    pub(crate) tun: Option<mpsc::Receiver<BytesMut>>,
    /// Inputs of the message bus.
    pub(crate) bus: mpsc::Receiver<crate::messages::BusCmd>,
}

/// A packet the snapshot could not route.
pub(crate) enum Unrouted {
    /// From our TUN: an IPv6 packet of `len` bytes at `HEADROOM` in `buf`.
    Local { buf: BytesMut, len: usize },
    /// A whole data packet in transit.
    Transit(BytesMut),
    /// A message frame of ours at `HEADROOM` in `buf`.
    Message {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        buf: BytesMut,
    },
}

/// Inputs of the core.
pub(crate) enum CoreCmd {
    LinkUp {
        peer: PeerId,
        kind: LinkKind,
        conn_id: String,
        data: LinkTx,
        control: ControlTx,
        close: CancellationToken,
    },
    LinkDown {
        peer: PeerId,
    },
    /// Control TLVs read from one link, in order.
    Control {
        peer: PeerId,
        tlvs: Vec<Tlv>,
        /// One permit per TLV, given back when the command is dropped.
        permit: OwnedSemaphorePermit,
    },
    Unrouted(Unrouted),
    UnknownSource {
        src: Ipv6Addr,
        packet: BytesMut,
    },
    /// A question from the API.
    Query(Query),
}

/// Questions the API asks the core; each carries where the answer goes.
pub(crate) enum Query {
    Routes(oneshot::Sender<RoutesView>),
    KeyFor(Ipv6Addr, oneshot::Sender<Option<PublicKey>>),
    Router(oneshot::Sender<RouterView>),
}

struct Link {
    control: ControlTx,
    close: CancellationToken,
    conn_id: String,
    /// Control packets encoded during this flush, sent as one chunk at its end.
    out: BytesMut,
    out_packets: u64,
}

pub(crate) struct Core {
    shared: Arc<Shared>,
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
    /// Scratch: subnets whose forwarding changed.
    changed: Vec<Subnet>,
    links_changed: bool,
    pending: Map<Subnet, VecDeque<Unrouted>>,
    pending_total: usize,
    unknown: Map<Subnet, VecDeque<BytesMut>>,
    unknown_total: usize,
    cache: SecretCache,
}

impl Core {
    pub(crate) fn new(
        cfg: &NodeConfig,
        tun: Option<Arc<Tun>>,
        shutdown: CancellationToken,
    ) -> (Self, Arc<Shared>, RouterId, Receivers) {
        let (bus_tx, bus_rx) = mpsc::channel(crate::messages::BUS_QUEUE);
        let (core_tx, rx) = mpsc::channel(CORE_QUEUE);
        let (tun_tx, tun_rx) = match &tun {
            Some(_) => {
                let (tx, rx) = mpsc::channel(TUN_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let public = cfg.secret.public_key();
        let mut rng = rand::thread_rng();
        let router_id = RouterId::new(public, rng.gen());
        let mut router_cfg = cfg.router.clone();
        router_cfg.hash_seed = rng.gen();
        let max_subnets = router_cfg.limits.max_subnets;
        let mut router = Router::new(router_cfg, router_id, Instant::ZERO);
        router.track_selection_changes();
        let forwarding = TableWriter::new(max_subnets, rng.gen());
        tracing::info!(
            "node {} at {} (router id {router_id})",
            public,
            public.address()
        );
        let shared = Arc::new(Shared {
            secret: cfg.secret.clone(),
            own_ip: public.address(),
            own_subnet: public.subnet(),
            snapshot: ArcSwap::from_pointee(Snapshot::new(
                Map::default(),
                forwarding.table().clone(),
            )),
            core_tx,
            tun,
            tun_tx,
            bus_tx,
            stats: NodeStats::default(),
            packets: PacketStats::default(),
            registry: Registry::new(shutdown.clone(), cfg.limits.max_inbound_peers),
            quic: OnceLock::new(),
            mark: cfg.firewall_mark,
            started: SystemTime::now(),
            shutdown,
            limits: cfg.limits,
            proxy: cfg.proxy,
            accepts: Mutex::new(TokenBucket::new(
                cfg.limits.connections_per_second,
                cfg.limits.connections_per_second.saturating_mul(2),
                std::time::Instant::now(),
            )),
            replays: ReplayFilter::default(),
            control_queue_bytes: crate::link::control_queue_bytes(max_subnets),
            control_permits: Arc::new(Semaphore::new(CONTROL_IN_FLIGHT)),
            #[cfg(test)]
            full_publications: AtomicU64::new(0),
            // From 1: the forwarding table stores "no next hop" as 0.
            next_peer: AtomicU64::new(1),
        });
        let core = Self {
            shared: shared.clone(),
            rx,
            router,
            epoch: tokio::time::Instant::now(),
            links: Map::default(),
            link_txs: Map::default(),
            links_to_send: Vec::new(),
            forwarding,
            changed: Vec::new(),
            links_changed: true,
            pending: Map::default(),
            pending_total: 0,
            unknown: Map::default(),
            unknown_total: 0,
            cache: SecretCache::default(),
        };
        let receivers = Receivers {
            tun: tun_rx,
            bus: bus_rx,
        };
        (core, shared, router_id, receivers)
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
                _ = self.shared.shutdown.cancelled() => break,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let mut tlvs = self.handle(cmd).await;
                    let mut commands = 1;
                    while commands < FLUSH_COMMANDS && tlvs < FLUSH_TLVS {
                        match self.rx.try_recv() {
                            Ok(cmd) => tlvs += self.handle(cmd).await,
                            Err(_) => break,
                        }
                        commands += 1;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.router.handle_timeout(now);
                }
            }
            self.flush().await;
        }
        for link in self.links.values() {
            link.close.cancel();
        }
    }

    /// Handles one input; returns the control TLVs it carried.
    async fn handle(&mut self, cmd: CoreCmd) -> usize {
        let now = self.now();
        match cmd {
            CoreCmd::LinkUp {
                peer,
                kind,
                conn_id,
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
                        out: BytesMut::new(),
                        out_packets: 0,
                    },
                );
                self.links_changed = true;
                NodeStats::bump(&self.shared.stats.links_up);
                self.router.handle_peer_up(now, peer, kind);
            }
            CoreCmd::LinkDown { peer } => {
                self.links.remove(&peer);
                self.link_txs.remove(&peer);
                self.links_changed = true;
                NodeStats::bump(&self.shared.stats.links_down);
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
                for (counter, n) in self.shared.stats.tlvs.iter().zip(kinds) {
                    if n > 0 {
                        counter.fetch_add(n, Ordering::Relaxed);
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
                    NodeStats::bump(&self.shared.stats.no_route);
                }
            }
            CoreCmd::Query(q) => self.answer(now, q),
        }
        0
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
                });
            }
        }
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
        let dst = match &packet {
            Unrouted::Local { buf, len } => {
                Ipv6Packet::new_checked(&buf[dataplane::HEADROOM..dataplane::HEADROOM + len])
                    .map(|ip| ip.dst())
            }
            Unrouted::Message { dst, .. } => Ok(*dst),
            Unrouted::Transit(pkt) => DataFrame::new_checked(&pkt[..]).map(|f| f.dst()),
        };
        // The data plane checked both kinds before handing them over.
        let Ok(dst) = dst else {
            NodeStats::bump(&self.shared.stats.malformed);
            return;
        };
        let local = !matches!(packet, Unrouted::Transit(_));
        match self.router.resolve(now, dst, local) {
            Resolution::Forward(_) => {
                // The snapshot was behind; it is republished after this batch, and
                // the packet goes out with the queue's flush.
                self.enqueue(Subnet::v6_64(dst), packet);
            }
            Resolution::Pending(subnet) => self.enqueue(subnet, packet),
            Resolution::Unreachable(_) => {
                NodeStats::bump(&self.shared.stats.no_route);
                // Only unselected routes: upstream reports "no route" to the source.
                if let Unrouted::Transit(pkt) = &packet {
                    let snapshot = self.shared.snapshot.load();
                    dataplane::report_to_source(
                        &self.shared,
                        &mut self.cache,
                        &snapshot,
                        pkt,
                        mycelium_proto::icmp::DESTINATION_UNREACHABLE,
                        mycelium_proto::icmp::CODE_NO_ROUTE,
                    );
                }
            }
        }
    }

    fn enqueue(&mut self, subnet: Subnet, packet: Unrouted) {
        let queue = self.pending.entry(subnet).or_default();
        if queue.len() >= PENDING_PER_SUBNET || self.pending_total >= PENDING_TOTAL {
            NodeStats::bump(&self.shared.stats.no_route);
            return;
        }
        queue.push_back(packet);
        self.pending_total += 1;
    }

    /// Sends what the router produced, acts on its events, republishes the snapshot,
    /// and flushes queues whose routes appeared.
    async fn flush(&mut self) {
        self.send_control();
        let mut usable = Vec::new();
        while let Some(e) = self.router.poll_event() {
            match e {
                Event::PeerDead(peer) => {
                    tracing::info!("{peer} sent no IHU for too long; disconnecting");
                    NodeStats::bump(&self.shared.stats.peers_died);
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
                            NodeStats::bump(&self.shared.stats.no_route);
                            // Local packets get "no route" on the TUN, from their own
                            // source as upstream sends it; transit ones just go.
                            if let Unrouted::Local { buf, len } = packet {
                                let ip = &buf[dataplane::HEADROOM..dataplane::HEADROOM + len];
                                if let Ok(view) = Ipv6Packet::new_checked(ip) {
                                    dataplane::icmp_to_tun(
                                        &self.shared,
                                        view.src(),
                                        view.src(),
                                        view.hop_limit(),
                                        mycelium_proto::icmp::DESTINATION_UNREACHABLE,
                                        mycelium_proto::icmp::CODE_NO_ROUTE,
                                        ip,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        self.publish();
        let snapshot = self.shared.snapshot.load_full();
        let mut out = dataplane::TunBatch::default();
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
                match packet {
                    Unrouted::Local { buf, len } => {
                        dataplane::send_local(&self.shared, &mut self.cache, &snapshot, buf, len)
                    }
                    Unrouted::Message { src, dst, buf } => dataplane::send_frame(
                        &self.shared,
                        &mut self.cache,
                        &snapshot,
                        src,
                        dst,
                        buf,
                    ),
                    Unrouted::Transit(pkt) => {
                        // Its hop limit was already taken at arrival: give it back
                        // before the data plane takes it again.
                        let mut pkt = pkt;
                        if let Ok(mut frame) = DataFrame::new_checked(&mut pkt[..]) {
                            frame.set_hop_limit(frame.hop_limit().saturating_add(1));
                        }
                        dataplane::handle_data(
                            &self.shared,
                            &mut self.cache,
                            &snapshot,
                            pkt,
                            &mut out,
                        )
                        .await;
                    }
                }
            }
        }
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
                dataplane::deliver(&self.shared, &mut self.cache, &snapshot, packet, &mut out)
                    .await;
            }
        }
        out.flush(&self.shared).await;
        self.cache.tally.merge(&self.shared.packets);
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
            self.shared
                .snapshot
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
            self.shared
                .full_publications
                .fetch_add(1, Ordering::Relaxed);
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
    use super::*;
    use crate::link::{control_queue, ControlRx, CONTROL_BATCH};

    /// The far side of a link the core knows.
    pub(crate) struct FakeLink {
        pub(crate) peer: PeerId,
        pub(crate) control: ControlRx,
        pub(crate) close: CancellationToken,
        #[allow(dead_code)] // kept so the data plane's sends find an open queue
        pub(crate) data: mpsc::Receiver<bytes::Bytes>,
    }

    /// A core with no TUN, running on the current runtime.
    pub(crate) fn start_core(cfg: &NodeConfig) -> (Arc<Shared>, Receivers) {
        let (core, shared, _, receivers) = Core::new(cfg, None, CancellationToken::new());
        tokio::spawn(core.run());
        (shared, receivers)
    }

    /// Brings a link up, as a link task does.
    pub(crate) async fn link_up(shared: &Shared) -> FakeLink {
        let peer = shared.new_peer_id();
        let (data_tx, data) = mpsc::channel(64);
        let (control_tx, control) = control_queue(shared.control_queue_bytes);
        let close = CancellationToken::new();
        let up = CoreCmd::LinkUp {
            peer,
            kind: LinkKind::Tcp { ipv4: true },
            conn_id: format!("test {peer}"),
            data: data_tx,
            control: control_tx,
            close: close.clone(),
        };
        assert!(shared.core_tx.send(up).await.is_ok());
        FakeLink {
            peer,
            control,
            close,
            data,
        }
    }

    /// Hands TLVs from `peer` to the core, in batches as a link reader does.
    pub(crate) async fn receive(shared: &Shared, peer: PeerId, tlvs: &[Tlv]) {
        for chunk in tlvs.chunks(CONTROL_BATCH) {
            let Ok(permit) = shared
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
            assert!(shared.core_tx.send(cmd).await.is_ok());
        }
    }

    /// The router's figures.
    pub(crate) async fn router_view(shared: &Shared) -> RouterView {
        let (tx, rx) = oneshot::channel();
        assert!(shared
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

    fn config(max_subnets: usize) -> NodeConfig {
        let mut cfg = NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()));
        cfg.router = mycelium_proto::routing::RouterConfig::upstream();
        cfg.router.limits.max_subnets = max_subnets;
        cfg
    }

    const WILDCARD: Tlv = Tlv::RouteRequest(RouteRequest {
        generation: 0,
        prefix: None,
    });

    /// A core holding `routes` routes learned from one link, and that link.
    async fn core_with_routes(
        routes: u64,
        max_subnets: usize,
    ) -> (Arc<Shared>, Receivers, FakeLink) {
        let (shared, rx) = start_core(&config(max_subnets));
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
        (shared, rx, a)
    }

    /// A neighbour that connects to a node holding 100,000 routes and asks for
    /// them all gets them all, and is not taken for stuck although it has not read
    /// any yet (one message per TLV into a queue of 8,192 closed it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_table_for_a_new_neighbour_does_not_close_its_link() {
        const ROUTES: u64 = 100_000;
        let (shared, _rx, a) = core_with_routes(ROUTES, 250_000).await;
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

    /// A neighbour that asks for the table over and over and never reads is closed
    /// once its queue holds its bound, and holds no more than that meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_that_does_not_read_is_closed_at_its_bound() {
        const ROUTES: u64 = 2_000;
        let (shared, _rx, a) = core_with_routes(ROUTES, ROUTES as usize).await;
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
}
