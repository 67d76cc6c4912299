//! The reference routing table: per subnet, the routes in a `Vec` (or a pending
//! query), and ordered sets for the expiries. What the compact store replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use crate::identity::PublicKey;
use crate::routing::neighbour::PeerId;
use crate::routing::table::RouteEntry;
use crate::routing::{new_map, Map};
use crate::subnet::Subnet;
use crate::time::Instant;

/// What the table holds for one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubnetEntry {
    /// Known routes (the selected one first, if any) and the public key fixed by the
    /// first accepted update.
    Exists {
        /// The key whose derived address lies in the subnet.
        key: PublicKey,
        /// The routes.
        routes: Vec<RouteEntry>,
    },
    /// A route request is in flight.
    Queried {
        /// When the query gives up.
        expires: Instant,
    },
}

#[derive(Debug)]
pub(crate) struct RouteTable {
    subnets: Map<Subnet, SubnetEntry>,
    /// How many subnets of each prefix length exist, so a longest-prefix lookup only
    /// tries lengths that occur (in practice just /64).
    prefix_lens: BTreeMap<u8, usize>,
    route_expiry: BTreeSet<(Instant, Subnet, PeerId)>,
    query_expiry: BTreeSet<(Instant, Subnet)>,
    /// Routes per neighbour, for the per-neighbour bound.
    routes_of: Map<PeerId, usize>,
    route_count: usize,
    selected_count: usize,
}

impl RouteTable {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            subnets: new_map(seed),
            prefix_lens: BTreeMap::new(),
            route_expiry: BTreeSet::new(),
            query_expiry: BTreeSet::new(),
            routes_of: new_map(seed),
            route_count: 0,
            selected_count: 0,
        }
    }

    /// The compact store logs changes for forwarding snapshots; the reference
    /// does not (the differential test compares what the tables hold).
    fn changed(&mut self, _subnet: Subnet) {}

    pub(crate) fn get(&self, subnet: &Subnet) -> Option<&SubnetEntry> {
        self.subnets.get(subnet)
    }

    pub(crate) fn len(&self) -> usize {
        self.subnets.len()
    }

    pub(crate) fn route_count(&self) -> usize {
        self.route_count
    }

    /// Number of subnets with a selected route.
    pub(crate) fn selected_count(&self) -> usize {
        self.selected_count
    }

    pub(crate) fn routes_of(&self, neighbour: PeerId) -> usize {
        self.routes_of.get(&neighbour).copied().unwrap_or(0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Subnet, &SubnetEntry)> {
        self.subnets.iter()
    }

    /// The entry of the longest prefix containing `addr`.
    pub(crate) fn lookup(&self, addr: Ipv6Addr) -> Option<(Subnet, &SubnetEntry)> {
        self.prefix_lens.keys().rev().find_map(|&len| {
            let key = Subnet::new(IpAddr::V6(addr), len).ok()?.network();
            self.subnets.get(&key).map(|e| (key, e))
        })
    }

    pub(crate) fn routes(&self, subnet: &Subnet) -> &[RouteEntry] {
        match self.subnets.get(subnet) {
            Some(SubnetEntry::Exists { routes, .. }) => routes,
            _ => &[],
        }
    }

    pub(crate) fn selected(&self, subnet: &Subnet) -> Option<&RouteEntry> {
        self.routes(subnet).first().filter(|r| r.selected)
    }

    pub(crate) fn route(&self, subnet: &Subnet, neighbour: PeerId) -> Option<&RouteEntry> {
        self.routes(subnet)
            .iter()
            .find(|r| r.neighbour == neighbour)
    }

    /// The subnets with a route through `neighbour`. Scans the table: it runs when a
    /// neighbour goes away, which is rare next to the per-route memory an index
    /// would cost.
    pub(crate) fn subnets_via(&self, neighbour: PeerId) -> Vec<Subnet> {
        if self.routes_of(neighbour) == 0 {
            return Vec::new();
        }
        self.subnets
            .iter()
            .filter(|(_, e)| match e {
                SubnetEntry::Exists { routes, .. } => {
                    routes.iter().any(|r| r.neighbour == neighbour)
                }
                SubnetEntry::Queried { .. } => false,
            })
            .map(|(s, _)| *s)
            .collect()
    }

    /// Creates the entry for `subnet` with its owner's key, replacing a query.
    pub(crate) fn insert_subnet(&mut self, subnet: Subnet, key: PublicKey) {
        self.changed(subnet);
        if let Some(SubnetEntry::Queried { expires }) = self.subnets.get(&subnet) {
            self.query_expiry.remove(&(*expires, subnet));
        }
        let fresh = SubnetEntry::Exists {
            key,
            routes: Vec::new(),
        };
        if self.subnets.insert(subnet, fresh).is_none() {
            *self.prefix_lens.entry(subnet.prefix_len()).or_default() += 1;
        }
    }

    /// Marks an unknown subnet as queried until `expires`. Existing entries stay.
    pub(crate) fn insert_query(&mut self, subnet: Subnet, expires: Instant) -> bool {
        if self.subnets.contains_key(&subnet) {
            return false;
        }
        self.subnets
            .insert(subnet, SubnetEntry::Queried { expires });
        *self.prefix_lens.entry(subnet.prefix_len()).or_default() += 1;
        self.query_expiry.insert((expires, subnet));
        true
    }

    /// Removes a subnet and every route to it.
    pub(crate) fn remove_subnet(&mut self, subnet: &Subnet) {
        self.changed(*subnet);
        let Some(entry) = self.subnets.remove(subnet) else {
            return;
        };
        if let Some(n) = self.prefix_lens.get_mut(&subnet.prefix_len()) {
            *n -= 1;
            if *n == 0 {
                self.prefix_lens.remove(&subnet.prefix_len());
            }
        }
        match entry {
            SubnetEntry::Queried { expires } => {
                self.query_expiry.remove(&(expires, *subnet));
            }
            SubnetEntry::Exists { routes, .. } => {
                for r in routes {
                    self.unindex(*subnet, &r);
                }
            }
        }
    }

    fn index(&mut self, subnet: Subnet, r: &RouteEntry) {
        self.route_expiry.insert((r.expires, subnet, r.neighbour));
        *self.routes_of.entry(r.neighbour).or_default() += 1;
        self.route_count += 1;
    }

    fn unindex(&mut self, subnet: Subnet, r: &RouteEntry) {
        if r.selected {
            self.selected_count -= 1;
            self.changed(subnet);
        }
        self.route_expiry.remove(&(r.expires, subnet, r.neighbour));
        if let Some(n) = self.routes_of.get_mut(&r.neighbour) {
            *n -= 1;
            if *n == 0 {
                self.routes_of.remove(&r.neighbour);
            }
        }
        self.route_count -= 1;
    }

    /// Adds a route to an existing subnet (unselected, at the back). Returns false if
    /// the subnet does not exist or already has a route through that neighbour.
    pub(crate) fn insert_route(&mut self, subnet: Subnet, route: RouteEntry) -> bool {
        let Some(SubnetEntry::Exists { routes, .. }) = self.subnets.get_mut(&subnet) else {
            return false;
        };
        if routes.iter().any(|r| r.neighbour == route.neighbour) {
            return false;
        }
        let route = RouteEntry {
            selected: false,
            ..route
        };
        // Most subnets have one to four routes; grow one at a time rather than
        // doubling, since the table holds one list per subnet in the network.
        routes.reserve_exact(1);
        routes.push(route);
        self.index(subnet, &route);
        true
    }

    /// Changes one route in place; the indexes follow its new expiry.
    pub(crate) fn modify_route(
        &mut self,
        subnet: Subnet,
        neighbour: PeerId,
        f: impl FnOnce(&mut RouteEntry),
    ) {
        let Some(SubnetEntry::Exists { routes, .. }) = self.subnets.get_mut(&subnet) else {
            return;
        };
        let Some(r) = routes.iter_mut().find(|r| r.neighbour == neighbour) else {
            return;
        };
        let before = r.expires;
        let was_selected = r.selected;
        f(r);
        r.neighbour = neighbour;
        let unselected = was_selected && !r.selected;
        if unselected {
            self.selected_count -= 1;
        }
        // Selecting goes through `select`, which keeps the selected route first.
        debug_assert!(was_selected || !r.selected, "modify_route cannot select");
        if r.expires != before {
            let after = r.expires;
            self.route_expiry.remove(&(before, subnet, neighbour));
            self.route_expiry.insert((after, subnet, neighbour));
        }
        if unselected {
            self.changed(subnet);
        }
    }

    /// Removes one route. The subnet entry stays, even if now empty.
    pub(crate) fn remove_route(&mut self, subnet: Subnet, neighbour: PeerId) -> Option<RouteEntry> {
        let Some(SubnetEntry::Exists { routes, .. }) = self.subnets.get_mut(&subnet) else {
            return None;
        };
        let at = routes.iter().position(|r| r.neighbour == neighbour)?;
        let r = routes.remove(at);
        self.unindex(subnet, &r);
        Some(r)
    }

    /// Makes the route through `neighbour` the selected one (moved to the front), or
    /// unselects every route when `None`.
    pub(crate) fn select(&mut self, subnet: Subnet, neighbour: Option<PeerId>) {
        let Some(SubnetEntry::Exists { routes, .. }) = self.subnets.get_mut(&subnet) else {
            return;
        };
        let before = routes.iter().find(|r| r.selected).map(|r| r.neighbour);
        let had = before.is_some();
        for r in routes.iter_mut() {
            r.selected = Some(r.neighbour) == neighbour;
        }
        let has = routes.iter().any(|r| r.selected);
        match (had, has) {
            (false, true) => self.selected_count += 1,
            (true, false) => self.selected_count -= 1,
            _ => {}
        }
        if let Some(at) = routes.iter().position(|r| r.selected) {
            routes[..=at].rotate_right(1);
        }
        if before != neighbour {
            self.changed(subnet);
        }
    }

    pub(crate) fn next_route_expiry(&self) -> Option<Instant> {
        self.route_expiry.first().map(|(t, _, _)| *t)
    }

    pub(crate) fn pop_expired_route(&mut self, now: Instant) -> Option<(Subnet, PeerId)> {
        let &(t, subnet, nbr) = self.route_expiry.first()?;
        (t <= now).then_some((subnet, nbr))
    }

    pub(crate) fn next_query_expiry(&self) -> Option<Instant> {
        self.query_expiry.first().map(|(t, _)| *t)
    }

    pub(crate) fn pop_expired_query(&mut self, now: Instant) -> Option<Subnet> {
        let &(t, subnet) = self.query_expiry.first()?;
        (t <= now).then_some(subnet)
    }
}
