//! The core task: owns the router, takes link events and control TLVs, runs the
//! timers, holds packets that wait for a route, and publishes the forwarding
//! snapshot.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use mycelium_proto::routing::{Event, LinkKind, PeerId, Resolution, Router, SubnetEntry};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::{control, Tlv};
use mycelium_proto::{PublicKey, RouterId, SecretKey, Subnet};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dataplane::{self, SecretCache};
use crate::limits::{Limits, ReplayFilter, TokenBucket};
use crate::registry::Registry;
use crate::snapshot::{LinkTx, Snapshot};
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
/// Control packets a link may have queued before it is considered stuck.
pub(crate) const CONTROL_QUEUE: usize = 8_192;

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
        control: mpsc::Sender<Bytes>,
        close: CancellationToken,
    },
    LinkDown {
        peer: PeerId,
    },
    Control {
        peer: PeerId,
        tlv: Tlv,
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
    control: mpsc::Sender<Bytes>,
    close: CancellationToken,
    conn_id: String,
}

pub(crate) struct Core {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<CoreCmd>,
    router: Router,
    epoch: tokio::time::Instant,
    links: Map<PeerId, Link>,
    link_txs: Map<PeerId, LinkTx>,
    published_generation: u64,
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
        let (core_tx, rx) = mpsc::channel(16_384);
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
        let router = Router::new(router_cfg, router_id, Instant::ZERO);
        tracing::info!(
            "node {} at {} (router id {router_id})",
            public,
            public.address()
        );
        let shared = Arc::new(Shared {
            secret: cfg.secret.clone(),
            own_ip: public.address(),
            own_subnet: public.subnet(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
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
            next_peer: AtomicU64::new(1),
        });
        let core = Self {
            shared: shared.clone(),
            rx,
            router,
            epoch: tokio::time::Instant::now(),
            links: Map::default(),
            link_txs: Map::default(),
            published_generation: u64::MAX,
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
                    self.handle(cmd).await;
                    for _ in 0..256 {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.handle(cmd).await,
                            Err(_) => break,
                        }
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

    async fn handle(&mut self, cmd: CoreCmd) {
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
            CoreCmd::Control { peer, tlv } => {
                let kind = match &tlv {
                    Tlv::Hello(_) => 0,
                    Tlv::Ihu(_) => 1,
                    Tlv::Update(_) => 2,
                    Tlv::RouteRequest(_) => 3,
                    Tlv::SeqnoRequest(_) => 4,
                };
                NodeStats::bump(&self.shared.stats.tlvs[kind]);
                self.router.handle_tlv(now, peer, tlv);
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
            Unrouted::Local { buf, .. } => dataplane::addr_at(buf, dataplane::HEADROOM + 24),
            Unrouted::Message { dst, .. } => *dst,
            Unrouted::Transit(pkt) => dataplane::addr_at(pkt, 4 + 20),
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
        while let Some(t) = self.router.poll_transmit() {
            let Some(link) = self.links.get(&t.to) else {
                continue;
            };
            let mut bytes = BytesMut::with_capacity(80);
            control::encode(&t.tlv, &mut bytes);
            if link.control.try_send(bytes.freeze()).is_err() {
                // A link that cannot take control traffic any more is stuck; a
                // stream that dropped some would confuse the peer, so close it.
                tracing::warn!("link {} is not draining control packets; closing it", t.to);
                link.close.cancel();
            }
        }
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
                                let src = dataplane::addr_at(ip, 8);
                                dataplane::icmp_to_tun(
                                    &self.shared,
                                    src,
                                    src,
                                    ip[7],
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
        let generation = self.router.table_generation();
        if generation != self.published_generation || self.links_changed {
            self.shared
                .snapshot
                .store(Arc::new(Snapshot::build(&self.router, &self.link_txs)));
            self.published_generation = generation;
            self.links_changed = false;
        }
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
                        pkt[7] = pkt[7].saturating_add(1);
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

fn s_addr(s: &Subnet) -> Ipv6Addr {
    match s.address() {
        std::net::IpAddr::V6(a) => a,
        std::net::IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    }
}
