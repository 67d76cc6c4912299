//! Reassembly of inbound messages and the memory of completed
//! ones.
//!
//! A [`Partial`] collects the chunks of one message from one source. Unlike
//! upstream, it allocates nothing up front (chunks are stored as they come, and
//! never more bytes than the declared length), accepts a short last chunk wherever
//! it sits, and survives a duplicated INIT. A [`Completed`] remembers what was
//! delivered, so that retransmitted frames of a delivered message are acknowledged
//! again instead of being ignored (upstream's lost-DONE-ACK defect) and never
//! delivered twice.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::time::Instant;
use crate::wire::message::CHECKSUM_LEN;

/// A message whose INIT was accepted and whose DONE has not completed it.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) dst: Ipv6Addr,
    pub(super) reply: bool,
    pub(super) length: u64,
    pub(super) topic: Vec<u8>,
    chunks: BTreeMap<u64, Vec<u8>>,
    stored: u64,
    /// Dropped when idle past this.
    pub(super) expires: Instant,
    /// The deadline registered in the timer table (re-armed lazily).
    pub(super) timer: Instant,
}

impl Partial {
    pub(super) fn new(
        dst: Ipv6Addr,
        reply: bool,
        length: u64,
        topic: Vec<u8>,
        expires: Instant,
    ) -> Self {
        Self {
            dst,
            reply,
            length,
            topic,
            chunks: BTreeMap::new(),
            stored: 0,
            expires,
            timer: expires,
        }
    }

    /// Whether an INIT describes this message (a duplicate, not a new message).
    pub(super) fn same_init(&self, reply: bool, length: u64, topic: &[u8]) -> bool {
        self.reply == reply && self.length == length && self.topic == topic
    }

    /// Stores a chunk. Returns false, storing nothing, if the chunk does not fit the
    /// message: past its end, at an index no upstream sender can use, or
    /// more bytes in total than the message has.
    pub(super) fn store(&mut self, index: u64, offset: u64, data: &[u8], min_chunk: u64) -> bool {
        let size = data.len() as u64;
        if offset
            .checked_add(size)
            .map_or(true, |end| end > self.length)
        {
            return false;
        }
        let max_index = self.length.div_ceil(min_chunk.max(1)).saturating_sub(1);
        if index > max_index {
            return false;
        }
        let old = self.chunks.get(&index).map_or(0, |c| c.len() as u64);
        if self.stored - old + size > self.length {
            return false;
        }
        self.stored = self.stored - old + size;
        self.chunks.insert(index, data.to_vec());
        true
    }

    /// The message, if `count` chunks numbered from 0 hold exactly its bytes and
    /// hash to `checksum`.
    pub(super) fn assemble(&self, count: u64, checksum: &[u8; CHECKSUM_LEN]) -> Option<Vec<u8>> {
        let contiguous = self.chunks.len() as u64 == count
            && self
                .chunks
                .last_key_value()
                .map_or(true, |(&last, _)| last == count.wrapping_sub(1));
        if !contiguous || self.stored != self.length {
            return None;
        }
        let mut data = Vec::with_capacity(usize::try_from(self.length).ok()?);
        for chunk in self.chunks.values() {
            data.extend_from_slice(chunk);
        }
        (blake3::hash(&data).as_bytes() == checksum).then_some(data)
    }
}

/// What we remember of a delivered message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Completed {
    pub(super) reply: bool,
    pub(super) length: u64,
    pub(super) topic_len: u8,
    pub(super) chunks: u64,
    pub(super) checksum: [u8; CHECKSUM_LEN],
    pub(super) expires: Instant,
    /// The deadline registered in the timer table (re-armed lazily).
    pub(super) timer: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(length: u64) -> Partial {
        Partial::new(
            Ipv6Addr::LOCALHOST,
            false,
            length,
            Vec::new(),
            Instant::ZERO,
        )
    }

    #[test]
    fn chunks_past_the_end_are_refused() {
        let mut p = partial(10);
        assert!(!p.store(0, 5, &[0; 6], 250));
        assert!(!p.store(0, u64::MAX, &[0; 1], 250));
        assert!(p.store(0, 0, &[0; 10], 250));
    }

    #[test]
    fn indices_beyond_what_upstream_allows_are_refused() {
        let mut p = partial(500);
        assert!(!p.store(2, 0, &[0; 1], 250));
        assert!(p.store(1, 250, &[0; 250], 250));
    }

    #[test]
    fn stored_bytes_never_exceed_the_length() {
        let mut p = partial(600);
        assert!(p.store(0, 0, &[0; 300], 250));
        assert!(p.store(1, 300, &[0; 300], 250));
        assert!(!p.store(2, 0, &[0; 1], 250));
        // Replacing a chunk is fine.
        assert!(p.store(1, 300, &[1; 300], 250));
    }

    #[test]
    fn a_short_chunk_anywhere_is_accepted() {
        let mut p = partial(1301);
        assert!(p.store(0, 0, &[7; 1300], 250));
        assert!(p.store(1, 1300, &[7; 1], 250));
        let sum = *blake3::hash(&[7; 1301]).as_bytes();
        assert_eq!(p.assemble(2, &sum).map(|d| d.len()), Some(1301));
    }

    #[test]
    fn assembly_needs_every_chunk_and_the_right_checksum() {
        let mut p = partial(4);
        assert!(p.store(1, 2, b"cd", 1));
        let sum = *blake3::hash(b"abcd").as_bytes();
        assert_eq!(p.assemble(2, &sum), None);
        assert!(p.store(0, 0, b"ab", 1));
        assert_eq!(p.assemble(3, &sum), None);
        assert_eq!(p.assemble(2, &[0; 32]), None);
        assert_eq!(p.assemble(2, &sum).as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn an_empty_message_assembles_from_no_chunks() {
        let p = partial(0);
        let sum = *blake3::hash(b"").as_bytes();
        assert_eq!(p.assemble(0, &sum), Some(Vec::new()));
    }
}
