//! Route requests and seqno requests: originating, answering and forwarding them
//! (PROTOCOL.md §6.6–§6.10).

use super::caches::RouteRequestCacheEntry;
use super::{PeerId, Router, SourceKey, SubnetEntry};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::tlv::{RouteRequest, SeqnoRequest};
use crate::wire::{SeqNo, Tlv};

impl Router {
    /// Asks every reachable neighbour for a route to `subnet` and marks it queried
    /// (PROTOCOL.md §6.6).
    pub(super) fn request_route(&mut self, now: Instant, subnet: Subnet) {
        if self.table.get(&subnet).is_none() {
            if self.table.len() >= self.cfg.limits.max_subnets {
                return;
            }
            self.table
                .insert_query(subnet, now + self.cfg.route_query_timeout);
        }
        let skip = self
            .rr_cache
            .valid(&subnet, now, self.cfg.route_request_ttl)
            .filter(|e| e.generation == 0)
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
        match self.table.get(&prefix) {
            Some(SubnetEntry::Exists { .. }) => {
                if let Some(r) = self.table.selected(&prefix).copied() {
                    if r.neighbour != from {
                        self.send_route_update(now, prefix, from);
                    }
                }
            }
            Some(SubnetEntry::Queried { .. }) => {}
            None => self.forward_route_request(now, from, rr.generation, prefix),
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

    /// Asks for a newer seqno of `source` (PROTOCOL.md §6.9): from `to` alone, or
    /// from every neighbour that announced the subnet (all neighbours if none did).
    pub(super) fn send_seqno_request(
        &mut self,
        now: Instant,
        source: SourceKey,
        to: Option<PeerId>,
        origin: Option<PeerId>,
    ) {
        let fd_seqno = self.sources.get(&source).map_or(SeqNo(0), |fd| fd.seqno);
        let seqno = fd_seqno.next();
        let key = (source.router_id, source.subnet, seqno.0);
        let cached = self.seqno_cache.get(&key).cloned();
        let targets: Vec<PeerId> = match (to, self.table.get(&source.subnet)) {
            (Some(t), _) => vec![t],
            (None, Some(SubnetEntry::Exists { routes, .. })) => {
                let recent = cached
                    .as_ref()
                    .filter(|c| now - c.last_sent < self.cfg.seqno_request_retarget)
                    .map(|c| c.targets.clone())
                    .unwrap_or_default();
                let announcers: Vec<PeerId> = routes
                    .iter()
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
            (None, _) if origin.is_none() => self.reachable_neighbours(),
            (None, _) => Vec::new(),
        };
        let req = SeqnoRequest {
            seqno,
            hop_count: self.cfg.seqno_request_hop_count,
            router_id: source.router_id,
            prefix: source.subnet,
        };
        for t in targets {
            if cached.as_ref().is_some_and(|c| c.sources.contains(&t)) {
                continue;
            }
            self.send(t, Tlv::SeqnoRequest(req));
            self.seqno_cache
                .record(key, t, origin, now, self.cfg.limits.max_seqno_requests);
        }
    }

    pub(super) fn handle_seqno_request(&mut self, now: Instant, from: PeerId, req: SeqnoRequest) {
        let key = (req.router_id, req.prefix, req.seqno.0);
        if let Some(c) = self.seqno_cache.get(&key) {
            if now - c.last_sent <= self.cfg.seqno_request_dedup {
                return;
            }
        }
        if let Some(r) = self.table.selected(&req.prefix).copied() {
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
        let visited = self
            .seqno_cache
            .get(&key)
            .filter(|c| now - c.last_sent < self.cfg.seqno_request_retarget)
            .map(|c| c.targets.clone())
            .unwrap_or_default();
        let routes = self.table.routes(&req.prefix);
        let eligible = |r: &&super::RouteEntry| {
            !visited.contains(&r.neighbour)
                && r.neighbour != from
                && self
                    .neighbours
                    .get(&r.neighbour)
                    .is_some_and(|n| n.reachable)
                && !r.metric.is_infinite()
        };
        let feasible = |r: &&super::RouteEntry| {
            self.sources
                .is_feasible(&r.source(req.prefix), r.seqno, r.metric)
        };
        let target = routes
            .iter()
            .filter(eligible)
            .find(feasible)
            .or_else(|| routes.iter().find(eligible))
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
        }
    }
}
