//! The router: a sans-IO state machine for Mycelium's Babel-derived routing
//! protocol, wire-compatible with upstream v0.7.10.
//!
//! Inputs are `handle_*` calls carrying the current [`Instant`]; outputs are drained
//! with [`Router::poll_transmit`] (a TLV for one neighbour), [`Router::poll_event`]
//! (what the driver must act on) and [`Router::poll_timeout`] (when to call
//! [`Router::handle_timeout`] next). The router never reads a clock and never touches
//! a socket, so the simulator runs thousands of them on a virtual clock.
//!
//! It owns neighbour maintenance, the route and source tables, route selection,
//! route and seqno requests and their caches. It does not own packets: the data plane
//! asks [`Router::resolve`] for a next hop and [`Router::key_for`] for keys.
//!
//! # Fast failure detection, compatibly
//!
//! Upstream notices a dead neighbour only after 43 s without an IHU. With
//! [`RouterConfig::liveness`] set (the default), we send Hellos every
//! [`Liveness::probe_interval`] instead of every 20 s, and treat a neighbour we have
//! heard nothing from for [`Liveness::timeout`] as *unreachable*: its routes are
//! retracted or replaced at once, while its connection stays open. It is reachable
//! again once it answers a Hello we sent after hearing from it again (hearing it
//! shows only that its direction of the link works), and we then ask it for its
//! whole table with a wildcard route request.
//!
//! An upstream neighbour sees only TLVs it already handles: more frequent Hellos (it
//! ignores their seqno and interval fields, and answers each with one IHU at once,
//! which is exactly the traffic the probe needs), and wildcard route requests (which
//! it answers with its selected routes). Our IHUs stay strictly replies to its Hellos,
//! so its link-cost measurement of us is unchanged. Its own 43 s rule still applies
//! to us, and we keep it too, for closing connections.

mod caches;
mod leaf;
#[cfg(test)]
mod model;
mod neighbour;
mod requests;
mod slab;
mod source_table;
mod table;
mod update;

#[cfg(test)]
mod leaf_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

pub use leaf::Leaf;
pub use neighbour::{LinkKind, PeerId};
pub use source_table::SourceKey;
pub use table::{RouteEntry, Routes, SubnetEntry};

use caches::{RouteRequestCache, SeqnoCache};
use leaf::LeafCache;

/// The hash maps of the routing state. Keys come from the network, so the hasher is
/// keyed: drivers give each router a random [`RouterConfig::hash_seed`]; the
/// simulator gives a seeded one, so that iteration order, and with it the whole run,
/// is reproducible.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

pub(crate) fn new_map<K, V>(seed: u64) -> Map<K, V> {
    Map::with_hasher(foldhash::fast::FixedState::with_seed(seed))
}

use neighbour::{Neighbour, Silence};

/// Neighbour silences remembered at once.
const MAX_SILENCES: usize = 64;
use table::{Due, RouteTable};

use crate::identity::{PublicKey, RouterId};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::tlv::{Hello, Ihu};
use crate::wire::{Interval, Metric, SeqNo, Tlv};

/// Fast failure detection settings (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often every neighbour gets a Hello.
    pub probe_interval: Duration,
    /// Silence after which a neighbour is routed around.
    pub timeout: Duration,
}

/// Bounds on everything a remote party can grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Subnets in the routing table, known or queried. Updates and requests for new
    /// subnets beyond it are dropped and counted.
    pub max_subnets: usize,
    /// Route entries learned from one neighbour.
    pub max_routes_per_neighbour: usize,
    /// Remembered seqno requests.
    pub max_seqno_requests: usize,
    /// Remembered route requests.
    pub max_route_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_subnets: 250_000,
            max_routes_per_neighbour: 100_000,
            max_seqno_requests: 100_000,
            max_route_requests: 100_000,
        }
    }
}

/// Every timer and constant of the routing protocol. [`Default`] gives upstream's
/// values plus our fast failure detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Hello period when [`RouterConfig::liveness`] is off (20 s).
    pub hello_interval: Duration,
    /// The interval written in IHUs (60 s; informative only).
    pub ihu_interval: Duration,
    /// Fast failure detection; `None` behaves exactly like upstream.
    pub liveness: Option<Liveness>,
    /// A neighbour with no IHU for this long is dead and disconnected (43 s).
    pub dead_after: Duration,
    /// How often neighbours are checked against `dead_after` (10 s).
    pub dead_check_interval: Duration,
    /// Own-route announcement period, and the interval advertised in updates (300 s).
    pub update_interval: Duration,
    /// How long a retracted route lingers (6 s).
    pub retracted_hold: Duration,
    /// A neighbour heard again after a silence must answer a Hello at least this
    /// long after it was first heard (50 ms): an answer in the same burst may be an
    /// old one its connection held.
    pub wake_guard: Duration,
    /// How long a route request waits for an answer (15 s).
    pub route_query_timeout: Duration,
    /// How long a sent route request is remembered (15 s).
    pub route_request_ttl: Duration,
    /// Route requests of this generation or later are not forwarded (16).
    pub max_route_request_generation: u8,
    /// Hop count of originated seqno requests (64).
    pub seqno_request_hop_count: u8,
    /// Minimum time between two bumps of our own seqno (4 s).
    pub seqno_bump_interval: Duration,
    /// A seqno request seen within this window is ignored (60 s).
    pub seqno_request_dedup: Duration,
    /// Neighbours asked for a seqno less than this long ago are not asked again (4 s).
    pub seqno_request_retarget: Duration,
    /// Source-table entries live this long after their last refresh (30 min).
    pub source_gc: Duration,
    /// A metric change larger than this triggers an update (10); also the margin a
    /// new route must beat the selected one by.
    pub significant_metric_change: u16,
    /// Forwarding over a route this close to expiry re-requests it (15 s).
    pub refresh_before_expiry: Duration,
    /// Link cost of a new neighbour before any measurement (1000).
    pub initial_link_cost: u16,
    /// Ask every new neighbour for its whole table (a wildcard route request), so a
    /// node that joins learns existing routes at once, not only on demand. Upstream
    /// answers such requests; it never sends them itself.
    pub request_table_on_connect: bool,
    /// Leaf mode: keep only the routes in use, announce only our own subnet (see
    /// [`Leaf`]). `None` (the default) is a full node.
    pub leaf: Option<Leaf>,
    /// Bounds.
    pub limits: Limits,
    /// Key of the router's hash maps. Drivers must set a random value, so that a
    /// remote party cannot choose colliding keys; tests set a fixed one.
    pub hash_seed: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            hello_interval: Duration::from_secs(20),
            ihu_interval: Duration::from_secs(60),
            liveness: Some(Liveness {
                probe_interval: Duration::from_millis(250),
                timeout: Duration::from_millis(1250),
            }),
            dead_after: Duration::from_secs(43),
            dead_check_interval: Duration::from_secs(10),
            update_interval: Duration::from_secs(300),
            retracted_hold: Duration::from_secs(6),
            wake_guard: Duration::from_millis(50),
            route_query_timeout: Duration::from_secs(15),
            route_request_ttl: Duration::from_secs(15),
            max_route_request_generation: 16,
            seqno_request_hop_count: 64,
            seqno_bump_interval: Duration::from_secs(4),
            seqno_request_dedup: Duration::from_secs(60),
            seqno_request_retarget: Duration::from_secs(4),
            source_gc: Duration::from_secs(30 * 60),
            significant_metric_change: 10,
            refresh_before_expiry: Duration::from_secs(15),
            initial_link_cost: 1000,
            request_table_on_connect: true,
            leaf: None,
            limits: Limits::default(),
            hash_seed: 0,
        }
    }
}

impl RouterConfig {
    /// Upstream's behaviour exactly: no liveness probing, no table request on connect.
    pub fn upstream() -> Self {
        Self {
            liveness: None,
            request_table_on_connect: false,
            ..Self::default()
        }
    }

    /// Whether a new neighbour is asked for its whole table: never by a leaf.
    fn asks_for_tables(&self) -> bool {
        self.request_table_on_connect && self.leaf.is_none()
    }

    /// How often Hellos go out.
    pub fn hello_period(&self) -> Duration {
        self.liveness
            .map_or(self.hello_interval, |l| l.probe_interval)
    }
}

/// A TLV to send to one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The neighbour.
    pub to: PeerId,
    /// What to send.
    pub tlv: Tlv,
}

/// Something the driver must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The neighbour sent no IHU for too long: close its connection. The router has
    /// already forgotten it.
    PeerDead(PeerId),
    /// The neighbour fell silent and is routed around; its connection stays.
    PeerUnreachable(PeerId),
    /// The neighbour is heard again.
    PeerReachable(PeerId),
    /// A subnet gained a usable route: send what was queued for it.
    RouteUsable(Subnet),
    /// A subnet lost its route: drop what was queued for it.
    RouteLost(Subnet),
    /// A route request got no answer in time: drop what was queued for it.
    QueryExpired(Subnet),
}

/// What the data plane should do with a packet for some destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Send it to this neighbour.
    Forward(PeerId),
    /// The route is being looked for (a request is in flight): queue it.
    Pending(Subnet),
    /// Only unselected routes exist: no route.
    Unreachable(Subnet),
}

/// Counters of what the router refused or dropped, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Updates failing the subnet filters (outside 400::/7, shorter than /64, or not
    /// owned by the router id's key).
    pub updates_filtered: u64,
    /// Updates for our own subnet.
    pub updates_for_own_subnet: u64,
    /// Updates refused because the table or the neighbour's share was full.
    pub updates_over_limit: u64,
    /// TLVs from neighbours we do not know.
    pub tlvs_from_unknown_peers: u64,
    /// Route requests dropped for their generation.
    pub route_requests_too_old: u64,
    /// Router ids of a subnet forgotten early to make room in the source table (a
    /// node restarting often, or a peer inventing router ids).
    pub sources_evicted: u64,
    /// Leaf mode: updates dropped unseen, for subnets the leaf neither holds nor
    /// looks for.
    pub leaf_updates_ignored: u64,
    /// Leaf mode: uses of cached subnets the driver reported ([`Router::touch`]).
    pub leaf_hits: u64,
    /// Leaf mode: lookups that found no route in the cache and asked for one.
    pub leaf_misses: u64,
    /// Leaf mode: subnets forgotten to make room for others.
    pub leaf_evictions: u64,
}

#[derive(Debug, Clone, Copy)]
struct Timers {
    hello: Instant,
    dead_check: Instant,
    announce: Instant,
    caches: Instant,
    sources: Instant,
}

/// The routing state machine of one node.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    router_id: RouterId,
    own_subnet: Subnet,
    seqno: SeqNo,
    last_bump: Instant,
    /// A bump asked for while rate-limited, done as soon as the limit allows.
    pending_bump: Option<Instant>,
    /// Subnets to run selection for again, when a held-back route becomes usable.
    reselect: BTreeSet<(Instant, Subnet)>,
    /// Seqno requests we originated, to retry until answered.
    pending_requests: BTreeMap<SourceKey, requests::PendingRequest>,
    neighbours: BTreeMap<PeerId, Neighbour>,
    /// Routes, queries and feasibility distances.
    table: RouteTable,
    seqno_cache: SeqnoCache,
    rr_cache: RouteRequestCache,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Recent silences of neighbours, oldest first: what we sent then may still
    /// be on its way (see `Router::in_flight_until`). Few, and usually none.
    silences: Vec<Silence>,
    stats: RouterStats,
    /// Recency of the subnets held, in leaf mode.
    leaf: Option<LeafCache>,
}

/// How often the request caches are swept.
const CACHE_SWEEP: Duration = Duration::from_secs(5);
/// How often the source table is swept. Its entries live half an hour; the sweep
/// visits every subnet, so it runs rarely.
const SOURCE_SWEEP: Duration = Duration::from_secs(60);

impl Router {
    /// A router for the node whose router id is `router_id`, started at `now`.
    pub fn new(cfg: RouterConfig, router_id: RouterId, now: Instant) -> Self {
        let own_subnet = router_id.public_key().subnet();
        let timers = Timers {
            hello: now + cfg.hello_period(),
            dead_check: now + cfg.dead_check_interval,
            announce: now + cfg.update_interval,
            caches: now + CACHE_SWEEP,
            sources: now + SOURCE_SWEEP,
        };
        let seed = cfg.hash_seed;
        let leaf = cfg.leaf.map(|l| LeafCache::new(l, seed));
        Self {
            cfg,
            router_id,
            own_subnet,
            seqno: SeqNo(0),
            last_bump: now,
            pending_bump: None,
            reselect: BTreeSet::new(),
            pending_requests: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            table: RouteTable::new(seed),
            seqno_cache: SeqnoCache::new(seed),
            rr_cache: RouteRequestCache::new(seed),
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            silences: Vec::new(),
            stats: RouterStats::default(),
            leaf,
        }
    }

    /// Our router id.
    pub fn router_id(&self) -> RouterId {
        self.router_id
    }

    /// The `/64` we originate.
    pub fn own_subnet(&self) -> Subnet {
        self.own_subnet
    }

    /// Our current sequence number.
    pub fn seqno(&self) -> SeqNo {
        self.seqno
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    // ----- inputs -------------------------------------------------------------

    /// A new connection (either direction) is up.
    pub fn handle_peer_up(&mut self, now: Instant, peer: PeerId, kind: LinkKind) {
        if self.neighbours.contains_key(&peer) {
            return;
        }
        self.neighbours
            .insert(peer, Neighbour::new(kind, now, self.cfg.initial_link_cost));
        self.greet(now, peer);
    }

    /// A connection is gone, whatever the reason. Unknown peers are ignored.
    pub fn handle_peer_down(&mut self, now: Instant, peer: PeerId) {
        if self.neighbours.remove(&peer).is_none() {
            return;
        }
        // Its connection is gone, and what it held with it.
        self.end_silences(now, peer);
        self.seqno_cache.forget(peer);
        self.lose_routes_via(now, peer);
    }

    /// A control TLV arrived from `peer`.
    pub fn handle_tlv(&mut self, now: Instant, peer: PeerId, tlv: Tlv) {
        let Some(n) = self.neighbours.get_mut(&peer) else {
            self.stats.tlvs_from_unknown_peers += 1;
            return;
        };
        n.last_heard = now;
        if !n.reachable {
            // Hearing it proves only that its direction works: a silent link
            // delivers what it held when it wakes, and the two directions of a
            // connection recover apart (one end's retransmission timer can run
            // for seconds after the other's). It is reachable again once it
            // answers a Hello we sent since it woke, and not in the burst that
            // woke it, which may hold answers to Hellos from before.
            let since = *n.waking_since.get_or_insert(now);
            let answered = matches!(tlv, Tlv::Ihu(_))
                && n.last_hello_sent >= since
                && now - since >= self.cfg.wake_guard;
            if answered {
                n.revive();
                self.end_silences(now, peer);
                self.events.push_back(Event::PeerReachable(peer));
                self.greet(now, peer);
            } else if since == now {
                self.send_hello(now, peer);
            }
        }
        match tlv {
            Tlv::Hello(_) => {
                let cost = self.cost(peer);
                self.send(
                    peer,
                    Tlv::Ihu(Ihu {
                        rx_cost: cost,
                        interval: Interval::from_duration(self.cfg.ihu_interval),
                        address: None,
                    }),
                );
            }
            Tlv::Ihu(_) => {
                if let Some(n) = self.neighbours.get_mut(&peer) {
                    n.record_ihu(now);
                }
            }
            Tlv::Update(u) => self.handle_update(now, peer, u),
            Tlv::RouteRequest(r) => self.handle_route_request(now, peer, r),
            Tlv::SeqnoRequest(r) => self.handle_seqno_request(now, peer, r),
        }
    }

    /// Any other sign of life from `peer`, such as a data packet.
    pub fn handle_peer_activity(&mut self, now: Instant, peer: PeerId) {
        if let Some(n) = self.neighbours.get_mut(&peer) {
            n.last_heard = now;
        }
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.timers.hello {
            self.timers.hello = now + self.cfg.hello_period();
            self.send_hellos(now);
        }
        if let Some(l) = self.cfg.liveness {
            let silent: Vec<PeerId> = self
                .neighbours
                .iter()
                .filter(|(_, n)| n.reachable && n.silent_for(now, l.timeout))
                .map(|(p, _)| *p)
                .collect();
            // A neighbour that woke and fell silent again before answering wakes
            // afresh next time.
            for n in self.neighbours.values_mut() {
                if !n.reachable && n.silent_for(now, l.timeout) {
                    n.waking_since = None;
                }
            }
            for peer in silent {
                if let Some(n) = self.neighbours.get_mut(&peer) {
                    n.fall_silent();
                    let from = n.last_heard;
                    self.note_silence(now, peer, from);
                }
                self.events.push_back(Event::PeerUnreachable(peer));
                self.seqno_cache.forget(peer);
                self.lose_routes_via(now, peer);
            }
        }
        if now >= self.timers.dead_check {
            self.timers.dead_check = now + self.cfg.dead_check_interval;
            let dead: Vec<PeerId> = self
                .neighbours
                .iter()
                .filter(|(_, n)| now - n.last_ihu > self.cfg.dead_after)
                .map(|(p, _)| *p)
                .collect();
            for peer in dead {
                self.events.push_back(Event::PeerDead(peer));
                self.handle_peer_down(now, peer);
            }
        }
        if self.pending_bump.is_some_and(|t| now >= t) {
            self.pending_bump = None;
            self.bump_seqno(now);
        }
        if now >= self.timers.announce {
            self.timers.announce = now + self.cfg.update_interval;
            self.announce_own(now, None);
        }
        if now >= self.timers.caches {
            self.timers.caches = now + CACHE_SWEEP;
            self.seqno_cache.sweep(now, self.cfg.seqno_request_dedup);
            self.rr_cache.sweep(now, self.cfg.route_request_ttl);
        }
        if now >= self.timers.sources {
            self.timers.sources = now + SOURCE_SWEEP;
            self.table.collect(now, self.cfg.source_gc);
        }
        while let Some(due) = self.table.pop_due(now) {
            match due {
                Due::Query(subnet) => {
                    let expired = matches!(
                        self.table.get(&subnet),
                        Some(SubnetEntry::Queried { expires }) if expires <= now
                    );
                    if expired {
                        self.table.remove_subnet(&subnet);
                        self.events.push_back(Event::QueryExpired(subnet));
                    }
                }
                Due::Route(subnet, peer) => {
                    if self
                        .table
                        .route(&subnet, peer)
                        .is_some_and(|r| r.expires <= now)
                    {
                        self.expire_route(now, subnet, peer);
                    }
                }
            }
        }
        self.retry_requests(now);
        while let Some(&(at, subnet)) = self.reselect.first() {
            if at > now {
                break;
            }
            self.reselect.pop_first();
            if !self.table.exists(&subnet) {
                continue;
            }
            let current = self.table.selected(&subnet);
            self.apply_selection(now, subnet, current);
        }
    }

    // ----- outputs ------------------------------------------------------------

    /// The next TLV to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Router::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        let mut next = t
            .hello
            .min(t.dead_check)
            .min(t.announce)
            .min(t.caches)
            .min(t.sources);
        if let Some(bump) = self.pending_bump {
            next = next.min(bump);
        }
        if let Some(&(at, _)) = self.reselect.first() {
            next = next.min(at);
        }
        if let Some(at) = self.next_retry() {
            next = next.min(at);
        }
        if let Some(l) = self.cfg.liveness {
            for n in self.neighbours.values().filter(|n| n.reachable) {
                // Strictly after the timeout, as `silent_for` requires.
                next = next.min(n.last_heard + l.timeout + Duration::from_nanos(1));
            }
        }
        if let Some(deadline) = self.table.next_deadline() {
            next = next.min(deadline);
        }
        Some(next)
    }

    // ----- queries for the data plane and the API -----------------------------

    /// The neighbour to forward a packet for `dst` to, or why there is none. May send
    /// a route request (unknown destination, or a route about to expire) or a seqno
    /// request (only unselected routes, when `local`), as upstream does.
    pub fn resolve(&mut self, now: Instant, dst: Ipv6Addr, local: bool) -> Resolution {
        let wanted = Subnet::v6_64(dst);
        let (subnet, action) = match self.table.lookup(dst) {
            None => (wanted, None),
            Some((subnet, SubnetEntry::Queried { .. })) => {
                if self.leaf.is_some() {
                    self.stats.leaf_misses += 1;
                    self.leaf_use(subnet);
                }
                return Resolution::Pending(subnet);
            }
            Some((subnet, SubnetEntry::Exists { mut routes, .. })) => match routes.next() {
                Some(r) if r.selected => {
                    let peer = r.neighbour;
                    self.leaf_use(subnet);
                    if r.expires - now < self.cfg.refresh_before_expiry {
                        self.request_route(now, wanted);
                    }
                    return Resolution::Forward(peer);
                }
                Some(r) => (subnet, Some(r.source(subnet))),
                None => (wanted, None),
            },
        };
        if self.leaf.is_some() {
            self.stats.leaf_misses += 1;
        }
        match action {
            None => {
                self.request_route(now, subnet);
                Resolution::Pending(subnet)
            }
            Some(source) => {
                self.leaf_use(subnet);
                if local {
                    self.send_seqno_request(now, source, None, None);
                }
                Resolution::Unreachable(subnet)
            }
        }
    }

    /// The next hop for `dst` over a selected route, without side effects.
    pub fn next_hop(&self, dst: Ipv6Addr) -> Option<PeerId> {
        match self.table.lookup(dst)? {
            (_, SubnetEntry::Exists { mut routes, .. }) => {
                routes.next().filter(|r| r.selected).map(|r| r.neighbour)
            }
            _ => None,
        }
    }

    /// The public key owning the subnet that contains `addr`, from any route entry,
    /// selected or not: the key to encrypt to, or to decrypt from, that address.
    pub fn key_for(&self, addr: Ipv6Addr) -> Option<PublicKey> {
        match self.table.lookup(addr)? {
            (_, SubnetEntry::Exists { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// The forwarding view of exactly `subnet`: its owner's key and the next hop of
    /// its selected route, if any. `None` for a subnet we do not know or are still
    /// looking for.
    pub fn forwarding(&self, subnet: &Subnet) -> Option<(PublicKey, Option<PeerId>)> {
        match self.table.get(subnet)? {
            SubnetEntry::Exists { key, mut routes } => Some((
                key,
                routes.next().filter(|r| r.selected).map(|r| r.neighbour),
            )),
            SubnetEntry::Queried { .. } => None,
        }
    }

    /// The forwarding view of every known subnet (see [`Router::forwarding`]).
    pub fn forwarding_entries(
        &self,
    ) -> impl Iterator<Item = (Subnet, PublicKey, Option<PeerId>)> + '_ {
        self.table.iter().filter_map(|(s, e)| match e {
            SubnetEntry::Exists { key, mut routes } => Some((
                s,
                key,
                routes.next().filter(|r| r.selected).map(|r| r.neighbour),
            )),
            SubnetEntry::Queried { .. } => None,
        })
    }

    /// Every subnet we hold, with its entry.
    pub fn subnets(&self) -> impl Iterator<Item = (Subnet, SubnetEntry<'_>)> {
        self.table.iter()
    }

    /// The selected route for exactly `subnet`.
    pub fn selected_route(&self, subnet: &Subnet) -> Option<RouteEntry> {
        self.table.selected(subnet)
    }

    /// Number of subnets in the table and of route entries.
    pub fn table_size(&self) -> (usize, usize) {
        (self.table.len(), self.table.route_count())
    }

    /// A counter that changes whenever the forwarding view (subnets, their keys,
    /// selected next hops) may have changed; drivers republish their snapshot then.
    pub fn table_generation(&self) -> u64 {
        self.table.generation()
    }

    /// Starts logging which subnets' selected routes change, for drivers that
    /// follow forwarding per destination (the simulator's loop check).
    pub fn track_selection_changes(&mut self) {
        self.table.track_changes();
    }

    /// Appends to `out` the subnets whose selected route (or key, or existence)
    /// changed since the last call, once tracking is on. Returns `false` when too
    /// many changed to list: assume every subnet did.
    pub fn take_selection_changes(&mut self, out: &mut Vec<Subnet>) -> bool {
        self.table.take_changes(out)
    }

    /// Heap bytes the routing and source tables hold: what grows with the number
    /// of routes. For memory figures and the test that pins them.
    pub fn table_heap_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// Number of subnets with a selected route.
    pub fn selected_count(&self) -> usize {
        self.table.selected_count()
    }

    /// Number of entries in the source table and the two request caches.
    pub fn cache_sizes(&self) -> (usize, usize, usize) {
        (
            self.table.source_count(),
            self.seqno_cache.len(),
            self.rr_cache.len(),
        )
    }

    /// Our neighbours with their link cost `C(n)` (infinite while unreachable).
    pub fn neighbours(&self) -> impl Iterator<Item = (PeerId, Metric)> + '_ {
        self.neighbours.iter().map(|(p, n)| (*p, n.cost()))
    }

    /// The router id of the node at the other end of `peer`'s link, once known:
    /// that of the first update the neighbour sent for a subnet its key owns at
    /// metric 0 (its own subnet, which every node announces on every new link at
    /// once). Two links whose neighbours share a public key lead to the same node,
    /// even when they run over different addresses (a node's TCP and QUIC
    /// endpoints are often an IPv4 and an IPv6 address). `None` for an unknown
    /// peer, or before that update arrived. The driver uses it to tell which of
    /// its links go to one node; nothing in routing depends on it.
    pub fn neighbour_router_id(&self, peer: PeerId) -> Option<RouterId> {
        self.neighbours.get(&peer).and_then(|n| n.identity)
    }

    // ----- internals shared by the submodules -----------------------------------

    fn send(&mut self, to: PeerId, tlv: Tlv) {
        self.transmits.push_back(Transmit { to, tlv });
    }

    /// `C(n)`, infinite for a neighbour we do not know.
    fn cost(&self, peer: PeerId) -> Metric {
        self.neighbours
            .get(&peer)
            .map_or(Metric::INFINITE, Neighbour::cost)
    }

    fn reachable_neighbours(&self) -> Vec<PeerId> {
        self.neighbours
            .iter()
            .filter(|(_, n)| n.reachable)
            .map(|(p, _)| *p)
            .collect()
    }

    /// What a new (or newly reachable) neighbour gets: our own routes, requests for
    /// what we are looking for (a leaf: for all it holds), and optionally a request
    /// for its whole table.
    fn greet(&mut self, now: Instant, peer: PeerId) {
        if let Some(n) = self.neighbours.get_mut(&peer) {
            n.last_hello_sent = now;
            n.last_ihu = now;
        }
        self.announce_own(now, Some(peer));
        // A leaf asks for every subnet it holds as well: it does not ask for whole
        // tables, so without this a neighbour that comes back would give it no
        // second route to fail over to until the destination's seqno changed.
        let leaf = self.is_leaf();
        let queried: Vec<Subnet> = self
            .table
            .iter()
            .filter(|(_, e)| leaf || matches!(e, SubnetEntry::Queried { .. }))
            .map(|(s, _)| s)
            .collect();
        for subnet in queried {
            self.send(
                peer,
                Tlv::RouteRequest(crate::wire::tlv::RouteRequest {
                    generation: 0,
                    prefix: Some(subnet),
                }),
            );
        }
        if self.cfg.asks_for_tables() {
            self.send(
                peer,
                Tlv::RouteRequest(crate::wire::tlv::RouteRequest {
                    generation: 0,
                    prefix: None,
                }),
            );
        }
    }

    /// A new own seqno, announced to every neighbour.
    fn bump_seqno(&mut self, now: Instant) {
        self.seqno = self.seqno.next();
        self.last_bump = now;
        self.announce_own(now, None);
    }

    /// Records that `peer` fell silent after `from`. Silences that ended more
    /// than `retracted_hold` ago are forgotten; past [`MAX_SILENCES`] the two
    /// oldest merge into one (a longer silence only keeps more in doubt).
    fn note_silence(&mut self, now: Instant, peer: PeerId, from: Instant) {
        let keep = self.cfg.retracted_hold;
        self.silences
            .retain(|s| s.until.map_or(true, |until| now - until <= keep));
        if self.silences.len() >= MAX_SILENCES {
            let second = self.silences.remove(1);
            let first = &mut self.silences[0];
            // Still open if either is; it then ends with the newer open one, whose
            // peer revives or goes down within `dead_after`.
            match (first.until, second.until) {
                (Some(a), Some(b)) => first.until = Some(a.max(b)),
                (_, None) => {
                    first.until = None;
                    first.peer = second.peer;
                }
                (None, Some(_)) => {}
            }
        }
        self.silences.push(Silence {
            peer,
            from,
            until: None,
        });
    }

    /// The silences of `peer` still open end at `now`.
    fn end_silences(&mut self, now: Instant, peer: PeerId) {
        for s in self.silences.iter_mut().filter(|s| s.peer == peer) {
            s.until.get_or_insert(now);
        }
    }

    fn send_hellos(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self.neighbours.keys().copied().collect();
        for peer in peers {
            self.send_hello(now, peer);
        }
    }

    fn send_hello(&mut self, now: Instant, peer: PeerId) {
        let interval = Interval::from_duration(self.cfg.hello_period());
        let Some(n) = self.neighbours.get_mut(&peer) else {
            return;
        };
        n.last_hello_sent = now;
        let seqno = n.hello_seqno;
        n.hello_seqno = seqno.next();
        self.send(
            peer,
            Tlv::Hello(Hello {
                unicast: true,
                seqno,
                interval,
            }),
        );
    }
}
