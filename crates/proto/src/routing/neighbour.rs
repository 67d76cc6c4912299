//! Neighbours: one per transport connection, with the link cost measured from
//! Hello/IHU round trips.

use std::fmt;
use std::time::Duration;

use crate::identity::RouterId;
use crate::time::Instant;
use crate::wire::{Metric, SeqNo};

/// The driver's handle for one peer connection. Two connections to the same node are
/// two neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// The transport under a neighbour, which fixes the static part of its link cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Plain TCP.
    Tcp {
        /// Whether the peer's address is IPv4 (or IPv4-mapped).
        ipv4: bool,
    },
    /// TLS over TCP (private networks); costs as TCP.
    Tls {
        /// Whether the peer's address is IPv4 (or IPv4-mapped).
        ipv4: bool,
    },
    /// QUIC.
    Quic {
        /// Whether the peer's address is IPv4 (or IPv4-mapped).
        ipv4: bool,
    },
    /// Linux VM socket.
    Vsock,
    /// A link in the simulator, with the static cost given.
    Virtual(u16),
}

impl LinkKind {
    /// The static cost upstream adds to the measured one.
    pub const fn static_cost(self) -> Metric {
        Metric(match self {
            LinkKind::Tcp { ipv4: true } | LinkKind::Tls { ipv4: true } => 15,
            LinkKind::Tcp { ipv4: false } | LinkKind::Tls { ipv4: false } => 10,
            LinkKind::Quic { ipv4: true } => 12,
            LinkKind::Quic { ipv4: false } => 7,
            LinkKind::Vsock => 5,
            LinkKind::Virtual(c) => c,
        })
    }
}

/// A stretch of time in which a neighbour was silent: from the last thing heard
/// before it to the first thing heard after it (`None` while it lasts). What we sent
/// the neighbour around then may have sat in its connection and arrive late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Silence {
    pub(crate) peer: PeerId,
    pub(crate) from: Instant,
    pub(crate) until: Option<Instant>,
}

/// What we know of one neighbour.
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    pub(crate) kind: LinkKind,
    pub(crate) hello_seqno: SeqNo,
    pub(crate) last_hello_sent: Instant,
    pub(crate) last_ihu: Instant,
    /// Last time anything at all arrived from this neighbour.
    pub(crate) last_heard: Instant,
    /// Smoothed round-trip estimate in milliseconds, upstream's "link cost".
    pub(crate) link_cost: u16,
    /// False while the neighbour is silent past the liveness timeout: it is then
    /// routed around, though its connection stays open.
    pub(crate) reachable: bool,
    /// While unreachable: when it was first heard again. It is reachable again
    /// only once it answers a Hello sent since (see `Router::handle_tlv`).
    pub(crate) waking_since: Option<Instant>,
    /// Who is at the other end: the router id of the first update it sent for a
    /// subnet of its own (metric 0), which every node sends on every new link. Two
    /// links with the same key here lead to the same node, whatever their
    /// addresses (see `Router::neighbour_router_id`).
    pub(crate) identity: Option<RouterId>,
}

impl Neighbour {
    pub(crate) fn new(kind: LinkKind, now: Instant, initial_cost: u16) -> Self {
        Self {
            kind,
            hello_seqno: SeqNo(0),
            last_hello_sent: now,
            last_ihu: now,
            last_heard: now,
            link_cost: initial_cost,
            reachable: true,
            waking_since: None,
            identity: None,
        }
    }

    /// Marks the neighbour unreachable.
    pub(crate) fn fall_silent(&mut self) {
        self.reachable = false;
        self.waking_since = None;
    }

    /// Marks the neighbour reachable again.
    pub(crate) fn revive(&mut self) {
        self.reachable = true;
        self.waking_since = None;
    }

    /// `C(n)`: the cost of reaching anything through this neighbour; infinite while it
    /// is unreachable.
    pub(crate) fn cost(&self) -> Metric {
        if !self.reachable {
            return Metric::INFINITE;
        }
        Metric(self.link_cost).saturating_add(self.kind.static_cost())
    }

    /// Folds an IHU into the link cost. Upstream's sample is the milliseconds since
    /// the last Hello we sent, truncated to 16 bits, and the average weights the old
    /// value 9:1 in integer arithmetic; we do the same so that both ends of a link
    /// agree on its cost.
    pub(crate) fn record_ihu(&mut self, now: Instant) {
        let sample = (now - self.last_hello_sent).as_millis() as u16;
        self.link_cost = ((u32::from(self.link_cost) * 9 + u32::from(sample)) / 10) as u16;
        self.last_ihu = now;
    }

    /// Whether the neighbour has been silent for longer than `timeout`.
    pub(crate) fn silent_for(&self, now: Instant, timeout: Duration) -> bool {
        now - self.last_heard > timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ipv4_tcp_link_costs_1015() {
        let n = Neighbour::new(LinkKind::Tcp { ipv4: true }, Instant::ZERO, 1000);
        assert_eq!(n.cost(), Metric(1015));
    }

    #[test]
    fn ihu_averages_nine_to_one() {
        let mut n = Neighbour::new(LinkKind::Quic { ipv4: false }, Instant::ZERO, 1000);
        n.record_ihu(Instant::from_epoch(Duration::from_millis(10)));
        assert_eq!(n.link_cost, 901);
        assert_eq!(n.cost(), Metric(908));
    }

    #[test]
    fn rtt_sample_wraps_at_16_bits() {
        let mut n = Neighbour::new(LinkKind::Vsock, Instant::ZERO, 0);
        n.record_ihu(Instant::from_epoch(Duration::from_millis(65_536 + 100)));
        assert_eq!(n.link_cost, 10);
    }

    #[test]
    fn unreachable_neighbour_costs_infinity() {
        let mut n = Neighbour::new(LinkKind::Vsock, Instant::ZERO, 0);
        n.reachable = false;
        assert!(n.cost().is_infinite());
    }
}
