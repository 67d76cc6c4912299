//! Leaf mode: a node that keeps only the routes it uses.
//!
//! A full node holds a route per subnet per neighbour for the whole network. A leaf
//! (a laptop, a small board) talks to a handful of addresses, so it holds only
//! those, in a cache of [`Leaf::routes`] subnets:
//!
//! - It is a stub. It announces its own subnet and answers for it, and nothing
//!   else: no triggered updates, no replies to route or seqno requests for other
//!   subnets, no forwarding of requests, no request for a new neighbour's whole
//!   table. Nobody can route through it, so its neighbours (upstream nodes
//!   included) see only TLVs they already handle, and fewer of them.
//! - An update for a subnet it neither holds nor looks for is dropped on
//!   arrival, before anything is stored ([`RouterStats::leaf_updates_ignored`]).
//!   Updates for subnets it holds or looks for are handled as on any node, with
//!   the same feasibility and seqno rules.
//! - A subnet enters the cache when the data plane needs it: a packet to send, or
//!   a packet from a source whose key is unknown. [`Router::resolve`] then asks
//!   every neighbour for the route, as for any unknown destination, and the packet
//!   waits for the answer.
//! - The cache forgets the least recently used subnet to make room
//!   ([`RouterStats::leaf_evictions`]). Use is what [`Router::resolve`] sees and
//!   what the driver reports with [`Router::touch`]: the data plane forwards over
//!   a published snapshot without asking the router, so it tells the router now
//!   and then which subnets it used.
//!
//! The price is the first packet to a subnet not in the cache: it waits a route
//! request's round trip to the nearest node that knows the route.
//!
//! [`RouterStats::leaf_updates_ignored`]: super::RouterStats::leaf_updates_ignored
//! [`RouterStats::leaf_evictions`]: super::RouterStats::leaf_evictions

use std::collections::BTreeMap;

use super::{new_map, Event, Map, Router, SubnetEntry};
use crate::subnet::Subnet;
use crate::time::Instant;

/// Leaf-mode settings (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// Subnets held at once, including those being looked for.
    pub routes: usize,
}

impl Default for Leaf {
    fn default() -> Self {
        Self { routes: 1024 }
    }
}

/// Recency of the subnets a leaf holds: a stamp per subnet, and the subnets by
/// stamp. Entries of subnets the table dropped on its own (a query that expired, a
/// route withdrawn) are left to go stale and are skipped when they come up for
/// eviction; they are purged when stale ones would double the cache.
#[derive(Debug)]
pub(super) struct LeafCache {
    capacity: usize,
    clock: u64,
    stamps: Map<Subnet, u64>,
    order: BTreeMap<u64, Subnet>,
}

impl LeafCache {
    pub(super) fn new(leaf: Leaf, seed: u64) -> Self {
        Self {
            capacity: leaf.routes.max(1),
            clock: 0,
            stamps: new_map(seed),
            order: BTreeMap::new(),
        }
    }

    /// Marks `subnet` as just used.
    fn touch(&mut self, subnet: Subnet) {
        self.clock += 1;
        if let Some(old) = self.stamps.insert(subnet, self.clock) {
            self.order.remove(&old);
        }
        self.order.insert(self.clock, subnet);
    }

    fn pop_oldest(&mut self) -> Option<Subnet> {
        let (_, subnet) = self.order.pop_first()?;
        self.stamps.remove(&subnet);
        Some(subnet)
    }

    fn len(&self) -> usize {
        self.stamps.len()
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Router {
    /// Whether this router runs in leaf mode.
    pub fn is_leaf(&self) -> bool {
        self.leaf.is_some()
    }

    /// Tells the router the data plane used `subnet` (sent to it, or received from
    /// it) `uses` times since the last report. A leaf keeps the subnet in its cache
    /// for it and counts the uses as hits ([`super::RouterStats::leaf_hits`]) if it
    /// holds the subnet. On any node, a selected route about to expire is asked for
    /// again, as [`Router::resolve`] does for a packet it forwards. Returns whether
    /// the subnet has a selected route.
    pub fn touch(&mut self, now: Instant, subnet: Subnet, uses: u64) -> bool {
        let Some(route) = self.table.selected(&subnet) else {
            return false;
        };
        if let Some(cache) = self.leaf.as_mut() {
            cache.touch(subnet);
            self.stats.leaf_hits += uses;
        }
        if !route.metric.is_infinite() && route.expires - now < self.cfg.refresh_before_expiry {
            self.request_route(now, subnet);
        }
        true
    }

    /// A leaf records a use of `subnet` by the data plane's lookup.
    pub(super) fn leaf_use(&mut self, subnet: Subnet) {
        if let Some(cache) = self.leaf.as_mut() {
            cache.touch(subnet);
        }
    }

    /// Whether a leaf drops an update for `subnet` unseen: it neither holds nor
    /// looks for it.
    pub(super) fn leaf_ignores(&mut self, subnet: &Subnet) -> bool {
        if self.leaf.is_none() || self.table.contains(subnet) {
            return false;
        }
        self.stats.leaf_updates_ignored += 1;
        true
    }

    /// Makes room for one more subnet in a leaf's cache, forgetting the least
    /// recently used subnets. Returns `false` if no room could be made (every
    /// entry the table holds is unknown to the cache, which only a bug would do).
    pub(super) fn leaf_make_room(&mut self, now: Instant) -> bool {
        let Some(cache) = self.leaf.as_mut() else {
            return true;
        };
        let capacity = cache.capacity;
        if cache.len() > 2 * capacity {
            let table = &self.table;
            let stale: Vec<(u64, Subnet)> = cache
                .order
                .iter()
                .filter(|(_, s)| !table.contains(s))
                .map(|(t, s)| (*t, *s))
                .collect();
            for (t, s) in stale {
                cache.order.remove(&t);
                cache.stamps.remove(&s);
            }
        }
        while self.table.len() >= capacity {
            let Some(cache) = self.leaf.as_mut() else {
                return true;
            };
            let Some(oldest) = cache.pop_oldest() else {
                return false;
            };
            if self.table.contains(&oldest) {
                self.leaf_evict(now, oldest);
            }
        }
        true
    }

    /// Forgets `subnet` and everything held for it, and tells the driver.
    fn leaf_evict(&mut self, _now: Instant, subnet: Subnet) {
        let event = match self.table.get(&subnet) {
            Some(SubnetEntry::Queried { .. }) => Some(Event::QueryExpired(subnet)),
            Some(SubnetEntry::Exists { .. }) => self
                .table
                .selected(&subnet)
                .filter(|r| !r.metric.is_infinite())
                .map(|_| Event::RouteLost(subnet)),
            None => None,
        };
        self.table.remove_subnet(&subnet);
        let stale: Vec<_> = self
            .pending_requests
            .keys()
            .filter(|k| k.subnet == subnet)
            .copied()
            .collect();
        for key in stale {
            self.pending_requests.remove(&key);
        }
        // The request that brought the subnet in was answered (or is abandoned
        // with the query): if the subnet is used again, it must be asked for at
        // once, not held back as a repeat for the route-request TTL.
        self.rr_cache.forget(&subnet);
        self.stats.leaf_evictions += 1;
        if let Some(e) = event {
            self.events.push_back(e);
        }
    }

    /// Subnets a leaf holds at most (`None` on a full node).
    pub fn leaf_capacity(&self) -> Option<usize> {
        self.leaf.as_ref().map(LeafCache::capacity)
    }
}
