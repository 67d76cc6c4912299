//! The source table: for every (subnet, router id) we have advertised, the best
//! (seqno, metric) we advertised, its feasibility distance.
//!
//! An update is feasible when it cannot come from a route that passes through us:
//! newer seqno, or same seqno and strictly smaller metric than we advertised
//! (RFC 8966 §3.5.1). Retractions are always feasible.
//!
//! Feasibility distances live in the source records of the shared store
//! (`table.rs`), which routes of the same router id point to as well: one record per
//! router id per subnet, whether we advertised it, route through it, or both.

use std::time::Duration;

use crate::identity::{PublicKey, RouterId};
use crate::routing::table::{
    RouteTable, SourceRec, FOREIGN, HAS_FD, LATEST_FINITE, LATEST_GONE, LATEST_NONE,
    LATEST_RETRACTION, NIL, SOURCES_ONLY,
};
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
    /// When we last advertised this source (finite, or a newer seqno); the entry is
    /// forgotten a source lifetime after it.
    pub(crate) last_sent: Instant,
    /// The smallest finite metric we advertised for this source, whatever its
    /// seqno, since everything sent before it surely arrived (infinite if none);
    /// what the check across router ids compares with.
    pub(crate) recent: Metric,
    /// When the last finite advertisement counted in `recent` went out.
    pub(crate) recent_at: Instant,
}

/// Router ids kept per subnet. A node that restarts gets a new one each time, and
/// a peer could invent any number for its own subnet; past the bound, the oldest
/// whose advertisements have surely arrived makes room, and if none can, a route of
/// yet another router id waits (see `Router::make_room`).
pub(crate) const MAX_SOURCES_PER_SUBNET: usize = 16;

impl RouteTable {
    /// The router id of source slot `s` of subnet slot `i`.
    pub(super) fn source_id(&self, i: u32, s: u32) -> RouterId {
        let src = self.sources.get(s);
        if src.flags & FOREIGN != 0 {
            if let Some(id) = self.foreign.get(&s) {
                return *id;
            }
        }
        let mut id = [0u8; 40];
        id[..32].copy_from_slice(&self.subnets.get(i).key);
        id[32..].copy_from_slice(&src.tail.to_be_bytes());
        RouterId::from_bytes(id)
    }

    /// The source slot of `id` in subnet slot `i`.
    fn find_source(&self, i: u32, id: &RouterId) -> Option<u32> {
        let rec = self.subnets.get(i);
        let own_key = id.as_bytes()[..32] == rec.key;
        let tail = tail_of(id);
        let mut s = rec.sources;
        while s != NIL {
            let src = self.sources.get(s);
            let matches = if src.flags & FOREIGN != 0 {
                self.foreign.get(&s) == Some(id)
            } else {
                own_key && src.tail == tail
            };
            if matches {
                return Some(s);
            }
            s = src.next;
        }
        None
    }

    /// The source slot of `id` in subnet slot `i`, created (without a feasibility
    /// distance) if there is none.
    fn find_or_add_source(&mut self, i: u32, id: &RouterId) -> u32 {
        if let Some(s) = self.find_source(i, id) {
            return s;
        }
        let foreign = id.as_bytes()[..32] != self.subnets.get(i).key;
        let s = self.sources.alloc(SourceRec {
            tail: tail_of(id),
            next: self.subnets.get(i).sources,
            flags: if foreign { FOREIGN } else { 0 },
            ..SourceRec::default()
        });
        if foreign {
            self.foreign.insert(s, *id);
        }
        self.subnets.get_mut(i).sources = s;
        s
    }

    /// A route of subnet slot `i` now names `id`.
    pub(super) fn ref_source(&mut self, i: u32, id: &RouterId) -> u32 {
        let s = self.find_or_add_source(i, id);
        self.sources.get_mut(s).refs += 1;
        s
    }

    /// A route of subnet slot `i` no longer names source slot `s`.
    pub(super) fn unref_source(&mut self, i: u32, s: u32) {
        let src = self.sources.get_mut(s);
        src.refs -= 1;
        self.free_source_if_unused(i, s);
    }

    /// Frees source slot `s` once no route names it and it has no feasibility
    /// distance.
    fn free_source_if_unused(&mut self, i: u32, s: u32) {
        let src = *self.sources.get(s);
        if src.refs > 0 || src.flags & HAS_FD != 0 {
            return;
        }
        let rec = self.subnets.get_mut(i);
        if rec.sources == s {
            rec.sources = src.next;
        } else {
            let mut prev = rec.sources;
            while self.sources.get(prev).next != s {
                prev = self.sources.get(prev).next;
            }
            self.sources.get_mut(prev).next = src.next;
        }
        let rec = self.subnets.get_mut(i);
        if rec.latest_kind == LATEST_FINITE && rec.latest_src == s {
            rec.latest_kind = LATEST_GONE;
        }
        if src.flags & FOREIGN != 0 {
            self.foreign.remove(&s);
        }
        self.sources.free(s);
    }

    /// Gives subnet slot `i` the key `key`. Source records that named the old key
    /// implicitly keep their router ids (a key changes only when a subnet known to
    /// the source table alone is learned again from another owner).
    pub(super) fn set_key(&mut self, i: u32, key: &PublicKey) {
        if self.subnets.get(i).key == *key.as_bytes() {
            return;
        }
        let mut s = self.subnets.get(i).sources;
        while s != NIL {
            let id = self.source_id(i, s);
            let src = self.sources.get_mut(s);
            let next = src.next;
            let foreign = id.as_bytes()[..32] != *key.as_bytes();
            if foreign {
                src.flags |= FOREIGN;
                self.foreign.insert(s, id);
            } else {
                src.flags &= !FOREIGN;
                self.foreign.remove(&s);
            }
            s = next;
        }
        self.subnets.get_mut(i).key = *key.as_bytes();
    }

    fn fd_of(&self, src: &SourceRec) -> FeasibilityDistance {
        FeasibilityDistance {
            metric: Metric(src.metric),
            seqno: SeqNo(src.seqno),
            last_sent: self.instant(src.last_sent),
            recent: Metric(src.recent),
            recent_at: self.instant(src.recent_at),
        }
    }

    /// The feasibility distance of `key`.
    pub(crate) fn source(&self, key: &SourceKey) -> Option<FeasibilityDistance> {
        let i = self.find(&key.subnet)?;
        let s = self.find_source(i, &key.router_id)?;
        let src = self.sources.get(s);
        (src.flags & HAS_FD != 0).then(|| self.fd_of(src))
    }

    pub(crate) fn is_feasible(&self, key: &SourceKey, seqno: SeqNo, metric: Metric) -> bool {
        if metric.is_infinite() {
            return true;
        }
        match self.source(key) {
            None => true,
            Some(fd) => seqno.is_newer_than(fd.seqno) || (seqno == fd.seqno && metric < fd.metric),
        }
    }

    /// Feasibility distances held for subnet slot `i`.
    fn fd_count_of(&self, i: u32) -> usize {
        let mut n = 0;
        let mut s = self.subnets.get(i).sources;
        while s != NIL {
            let src = self.sources.get(s);
            n += usize::from(src.flags & HAS_FD != 0);
            s = src.next;
        }
        n
    }

    /// Records an update we are about to send. `settled`: whether everything we
    /// advertised for this source before has surely arrived by now.
    pub(crate) fn record_sent(
        &mut self,
        key: SourceKey,
        seqno: SeqNo,
        metric: Metric,
        now: Instant,
        settled: bool,
    ) {
        let finite = !metric.is_infinite();
        let existing = self.find(&key.subnet);
        let has_fds = existing.is_some_and(|i| self.fd_count_of(i) > 0);
        if !finite && !has_fds {
            // A retraction of a source we never advertised constrains nothing
            // (RFC 8966 §3.7.3: only finite updates set a feasibility distance).
            return;
        }
        let stamp = self.stamp(now);
        let i = match existing {
            Some(i) => i,
            None => self.find_or_create(key.subnet, &key.router_id.public_key()),
        };
        let found = self
            .find_source(i, &key.router_id)
            .filter(|&s| self.sources.get(s).flags & HAS_FD != 0);
        let s = match found {
            Some(s) => {
                let src = self.sources.get_mut(s);
                let recent = match (finite, settled) {
                    (true, true) => metric.0,
                    (true, false) => src.recent.min(metric.0),
                    (false, true) => Metric::INFINITE.0,
                    (false, false) => src.recent,
                };
                let recent_at = if finite { stamp } else { src.recent_at };
                let better = seqno.is_newer_than(SeqNo(src.seqno))
                    || (seqno.0 == src.seqno && metric.0 < src.metric);
                if better {
                    src.metric = metric.0;
                    src.seqno = seqno.0;
                    src.last_sent = stamp;
                } else if finite {
                    src.last_sent = stamp;
                }
                src.recent = recent;
                src.recent_at = recent_at;
                Some(s)
            }
            None if finite => {
                let s = self.find_or_add_source(i, &key.router_id);
                let src = self.sources.get_mut(s);
                src.flags |= HAS_FD;
                src.metric = metric.0;
                src.seqno = seqno.0;
                src.last_sent = stamp;
                src.recent = metric.0;
                src.recent_at = stamp;
                self.fd_count += 1;
                Some(s)
            }
            None => None,
        };
        let rec = self.subnets.get_mut(i);
        rec.latest_at = stamp;
        match s {
            Some(s) if finite => {
                rec.latest_kind = LATEST_FINITE;
                rec.latest_src = s;
            }
            _ => rec.latest_kind = LATEST_RETRACTION,
        }
    }

    /// Every source of `subnet` with its feasibility distance.
    pub(crate) fn sources_of(
        &self,
        subnet: Subnet,
    ) -> impl Iterator<Item = (RouterId, FeasibilityDistance)> + '_ {
        let i = self.find(&subnet);
        let mut s = i.map_or(NIL, |i| self.subnets.get(i).sources);
        std::iter::from_fn(move || {
            while s != NIL {
                let at = s;
                let src = self.sources.get(at);
                s = src.next;
                if src.flags & HAS_FD != 0 {
                    let i = i?;
                    return Some((self.source_id(i, at), self.fd_of(src)));
                }
            }
            None
        })
    }

    /// When we last sent anything about `subnet`, and the router id if that was a
    /// finite update (what our neighbours hold now).
    pub(crate) fn latest(&self, subnet: Subnet) -> Option<(Instant, Option<RouterId>)> {
        let i = self.find(&subnet)?;
        let rec = self.subnets.get(i);
        let at = self.instant(rec.latest_at);
        match rec.latest_kind {
            LATEST_NONE => None,
            LATEST_RETRACTION => Some((at, None)),
            LATEST_FINITE => Some((at, Some(self.source_id(i, rec.latest_src)))),
            // A router id that matches none the table holds.
            _ => Some((at, Some(RouterId::from_bytes([0xff; 40])))),
        }
    }

    /// Whether `subnet` holds as many sources as it may.
    pub(crate) fn subnet_full(&self, subnet: Subnet) -> bool {
        self.find(&subnet)
            .is_some_and(|i| self.fd_count_of(i) >= MAX_SOURCES_PER_SUBNET)
    }

    /// Drops the feasibility distance of source slot `s` of subnet slot `i`.
    fn drop_fd(&mut self, i: u32, s: u32) {
        self.sources.get_mut(s).flags &= !HAS_FD;
        self.fd_count -= 1;
        self.free_source_if_unused(i, s);
    }

    /// Removes the least recently advertised source of a full `subnet` for which
    /// `evictable` holds. Returns whether one went.
    pub(crate) fn evict_oldest(
        &mut self,
        subnet: Subnet,
        evictable: impl Fn(RouterId, &FeasibilityDistance) -> bool,
    ) -> bool {
        let Some(i) = self.find(&subnet) else {
            return false;
        };
        if self.fd_count_of(i) < MAX_SOURCES_PER_SUBNET {
            return false;
        }
        let mut oldest: Option<(u32, u32)> = None;
        let mut s = self.subnets.get(i).sources;
        while s != NIL {
            let src = *self.sources.get(s);
            if src.flags & HAS_FD != 0
                && evictable(self.source_id(i, s), &self.fd_of(&src))
                && oldest.map_or(true, |(_, t)| src.last_sent < t)
            {
                oldest = Some((s, src.last_sent));
            }
            s = src.next;
        }
        match oldest {
            Some((s, _)) => {
                self.drop_fd(i, s);
                true
            }
            None => false,
        }
    }

    /// Drops feasibility distances not refreshed within `lifetime`.
    pub(crate) fn collect(&mut self, now: Instant, lifetime: Duration) {
        if self.fd_count == 0 {
            return;
        }
        for i in 0..self.subnets.high() {
            let rec = *self.subnets.get(i);
            if rec.sources == NIL {
                continue;
            }
            let mut s = rec.sources;
            let mut kept = 0;
            while s != NIL {
                let src = *self.sources.get(s);
                if src.flags & HAS_FD != 0 {
                    if self.instant(src.last_sent) + lifetime > now {
                        kept += 1;
                    } else {
                        self.drop_fd(i, s);
                    }
                }
                s = src.next;
            }
            if kept == 0 {
                self.subnets.get_mut(i).latest_kind = LATEST_NONE;
            }
            if self.subnets.get(i).state == SOURCES_ONLY {
                self.release_if_unused(i);
            }
        }
    }

    pub(crate) fn source_count(&self) -> usize {
        self.fd_count
    }
}

fn tail_of(id: &RouterId) -> u64 {
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&id.as_bytes()[32..]);
    u64::from_be_bytes(tail)
}
