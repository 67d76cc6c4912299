//! The replay filter: data packets opened recently, so that a copy of one is
//! dropped instead of delivered twice.

use std::hash::BuildHasher;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Slots of the filter: 64 KiB, so that the check of every delivered packet finds
/// its slot in the cache (at 4 MiB, and still at 512 KiB, the random slot missed
/// the cache and the check took a tenth of a receiving node's CPU): 8,192 packets,
/// a few seconds at ordinary rates, a fortieth of a second at full speed.
const SLOTS: usize = 1 << 13;

/// Recently opened data packets, by source and nonce.
///
/// Upstream's data packets carry no sequence number, only a random 96-bit nonce,
/// so there is no window to slide; instead every opened packet's (source, nonce)
/// is hashed with a per-node random key into a direct-mapped table of 64-bit
/// fingerprints, and a packet whose fingerprint is already in its slot is a
/// replay. Honest senders never repeat a nonce, and two different packets share
/// a fingerprint with probability 2^-64, so nothing genuine is dropped. A replay
/// is caught as long as its slot has not been reused since, which makes the
/// window a number of packets, not a time: the filter stops copies sent on at
/// once (a relay that duplicates what it forwards), not a patient attacker, whom
/// no window of upstream's format can stop. Only packets that decrypted are
/// entered, so nobody without a key can push genuine entries out any faster than
/// its own traffic does. Lock-free and without a locked instruction: a load and a
/// store per packet (two tasks opening copies of one packet at the same instant
/// could both pass; the next copy is caught). The table is made on first use, so
/// an idle node does not hold it.
pub(crate) struct ReplayFilter {
    slots: OnceLock<Box<[AtomicU64]>>,
    key: foldhash::fast::RandomState,
}

impl Default for ReplayFilter {
    fn default() -> Self {
        Self {
            slots: OnceLock::new(),
            key: foldhash::fast::RandomState::default(),
        }
    }
}

impl ReplayFilter {
    /// Records a packet; true if the same one was recorded before.
    pub(crate) fn seen(&self, src: Ipv6Addr, nonce: &[u8]) -> bool {
        let print = self.key.hash_one((src, nonce)).max(1);
        let slots = self
            .slots
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        // The slot index uses the low bits and the whole hash is compared.
        let slot = &slots[(print as usize) & (SLOTS - 1)];
        if slot.load(Ordering::Relaxed) == print {
            return true;
        }
        slot.store(print, Ordering::Relaxed);
        false
    }

    /// Bytes of slots made so far.
    #[cfg(test)]
    fn resident_bytes(&self) -> usize {
        self.slots.get().map_or(0, |s| s.len() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_idle_filter_holds_no_slots() {
        let f = ReplayFilter::default();
        assert_eq!(f.resident_bytes(), 0);
        f.seen(Ipv6Addr::LOCALHOST, &[7; 12]);
        assert_eq!(f.resident_bytes(), SLOTS * 8);
    }
}
