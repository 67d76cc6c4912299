//! A burst of small messages between two buses on a virtual clock, the inbox
//! drained while they arrive: delivery keeps close to its steady rate from the
//! first message to the last, also while a budget is full and refuses pushes, and
//! every accepted message arrives exactly once.
//!
//! Without the per-destination gate ([`BusConfig::max_sending_per_destination`])
//! this collapses: INITs past the receiver's partial-message limit are refused,
//! their timeouts back off to a second, and delivery comes in bursts with whole
//! tenths of a second of nothing between them.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use mycelium_proto::identity::SecretKey;
use mycelium_proto::messages::{BusConfig, MessageBus, NewMessage, PushError, TopicConfig};
use mycelium_proto::time::Instant;
use rand_core::RngCore;

/// Message ids: they need only be distinct.
struct Ids(u64);

impl RngCore for Ids {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let id = self.next_u64().to_be_bytes();
        let n = dest.len().min(8);
        dest[..n].copy_from_slice(&id[..n]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// One step of the virtual clock.
const STEP: Duration = Duration::from_micros(100);
/// One-way latency of a local link.
const LATENCY: Duration = Duration::from_micros(500);
/// Pushes the application tries per step: 40,000 a second, faster than the bus
/// delivers, so the sender's queue grows until a budget refuses.
const OFFERS_PER_STEP: usize = 4;
/// The reader pops a message every this many steps at most: at 1, 10,000 a
/// second, faster than the bus delivers.
/// Width of the windows the receive rate is measured over.
const WINDOW: Duration = Duration::from_millis(100);

struct Run {
    /// Time from the first push to the last pop.
    took: Duration,
    /// Messages popped in each window.
    per_window: Vec<usize>,
    /// Pushes refused by a budget.
    refused: usize,
}

/// Sends `count` messages of 100 bytes from one bus to another as fast as the
/// sender accepts them (a refused push is tried again the next step), the
/// receiver's inbox drained by a reader that pops once every `pop_every` steps.
fn burst(count: usize, cfg: BusConfig, pop_every: u32) -> Run {
    burst_over(count, cfg, pop_every, LATENCY)
}

/// [`burst`] over a path with one-way latency `latency`.
fn burst_over(count: usize, cfg: BusConfig, pop_every: u32, latency: Duration) -> Run {
    let ka = SecretKey::from_bytes([1; 32]).public_key();
    let kb = SecretKey::from_bytes([2; 32]).public_key();
    let (ia, ib) = (ka.address(), kb.address());
    let mut a = MessageBus::new(cfg.clone(), TopicConfig::default());
    let mut b = MessageBus::new(cfg, TopicConfig::default());
    let mut rng = Ids(0);
    // (arrival, sequence) → (to b?, frame)
    let mut wire = std::collections::BTreeMap::new();
    let mut seq = 0u64;
    let mut now = Instant::ZERO;
    let (mut next, mut refused) = (0usize, 0usize);
    let mut seen = BTreeSet::new();
    let mut per_window: Vec<usize> = Vec::new();
    let mut step = 0u32;
    let limit = Instant::ZERO + Duration::from_secs(300);
    while seen.len() < count {
        assert!(now < limit, "stalled at {} of {count}", seen.len());
        for _ in 0..OFFERS_PER_STEP {
            if next == count {
                break;
            }
            let mut payload = (next as u64).to_be_bytes().to_vec();
            payload.resize(100, 0x5a);
            let msg = NewMessage {
                src: ia,
                dst: ib,
                topic: Vec::new(),
                payload: Bytes::from(payload),
                reply_to: None,
                try_for: None,
            };
            match a.push(now, msg, &mut rng) {
                Ok(_) => next += 1,
                Err(PushError::QueueFull { .. }) => {
                    refused += 1;
                    break;
                }
                Err(e) => panic!("push: {e}"),
            }
        }
        step += 1;
        if step % pop_every == 0 {
            if let Some(m) = b.pop(false, None) {
                let n = u64::from_be_bytes(m.payload[..8].try_into().unwrap());
                assert!(seen.insert(n), "message {n} arrived twice");
                let w =
                    (now.saturating_since(Instant::ZERO).as_micros() / WINDOW.as_micros()) as usize;
                if per_window.len() <= w {
                    per_window.resize(w + 1, 0);
                }
                per_window[w] += 1;
            }
        }
        for (to_b, bus) in [(true, &mut a), (false, &mut b)] {
            while let Some(t) = bus.poll_transmit() {
                seq += 1;
                wire.insert((now + latency, seq), (to_b, t.frame));
            }
            while bus.poll_event().is_some() {}
        }
        now += STEP;
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to_b, frame) = entry.remove();
            if to_b {
                b.handle_frame(now, ia, ib, ka, &frame);
            } else {
                a.handle_frame(now, ib, ia, kb, &frame);
            }
        }
        for bus in [&mut a, &mut b] {
            if bus.poll_timeout().is_some_and(|t| t <= now) {
                bus.handle_timeout(now);
            }
        }
    }
    assert_eq!(seen.len(), count);
    assert!(b.pop(false, None).is_none(), "more arrived than was sent");
    Run {
        took: now.saturating_since(Instant::ZERO),
        per_window,
        refused,
    }
}

/// Asserts that `big` took at most `factor` times what `small`'s rate predicts and
/// that no window but the last fell below half the median.
fn assert_steady(small: (usize, &Run), big: (usize, &Run), factor: f64) {
    let steady = small.1.took.as_secs_f64() / small.0 as f64;
    let expected = steady * big.0 as f64;
    let took = big.1.took.as_secs_f64();
    assert!(
        took <= expected * factor,
        "{} messages took {took:.2} s; the steady rate gives {expected:.2} s",
        big.0
    );
    let full = &big.1.per_window[..big.1.per_window.len() - 1];
    let mut sorted = full.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let (at, min) = full
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .map(|(i, n)| (i, *n))
        .unwrap();
    assert!(
        min * 2 >= median,
        "window {at} received {min}, under half the median {median}: {:?}",
        big.1.per_window
    );
}

#[test]
fn a_burst_of_small_messages_is_delivered_at_the_steady_rate() {
    let small = burst(500, BusConfig::default(), 1);
    let big = burst(6_000, BusConfig::default(), 1);
    assert_eq!(
        big.refused, 0,
        "the default budgets take 6,000 small messages"
    );
    assert_steady((500, &small), (6_000, &big), 3.0);
}

#[test]
fn full_budgets_refuse_pushes_without_slowing_what_they_accepted() {
    // Budgets far below the burst, at both ends, and a reader slower than the bus:
    // the sender refuses pushes, and the receiver's inbox fills and refuses INITs
    // (the sender retries them after its timeout) while the reader drains it.
    let cfg = BusConfig {
        max_outbound_messages: 1_000,
        max_inbox_messages: 500,
        ..BusConfig::default()
    };
    let small = burst(500, BusConfig::default(), 5);
    let big = burst(6_000, cfg, 5);
    assert!(big.refused > 0, "the budget never refused");
    assert_steady((500, &small), (6_000, &big), 3.0);
}

#[test]
fn a_burst_over_a_long_path_is_pipelined() {
    // A message costs three round trips (INIT, chunk, DONE, each acknowledged), so
    // over 100 ms round trips the burst's pace is set by how many messages are on
    // their way at once: 256 by default. At the 16 of before, 2,000 messages took
    // 37.5 s here (53 a second); at 256, 2.4 s.
    let latency = Duration::from_millis(50);
    let run = burst_over(2_000, BusConfig::default(), 1, latency);
    let cfg = BusConfig::default();
    let rounds = 2_000usize.div_ceil(cfg.max_sending_per_destination);
    let ideal = latency * 2 * 3 * rounds as u32;
    assert!(
        run.took < ideal * 2,
        "2,000 messages over 100 ms round trips took {:?} (ideal {ideal:?})",
        run.took
    );
    assert_eq!(run.refused, 0);
}
