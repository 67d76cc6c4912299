//! The reference source table: per subnet a `Vec` of (router id, feasibility
//! distance), and the last message per subnet in its own map. What the compact
//! store replaced.

use std::time::Duration;

use crate::identity::RouterId;
use crate::routing::source_table::SourceKey;
use crate::routing::{new_map, Map};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::{Metric, SeqNo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeasibilityDistance {
    pub(crate) metric: Metric,
    pub(crate) seqno: SeqNo,
    /// When we last advertised this source.
    pub(crate) last_sent: Instant,
    /// The smallest finite metric we advertised for this source, whatever its
    /// seqno, since everything sent before it surely arrived (infinite if none);
    /// what the check across router ids compares with.
    pub(crate) recent: Metric,
    /// When the last finite advertisement counted in `recent` went out.
    pub(crate) recent_at: Instant,
    gc_at: Instant,
}

/// Router ids kept per subnet. A node that restarts gets a new one each time, and
/// a peer could invent any number for its own subnet; past the bound, the oldest
/// whose advertisements have surely arrived makes room, and if none can, a route of
/// yet another router id waits (see `Router::make_room`).
pub(crate) const MAX_SOURCES_PER_SUBNET: usize = 16;

#[derive(Debug)]
pub(crate) struct SourceTable {
    /// Per subnet, its sources (almost always one: a restarted node adds one).
    entries: Map<Subnet, Vec<(RouterId, FeasibilityDistance)>>,
    /// Per subnet with entries: when we last sent anything about it (any router
    /// id, retractions included), and whether that was a finite update of which
    /// router id. Our neighbours hold that last message until the next one.
    latest: Map<Subnet, (Instant, Option<RouterId>)>,
    len: usize,
}

impl SourceTable {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            entries: new_map(seed),
            latest: new_map(seed),
            len: 0,
        }
    }

    pub(crate) fn get(&self, key: &SourceKey) -> Option<&FeasibilityDistance> {
        self.entries
            .get(&key.subnet)?
            .iter()
            .find(|(r, _)| *r == key.router_id)
            .map(|(_, fd)| fd)
    }

    pub(crate) fn is_feasible(&self, key: &SourceKey, seqno: SeqNo, metric: Metric) -> bool {
        if metric.is_infinite() {
            return true;
        }
        match self.get(key) {
            None => true,
            Some(fd) => seqno.is_newer_than(fd.seqno) || (seqno == fd.seqno && metric < fd.metric),
        }
    }

    /// Records an update we are about to send. `settled`: whether everything we
    /// advertised for this source before has surely arrived by now.
    pub(crate) fn record_sent(
        &mut self,
        key: SourceKey,
        seqno: SeqNo,
        metric: Metric,
        now: Instant,
        gc_after: Duration,
        settled: bool,
    ) {
        if self.entries.contains_key(&key.subnet) || !metric.is_infinite() {
            let finite = (!metric.is_infinite()).then_some(key.router_id);
            self.latest.insert(key.subnet, (now, finite));
        }
        let gc_at = now + gc_after;
        let fresh = FeasibilityDistance {
            metric,
            seqno,
            last_sent: now,
            recent: metric,
            recent_at: now,
            gc_at,
        };
        let sources = self.entries.entry(key.subnet).or_default();
        match sources.iter_mut().find(|(r, _)| *r == key.router_id) {
            // A retraction of a source we never advertised constrains nothing
            // (RFC 8966 §3.7.3: only finite updates set a feasibility distance).
            None if metric.is_infinite() => {
                if sources.is_empty() {
                    self.entries.remove(&key.subnet);
                }
            }
            None => {
                sources.push((key.router_id, fresh));
                self.len += 1;
            }
            Some((_, fd)) => {
                let recent = match (metric.is_infinite(), settled) {
                    (false, true) => metric,
                    (false, false) => fd.recent.min(metric),
                    (true, true) => Metric::INFINITE,
                    (true, false) => fd.recent,
                };
                let recent_at = if metric.is_infinite() {
                    fd.recent_at
                } else {
                    now
                };
                if seqno.is_newer_than(fd.seqno) || (seqno == fd.seqno && metric < fd.metric) {
                    *fd = fresh;
                } else if !metric.is_infinite() {
                    fd.gc_at = gc_at;
                    fd.last_sent = now;
                }
                fd.recent = recent;
                fd.recent_at = recent_at;
            }
        }
    }

    /// Every source of `subnet` with its feasibility distance.
    pub(crate) fn of_subnet(
        &self,
        subnet: Subnet,
    ) -> impl Iterator<Item = (RouterId, &FeasibilityDistance)> {
        self.entries
            .get(&subnet)
            .into_iter()
            .flatten()
            .map(|(r, fd)| (*r, fd))
    }

    /// Whether a route of source `key` may be selected (and so advertised) without
    /// growing the table past its bounds: `max_total` sources in all,
    /// [`MAX_SOURCES_PER_SUBNET`] per subnet.
    pub(crate) fn admits(&self, key: &SourceKey, max_total: usize) -> bool {
        match self.entries.get(&key.subnet) {
            Some(sources) if sources.iter().any(|(r, _)| *r == key.router_id) => true,
            Some(sources) => sources.len() < MAX_SOURCES_PER_SUBNET && self.len < max_total,
            None => self.len < max_total,
        }
    }

    /// When we last sent anything about `subnet`, and the router id if that was a
    /// finite update (what our neighbours hold now).
    pub(crate) fn latest(&self, subnet: Subnet) -> Option<(Instant, Option<RouterId>)> {
        self.latest.get(&subnet).copied()
    }

    /// Whether `subnet` holds as many sources as it may.
    pub(crate) fn subnet_full(&self, subnet: Subnet) -> bool {
        self.entries
            .get(&subnet)
            .is_some_and(|s| s.len() >= MAX_SOURCES_PER_SUBNET)
    }

    /// Removes the least recently advertised source of a full `subnet` for which
    /// `evictable` holds. Returns whether one went.
    pub(crate) fn evict_oldest(
        &mut self,
        subnet: Subnet,
        evictable: impl Fn(RouterId, &FeasibilityDistance) -> bool,
    ) -> bool {
        let Some(sources) = self.entries.get_mut(&subnet) else {
            return false;
        };
        if sources.len() < MAX_SOURCES_PER_SUBNET {
            return false;
        }
        let oldest = sources
            .iter()
            .enumerate()
            .filter(|(_, (r, fd))| evictable(*r, fd))
            .min_by_key(|(_, (_, fd))| fd.last_sent)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                sources.swap_remove(i);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Drops entries not refreshed within their lifetime.
    pub(crate) fn collect(&mut self, now: Instant) {
        let mut len = 0;
        self.entries.retain(|_, sources| {
            sources.retain(|(_, fd)| fd.gc_at > now);
            len += sources.len();
            !sources.is_empty()
        });
        self.len = len;
        let entries = &self.entries;
        self.latest.retain(|subnet, _| entries.contains_key(subnet));
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
