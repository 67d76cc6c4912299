//! What a node lets remote parties make it spend, and the two mechanisms that
//! enforce the rates: a token bucket, and a filter of recently seen data packets.
//!
//! Sizes of tables a peer can grow (routes, subnets, requests) are the router's
//! [`mycelium_proto::routing::Limits`]; the ones here are the node's own: how
//! many peers, how fast they may connect, and how much one link may queue or send.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::hash::BuildHasher;

/// Bounds on peers and links. [`Default`] suits a public node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Inbound peers kept at once (TCP, TLS and QUIC together); connections
    /// beyond it are closed at once.
    pub max_inbound_peers: usize,
    /// Inbound connection attempts accepted per second, over every listener;
    /// attempts beyond the rate (after a burst of twice as many) are closed
    /// before any work is done for them. 0 turns the limit off.
    pub connections_per_second: u32,
    /// Data packets one link may have queued for sending; more are dropped.
    pub link_data_queue: usize,
    /// Control TLVs read from one link per second. A link over the rate (after
    /// a burst of [`Limits::link_control_burst`]) is not read until it is back
    /// under it, so a flooding peer slows down only itself. 0 turns the limit off.
    pub link_control_rate: u32,
    /// Control TLVs one link may send at once before the rate applies: enough for
    /// a full routing table on connect.
    pub link_control_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_inbound_peers: 1_024,
            connections_per_second: 64,
            link_data_queue: 2_048,
            link_control_rate: 20_000,
            link_control_burst: 200_000,
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `rate` 0 never runs dry.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes `n` tokens if there are that many.
    pub(crate) fn try_take(&mut self, n: u32, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt if need be, and says how long to wait
    /// until the debt is paid (zero when there was no debt).
    pub(crate) fn take(&mut self, n: u32, now: Instant) -> Duration {
        if self.rate == 0.0 {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= f64::from(n);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Slots of the replay filter: 4 MiB, about a second of packets at full speed and
/// far longer at ordinary rates.
const REPLAY_SLOTS: usize = 1 << 19;

/// Recently opened data packets, by source and nonce, so that a copy of one is
/// dropped instead of delivered twice.
///
/// Upstream's data packets carry no sequence number, only a random 96-bit nonce,
/// so there is no window to slide; instead every opened packet's (source, nonce)
/// is hashed with a per-node random key into a direct-mapped table of 64-bit
/// fingerprints, and a packet whose fingerprint is already in its slot is a
/// replay. Honest senders never repeat a nonce, and two different packets share
/// a fingerprint with probability 2^-64, so nothing genuine is dropped. A replay
/// is caught as long as its slot has not been reused since, which makes the
/// window a number of packets, not a time. Only packets that decrypted are
/// entered, so nobody without a key can push genuine entries out any faster
/// than its own traffic does. Lock-free: one atomic swap per packet.
pub(crate) struct ReplayFilter {
    slots: Box<[AtomicU64]>,
    key: foldhash::fast::RandomState,
}

impl Default for ReplayFilter {
    fn default() -> Self {
        Self {
            slots: (0..REPLAY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            key: foldhash::fast::RandomState::default(),
        }
    }
}

impl ReplayFilter {
    /// Records a packet; true if the same one was recorded before.
    pub(crate) fn seen(&self, src: Ipv6Addr, nonce: &[u8]) -> bool {
        let print = self.key.hash_one((src, nonce)).max(1);
        // The slot index uses the low bits and the whole hash is compared.
        let slot = (print as usize) & (REPLAY_SLOTS - 1);
        self.slots[slot].swap(print, Ordering::Relaxed) == print
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_burst_through_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert!((0..20).all(|_| b.try_take(1, t0)));
        assert!(!b.try_take(1, t0));
        assert!(b.try_take(5, t0 + Duration::from_millis(500)));
        assert!(!b.try_take(1, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_bucket_in_debt_says_how_long_to_wait() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert_eq!(b.take(10, t0), Duration::ZERO);
        let wait = b.take(50, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!((0..1000).all(|_| b.try_take(1, t0)));
        assert_eq!(b.take(1_000_000, t0), Duration::ZERO);
    }

    #[test]
    fn the_filter_catches_a_copy_and_not_a_new_nonce() {
        let f = ReplayFilter::default();
        let src: Ipv6Addr = "400::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        assert!(!f.seen(src, &[1; 12]));
        assert!(f.seen(src, &[1; 12]));
        assert!(!f.seen(src, &[2; 12]));
        let other: Ipv6Addr = "400::2".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        assert!(!f.seen(other, &[1; 12]));
    }

    #[test]
    fn the_filter_drops_nothing_from_a_stream_of_fresh_nonces() {
        let f = ReplayFilter::default();
        let src = Ipv6Addr::LOCALHOST;
        let dups = (0u64..1_000_000)
            .filter(|i| {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&i.to_le_bytes());
                f.seen(src, &nonce)
            })
            .count();
        assert_eq!(dups, 0);
    }
}
