//! How a message is cut into chunks.
//!
//! Upstream senders cut plain 1300-byte chunks, but upstream receivers refuse a chunk
//! under 250 bytes unless it sits at index `ceil(len / 250) − 1`, which a short last
//! chunk of a message longer than 1300 bytes never does. We keep upstream's chunk
//! count and move bytes from the second-to-last chunk into the last one so that it
//! reaches the minimum: 1301 bytes go out as 1051 + 250.

/// Byte range of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkSpan {
    /// Position of the chunk's first byte in the message.
    pub(crate) offset: u64,
    /// Number of bytes.
    pub(crate) size: u64,
}

/// The chunks a message of `len` bytes is sent in: `ceil(len / chunk)` of them, each
/// at most `chunk` bytes, none under `min` except a message's only chunk.
///
/// `chunk` is raised to 1 if zero. When `chunk < 2 × min` the rebalancing cannot
/// work and plain chunks are used.
pub(crate) fn layout(len: u64, chunk: u64, min: u64) -> Vec<ChunkSpan> {
    let chunk = chunk.max(1);
    let count = len.div_ceil(chunk);
    let rest = len % chunk;
    let rebalance = count >= 2 && rest != 0 && rest < min && chunk >= 2 * min;
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut offset = 0;
    for i in 0..count {
        let size = if rebalance && i == count - 2 {
            chunk - (min - rest)
        } else if rebalance && i == count - 1 {
            min
        } else {
            chunk.min(len - offset)
        };
        out.push(ChunkSpan { offset, size });
        offset += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sizes(len: u64) -> Vec<u64> {
        layout(len, 1300, 250).iter().map(|c| c.size).collect()
    }

    #[test]
    fn an_empty_message_has_no_chunks() {
        assert!(layout(0, 1300, 250).is_empty());
    }

    #[test]
    fn short_messages_are_one_chunk() {
        assert_eq!(sizes(14), [14]);
        assert_eq!(sizes(1300), [1300]);
    }

    #[test]
    fn a_short_tail_borrows_from_the_chunk_before_it() {
        assert_eq!(sizes(1301), [1051, 250]);
        assert_eq!(sizes(2600 + 249), [1300, 1300 - 1, 250]);
        assert_eq!(sizes(1300 + 250), [1300, 250]);
        assert_eq!(sizes(5000), [1300, 1300, 1300, 1100]);
    }

    proptest! {
        #[test]
        fn layout_covers_the_message_the_way_upstream_receivers_accept(len in 0u64..100_000) {
            let chunks = layout(len, 1300, 250);
            prop_assert_eq!(chunks.len() as u64, len.div_ceil(1300));
            let mut at = 0;
            let last_index = if len == 0 { 0 } else { len.div_ceil(250) - 1 };
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.offset, at);
                prop_assert!(c.size <= 1300 && c.size > 0);
                prop_assert!(c.size >= 250 || i as u64 == last_index || chunks.len() == 1);
                at += c.size;
            }
            prop_assert_eq!(at, len);
        }
    }
}
