//! A link's control queue: what the router task has for one link, in chunks of
//! encoded control packets, bounded in bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// The longest control packet we send: an Update for a `/128` (outer header 4,
/// babel header 4, TLV header 2, value 10 + 16 + 40).
const MAX_UPDATE_PACKET: usize = 76;

/// Bytes a queued chunk is charged beyond its contents (its `Bytes` handle and
/// its slot in the channel), so many small chunks count for what they hold.
const CHUNK_OVERHEAD: usize = 64;

/// Room for ordinary control traffic (Hellos, IHUs, triggered updates and
/// requests) on top of a full table: several seconds of it on a busy link.
const CONTROL_SLACK: usize = 4 << 20;

/// Control bytes one link may have queued before it is taken for stuck and closed.
///
/// The largest burst the router sends one neighbour is its whole table, the answer
/// to a wildcard route request: one Update per subnet, at most `max_subnets` of
/// them, each at most [`MAX_UPDATE_PACKET`] bytes. The bound is that plus
/// [`CONTROL_SLACK`], so a full table of the largest allowed size (19 MB at the
/// default 250,000 subnets; 23 MB with the slack) is queued at once for a healthy
/// link while the bytes reach the socket as fast as the peer reads them. A peer
/// that stops reading holds at most this much of our memory before we close its
/// link (the core sees the queue full and closes it); it cannot make us keep more
/// by asking for the table again. Counted in bytes, not messages, because one
/// message may be a single Hello or a whole table. The bound is per link: peers
/// that all stop reading hold up to this much each (`Limits::max_inbound_peers`
/// bounds how many there are).
pub(crate) fn control_queue_bytes(max_subnets: usize) -> usize {
    max_subnets
        .saturating_mul(MAX_UPDATE_PACKET)
        .saturating_add(CONTROL_SLACK)
}

/// Control packets for one link, encoded back to back.
#[derive(Debug)]
pub(crate) struct ControlChunk {
    pub(crate) bytes: Bytes,
    pub(crate) packets: u64,
}

impl ControlChunk {
    fn cost(&self) -> usize {
        self.bytes.len() + CHUNK_OVERHEAD
    }
}

/// The core's end of a link's control queue, bounded in bytes.
#[derive(Debug)]
pub(crate) struct ControlTx {
    // Unbounded in messages: `queued` bounds it, each message being charged at
    // least `CHUNK_OVERHEAD` bytes.
    tx: mpsc::UnboundedSender<ControlChunk>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// Why a chunk was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlFull {
    /// The link has its bound queued already: it is not draining.
    Stuck,
    /// The link's writer is gone.
    Closed,
}

impl ControlTx {
    /// Queues `packets` control packets encoded in `bytes`.
    pub(crate) fn try_send(&self, bytes: Bytes, packets: u64) -> Result<(), ControlFull> {
        let chunk = ControlChunk { bytes, packets };
        let cost = chunk.cost();
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        if before.saturating_add(cost) > self.limit {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(ControlFull::Stuck);
        }
        self.tx.send(chunk).map_err(|_| ControlFull::Closed)
    }
}

/// The writer's end of a link's control queue.
#[derive(Debug)]
pub(crate) struct ControlRx {
    rx: mpsc::UnboundedReceiver<ControlChunk>,
    queued: Arc<AtomicUsize>,
}

impl ControlRx {
    pub(crate) async fn recv(&mut self) -> Option<ControlChunk> {
        self.rx.recv().await
    }

    pub(crate) fn try_recv(&mut self) -> Option<ControlChunk> {
        self.rx.try_recv().ok()
    }

    /// A chunk was written (or dropped): its bytes no longer count. Charged until
    /// then, so the bound covers what the writer holds too.
    pub(crate) fn done(&self, chunk: &ControlChunk) {
        self.queued.fetch_sub(chunk.cost(), Ordering::AcqRel);
    }

    /// Bytes queued and not yet written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Takes the bytes of a chunk taken with [`ControlRx::recv`] or
    /// [`ControlRx::try_recv`], with its packet count, and uncharges it.
    #[cfg(test)]
    pub(crate) fn take(&self, chunk: ControlChunk) -> (Bytes, u64) {
        self.done(&chunk);
        (chunk.bytes, chunk.packets)
    }
}

/// A control queue whose sender may hold at most `limit` bytes queued.
pub(crate) fn control_queue(limit: usize) -> (ControlTx, ControlRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ControlTx {
            tx,
            queued: queued.clone(),
            limit,
        },
        ControlRx { rx, queued },
    )
}
