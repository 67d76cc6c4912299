//! What the node's handle answers about the router and the packet counters, as
//! the API shows it.

use std::net::Ipv6Addr;
use std::time::Duration;

use mycelium_proto::routing::RouterStats;
use mycelium_proto::wire::{Metric, SeqNo};
use mycelium_proto::Subnet;

use crate::stats::Count;

/// One route as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination.
    pub subnet: Subnet,
    /// The connection identifier of the next hop (`TCP a <-> b`, `QUIC -> b`).
    pub next_hop: String,
    /// The metric as the next hop announced it (our link cost not included).
    pub metric: Metric,
    /// The originator's sequence number.
    pub seqno: SeqNo,
}

/// The routing table as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutesView {
    /// One per subnet with a selected route.
    pub selected: Vec<RouteInfo>,
    /// Every route that is not selected, retracted ones included.
    pub fallback: Vec<RouteInfo>,
    /// Subnets being looked for, with the time until the query gives up.
    pub queried: Vec<(Subnet, Duration)>,
}

/// The router's counters and table sizes, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterView {
    /// What the router refused or dropped.
    pub stats: RouterStats,
    /// Subnets in the table (known or queried).
    pub subnets: usize,
    /// Route entries.
    pub routes: usize,
    /// Subnets with a selected route.
    pub selected: usize,
    /// Neighbours the router knows.
    pub neighbours: usize,
    /// Packets waiting for a route or a key.
    pub pending_packets: usize,
    /// In leaf mode, the subnets the route cache holds at most.
    pub leaf_capacity: Option<usize>,
}

/// Data packets per address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketStatistics {
    /// By source address.
    pub by_source: Vec<(Ipv6Addr, Count)>,
    /// By destination address.
    pub by_destination: Vec<(Ipv6Addr, Count)>,
    /// Packets whose addresses did not fit the bounded tables.
    pub untracked: u64,
}
