//! The routing table and the source table, kept in one compact
//! store.
//!
//! Per subnet the table holds either the routes we know, with the public key that
//! owns the subnet, or a pending query; per (subnet, router id) we have advertised,
//! a feasibility distance (see `source_table.rs`). A public node holds one route per
//! subnet per neighbour, hundreds of thousands of them, so nothing here is
//! allocated per entry and nothing is stored twice:
//!
//! - Subnets are fixed-size records in a [`Slab`], found through a hash table of
//!   4-byte slot numbers.
//! - Routes and sources are slab records chained per subnet by 4-byte links; a
//!   subnet has a few of each.
//! - A route names its neighbour by a small slot number, and its router id by the
//!   source record of that router id, which all routes of the source share with
//!   its feasibility distance. A source record stores only the 8 bytes of the router
//!   id past the public key: the key is the subnet's own (the update filter makes it
//!   so for every finite route); a router id with another key is kept aside.
//! - Times are milliseconds in 32 bits, counted from a base that moves forward every
//!   few weeks ([`RouteTable::rebase`]). They are rounded up: a route expires and a
//!   constraint lapses at most a millisecond late, never early.
//! - Expiries are filed per subnet, not per route, in buckets of one millisecond: a
//!   subnet sits in the bucket of its earliest deadline, and is filed again when a
//!   route gets an earlier one. A later deadline (the common case: a route being
//!   refreshed) costs nothing; the subnet is refiled when its bucket comes due.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use hashbrown::HashTable;

use crate::identity::{PublicKey, RouterId};
use crate::routing::neighbour::PeerId;
use crate::routing::slab::Slab;
use crate::routing::source_table::SourceKey;
use crate::routing::{new_map, Map};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::{Metric, SeqNo};

/// One route to a subnet through one neighbour, as the table hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// The originating router.
    pub router_id: RouterId,
    /// The neighbour that announced it.
    pub neighbour: PeerId,
    /// The metric as announced: our link cost is not included.
    pub metric: Metric,
    /// The originator's sequence number.
    pub seqno: SeqNo,
    /// Whether this is the route we forward over.
    pub selected: bool,
    /// When the route expires unless refreshed.
    pub expires: Instant,
}

impl RouteEntry {
    pub(crate) fn source(&self, subnet: Subnet) -> SourceKey {
        SourceKey {
            subnet,
            router_id: self.router_id,
        }
    }
}

/// What the table holds for one subnet.
#[derive(Debug, Clone)]
pub enum SubnetEntry<'a> {
    /// Known routes (the selected one first, if any) and the public key fixed by the
    /// first accepted update.
    Exists {
        /// The key whose derived address lies in the subnet.
        key: PublicKey,
        /// The routes.
        routes: Routes<'a>,
    },
    /// A route request is in flight.
    Queried {
        /// When the query gives up.
        expires: Instant,
    },
}

/// The routes of one subnet, the selected one first.
#[derive(Clone)]
pub struct Routes<'a> {
    table: &'a RouteTable,
    subnet: u32,
    next: u32,
}

impl Iterator for Routes<'_> {
    type Item = RouteEntry;

    fn next(&mut self) -> Option<RouteEntry> {
        if self.next == NIL {
            return None;
        }
        let r = self.next;
        self.next = self.table.routes.get(r).next;
        Some(self.table.entry(self.subnet, r))
    }
}

impl std::fmt::Debug for Routes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// What selection weighs of one route (see [`RouteTable::contenders`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contender {
    pub(crate) neighbour: PeerId,
    pub(crate) metric: Metric,
    pub(crate) seqno: SeqNo,
    pub(crate) selected: bool,
    /// The feasibility distance (seqno, metric) of the route's router id, if we
    /// advertised it.
    pub(crate) fd: Option<(SeqNo, Metric)>,
    /// Whether the subnet holds feasibility distances of other router ids.
    pub(crate) other_sources: bool,
    route: u32,
}

impl Contender {
    /// Feasible by its own source's distance (RFC 8966 §3.5.1).
    pub(crate) fn feasible(&self) -> bool {
        self.metric.is_infinite()
            || self.fd.map_or(true, |(seqno, metric)| {
                self.seqno.is_newer_than(seqno) || (self.seqno == seqno && self.metric < metric)
            })
    }
}

/// The contenders of one subnet.
pub(crate) struct Contenders<'a> {
    table: &'a RouteTable,
    next: u32,
    /// Feasibility distances the subnet holds.
    fds: usize,
}

impl Iterator for Contenders<'_> {
    type Item = Contender;

    fn next(&mut self) -> Option<Contender> {
        if self.next == NIL {
            return None;
        }
        let r = self.next;
        let route = self.table.routes.get(r);
        self.next = route.next;
        let src = self.table.sources.get(route.src);
        let has_fd = src.flags & HAS_FD != 0;
        Some(Contender {
            neighbour: self.table.peers[(route.nbr & !SELECTED) as usize].peer,
            metric: Metric(route.metric),
            seqno: SeqNo(route.seqno),
            selected: route.nbr & SELECTED != 0,
            fd: has_fd.then_some((SeqNo(src.seqno), Metric(src.metric))),
            other_sources: self.fds > usize::from(has_fd),
            route: r,
        })
    }
}

/// Something due at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// The route of `subnet` through a neighbour reached its expiry.
    Route(Subnet, PeerId),
    /// The query for `subnet` got no answer in time.
    Query(Subnet),
}

/// "No slot": the end of a chain, an unfiled subnet.
pub(super) const NIL: u32 = u32::MAX;

/// Record states.
pub(super) const FREE: u8 = 0;
/// Known only to the source table (we advertised it; no routes or query now).
pub(super) const SOURCES_ONLY: u8 = 1;
const EXISTS: u8 = 2;
const QUERIED: u8 = 3;

/// What we last sent about a subnet (see `RouteTable::latest`).
pub(super) const LATEST_NONE: u8 = 0;
pub(super) const LATEST_RETRACTION: u8 = 1;
/// A finite update of the router id of source slot `latest_src`.
pub(super) const LATEST_FINITE: u8 = 2;
/// A finite update of a router id no longer in the table.
pub(super) const LATEST_GONE: u8 = 3;

/// The selected flag, in a route's neighbour slot.
const SELECTED: u32 = 1 << 31;

/// Stored times are rebased once they reach this many milliseconds past the base
/// (about 25 days), to half as many.
const REBASE_AT: u64 = 1 << 31;

#[derive(Debug, Clone, Copy)]
pub(super) struct SubnetRec {
    /// The owner's key (routes and most sources name it implicitly).
    pub(super) key: [u8; 32],
    pub(super) subnet: Subnet,
    pub(super) state: u8,
    pub(super) latest_kind: u8,
    /// When we last sent anything about the subnet (with `latest_kind`).
    pub(super) latest_at: u32,
    pub(super) latest_src: u32,
    query_expires: u32,
    /// First route; the selected one, if any, is first.
    routes: u32,
    /// First source record.
    pub(super) sources: u32,
    /// The bucket this subnet is filed in, or [`NIL`].
    filed: u32,
}

impl Default for SubnetRec {
    fn default() -> Self {
        Self {
            key: [0; 32],
            subnet: Subnet::v6_64(Ipv6Addr::UNSPECIFIED),
            state: FREE,
            latest_kind: LATEST_NONE,
            latest_at: 0,
            latest_src: NIL,
            query_expires: 0,
            routes: NIL,
            sources: NIL,
            filed: NIL,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RouteRec {
    expires: u32,
    /// The source record naming the router id.
    src: u32,
    next: u32,
    /// Neighbour slot, with [`SELECTED`].
    nbr: u32,
    metric: u16,
    seqno: u16,
}

/// A source record: a router id of a subnet, with the feasibility distance if we
/// advertised it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SourceRec {
    /// The router id's last 8 bytes (zone and random part).
    pub(super) tail: u64,
    pub(super) last_sent: u32,
    pub(super) recent_at: u32,
    pub(super) next: u32,
    /// Routes naming this router id.
    pub(super) refs: u32,
    pub(super) metric: u16,
    pub(super) seqno: u16,
    pub(super) recent: u16,
    pub(super) flags: u8,
}

/// The record holds a feasibility distance.
pub(super) const HAS_FD: u8 = 1;
/// The router id's key is not the subnet's; the whole id is in `foreign`.
pub(super) const FOREIGN: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct PeerSlot {
    peer: PeerId,
    routes: u32,
}

pub(crate) struct RouteTable {
    hasher: foldhash::fast::FixedState,
    index: HashTable<u32>,
    /// The subnet found last and its slot: one update asks for the same subnet a
    /// dozen times.
    memo: Cell<Option<(Subnet, u32)>>,
    pub(super) subnets: Slab<SubnetRec>,
    routes: Slab<RouteRec>,
    pub(super) sources: Slab<SourceRec>,
    /// Router ids whose key is not their subnet's, by source slot.
    pub(super) foreign: Map<u32, RouterId>,
    peers: Vec<PeerSlot>,
    peer_slots: Map<PeerId, u32>,
    free_peer_slots: Vec<u32>,
    /// How many subnets of each prefix length exist, so a longest-prefix lookup only
    /// tries lengths that occur (in practice just /64).
    prefix_lens: BTreeMap<u8, usize>,
    /// Subnet slots by the millisecond (absolute) of the deadline they are filed at.
    wheel: BTreeMap<u64, Vec<u32>>,
    /// What came due and the router has not taken yet.
    due: Vec<Due>,
    /// Absolute millisecond that stored times count from.
    base_ms: u64,
    /// Subnets that exist or are queried.
    len: usize,
    route_count: usize,
    selected_count: usize,
    /// Source records with a feasibility distance.
    pub(super) fd_count: usize,
    /// Bumped whenever what a forwarding snapshot shows can have changed.
    generation: u64,
    /// Subnets whose selection changed since the driver last asked, when it asked
    /// to be told ([`RouteTable::track_changes`]); `None` once more than
    /// [`MAX_LOGGED_CHANGES`] piled up (the driver then looks at everything).
    changes: Option<Vec<Subnet>>,
    tracking: bool,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("subnets", &self.len)
            .field("routes", &self.route_count)
            .field("sources", &self.fd_count)
            .finish_non_exhaustive()
    }
}

/// Selection changes logged before the log gives up and says "everything".
const MAX_LOGGED_CHANGES: usize = 4_096;

/// Milliseconds since the epoch, rounded up.
fn ms_ceil(t: Instant) -> u64 {
    let nanos = t.since_epoch().as_nanos();
    u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A subnet's hash: its address and length as two words, fewer rounds than the
/// derived `Hash` of an `IpAddr`.
fn subnet_hash(hasher: &foldhash::fast::FixedState, subnet: &Subnet) -> u64 {
    let addr = match subnet.address() {
        IpAddr::V6(a) => u128::from(a),
        IpAddr::V4(a) => u128::from(u32::from(a)) | 1 << 127,
    };
    hasher.hash_one((addr, subnet.prefix_len()))
}

impl RouteTable {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            hasher: foldhash::fast::FixedState::with_seed(seed),
            index: HashTable::new(),
            memo: Cell::new(None),
            subnets: Slab::new(),
            routes: Slab::new(),
            sources: Slab::new(),
            foreign: new_map(seed),
            peers: Vec::new(),
            peer_slots: new_map(seed),
            free_peer_slots: Vec::new(),
            prefix_lens: BTreeMap::new(),
            wheel: BTreeMap::new(),
            due: Vec::new(),
            base_ms: 0,
            len: 0,
            route_count: 0,
            selected_count: 0,
            fd_count: 0,
            generation: 0,
            changes: Some(Vec::new()),
            tracking: false,
        }
    }

    // ----- time -------------------------------------------------------------------

    /// `t` as a stored time.
    pub(super) fn stamp(&mut self, t: Instant) -> u32 {
        let ms = ms_ceil(t);
        if ms.saturating_sub(self.base_ms) >= REBASE_AT {
            self.rebase(ms - REBASE_AT / 2);
        }
        u32::try_from(ms.saturating_sub(self.base_ms)).unwrap_or(u32::MAX - 1)
    }

    /// A stored time as an instant.
    pub(super) fn instant(&self, stored: u32) -> Instant {
        Instant::from_epoch(Duration::from_millis(self.base_ms + u64::from(stored)))
    }

    /// Moves the base of stored times forward to `base_ms`. Times before it become
    /// the base itself: they lie weeks in the past, where every window the router
    /// measures (seconds, at most half an hour) has long closed.
    pub(super) fn rebase(&mut self, base_ms: u64) {
        if base_ms <= self.base_ms {
            return;
        }
        let delta = u32::try_from(base_ms - self.base_ms).unwrap_or(u32::MAX);
        let shift = |t: &mut u32| *t = t.saturating_sub(delta);
        for i in 0..self.subnets.high() {
            let rec = self.subnets.get_mut(i);
            if rec.state == FREE {
                continue;
            }
            shift(&mut rec.latest_at);
            shift(&mut rec.query_expires);
            if rec.filed != NIL {
                shift(&mut rec.filed);
            }
            let (mut r, mut s) = (rec.routes, rec.sources);
            while r != NIL {
                let route = self.routes.get_mut(r);
                shift(&mut route.expires);
                r = route.next;
            }
            while s != NIL {
                let src = self.sources.get_mut(s);
                shift(&mut src.last_sent);
                shift(&mut src.recent_at);
                s = src.next;
            }
        }
        self.base_ms = base_ms;
    }

    // ----- the change log ---------------------------------------------------------

    /// A counter that changes whenever subnets, keys or selections change.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Something a forwarding snapshot shows for `subnet` may have changed.
    fn changed(&mut self, subnet: Subnet) {
        self.generation += 1;
        if !self.tracking {
            return;
        }
        if let Some(log) = &mut self.changes {
            if log.len() < MAX_LOGGED_CHANGES {
                log.push(subnet);
            } else {
                self.changes = None;
            }
        }
    }

    /// Starts logging which subnets' selections change.
    pub(crate) fn track_changes(&mut self) {
        self.tracking = true;
    }

    /// The subnets whose selection changed since the last call, appended to `out`;
    /// `false` if too many changed to list (assume all did).
    pub(crate) fn take_changes(&mut self, out: &mut Vec<Subnet>) -> bool {
        match self.changes.replace(Vec::new()) {
            Some(mut log) => {
                out.append(&mut log);
                // Keep the allocation for the next round.
                self.changes = Some(log);
                true
            }
            None => false,
        }
    }

    // ----- finding subnets --------------------------------------------------------

    fn hash(&self, subnet: &Subnet) -> u64 {
        subnet_hash(&self.hasher, subnet)
    }

    pub(super) fn find(&self, subnet: &Subnet) -> Option<u32> {
        if let Some((s, i)) = self.memo.get() {
            if s == *subnet {
                return Some(i);
            }
        }
        let i = *self.index.find(self.hash(subnet), |&i| {
            self.subnets.get(i).subnet == *subnet
        })?;
        self.memo.set(Some((*subnet, i)));
        Some(i)
    }

    /// The slot of `subnet`, created with `key` (and no routes, sources or query)
    /// if there is none.
    pub(super) fn find_or_create(&mut self, subnet: Subnet, key: &PublicKey) -> u32 {
        if let Some(i) = self.find(&subnet) {
            return i;
        }
        let i = self.subnets.alloc(SubnetRec {
            key: *key.as_bytes(),
            subnet,
            state: SOURCES_ONLY,
            ..SubnetRec::default()
        });
        let hash = self.hash(&subnet);
        let (hasher, subnets) = (&self.hasher, &self.subnets);
        self.index
            .insert_unique(hash, i, |&j| subnet_hash(hasher, &subnets.get(j).subnet));
        i
    }

    /// Forgets the record of a subnet that has nothing left.
    pub(super) fn release_if_unused(&mut self, i: u32) {
        let rec = *self.subnets.get(i);
        if rec.state != SOURCES_ONLY || rec.sources != NIL {
            return;
        }
        let hash = self.hash(&rec.subnet);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        if self.memo.get().is_some_and(|(_, j)| j == i) {
            self.memo.set(None);
        }
        *self.subnets.get_mut(i) = SubnetRec::default();
        self.subnets.free(i);
    }

    fn view(&self, i: u32) -> Option<SubnetEntry<'_>> {
        let rec = self.subnets.get(i);
        match rec.state {
            EXISTS => Some(SubnetEntry::Exists {
                key: PublicKey::from_bytes(rec.key),
                routes: Routes {
                    table: self,
                    subnet: i,
                    next: rec.routes,
                },
            }),
            QUERIED => Some(SubnetEntry::Queried {
                expires: self.instant(rec.query_expires),
            }),
            _ => None,
        }
    }

    pub(crate) fn get(&self, subnet: &Subnet) -> Option<SubnetEntry<'_>> {
        self.view(self.find(subnet)?)
    }

    /// Whether `subnet` exists and is owned by the key of `id` (which then passed
    /// the ownership filter when the key was fixed).
    pub(crate) fn owned_by(&self, subnet: &Subnet, id: &RouterId) -> bool {
        self.find(subnet).is_some_and(|i| {
            let rec = self.subnets.get(i);
            rec.state == EXISTS && rec.key[..] == id.as_bytes()[..32]
        })
    }

    /// Whether `subnet` exists (has a key and possibly routes).
    pub(crate) fn exists(&self, subnet: &Subnet) -> bool {
        self.find(subnet)
            .is_some_and(|i| self.subnets.get(i).state == EXISTS)
    }

    /// Whether `subnet` exists or is queried.
    pub(crate) fn contains(&self, subnet: &Subnet) -> bool {
        self.find(subnet)
            .is_some_and(|i| matches!(self.subnets.get(i).state, EXISTS | QUERIED))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn route_count(&self) -> usize {
        self.route_count
    }

    /// Number of subnets with a selected route.
    pub(crate) fn selected_count(&self) -> usize {
        self.selected_count
    }

    pub(crate) fn routes_of(&self, neighbour: PeerId) -> usize {
        self.peer_slots
            .get(&neighbour)
            .map_or(0, |&s| self.peers[s as usize].routes as usize)
    }

    /// Every subnet that exists or is queried, with its entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Subnet, SubnetEntry<'_>)> {
        (0..self.subnets.high())
            .filter_map(move |i| self.view(i).map(|e| (self.subnets.get(i).subnet, e)))
    }

    /// The entry of the longest prefix containing `addr`.
    pub(crate) fn lookup(&self, addr: Ipv6Addr) -> Option<(Subnet, SubnetEntry<'_>)> {
        self.prefix_lens.keys().rev().find_map(|&len| {
            let key = Subnet::new(IpAddr::V6(addr), len).ok()?.network();
            self.get(&key).map(|e| (key, e))
        })
    }

    // ----- routes -----------------------------------------------------------------

    /// The routes of `subnet`, the selected one first.
    pub(crate) fn routes(&self, subnet: &Subnet) -> Routes<'_> {
        let (i, next) = match self.find(subnet) {
            Some(i) if self.subnets.get(i).state == EXISTS => (i, self.subnets.get(i).routes),
            _ => (NIL, NIL),
        };
        Routes {
            table: self,
            subnet: i,
            next,
        }
    }

    pub(crate) fn selected(&self, subnet: &Subnet) -> Option<RouteEntry> {
        self.routes(subnet).next().filter(|r| r.selected)
    }

    pub(crate) fn route(&self, subnet: &Subnet, neighbour: PeerId) -> Option<RouteEntry> {
        let i = self.find(subnet)?;
        let r = self.route_slot(i, neighbour)?;
        Some(self.entry(i, r))
    }

    /// The route of subnet slot `i` through `neighbour`.
    fn route_slot(&self, i: u32, neighbour: PeerId) -> Option<u32> {
        let slot = *self.peer_slots.get(&neighbour)?;
        let mut r = self.subnets.get(i).routes;
        while r != NIL {
            let route = self.routes.get(r);
            if route.nbr & !SELECTED == slot {
                return Some(r);
            }
            r = route.next;
        }
        None
    }

    /// Route slot `r` of subnet slot `i`, decoded.
    fn entry(&self, i: u32, r: u32) -> RouteEntry {
        let route = self.routes.get(r);
        RouteEntry {
            router_id: self.source_id(i, route.src),
            neighbour: self.peers[(route.nbr & !SELECTED) as usize].peer,
            metric: Metric(route.metric),
            seqno: SeqNo(route.seqno),
            selected: route.nbr & SELECTED != 0,
            expires: self.instant(route.expires),
        }
    }

    /// The routes of `subnet` as selection weighs them, read straight from the
    /// records (no hashing per route, no router ids decoded), with the subnet's
    /// slot for [`RouteTable::decode`].
    pub(crate) fn contenders(&self, subnet: &Subnet) -> (u32, Contenders<'_>) {
        let Some(i) = self
            .find(subnet)
            .filter(|&i| self.subnets.get(i).state == EXISTS)
        else {
            return (
                NIL,
                Contenders {
                    table: self,
                    next: NIL,
                    fds: 0,
                },
            );
        };
        let mut fds = 0;
        let mut s = self.subnets.get(i).sources;
        while s != NIL {
            let src = self.sources.get(s);
            fds += usize::from(src.flags & HAS_FD != 0);
            s = src.next;
        }
        let c = Contenders {
            table: self,
            next: self.subnets.get(i).routes,
            fds,
        };
        (i, c)
    }

    /// The full entry of a contender of subnet slot `i`.
    pub(crate) fn decode(&self, i: u32, c: &Contender) -> RouteEntry {
        self.entry(i, c.route)
    }

    /// Whether subnet slot `i` has room for the feasibility distance of another
    /// router id: fewer than [`MAX_SOURCES_PER_SUBNET`](super::source_table::MAX_SOURCES_PER_SUBNET)
    /// there, fewer than `max_total` in all.
    pub(crate) fn room_for_source(&self, i: u32, max_total: usize) -> bool {
        let mut here = 0;
        let mut s = self.subnets.get(i).sources;
        while s != NIL {
            let src = self.sources.get(s);
            here += usize::from(src.flags & HAS_FD != 0);
            s = src.next;
        }
        here < super::source_table::MAX_SOURCES_PER_SUBNET && self.fd_count < max_total
    }

    /// The subnets with a route through `neighbour`. Scans the table: it runs when a
    /// neighbour goes away, which is rare next to the memory an index would cost.
    pub(crate) fn subnets_via(&self, neighbour: PeerId) -> Vec<Subnet> {
        if self.routes_of(neighbour) == 0 {
            return Vec::new();
        }
        (0..self.subnets.high())
            .filter(|&i| {
                self.subnets.get(i).state == EXISTS && self.route_slot(i, neighbour).is_some()
            })
            .map(|i| self.subnets.get(i).subnet)
            .collect()
    }

    /// Creates the entry for `subnet` with its owner's key, replacing a query.
    pub(crate) fn insert_subnet(&mut self, subnet: Subnet, key: PublicKey) {
        self.changed(subnet);
        let i = self.find_or_create(subnet, &key);
        self.set_key(i, &key);
        let rec = self.subnets.get_mut(i);
        match rec.state {
            SOURCES_ONLY => {
                rec.state = EXISTS;
                self.len += 1;
                *self.prefix_lens.entry(subnet.prefix_len()).or_default() += 1;
            }
            QUERIED => rec.state = EXISTS,
            _ => {}
        }
    }

    /// Marks an unknown subnet as queried until `expires`. Existing entries stay.
    pub(crate) fn insert_query(&mut self, subnet: Subnet, expires: Instant) -> bool {
        if self.contains(&subnet) {
            return false;
        }
        let i = self.find_or_create(subnet, &PublicKey::from_bytes([0; 32]));
        let at = self.stamp(expires);
        let rec = self.subnets.get_mut(i);
        rec.state = QUERIED;
        rec.query_expires = at;
        self.len += 1;
        *self.prefix_lens.entry(subnet.prefix_len()).or_default() += 1;
        self.file(i, at);
        true
    }

    /// Removes a subnet and every route to it. What the source table holds of it
    /// stays.
    pub(crate) fn remove_subnet(&mut self, subnet: &Subnet) {
        self.changed(*subnet);
        let Some(i) = self.find(subnet) else {
            return;
        };
        let rec = *self.subnets.get(i);
        if !matches!(rec.state, EXISTS | QUERIED) {
            return;
        }
        let mut r = rec.routes;
        while r != NIL {
            let next = self.routes.get(r).next;
            self.drop_route(i, r);
            r = next;
        }
        let rec = self.subnets.get_mut(i);
        rec.routes = NIL;
        rec.state = SOURCES_ONLY;
        self.len -= 1;
        if let Some(n) = self.prefix_lens.get_mut(&subnet.prefix_len()) {
            *n -= 1;
            if *n == 0 {
                self.prefix_lens.remove(&subnet.prefix_len());
            }
        }
        self.release_if_unused(i);
    }

    /// Undoes what route `r` of subnet `i` adds to counts and references, and frees
    /// its slot (the caller unlinks it).
    fn drop_route(&mut self, i: u32, r: u32) {
        let route = *self.routes.get(r);
        if route.nbr & SELECTED != 0 {
            self.selected_count -= 1;
            let subnet = self.subnets.get(i).subnet;
            self.changed(subnet);
        }
        self.unref_peer(route.nbr & !SELECTED);
        self.unref_source(i, route.src);
        self.routes.free(r);
        self.route_count -= 1;
    }

    fn ref_peer(&mut self, peer: PeerId) -> u32 {
        if let Some(&s) = self.peer_slots.get(&peer) {
            self.peers[s as usize].routes += 1;
            return s;
        }
        let slot = PeerSlot { peer, routes: 1 };
        let s = match self.free_peer_slots.pop() {
            Some(s) => {
                self.peers[s as usize] = slot;
                s
            }
            None => {
                self.peers.push(slot);
                (self.peers.len() - 1) as u32
            }
        };
        self.peer_slots.insert(peer, s);
        s
    }

    fn unref_peer(&mut self, s: u32) {
        let slot = &mut self.peers[s as usize];
        slot.routes -= 1;
        if slot.routes == 0 {
            self.peer_slots.remove(&slot.peer);
            self.free_peer_slots.push(s);
        }
    }

    /// Adds a route to an existing subnet (unselected, at the back). Returns false if
    /// the subnet does not exist or already has a route through that neighbour.
    pub(crate) fn insert_route(&mut self, subnet: Subnet, route: RouteEntry) -> bool {
        let Some(i) = self.find(&subnet) else {
            return false;
        };
        if self.subnets.get(i).state != EXISTS || self.route_slot(i, route.neighbour).is_some() {
            return false;
        }
        let nbr = self.ref_peer(route.neighbour);
        let src = self.ref_source(i, &route.router_id);
        let expires = self.stamp(route.expires);
        let r = self.routes.alloc(RouteRec {
            expires,
            src,
            next: NIL,
            nbr,
            metric: route.metric.0,
            seqno: route.seqno.0,
        });
        // At the back, so the selected route stays first.
        let head = self.subnets.get(i).routes;
        if head == NIL {
            self.subnets.get_mut(i).routes = r;
        } else {
            let mut last = head;
            while self.routes.get(last).next != NIL {
                last = self.routes.get(last).next;
            }
            self.routes.get_mut(last).next = r;
        }
        self.route_count += 1;
        self.file(i, expires);
        true
    }

    /// Changes one route in place: metric, seqno, router id, expiry, and unselecting
    /// it (selecting goes through [`RouteTable::select`], which keeps the selected
    /// route first).
    pub(crate) fn modify_route(
        &mut self,
        subnet: Subnet,
        neighbour: PeerId,
        f: impl FnOnce(&mut RouteEntry),
    ) {
        let Some(i) = self.find(&subnet) else {
            return;
        };
        let Some(r) = self.route_slot(i, neighbour) else {
            return;
        };
        let before = self.entry(i, r);
        let mut after = before;
        f(&mut after);
        debug_assert!(
            before.selected || !after.selected,
            "modify_route cannot select"
        );
        if after.router_id != before.router_id {
            let old = self.routes.get(r).src;
            let src = self.ref_source(i, &after.router_id);
            self.routes.get_mut(r).src = src;
            self.unref_source(i, old);
        }
        let expires = if after.expires == before.expires {
            self.routes.get(r).expires
        } else {
            self.stamp(after.expires)
        };
        let route = self.routes.get_mut(r);
        route.metric = after.metric.0;
        route.seqno = after.seqno.0;
        route.expires = expires;
        if before.selected && !after.selected {
            route.nbr &= !SELECTED;
            self.selected_count -= 1;
            self.changed(subnet);
        }
        self.file(i, expires);
    }

    /// Removes one route. The subnet entry stays, even if now empty.
    pub(crate) fn remove_route(&mut self, subnet: Subnet, neighbour: PeerId) -> Option<RouteEntry> {
        let i = self.find(&subnet)?;
        let r = self.route_slot(i, neighbour)?;
        let entry = self.entry(i, r);
        let next = self.routes.get(r).next;
        if self.subnets.get(i).routes == r {
            self.subnets.get_mut(i).routes = next;
        } else {
            let mut prev = self.subnets.get(i).routes;
            while self.routes.get(prev).next != r {
                prev = self.routes.get(prev).next;
            }
            self.routes.get_mut(prev).next = next;
        }
        self.drop_route(i, r);
        Some(entry)
    }

    /// Whether the subnet exists and has no route at all.
    pub(crate) fn has_no_routes(&self, subnet: &Subnet) -> bool {
        self.find(subnet).is_some_and(|i| {
            let rec = self.subnets.get(i);
            rec.state == EXISTS && rec.routes == NIL
        })
    }

    /// Makes the route through `neighbour` the selected one (moved to the front), or
    /// unselects every route when `None`.
    pub(crate) fn select(&mut self, subnet: Subnet, neighbour: Option<PeerId>) {
        let Some(i) = self.find(&subnet) else {
            return;
        };
        if self.subnets.get(i).state != EXISTS {
            return;
        }
        let head = self.subnets.get(i).routes;
        let before = (head != NIL && self.routes.get(head).nbr & SELECTED != 0)
            .then(|| self.peers[(self.routes.get(head).nbr & !SELECTED) as usize].peer);
        if before == neighbour {
            return;
        }
        let target = neighbour.and_then(|n| self.route_slot(i, n));
        if head != NIL && before.is_some() {
            self.routes.get_mut(head).nbr &= !SELECTED;
            self.selected_count -= 1;
        }
        if let Some(r) = target {
            self.routes.get_mut(r).nbr |= SELECTED;
            self.selected_count += 1;
            if r != head {
                // Unlink and put first.
                let mut prev = head;
                while self.routes.get(prev).next != r {
                    prev = self.routes.get(prev).next;
                }
                let next = self.routes.get(r).next;
                self.routes.get_mut(prev).next = next;
                self.routes.get_mut(r).next = head;
                self.subnets.get_mut(i).routes = r;
            }
        }
        self.changed(subnet);
    }

    // ----- deadlines --------------------------------------------------------------

    /// Files subnet `i` for a deadline at stored time `at`, unless it is filed no
    /// later already.
    fn file(&mut self, i: u32, at: u32) {
        let rec = self.subnets.get_mut(i);
        if rec.filed != NIL && rec.filed <= at {
            return;
        }
        rec.filed = at;
        self.wheel
            .entry(self.base_ms + u64::from(at))
            .or_default()
            .push(i);
    }

    /// When something may next come due. Can be early (a refreshed route), never
    /// late.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if !self.due.is_empty() {
            return Some(Instant::ZERO);
        }
        self.wheel
            .first_key_value()
            .map(|(&ms, _)| Instant::from_epoch(Duration::from_millis(ms)))
    }

    /// The next route expiry or query timeout due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        loop {
            if let Some(d) = self.due.pop() {
                return Some(d);
            }
            let (&ms, _) = self.wheel.first_key_value()?;
            if Instant::from_epoch(Duration::from_millis(ms)) > now {
                return None;
            }
            let (ms, slots) = self.wheel.pop_first()?;
            let bucket = u32::try_from(ms.saturating_sub(self.base_ms)).unwrap_or(u32::MAX);
            for i in slots {
                self.gather(i, bucket, now);
            }
            // Taken in the order they were filed.
            self.due.reverse();
        }
    }

    /// Collects what is due of subnet `i` if it is filed in `bucket`, and files it
    /// again for what is left.
    fn gather(&mut self, i: u32, bucket: u32, now: Instant) {
        let rec = *self.subnets.get(i);
        if rec.state == FREE || rec.filed != bucket {
            // Freed, or filed again at an earlier deadline since.
            return;
        }
        self.subnets.get_mut(i).filed = NIL;
        let mut rest: Option<u32> = None;
        let mut keep = |t: u32| rest = Some(rest.map_or(t, |r| r.min(t)));
        if rec.state == QUERIED {
            if self.instant(rec.query_expires) <= now {
                self.due.push(Due::Query(rec.subnet));
            } else {
                keep(rec.query_expires);
            }
        }
        if rec.state == EXISTS {
            let mut r = rec.routes;
            while r != NIL {
                let route = *self.routes.get(r);
                if self.instant(route.expires) <= now {
                    let peer = self.peers[(route.nbr & !SELECTED) as usize].peer;
                    self.due.push(Due::Route(rec.subnet, peer));
                } else {
                    keep(route.expires);
                }
                r = route.next;
            }
        }
        if let Some(at) = rest {
            self.file(i, at);
        }
    }

    // ----- memory -----------------------------------------------------------------

    /// Heap bytes held by the table and the source table.
    pub(crate) fn heap_bytes(&self) -> usize {
        let wheel: usize = self.wheel.values().map(|v| v.capacity() * 4 + 48).sum();
        self.index.capacity() * 5
            + self.subnets.heap_bytes()
            + self.routes.heap_bytes()
            + self.sources.heap_bytes()
            + self.foreign.capacity() * (4 + 40 + 1)
            + self.peers.capacity() * std::mem::size_of::<PeerSlot>()
            + self.peer_slots.capacity() * (8 + 4 + 1)
            + wheel
            + self.due.capacity() * std::mem::size_of::<Due>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(n: u64, metric: u16, expires_s: u64) -> RouteEntry {
        RouteEntry {
            router_id: RouterId::from_bytes([n as u8; 40]),
            neighbour: PeerId(n),
            metric: Metric(metric),
            seqno: SeqNo(0),
            selected: false,
            expires: Instant::from_epoch(Duration::from_secs(expires_s)),
        }
    }

    fn at(s: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(s))
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new(0);
        let wide: Subnet = "400::/64".parse().unwrap();
        let narrow: Subnet = "400::/80".parse().unwrap();
        t.insert_subnet(wide, PublicKey::from_bytes([1; 32]));
        t.insert_subnet(narrow, PublicKey::from_bytes([2; 32]));
        assert_eq!(t.lookup("400::1".parse().unwrap()).unwrap().0, narrow);
        assert_eq!(t.lookup("400::1:0:0:1".parse().unwrap()).unwrap().0, wide);
        assert!(t.lookup("401::1".parse().unwrap()).is_none());
        t.remove_subnet(&narrow);
        assert_eq!(t.lookup("400::1".parse().unwrap()).unwrap().0, wide);
    }

    #[test]
    fn indexes_follow_every_change() {
        let mut t = RouteTable::new(0);
        let s: Subnet = "400::/64".parse().unwrap();
        t.insert_subnet(s, PublicKey::from_bytes([1; 32]));
        assert!(t.insert_route(s, route(1, 10, 5)));
        assert!(t.insert_route(s, route(2, 20, 3)));
        assert!(!t.insert_route(s, route(2, 30, 3)));
        assert_eq!(t.route_count(), 2);
        assert_eq!(t.next_deadline(), Some(at(3)));
        t.modify_route(s, PeerId(2), |r| r.expires = at(9));
        // Filed early: nothing is due at 3 s, and the subnet is filed again at 5 s.
        assert_eq!(t.pop_due(at(3)), None);
        assert_eq!(t.next_deadline(), Some(at(5)));
        t.select(s, Some(PeerId(2)));
        assert_eq!(t.selected(&s).unwrap().neighbour, PeerId(2));
        assert_eq!(t.routes(&s).next().unwrap().neighbour, PeerId(2));
        assert_eq!(t.subnets_via(PeerId(1)), vec![s]);
        assert_eq!(t.pop_due(at(5)), Some(Due::Route(s, PeerId(1))));
        t.remove_route(s, PeerId(1));
        assert_eq!((t.route_count(), t.routes_of(PeerId(1))), (1, 0));
        assert_eq!(t.selected_count(), 1);
        t.remove_subnet(&s);
        assert_eq!((t.route_count(), t.len()), (0, 0));
        assert_eq!(t.pop_due(at(100)), None);
        assert_eq!(t.selected_count(), 0);
        assert_eq!(t.subnets.high(), 1);
        assert!(t.find(&s).is_none(), "an unused record is freed");
    }

    #[test]
    fn router_id_changes_keep_source_references() {
        let mut t = RouteTable::new(0);
        let s: Subnet = "400::/64".parse().unwrap();
        let key = PublicKey::from_bytes([1; 32]);
        t.insert_subnet(s, key);
        let own = RouterId::new(key, [1; 6]);
        let other = RouterId::new(PublicKey::from_bytes([9; 32]), [2; 6]);
        let r = RouteEntry {
            router_id: own,
            ..route(1, 10, 5)
        };
        t.insert_route(s, r);
        t.modify_route(s, PeerId(1), |e| e.router_id = other);
        assert_eq!(t.route(&s, PeerId(1)).unwrap().router_id, other);
        assert_eq!(t.foreign.len(), 1);
        t.modify_route(s, PeerId(1), |e| e.router_id = own);
        assert_eq!(t.route(&s, PeerId(1)).unwrap().router_id, own);
        assert!(t.foreign.is_empty(), "unused source records go");
    }

    #[test]
    fn times_survive_a_rebase() {
        let mut t = RouteTable::new(0);
        let s: Subnet = "400::/64".parse().unwrap();
        t.insert_subnet(s, PublicKey::from_bytes([1; 32]));
        let far = 40 * 24 * 3600;
        t.insert_route(s, route(1, 10, 5));
        // A time weeks later moves the base; the earlier expiry clamps to it.
        assert!(t.insert_route(s, route(2, 10, far)));
        assert!(t.base_ms > 0);
        assert_eq!(t.route(&s, PeerId(2)).unwrap().expires, at(far));
        assert!(t.route(&s, PeerId(1)).unwrap().expires <= at(far));
        assert_eq!(t.pop_due(at(far - 1)), Some(Due::Route(s, PeerId(1))));
        t.remove_route(s, PeerId(1));
        assert_eq!(t.pop_due(at(far - 1)), None);
        assert_eq!(t.pop_due(at(far)), Some(Due::Route(s, PeerId(2))));
    }

    #[test]
    fn expiries_round_up_to_the_millisecond() {
        let mut t = RouteTable::new(0);
        let s: Subnet = "400::/64".parse().unwrap();
        t.insert_subnet(s, PublicKey::from_bytes([1; 32]));
        let mut r = route(1, 10, 0);
        r.expires = Instant::from_epoch(Duration::from_micros(1_500));
        t.insert_route(s, r);
        let got = t.route(&s, PeerId(1)).unwrap().expires;
        assert_eq!(got, Instant::from_epoch(Duration::from_millis(2)));
        assert_eq!(
            t.pop_due(Instant::from_epoch(Duration::from_micros(1_999))),
            None
        );
        assert!(t.pop_due(got).is_some());
    }
}
