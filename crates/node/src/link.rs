//! A peer link over a byte stream (TCP now; TLS and vsock share this): a reader that
//! splits the stream into packets, and a writer that batches what is queued for it.
//!
//! The reader hands control TLVs to the core and data packets to the data plane; a
//! framing error (bad outer version or type) closes the link, as upstream does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mycelium_proto::routing::{LinkKind, PeerId};
use mycelium_proto::wire::{self, FrameError, Packet, Tlv};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreCmd, Shared};
use crate::dataplane::{self, SecretCache};
use crate::limits::TokenBucket;
use crate::registry::{EntryHandle, LinkCounters};
use crate::stats::NodeStats;

/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

/// Control TLVs a reader hands the core in one message at most. Moving 400,000
/// TLVs from four links through the core's channel cost 75 to 360 ns of CPU per
/// TLV with one message each (quiet or busy machine: 30 to 144 ms in all), 4 to
/// 41 ns with 256 per message. The TLVs queued for the core in all are bounded
/// apart from this (`Shared::control_permits`).
pub(crate) const CONTROL_BATCH: usize = 256;

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
    bytes: Bytes,
    packets: u64,
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

/// What a link is: its kind for the router, the connection identifier the API shows
/// as a route's next hop, how it came about (for logs), and the registry entry whose
/// counters it feeds and whose removal closes it.
pub(crate) struct LinkMeta {
    pub(crate) kind: LinkKind,
    /// `TCP <local> <-> <remote>`, `QUIC -> <remote>` (API.md §1.3).
    pub(crate) conn_id: String,
    pub(crate) origin: &'static str,
    pub(crate) entry: EntryHandle,
}

/// Runs one link until the stream ends, the peer misbehaves, the core closes it, its
/// registry entry is removed, or the node shuts down. Tells the core when it is up
/// and when it is gone.
pub(crate) async fn run<R, W>(shared: Arc<Shared>, reader: R, writer: W, meta: LinkMeta)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    run_with_datagrams(shared, reader, writer, meta, None).await;
}

/// Like [`run`], with data packets sent as QUIC datagrams where they fit.
pub(crate) async fn run_with_datagrams<R, W>(
    shared: Arc<Shared>,
    reader: R,
    writer: W,
    meta: LinkMeta,
    datagrams: Option<quinn::Connection>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = shared.new_peer_id();
    let close = meta.entry.cancel.child_token();
    let (data_tx, data_rx) = mpsc::channel(shared.limits.link_data_queue.max(1));
    let (control_tx, control_rx) = control_queue(shared.control_queue_bytes);
    let up = CoreCmd::LinkUp {
        peer,
        kind: meta.kind,
        conn_id: meta.conn_id.clone(),
        data: data_tx,
        control: control_tx,
        close: close.clone(),
    };
    if shared.core_tx.send(up).await.is_err() {
        return;
    }
    let label = format!("{} ({})", meta.conn_id, meta.origin);
    tracing::info!("{peer} up: {label}");
    let counters = meta.entry.counters.clone();
    let writer_task = tokio::spawn(write_loop(
        writer,
        control_rx,
        data_rx,
        close.clone(),
        datagrams,
        counters.clone(),
    ));
    let reason = read_loop(&shared, peer, reader, &close, &counters).await;
    close.cancel();
    let _ = writer_task.await;
    tracing::info!("{peer} down ({reason}): {label}");
    let _ = shared.core_tx.send(CoreCmd::LinkDown { peer }).await;
}

/// Control TLVs read from a link and not yet handed to the core.
struct ControlBatch {
    peer: PeerId,
    tlvs: Vec<Tlv>,
}

impl ControlBatch {
    /// Hands the TLVs gathered so far to the core, waiting for room among the TLVs
    /// the core may have queued; why the link must stop if it cannot.
    async fn send(&mut self, shared: &Shared, close: &CancellationToken) -> Result<(), String> {
        if self.tlvs.is_empty() {
            return Ok(());
        }
        let n = self.tlvs.len() as u32;
        let permit = tokio::select! {
            _ = close.cancelled() => return Err("closed".into()),
            p = shared.control_permits.clone().acquire_many_owned(n) => p,
        };
        let Ok(permit) = permit else {
            return Err("node stopping".into());
        };
        let tlvs = std::mem::replace(&mut self.tlvs, Vec::with_capacity(CONTROL_BATCH));
        let cmd = CoreCmd::Control {
            peer: self.peer,
            tlvs,
            permit,
        };
        shared
            .core_tx
            .send(cmd)
            .await
            .map_err(|_| "node stopping".into())
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    peer: PeerId,
    mut reader: R,
    close: &CancellationToken,
    counters: &LinkCounters,
) -> String {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut cache = SecretCache::default();
    let mut out = dataplane::TunBatch::default();
    let limits = &shared.limits;
    let mut control_rate = TokenBucket::new(
        limits.link_control_rate,
        limits.link_control_burst,
        std::time::Instant::now(),
    );
    // Control TLVs go to the core in batches: all those of one read, up to
    // CONTROL_BATCH at a time.
    let mut batch = ControlBatch {
        peer,
        tlvs: Vec::with_capacity(CONTROL_BATCH),
    };
    loop {
        // Take every whole packet out of the buffer.
        let mut packets = 0;
        loop {
            let (kind, len) = match wire::decode(&buf) {
                Ok(d) => (
                    match d.packet {
                        Packet::Data(_) => None,
                        Packet::Control(tlv) => Some(Ok(tlv)),
                        Packet::Ignored(why) => Some(Err(why)),
                    },
                    d.len,
                ),
                Err(FrameError::Incomplete { needed }) => {
                    buf.reserve(needed.max(READ_CHUNK / 4));
                    break;
                }
                Err(e) => {
                    NodeStats::bump(&shared.stats.framing_errors);
                    return format!("framing error: {e}");
                }
            };
            let packet = buf.split_to(len);
            packets += 1;
            match kind {
                None => {
                    // What the peer sent before this packet reaches the core first,
                    // as when every TLV went on its own (an Update, then data for
                    // its subnet).
                    if let Err(why) = batch.send(shared, close).await {
                        return why;
                    }
                    let snapshot = shared.snapshot.load();
                    dataplane::handle_data(shared, &mut cache, &snapshot, packet, &mut out).await;
                }
                Some(Ok(tlv)) => {
                    let wait = control_rate.take(1, std::time::Instant::now());
                    if !wait.is_zero() {
                        // Over its rate: this link is not read until it is back
                        // under it (TCP pushes back on the sender meanwhile).
                        NodeStats::bump(&shared.stats.control_throttled);
                        counters.received_packets(std::mem::take(&mut packets));
                        if let Err(why) = batch.send(shared, close).await {
                            return why;
                        }
                        out.flush(shared).await;
                        tokio::select! {
                            _ = close.cancelled() => return "closed".into(),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    batch.tlvs.push(tlv);
                    if batch.tlvs.len() >= CONTROL_BATCH {
                        if let Err(why) = batch.send(shared, close).await {
                            return why;
                        }
                    }
                }
                Some(Err(why)) => {
                    NodeStats::bump(&shared.stats.control_ignored);
                    tracing::debug!("{peer}: skipped a control packet: {why}");
                }
            }
        }
        // Everything read so far is handled: hand the core its TLVs, and write what
        // is for us in one batch.
        if let Err(why) = batch.send(shared, close).await {
            return why;
        }
        counters.received_packets(packets);
        out.flush(shared).await;
        cache.tally.merge(&shared.packets);
        let read = tokio::select! {
            _ = close.cancelled() => return "closed".into(),
            r = reader.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => return "end of stream".into(),
            Ok(n) => counters.received(n),
            Err(e) => return format!("read error: {e}"),
        }
    }
}

/// Sends a data packet as a datagram if there is a datagram channel and it fits;
/// returns it back otherwise.
fn try_datagram(
    datagrams: &Option<quinn::Connection>,
    packet: Bytes,
    sent: &mut Sent,
) -> Option<Bytes> {
    let Some(conn) = datagrams else {
        return Some(packet);
    };
    match conn.max_datagram_size() {
        Some(max) if packet.len() <= max => match conn.send_datagram(packet.clone()) {
            Ok(()) => {
                sent.add(packet.len());
                None
            }
            Err(_) => Some(packet),
        },
        _ => Some(packet),
    }
}

/// What a writer sent since it last told the link's counters.
#[derive(Default)]
struct Sent {
    bytes: usize,
    packets: u64,
}

impl Sent {
    fn add(&mut self, bytes: usize) {
        self.add_packets(bytes, 1);
    }

    fn add_packets(&mut self, bytes: usize, packets: u64) {
        self.bytes += bytes;
        self.packets += packets;
    }

    fn report(&mut self, counters: &LinkCounters) {
        counters.sent(self.bytes, self.packets);
        *self = Self::default();
    }
}

/// What the writer takes next: control chunks before data.
enum Outgoing {
    Control(ControlChunk),
    Data(Bytes),
}

async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut control: ControlRx,
    mut data: mpsc::Receiver<Bytes>,
    close: CancellationToken,
    datagrams: Option<quinn::Connection>,
    counters: Arc<LinkCounters>,
) {
    let mut out = BufWriter::with_capacity(256 * 1024, writer);
    let mut sent = Sent::default();
    loop {
        let first = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            Some(c) = control.recv() => Some(Outgoing::Control(c)),
            Some(b) = data.recv() => try_datagram(&datagrams, b, &mut sent).map(Outgoing::Data),
            else => break,
        };
        // Batch whatever else is ready into the same flush: control first. A control
        // chunk holds every control packet the core had for this link at once, so
        // one chunk may be a whole routing table.
        let mut failed = false;
        let mut next = first;
        for _ in 0..512 {
            let item = match next.take() {
                Some(item) => item,
                None => match control.try_recv() {
                    Some(c) => Outgoing::Control(c),
                    None => match data.try_recv() {
                        Ok(b) => match try_datagram(&datagrams, b, &mut sent) {
                            Some(b) => Outgoing::Data(b),
                            None => continue,
                        },
                        Err(_) => break,
                    },
                },
            };
            let written = match &item {
                Outgoing::Control(c) => {
                    let ok = out.write_all(&c.bytes).await.is_ok();
                    control.done(c);
                    if ok {
                        sent.add_packets(c.bytes.len(), c.packets);
                    }
                    ok
                }
                Outgoing::Data(b) => {
                    let ok = out.write_all(b).await.is_ok();
                    if ok {
                        sent.add(b.len());
                    }
                    ok
                }
            };
            if !written {
                failed = true;
                break;
            }
        }
        sent.report(&counters);
        if failed || out.flush().await.is_err() {
            break;
        }
    }
    close.cancel();
    let _ = out.shutdown().await;
}
