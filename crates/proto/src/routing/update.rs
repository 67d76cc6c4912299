//! Updates: processing what neighbours announce, selecting routes, and announcing
//! ours.

use std::time::Duration;

use super::table::Contender;
use super::{Event, PeerId, RouteEntry, Router, SourceKey};
use crate::subnet::Subnet;
use crate::time::Instant;
use crate::wire::tlv::Update;
use crate::wire::{Interval, Metric, Tlv};

impl Router {
    /// How long an update keeps its route alive: 3.5 × the advertised interval, or
    /// the retracted hold for a retraction.
    fn hold_time(&self, u: &Update) -> Duration {
        if u.metric.is_infinite() {
            self.cfg.retracted_hold
        } else {
            u.interval.as_duration() * 7 / 2
        }
    }

    /// Whether an update passes upstream's three filters. The
    /// ownership check hashes the key; a subnet already known under the same key
    /// passed it when the key was fixed.
    fn passes_filters(&self, u: &Update) -> bool {
        u.subnet.is_overlay()
            && u.subnet.prefix_len() >= 64
            && (u.metric.is_infinite()
                || self.table.owned_by(&u.subnet, &u.router_id)
                || u.subnet
                    .contains_ip(std::net::IpAddr::V6(u.router_id.public_key().address())))
    }

    pub(super) fn handle_update(&mut self, now: Instant, from: PeerId, u: Update) {
        // First, before the filters hash the key: nearly every update a leaf gets
        // is for a subnet it does not want. Not a metric-0 one: it may name the
        // neighbour (below).
        if u.metric.0 != 0 && self.leaf_ignores(&u.subnet) {
            return;
        }
        if !self.passes_filters(&u) {
            self.stats.updates_filtered += 1;
            return;
        }
        // Upstream ignores only the exact own subnet. A longer prefix inside it can
        // name our own key in its router id (a public value), so any peer could take
        // part of our /64 away from us: those are ignored too.
        if self.own_subnet.contains_subnet(&u.subnet) {
            self.stats.updates_for_own_subnet += 1;
            return;
        }
        if u.metric.0 == 0 {
            // Only a subnet's owner announces it at metric 0 (anyone passing it on
            // adds at least its static link cost), and the filters above checked
            // that the router id's key owns the subnet. The first such update on
            // a link names the node at its other end; it is kept, so a neighbour
            // cannot change who it is on a link already open.
            if let Some(n) = self.neighbours.get_mut(&from) {
                n.identity.get_or_insert(u.router_id);
            }
        }
        if self.leaf_ignores(&u.subnet) {
            return;
        }
        let subnet = u.subnet;
        let source = SourceKey {
            subnet,
            router_id: u.router_id,
        };
        let feasible = self.table.is_feasible(&source, u.seqno, u.metric);
        let interested: Vec<PeerId> = if self.seqno_cache.len() == 0 {
            Vec::new()
        } else {
            self.seqno_cache
                .get(&(u.router_id, subnet, u.seqno.0))
                .map(|e| e.sources.clone())
                .unwrap_or_default()
        };

        if !self.table.exists(&subnet) {
            if !feasible {
                self.send_seqno_request(now, source, Some(from), None);
                return;
            }
            if u.metric.is_infinite() {
                return;
            }
            let is_new = !self.table.contains(&subnet);
            if is_new && self.table.len() >= self.cfg.limits.max_subnets {
                self.stats.updates_over_limit += 1;
                return;
            }
            self.table.insert_subnet(subnet, u.router_id.public_key());
        }

        let old_selected = self.table.selected(&subnet);
        let hold = self.hold_time(&u);
        if let Some(entry) = self.table.route(&subnet, from) {
            if entry.selected && !feasible && entry.router_id == u.router_id {
                self.send_seqno_request(now, entry.source(subnet), Some(from), None);
                return;
            }
            if entry.metric.is_infinite() && u.metric.is_infinite() {
                return;
            }
            self.table.modify_route(subnet, from, |e| {
                e.seqno = u.seqno;
                e.metric = u.metric;
                e.router_id = u.router_id;
                if feasible {
                    e.expires = now + hold;
                }
                if e.selected && !feasible {
                    e.selected = false;
                }
            });
            if !entry.selected && !feasible {
                // Upstream stops here. When the subnet has no selected route at all,
                // an unfeasible update is the only sign a route exists, so we ask its
                // source for a newer seqno, as for a new entry (RFC 8966 §3.8.2.2).
                if old_selected.is_none() {
                    self.send_seqno_request(now, source, Some(from), None);
                }
                return;
            }
        } else {
            if u.metric.is_infinite() || !feasible {
                if !feasible && old_selected.is_none() {
                    self.send_seqno_request(now, source, Some(from), None);
                }
                self.drop_if_empty(subnet);
                return;
            }
            if self.table.routes_of(from) >= self.cfg.limits.max_routes_per_neighbour {
                self.stats.updates_over_limit += 1;
                self.drop_if_empty(subnet);
                return;
            }
            self.table.insert_route(
                subnet,
                RouteEntry {
                    router_id: u.router_id,
                    neighbour: from,
                    metric: u.metric,
                    seqno: u.seqno,
                    selected: false,
                    expires: now + hold,
                },
            );
        }

        let triggered = self.apply_selection(now, subnet, old_selected);
        if !triggered && !interested.is_empty() {
            for peer in interested {
                self.send_route_update(now, subnet, peer);
            }
        }
    }

    /// A subnet entry created for an update that then added no route is removed
    /// again, so refused updates cannot fill the table.
    fn drop_if_empty(&mut self, subnet: Subnet) {
        if self.table.has_no_routes(&subnet) {
            self.table.remove_subnet(&subnet);
        }
    }

    /// Upstream's route selection: among feasible finite routes through
    /// reachable neighbours, the one with the smallest metric plus link cost; the
    /// selected route is only replaced by one better by more than the significance
    /// margin, or by a metric-0 route (the destination's own neighbour).
    ///
    /// Unlike upstream we keep the current route only while it is itself a candidate,
    /// so an unfeasible or unreachable route is never kept by hysteresis.
    ///
    /// Also returns when a route now held back only by
    /// [`Router::feasible_across_sources`] becomes selectable, so selection can run
    /// again then.
    fn best_route(&self, now: Instant, subnet: &Subnet) -> (Option<PeerId>, Option<Instant>) {
        let mut retry_at: Option<Instant> = None;
        let max_sources = self.max_sources();
        let (slot, contenders) = self.table.contenders(subnet);
        let mut candidate = |c: &Contender, total: Metric| {
            if c.metric.is_infinite() || total.is_infinite() || !c.feasible() {
                return false;
            }
            if c.fd.is_none() && !self.table.room_for_source(slot, max_sources) {
                // The source table is full; look again when room may have come.
                let at = now + self.cfg.retracted_hold;
                retry_at = Some(retry_at.map_or(at, |t| t.min(at)));
                return false;
            }
            if !c.other_sources {
                return true;
            }
            let r = self.table.decode(slot, c);
            match self.feasible_across_sources(now, subnet, &r) {
                Ok(()) => true,
                Err(at) => {
                    retry_at = Some(retry_at.map_or(at, |t| t.min(at)));
                    false
                }
            }
        };
        // One pass: the best candidate (the first of equals, as a stable minimum
        // would give) and the selected route if it is a candidate.
        let mut best: Option<(Contender, Metric)> = None;
        let mut current: Option<(Contender, Metric)> = None;
        for c in contenders {
            let total = c.metric.saturating_add(self.cost(c.neighbour));
            if !candidate(&c, total) {
                continue;
            }
            if best.as_ref().map_or(true, |(_, b)| total < *b) {
                best = Some((c, total));
            }
            if c.selected {
                current = Some((c, total));
            }
        }
        let Some((best, best_total)) = best else {
            return (None, retry_at);
        };
        if let Some((current, current_total)) = current {
            if current.neighbour != best.neighbour {
                let margin = self.cfg.significant_metric_change;
                let clearly_better =
                    best_total.0 < current_total.0.saturating_sub(margin) || best.metric.0 == 0;
                if !clearly_better {
                    return (Some(current.neighbour), retry_at);
                }
            }
        }
        (Some(best.neighbour), retry_at)
    }

    /// Feasibility across router ids of one subnet.
    ///
    /// Feasibility is kept per source (subnet, router id), and a restarted node comes
    /// back under a new router id. While routes of both incarnations are around, one
    /// node can pick the old source through a neighbour that has just picked the new
    /// one through it, and per-source feasibility cannot see the loop. So a route must
    /// also beat what we recently advertised for every *other* source of the subnet:
    /// along any chain of next hops the smallest recently advertised metric then
    /// strictly decreases, whatever the sources, and no chain can close. Neighbours
    /// hear of every change of source at once (see `apply_selection`), so the
    /// constraint only has to outlast messages in flight: it lapses
    /// [`RouterConfig::retracted_hold`](super::RouterConfig::retracted_hold) after
    /// the advertisement, and no sooner than that after the end of any silence of a
    /// neighbour that began within that time of it. A silent link keeps what is sent
    /// on it and delivers it when it wakes, possibly long after; until the neighbour
    /// is heard again (or its connection closes) the advertisement may still be on
    /// its way.
    ///
    /// Returns when to look again if the constraint holds the route back.
    fn feasible_across_sources(
        &self,
        now: Instant,
        subnet: &Subnet,
        r: &RouteEntry,
    ) -> Result<(), Instant> {
        let window = self.cfg.retracted_hold;
        let latest = self.table.latest(*subnet);
        let lapse = self
            .table
            .sources_of(*subnet)
            .filter(|(id, _)| *id != r.router_id)
            .filter(|(_, fd)| !fd.recent.is_infinite() && r.metric >= fd.recent)
            .filter_map(|(id, fd)| match latest {
                // What we last said about the subnet is this router id, finite: our
                // neighbours hold it, and may route by it, until we say otherwise.
                Some((_, Some(last))) if last == id => Some(now + window),
                // Otherwise they hold it until our later message reaches them.
                Some((at, _)) => self.in_flight_until(now, fd.recent_at.max(at), window),
                None => self.in_flight_until(now, fd.recent_at, window),
            })
            .max();
        lapse.map_or(Ok(()), |at| Err(at + Duration::from_millis(1)))
    }

    /// Sources (subnet, router id) the table may hold in all: twice the subnets.
    pub(super) fn max_sources(&self) -> usize {
        self.cfg.limits.max_subnets.saturating_mul(2)
    }

    /// Makes room in a full subnet of the source table for a route of a router id
    /// it does not hold, if one of the routes offers that: the least recently
    /// advertised source goes, unless it is the selected route's or what we sent
    /// for it may still be on its way (dropping its feasibility distance is safe
    /// only once no neighbour can act on an advertisement of it any more). Counted.
    fn make_room(&mut self, now: Instant, subnet: Subnet) {
        if !self.table.subnet_full(subnet) {
            return;
        }
        let wants_new = self
            .table
            .routes(&subnet)
            .any(|r| !r.metric.is_infinite() && self.table.source(&r.source(subnet)).is_none());
        if !wants_new {
            return;
        }
        let window = self.cfg.retracted_hold;
        let selected = self.table.selected(&subnet).map(|r| r.router_id);
        let evictable: Vec<crate::identity::RouterId> = self
            .table
            .sources_of(subnet)
            .filter(|(id, fd)| {
                Some(*id) != selected
                    && self.in_flight_until(now, fd.recent_at, window).is_none()
                    && self.in_flight_until(now, fd.last_sent, window).is_none()
            })
            .map(|(id, _)| id)
            .collect();
        if self
            .table
            .evict_oldest(subnet, |id, _| evictable.contains(&id))
        {
            self.stats.sources_evicted += 1;
        }
    }

    /// Until when something we sent at `sent` may still be on its way to a
    /// neighbour (`None` if it has surely arrived by `now`): `window` after sending,
    /// and `window` after the end of a silence that began no earlier than `window`
    /// before it. An ongoing silence answers `now + window`, to look again then.
    fn in_flight_until(&self, now: Instant, sent: Instant, window: Duration) -> Option<Instant> {
        let mut until = sent + window;
        for s in self.silences.iter().filter(|s| sent + window >= s.from) {
            until = until.max(s.until.unwrap_or(now) + window);
        }
        (now <= until).then_some(until)
    }

    /// Re-runs selection for `subnet` after a change, given the selected route as it
    /// was before the change; sends what the change calls for. Returns whether a
    /// triggered update went out.
    pub(super) fn apply_selection(
        &mut self,
        now: Instant,
        subnet: Subnet,
        old: Option<RouteEntry>,
    ) -> bool {
        self.make_room(now, subnet);
        let (best, retry_at) = self.best_route(now, &subnet);
        if let Some(at) = retry_at {
            self.reselect.insert((at, subnet));
        }
        self.table.select(subnet, best);
        let new = self.table.selected(&subnet);
        let old_usable = old.filter(|o| !o.metric.is_infinite());
        if new.is_none() {
            if let Some(o) = old {
                self.send_seqno_request(now, o.source(subnet), None, None);
            }
        }
        let margin = self.cfg.significant_metric_change;
        let triggered = match (&old, &new) {
            (Some(o), Some(n)) => {
                n.router_id != o.router_id || n.metric.0.abs_diff(o.metric.0) > margin
            }
            (None, Some(_)) | (Some(_), None) => true,
            (None, None) => false,
        };
        if triggered {
            // Split horizon keeps a route from going back to its next hop. When the
            // route changes source (router id), the new next hop may still hold our
            // previous advertisement of another source, which feasibility (kept per
            // source) does not protect: it could select us while we select it. So
            // the new next hop hears about the change too; for its own source it
            // will find our route through it unfeasible.
            let source_changed = match (&old, &new) {
                (Some(o), Some(n)) => o.router_id != n.router_id,
                _ => false,
            };
            self.send_triggered_update(now, subnet, !source_changed);
        }
        match (old_usable, new) {
            (None, Some(_)) => self.events.push_back(Event::RouteUsable(subnet)),
            (Some(_), None) => self.events.push_back(Event::RouteLost(subnet)),
            _ => {}
        }
        triggered
    }

    /// Withdraws every route learned from `peer` (upstream's "handle dead
    /// peer").
    pub(super) fn lose_routes_via(&mut self, now: Instant, peer: PeerId) {
        for subnet in self.table.subnets_via(peer) {
            self.withdraw_route(now, subnet, peer);
        }
    }

    /// A route reached its expiry.
    pub(super) fn expire_route(&mut self, now: Instant, subnet: Subnet, peer: PeerId) {
        self.withdraw_route(now, subnet, peer);
    }

    /// Takes one route away: an unselected one goes at once; a selected one becomes
    /// a retraction held for the retracted hold, and selection runs again.
    fn withdraw_route(&mut self, now: Instant, subnet: Subnet, peer: PeerId) {
        let Some(entry) = self.table.route(&subnet, peer) else {
            return;
        };
        if !entry.selected {
            self.table.remove_route(subnet, peer);
            self.drop_if_empty(subnet);
            return;
        }
        let hold = self.cfg.retracted_hold;
        self.table.modify_route(subnet, peer, |e| {
            e.metric = Metric::INFINITE;
            e.expires = now + hold;
        });
        self.apply_selection(now, subnet, Some(entry));
    }

    // ----- sending ---------------------------------------------------------------

    /// The update advertising selected route `r` of `subnet`.
    fn route_update(
        &self,
        now: Instant,
        subnet: Subnet,
        r: &RouteEntry,
        via_cost: Metric,
    ) -> Update {
        let expired = r.expires <= now;
        Update {
            interval: if r.metric.is_infinite() && expired {
                Interval(0)
            } else {
                Interval::from_duration(self.cfg.update_interval)
            },
            seqno: r.seqno,
            metric: r.metric.saturating_add(via_cost),
            subnet,
            router_id: r.router_id,
        }
    }

    /// The retraction upstream sends for a subnet without a selected route: our own
    /// router id and seqno, infinite metric (a quirk of upstream's we mirror).
    fn retraction(&self, subnet: Subnet) -> Update {
        Update {
            interval: Interval::from_duration(self.cfg.update_interval),
            seqno: self.seqno,
            metric: Metric::INFINITE,
            subnet,
            router_id: self.router_id,
        }
    }

    fn own_update(&self) -> Update {
        Update {
            interval: Interval::from_duration(self.cfg.update_interval),
            seqno: self.seqno,
            metric: Metric(0),
            subnet: self.own_subnet,
            router_id: self.router_id,
        }
    }

    /// Sends an update after recording it in the source table, as every update we
    /// send is.
    pub(super) fn send_recorded(&mut self, now: Instant, to: PeerId, u: Update) {
        self.record_sent(now, &u);
        self.send(to, Tlv::Update(u));
    }

    fn record_sent(&mut self, now: Instant, u: &Update) {
        let key = SourceKey {
            subnet: u.subnet,
            router_id: u.router_id,
        };
        let settled = self.table.source(&key).map_or(true, |fd| {
            self.in_flight_until(now, fd.recent_at, self.cfg.retracted_hold)
                .is_none()
        });
        self.table.record_sent(key, u.seqno, u.metric, now, settled);
    }

    /// The current state of `subnet` to every neighbour but its next hop.
    ///
    /// Unreachable neighbours get updates too: their connection is still open, and a
    /// stream delivers in order or not at all, so when one comes back it learns
    /// every change, retractions included. Skipping it would leave it holding routes
    /// through us that we no longer have, which can close a loop.
    pub(super) fn send_triggered_update(
        &mut self,
        now: Instant,
        subnet: Subnet,
        split_horizon: bool,
    ) {
        if self.is_leaf() {
            // A stub announces nothing but its own subnet.
            return;
        }
        let selected = self.table.selected(&subnet);
        let u = match &selected {
            Some(r) => self.route_update(now, subnet, r, self.cost(r.neighbour)),
            None => self.retraction(subnet),
        };
        let skip = selected.filter(|_| split_horizon).map(|r| r.neighbour);
        let peers: Vec<PeerId> = self
            .neighbours
            .keys()
            .copied()
            .filter(|p| Some(*p) != skip)
            .collect();
        if peers.is_empty() {
            return;
        }
        self.record_sent(now, &u);
        for peer in peers {
            self.send(peer, Tlv::Update(u));
        }
    }

    /// The selected route of `subnet` to one neighbour, unless it is the next hop.
    pub(super) fn send_route_update(&mut self, now: Instant, subnet: Subnet, to: PeerId) {
        if self.is_leaf() {
            return;
        }
        let Some(r) = self.table.selected(&subnet) else {
            return;
        };
        if r.neighbour == to {
            return;
        }
        let u = self.route_update(now, subnet, &r, self.cost(r.neighbour));
        self.send_recorded(now, to, u);
    }

    /// Our own route to one neighbour, or to every one.
    pub(super) fn announce_own(&mut self, now: Instant, to: Option<PeerId>) {
        let u = self.own_update();
        let peers = match to {
            Some(p) => vec![p],
            None => self.neighbours.keys().copied().collect(),
        };
        for peer in peers {
            self.send_recorded(now, peer, u);
        }
    }

    /// Every selected route not through `to`, then our own (the answer to a wildcard
    /// route request).
    pub(super) fn send_full_table(&mut self, now: Instant, to: PeerId) {
        if self.is_leaf() {
            self.announce_own(now, Some(to));
            return;
        }
        let selected: Vec<(Subnet, RouteEntry)> = self
            .table
            .iter()
            .filter_map(|(s, e)| match e {
                super::SubnetEntry::Exists { mut routes, .. } => {
                    routes.next().filter(|r| r.selected).map(|r| (s, r))
                }
                super::SubnetEntry::Queried { .. } => None,
            })
            .filter(|(_, r)| r.neighbour != to)
            .collect();
        for (subnet, r) in selected {
            let u = self.route_update(now, subnet, &r, self.cost(r.neighbour));
            self.send_recorded(now, to, u);
        }
        self.announce_own(now, Some(to));
    }

    /// The reply to a seqno request: the selected route with the *requester's* link
    /// cost added, an upstream quirk we mirror.
    pub(super) fn send_seqno_reply(
        &mut self,
        now: Instant,
        r: &RouteEntry,
        subnet: Subnet,
        to: PeerId,
    ) {
        let u = self.route_update(now, subnet, r, self.cost(to));
        self.send_recorded(now, to, u);
    }
}
