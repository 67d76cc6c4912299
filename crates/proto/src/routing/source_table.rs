//! The source table: for every (subnet, router id) we have advertised, the best
//! (seqno, metric) we advertised, its feasibility distance (PROTOCOL.md §6.1, §6.3).
//!
//! An update is feasible when it cannot come from a route that passes through us:
//! newer seqno, or same seqno and strictly smaller metric than we advertised
//! (RFC 8966 §3.5.1). Retractions are always feasible.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::RouterId;
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::{Metric, SeqNo};

/// A route source: the prefix and the router that originates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// The prefix.
    pub subnet: Subnet,
    /// The originating router.
    pub router_id: RouterId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeasibilityDistance {
    pub(crate) metric: Metric,
    pub(crate) seqno: SeqNo,
    /// When we last advertised this source.
    pub(crate) last_sent: Instant,
    gc_at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct SourceTable {
    entries: BTreeMap<SourceKey, FeasibilityDistance>,
}

impl SourceTable {
    pub(crate) fn get(&self, key: &SourceKey) -> Option<&FeasibilityDistance> {
        self.entries.get(key)
    }

    pub(crate) fn is_feasible(&self, key: &SourceKey, seqno: SeqNo, metric: Metric) -> bool {
        if metric.is_infinite() {
            return true;
        }
        match self.entries.get(key) {
            None => true,
            Some(fd) => seqno.is_newer_than(fd.seqno) || (seqno == fd.seqno && metric < fd.metric),
        }
    }

    /// Records an update we are about to send.
    pub(crate) fn record_sent(
        &mut self,
        key: SourceKey,
        seqno: SeqNo,
        metric: Metric,
        now: Instant,
        gc_after: Duration,
    ) {
        let gc_at = now + gc_after;
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key,
                    FeasibilityDistance {
                        metric,
                        seqno,
                        last_sent: now,
                        gc_at,
                    },
                );
            }
            Some(fd) => {
                if seqno.is_newer_than(fd.seqno) || (seqno == fd.seqno && metric < fd.metric) {
                    *fd = FeasibilityDistance {
                        metric,
                        seqno,
                        last_sent: now,
                        gc_at,
                    };
                } else if !metric.is_infinite() {
                    fd.gc_at = gc_at;
                    fd.last_sent = now;
                }
            }
        }
    }

    /// Every source of `subnet` with its feasibility distance.
    pub(crate) fn of_subnet(
        &self,
        subnet: Subnet,
    ) -> impl Iterator<Item = (&SourceKey, &FeasibilityDistance)> {
        let from = SourceKey {
            subnet,
            router_id: RouterId::from_bytes([0; 40]),
        };
        self.entries
            .range(from..)
            .take_while(move |(k, _)| k.subnet == subnet)
    }

    /// Drops entries not refreshed within their lifetime; returns the next deadline.
    pub(crate) fn collect(&mut self, now: Instant) -> Option<Instant> {
        self.entries.retain(|_, fd| fd.gc_at > now);
        self.entries.values().map(|fd| fd.gc_at).min()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
