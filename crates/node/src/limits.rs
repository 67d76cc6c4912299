//! What a node lets remote parties make it spend, and the token bucket that
//! enforces the rates.
//!
//! Sizes of tables a peer can grow (routes, subnets, requests) are the router's
//! [`mycelium_proto::routing::Limits`]; the ones here are the node's own: how
//! many peers, how fast they may connect, and how much one link may queue or send.

use std::time::{Duration, Instant};

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
}
