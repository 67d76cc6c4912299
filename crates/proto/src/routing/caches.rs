//! The two request caches: which seqno requests we sent or
//! forwarded, to whom and for whom, and which route requests we sent, so that
//! requests are neither repeated nor bounced around.
//!
//! Both are bounded: when full, new requests are still answered but no longer
//! remembered, which at worst repeats a request, never loses a route.

use std::time::Duration;

use crate::identity::RouterId;
use crate::routing::neighbour::PeerId;
use crate::routing::{new_map, Map};
use crate::subnet::Subnet;
use crate::time::Instant;

/// A seqno request as the cache knows it.
pub(crate) type SeqnoKey = (RouterId, Subnet, u16);

#[derive(Debug, Clone)]
pub(crate) struct SeqnoCacheEntry {
    /// Neighbours that asked us.
    pub(crate) sources: Vec<PeerId>,
    /// Neighbours we asked.
    pub(crate) targets: Vec<PeerId>,
    pub(crate) first_sent: Instant,
    pub(crate) last_sent: Instant,
}

#[derive(Debug)]
pub(crate) struct SeqnoCache {
    entries: Map<SeqnoKey, SeqnoCacheEntry>,
}

impl SeqnoCache {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            entries: new_map(seed),
        }
    }

    pub(crate) fn get(&self, key: &SeqnoKey) -> Option<&SeqnoCacheEntry> {
        self.entries.get(key)
    }

    /// Records that `target` was sent the request, on behalf of `source` if any.
    pub(crate) fn record(
        &mut self,
        key: SeqnoKey,
        target: PeerId,
        source: Option<PeerId>,
        now: Instant,
        capacity: usize,
    ) {
        if !self.entries.contains_key(&key) && self.entries.len() >= capacity {
            return;
        }
        let e = self.entries.entry(key).or_insert_with(|| SeqnoCacheEntry {
            sources: Vec::new(),
            targets: Vec::new(),
            first_sent: now,
            last_sent: now,
        });
        e.last_sent = now;
        if !e.targets.contains(&target) {
            e.targets.push(target);
        }
        if let Some(s) = source {
            if !e.sources.contains(&s) {
                e.sources.push(s);
            }
        }
    }

    /// Adds a neighbour waiting for the answer to a request already sent.
    pub(crate) fn add_source(&mut self, key: SeqnoKey, source: PeerId) {
        if let Some(e) = self.entries.get_mut(&key) {
            if !e.sources.contains(&source) {
                e.sources.push(source);
            }
        }
    }

    /// Forgets requests first sent more than `max_age` ago.
    pub(crate) fn sweep(&mut self, now: Instant, max_age: Duration) {
        self.entries.retain(|_, e| now - e.first_sent <= max_age);
    }

    /// Forgets a neighbour that went away.
    pub(crate) fn forget(&mut self, peer: PeerId) {
        for e in self.entries.values_mut() {
            e.sources.retain(|p| *p != peer);
            e.targets.retain(|p| *p != peer);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RouteRequestCacheEntry {
    pub(crate) generation: u8,
    pub(crate) receivers: Vec<PeerId>,
    pub(crate) sent: Instant,
}

#[derive(Debug)]
pub(crate) struct RouteRequestCache {
    entries: Map<Subnet, RouteRequestCacheEntry>,
}

impl RouteRequestCache {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            entries: new_map(seed),
        }
    }

    /// The entry for `subnet` if it is younger than `ttl`.
    pub(crate) fn valid(
        &self,
        subnet: &Subnet,
        now: Instant,
        ttl: Duration,
    ) -> Option<&RouteRequestCacheEntry> {
        self.entries.get(subnet).filter(|e| now - e.sent < ttl)
    }

    pub(crate) fn record(
        &mut self,
        subnet: Subnet,
        entry: RouteRequestCacheEntry,
        capacity: usize,
    ) {
        if self.entries.contains_key(&subnet) || self.entries.len() < capacity {
            self.entries.insert(subnet, entry);
        }
    }

    pub(crate) fn sweep(&mut self, now: Instant, ttl: Duration) {
        self.entries.retain(|_, e| now - e.sent < ttl);
    }

    /// Forgets the request for `subnet`, so the next one goes out at once.
    pub(crate) fn forget(&mut self, subnet: &Subnet) {
        self.entries.remove(subnet);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
