//! Route requests and seqno requests: originating, answering and forwarding them.

use std::time::Duration;

use super::caches::RouteRequestCacheEntry;
use super::{PeerId, Router, SourceKey, SubnetEntry};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::tlv::{RouteRequest, SeqnoRequest};
use crate::wire::{SeqNo, Tlv};

/// First retry of an unanswered seqno request; each further one waits twice as long.
const SEQNO_RETRY_BASE: Duration = Duration::from_secs(1);
/// Retries before giving up (1 + 2 + 4 + 8 + 16 + 32 s: about a minute).
const SEQNO_RETRY_ATTEMPTS: u8 = 6;

/// A seqno request we originated and may send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PendingRequest {
    seqno: SeqNo,
    attempts: u8,
    next_at: Instant,
}

impl Router {
    /// Asks every reachable neighbour for a route to `subnet` and marks it queried.
    pub(super) fn request_route(&mut self, now: Instant, subnet: Subnet) {
        let new_query = !self.table.contains(&subnet);
        if new_query {
            if !self.leaf_make_room(now) || self.table.len() >= self.cfg.limits.max_subnets {
                return;
            }
            self.table
                .insert_query(subnet, now + self.cfg.route_query_timeout);
        }
        self.leaf_use(subnet);
        // Neighbours asked less than `route_request_ttl` ago are not asked again,
        // as upstream does. A leaf that starts a new query has no request of its
        // own in flight (it evicted the subnet, or lost its route, since), and
        // asking nobody would leave its packets waiting for a query that expires.
        let skip = self
            .rr_cache
            .valid(&subnet, now, self.cfg.route_request_ttl)
            .filter(|e| e.generation == 0 && !(new_query && self.is_leaf()))
            .map(|e| e.receivers.clone())
            .unwrap_or_default();
        let all = self.reachable_neighbours();
        for &peer in all.iter().filter(|p| !skip.contains(p)) {
            self.send(
                peer,
                Tlv::RouteRequest(RouteRequest {
                    generation: 0,
                    prefix: Some(subnet),
                }),
            );
        }
        self.rr_cache.record(
            subnet,
            RouteRequestCacheEntry {
                generation: 0,
                receivers: all,
                sent: now,
            },
            self.cfg.limits.max_route_requests,
        );
    }

    pub(super) fn handle_route_request(&mut self, now: Instant, from: PeerId, rr: RouteRequest) {
        let Some(prefix) = rr.prefix else {
            self.send_full_table(now, from);
            return;
        };
        if self.own_subnet.contains_subnet(&prefix) {
            self.announce_own(now, Some(from));
            return;
        }
        if self.is_leaf() {
            // A stub answers for its own subnet only and carries no requests on.
            return;
        }
        if self.table.exists(&prefix) {
            if let Some(r) = self.table.selected(&prefix) {
                if r.neighbour != from {
                    self.send_route_update(now, prefix, from);
                }
            }
        } else if !self.table.contains(&prefix) {
            self.forward_route_request(now, from, rr.generation, prefix);
        }
    }

    fn forward_route_request(
        &mut self,
        now: Instant,
        from: PeerId,
        generation: u8,
        prefix: Subnet,
    ) {
        // Only prefixes a route could ever be accepted for are worth flooding.
        if !prefix.is_overlay() || prefix.prefix_len() < 64 {
            return;
        }
        let generation = generation.saturating_add(1);
        if generation >= self.cfg.max_route_request_generation {
            self.stats.route_requests_too_old += 1;
            return;
        }
        if self.table.len() >= self.cfg.limits.max_subnets {
            return;
        }
        self.table
            .insert_query(prefix, now + self.cfg.route_query_timeout);
        let skip = self
            .rr_cache
            .valid(&prefix, now, self.cfg.route_request_ttl)
            .filter(|e| generation >= e.generation)
            .map(|e| e.receivers.clone())
            .unwrap_or_default();
        let all = self.reachable_neighbours();
        for &peer in all.iter().filter(|p| **p != from && !skip.contains(p)) {
            self.send(
                peer,
                Tlv::RouteRequest(RouteRequest {
                    generation,
                    prefix: Some(prefix),
                }),
            );
        }
        self.rr_cache.record(
            prefix,
            RouteRequestCacheEntry {
                generation,
                receivers: all,
                sent: now,
            },
            self.cfg.limits.max_route_requests,
        );
    }

    /// Asks for a newer seqno of `source`: from `to` alone, or
    /// from every neighbour that announced the subnet (all neighbours if none did).
    pub(super) fn send_seqno_request(
        &mut self,
        now: Instant,
        source: SourceKey,
        to: Option<PeerId>,
        origin: Option<PeerId>,
    ) {
        let fd_seqno = self.table.source(&source).map_or(SeqNo(0), |fd| fd.seqno);
        let seqno = fd_seqno.next();
        let key = (source.router_id, source.subnet, seqno.0);
        let targets = match to {
            Some(t) => vec![t],
            None => self.request_targets(now, &source, origin, false),
        };
        let req = SeqnoRequest {
            seqno,
            hop_count: self.cfg.seqno_request_hop_count,
            router_id: source.router_id,
            prefix: source.subnet,
        };
        if origin.is_none() && to.is_none() {
            self.remember_request(now, source, seqno);
        }
        // Upstream never asks a neighbour that asked us the same, for as long as it
        // remembers the request (60 s); when the request died on the way, that
        // blocks the repair the neighbour could now carry towards the source. We ask
        // it anyway: receivers never send a request back to whoever asked them, nor
        // twice to the same neighbour within the window, so this cannot ping-pong.
        for t in targets {
            self.send(t, Tlv::SeqnoRequest(req));
            self.seqno_cache
                .record(key, t, origin, now, self.cfg.limits.max_seqno_requests);
        }
    }

    /// Remembers a seqno request we originated for lack of a route, to send it again
    /// until a route is back. Upstream sends it once: if it is lost or dies on the
    /// way, the route stays lost until the source's next periodic announcement.
    fn remember_request(&mut self, now: Instant, source: SourceKey, seqno: SeqNo) {
        if self.pending_requests.len() >= self.cfg.limits.max_seqno_requests
            && !self.pending_requests.contains_key(&source)
        {
            return;
        }
        self.pending_requests.insert(
            source,
            PendingRequest {
                seqno,
                attempts: 0,
                next_at: now + SEQNO_RETRY_BASE,
            },
        );
    }

    /// Whom to ask for a newer seqno of `source`: the neighbours
    /// that announced the subnet, less those asked in the last few seconds unless
    /// `retry`; everyone if the subnet is unknown.
    fn request_targets(
        &self,
        now: Instant,
        source: &SourceKey,
        origin: Option<PeerId>,
        retry: bool,
    ) -> Vec<PeerId> {
        match self.table.get(&source.subnet) {
            Some(SubnetEntry::Exists { routes, .. }) => {
                let fd_seqno = self.table.source(source).map_or(SeqNo(0), |fd| fd.seqno);
                let key = (source.router_id, source.subnet, fd_seqno.next().0);
                let recent = self
                    .seqno_cache
                    .get(&key)
                    .filter(|c| !retry && now - c.last_sent < self.cfg.seqno_request_retarget)
                    .map(|c| c.targets.clone())
                    .unwrap_or_default();
                let announcers: Vec<PeerId> = routes
                    .filter(|r| !r.metric.is_infinite())
                    .map(|r| r.neighbour)
                    .filter(|p| self.neighbours.get(p).is_some_and(|n| n.reachable))
                    .collect();
                // Upstream asks every neighbour that announced the subnet, even those
                // that since retracted it; when none of them can help, the route stays
                // lost until its source's next periodic announcement (up to 300 s).
                // We ask the announcers that still have a route, or else everyone.
                let pool = if announcers.is_empty() {
                    self.reachable_neighbours()
                } else {
                    announcers
                };
                pool.into_iter().filter(|p| !recent.contains(p)).collect()
            }
            _ if origin.is_none() => self.reachable_neighbours(),
            _ => Vec::new(),
        }
    }

    /// Sends again the originated seqno requests that are due and still unanswered.
    pub(super) fn retry_requests(&mut self, now: Instant) {
        let due: Vec<(SourceKey, PendingRequest)> = self
            .pending_requests
            .iter()
            .filter(|(_, p)| p.next_at <= now)
            .map(|(k, p)| (*k, *p))
            .collect();
        for (source, p) in due {
            let answered = self.table.selected(&source.subnet).is_some();
            if answered || p.attempts >= SEQNO_RETRY_ATTEMPTS {
                self.pending_requests.remove(&source);
                continue;
            }
            let targets = self.request_targets(now, &source, None, true);
            let req = SeqnoRequest {
                seqno: p.seqno,
                hop_count: self.cfg.seqno_request_hop_count,
                router_id: source.router_id,
                prefix: source.subnet,
            };
            let key = (source.router_id, source.subnet, p.seqno.0);
            for t in targets {
                self.send(t, Tlv::SeqnoRequest(req));
                self.seqno_cache
                    .record(key, t, None, now, self.cfg.limits.max_seqno_requests);
            }
            let attempts = p.attempts + 1;
            self.pending_requests.insert(
                source,
                PendingRequest {
                    seqno: p.seqno,
                    attempts,
                    next_at: now + SEQNO_RETRY_BASE * (1 << attempts),
                },
            );
        }
    }

    /// The earliest pending retry.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        if self.pending_requests.is_empty() {
            return None;
        }
        self.pending_requests.values().map(|p| p.next_at).min()
    }

    /// Answers, honours or forwards a seqno request.
    ///
    /// Upstream ignores a request entirely if it saw the same (router id, prefix,
    /// seqno) in the last 60 s. That also swallows a repeat that arrives after our
    /// state changed: a route appeared that can answer it, or a neighbour that can
    /// carry it on; and it swallows the originator's retries. Such a network then
    /// stays without a route until the source's next periodic announcement. We
    /// suppress duplicates per neighbour instead: a request is not forwarded twice
    /// to the same neighbour within [`RouterConfig::seqno_request_retarget`], which
    /// bounds the traffic, while answers, new ways on and retries still get through.
    pub(super) fn handle_seqno_request(&mut self, now: Instant, from: PeerId, req: SeqnoRequest) {
        let key = (req.router_id, req.prefix, req.seqno.0);
        if self.is_leaf() && (req.router_id != self.router_id || req.prefix != self.own_subnet) {
            // A stub never announced the route, so nobody routes through it for it;
            // and it answers for its own subnet alone, whatever router id the
            // request names (else a crafted request would make it announce a
            // subnet it caches).
            return;
        }
        if let Some(r) = self.table.selected(&req.prefix) {
            if !r.metric.is_infinite()
                && (r.router_id != req.router_id || !r.seqno.is_older_than(req.seqno))
            {
                self.send_seqno_reply(now, &r, req.prefix, from);
                return;
            }
        }
        if req.router_id == self.router_id {
            if req.seqno.is_newer_than(self.seqno) && req.prefix == self.own_subnet {
                let allowed_at = self.last_bump + self.cfg.seqno_bump_interval;
                if now < allowed_at {
                    // Upstream drops a request that comes too soon, and whoever asked
                    // stays without a route until our next periodic announcement.
                    // We honour it as soon as the rate limit allows instead.
                    self.pending_bump = Some(allowed_at);
                    return;
                }
                self.bump_seqno(now);
            }
            return;
        }
        if req.hop_count < 2 {
            return;
        }
        let visited = match self.seqno_cache.get(&key) {
            Some(c) if now - c.last_sent < self.cfg.seqno_request_retarget => c.targets.clone(),
            _ => Vec::new(),
        };
        let routes = self.table.routes(&req.prefix);
        let eligible = |r: &super::RouteEntry| {
            !visited.contains(&r.neighbour)
                && r.neighbour != from
                && self
                    .neighbours
                    .get(&r.neighbour)
                    .is_some_and(|n| n.reachable)
                && !r.metric.is_infinite()
        };
        let feasible = |r: &super::RouteEntry| {
            self.table
                .is_feasible(&r.source(req.prefix), r.seqno, r.metric)
        };
        let target = routes
            .clone()
            .filter(|r| eligible(r))
            .find(|r| feasible(r))
            .or_else(|| routes.clone().find(|r| eligible(r)))
            .map(|r| r.neighbour);
        if let Some(t) = target {
            self.send(
                t,
                Tlv::SeqnoRequest(SeqnoRequest {
                    hop_count: req.hop_count - 1,
                    ..req
                }),
            );
            self.seqno_cache
                .record(key, t, Some(from), now, self.cfg.limits.max_seqno_requests);
        } else {
            // Nobody new to ask, but remember who is waiting for the answer.
            self.seqno_cache.add_source(key, from);
        }
    }
}
