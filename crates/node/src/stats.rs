//! Counters of the data plane, shared by every task that moves packets.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the node moved and dropped. Read with [`NodeStats::get`].
#[derive(Debug, Default)]
pub struct NodeStats {
    /// IPv6 packets read from the TUN device.
    pub tun_rx: AtomicU64,
    /// IPv6 packets written to the TUN device.
    pub tun_tx: AtomicU64,
    /// Data packets forwarded for others.
    pub forwarded: AtomicU64,
    /// Data packets that failed to decrypt.
    pub decrypt_failures: AtomicU64,
    /// Packets dropped because a link's queue was full.
    pub link_queue_full: AtomicU64,
    /// Packets dropped for want of a route.
    pub no_route: AtomicU64,
    /// Packets dropped because their hop limit ran out.
    pub hop_limit_exceeded: AtomicU64,
    /// Packets dropped as malformed (bad IPv6 header, bad payload header).
    pub malformed: AtomicU64,
    /// Control packets skipped as invalid (unknown TLV and the like).
    pub control_ignored: AtomicU64,
}

impl NodeStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
