//! A peer link over a byte stream (TCP now; TLS and vsock share this): a reader that
//! splits the stream into packets, and a writer that batches what is queued for it.
//!
//! The reader hands control TLVs to the core and data packets to the data plane; a
//! framing error (bad outer version or type) closes the link, as upstream does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mycelium_proto::routing::{LinkKind, PeerId};
use mycelium_proto::wire::{self, FrameError, Packet, Tlv};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::CoreCmd;
use crate::control_queue::{control_queue, ControlChunk, ControlRx};
use crate::limits::{Limits, TokenBucket};
use crate::path::DataPath;
use crate::quic_flaps::{CloseCause, QuicLinkEnd};
use crate::registry::{EntryHandle, LinkCounters};
use crate::stats::NodeStats;

/// Read buffer size of a link: large reads cost fewer system calls at full speed.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Read buffer size of a leaf's links. A leaf's neighbours may push whole tables
/// at it, which it drops; a full-sized buffer per link would stay filled with them
/// (0.22 MiB each, measured).
pub(crate) const LEAF_READ_CHUNK: usize = 64 * 1024;

/// Control TLVs a reader hands the core in one message at most. Moving 400,000
/// TLVs from four links through the core's channel cost 75 to 360 ns of CPU per
/// TLV with one message each (quiet or busy machine: 30 to 144 ms in all), 4 to
/// 41 ns with 256 per message. The TLVs queued for the core in all are bounded
/// apart from this (`Shared::control_permits`).
pub(crate) const CONTROL_BATCH: usize = 256;

/// What every link task shares.
pub(crate) struct Links {
    /// The router task's inputs.
    pub(crate) to_core: mpsc::Sender<CoreCmd>,
    /// One permit per control TLV queued for the core (`router::CONTROL_IN_FLIGHT`):
    /// link readers take them before sending, the core gives them back once
    /// handled.
    pub(crate) control_permits: Arc<Semaphore>,
    /// Control bytes one link may have queued (`control_queue::control_queue_bytes`).
    pub(crate) control_queue_bytes: usize,
    pub(crate) limits: Limits,
    /// Read buffer size ([`READ_CHUNK`] or [`LEAF_READ_CHUNK`]).
    pub(crate) read_chunk: usize,
    /// Where data packets read from links go.
    pub(crate) path: Arc<DataPath>,
    /// Where link tasks are spawned, so that shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Test only: send data on QUIC links as upstream does (see [`Datagrams`]).
    pub(crate) upstream_datagrams: bool,
    next_peer: AtomicU64,
}

/// How links read, queue and send: [`Links`]' settings.
pub(crate) struct LinkSettings {
    pub(crate) control_queue_bytes: usize,
    pub(crate) limits: Limits,
    pub(crate) read_chunk: usize,
    pub(crate) upstream_datagrams: bool,
}

impl Links {
    pub(crate) fn new(
        to_core: mpsc::Sender<CoreCmd>,
        control_permits: Arc<Semaphore>,
        settings: LinkSettings,
        path: Arc<DataPath>,
        tasks: TaskTracker,
    ) -> Self {
        let LinkSettings {
            control_queue_bytes,
            limits,
            read_chunk,
            upstream_datagrams,
        } = settings;
        Self {
            to_core,
            control_permits,
            control_queue_bytes,
            limits,
            read_chunk,
            path,
            tasks,
            upstream_datagrams,
            // From 1: the forwarding table stores "no next hop" as 0.
            next_peer: AtomicU64::new(1),
        }
    }

    fn new_peer_id(&self) -> PeerId {
        PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed))
    }

    fn stats(&self) -> &NodeStats {
        &self.path.stats
    }
}

/// What a link is: its kind for the router, the connection identifier the API shows
/// as a route's next hop, how it came about (for logs), and the registry entry whose
/// counters it feeds and whose removal closes it.
pub(crate) struct LinkMeta {
    pub(crate) kind: LinkKind,
    /// `TCP <local> <-> <remote>`, `QUIC -> <remote>`.
    pub(crate) conn_id: String,
    /// The peer's socket address (none for vsock).
    pub(crate) remote: Option<std::net::SocketAddr>,
    pub(crate) origin: &'static str,
    pub(crate) entry: EntryHandle,
}

/// Runs one link until the stream ends, the peer misbehaves, the core closes it, its
/// registry entry is removed, or the node shuts down. Tells the core when it is up
/// and when it is gone.
pub(crate) async fn run<R, W>(links: &Links, reader: R, writer: W, meta: LinkMeta)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    run_with_datagrams(links, reader, writer, meta, None, Arc::default()).await;
}

/// Like [`run`], with data packets sent as QUIC datagrams where they fit.
/// `data_packets` counts the data packets the link carries both ways (the QUIC
/// datagram reader adds its own): with how the connection ended, it tells the
/// core whether a neighbour dropped a busy link ([`crate::quic_flaps`]).
pub(crate) async fn run_with_datagrams<R, W>(
    links: &Links,
    reader: R,
    writer: W,
    meta: LinkMeta,
    quic: Option<quinn::Connection>,
    data_packets: Arc<AtomicU64>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let opened = std::time::Instant::now();
    let peer = links.new_peer_id();
    let close = meta.entry.cancel.child_token();
    let (data_tx, data_rx) = mpsc::channel(links.limits.link_data_queue.max(1));
    let (control_tx, control_rx) = control_queue(links.control_queue_bytes);
    let up = CoreCmd::LinkUp {
        peer,
        kind: meta.kind,
        conn_id: meta.conn_id.clone(),
        remote: meta.remote,
        data: data_tx,
        control: control_tx,
        close: close.clone(),
    };
    if links.to_core.send(up).await.is_err() {
        return;
    }
    let label = format!("{} ({})", meta.conn_id, meta.origin);
    tracing::info!("{peer} up: {label}");
    let counters = meta.entry.counters.clone();
    let datagrams = quic.clone().map(|conn| Datagrams {
        conn,
        upstream: links.upstream_datagrams,
    });
    let writer_task = links.tasks.spawn(write_loop(
        writer,
        control_rx,
        data_rx,
        close.clone(),
        datagrams,
        Tallies {
            link: counters.clone(),
            data_packets: data_packets.clone(),
        },
    ));
    let reason = read_loop(links, peer, reader, &close, &counters, &data_packets).await;
    close.cancel();
    let _ = writer_task.await;
    // Read before anyone on our side closes the connection, which would overwrite
    // how it ended.
    let quic = quic.map(|conn| QuicLinkEnd {
        remote: conn.remote_address(),
        cause: CloseCause::of(&conn),
        lived: opened.elapsed(),
        data_packets: data_packets.load(Ordering::Relaxed),
    });
    tracing::info!("{peer} down ({reason}): {label}");
    let _ = links.to_core.send(CoreCmd::LinkDown { peer, quic }).await;
}

/// Control TLVs read from a link and not yet handed to the core.
struct ControlBatch {
    peer: PeerId,
    tlvs: Vec<Tlv>,
}

impl ControlBatch {
    /// Hands the TLVs gathered so far to the core, waiting for room among the TLVs
    /// the core may have queued; why the link must stop if it cannot.
    async fn send(&mut self, links: &Links, close: &CancellationToken) -> Result<(), String> {
        if self.tlvs.is_empty() {
            return Ok(());
        }
        let n = self.tlvs.len() as u32;
        let permit = tokio::select! {
            _ = close.cancelled() => return Err("closed".into()),
            p = links.control_permits.clone().acquire_many_owned(n) => p,
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
        links
            .to_core
            .send(cmd)
            .await
            .map_err(|_| "node stopping".into())
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    links: &Links,
    peer: PeerId,
    mut reader: R,
    close: &CancellationToken,
    counters: &LinkCounters,
    data_packets: &AtomicU64,
) -> String {
    let read_chunk = links.read_chunk;
    let mut buf = BytesMut::with_capacity(read_chunk);
    let path = &links.path;
    let mut local = path.local();
    let limits = &links.limits;
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
        let mut data = 0;
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
                    buf.reserve(needed.max(read_chunk / 4));
                    break;
                }
                Err(e) => {
                    NodeStats::bump(&links.stats().framing_errors);
                    return format!("framing error: {e}");
                }
            };
            let packet = buf.split_to(len);
            packets += 1;
            match kind {
                None => {
                    data += 1;
                    // What the peer sent before this packet reaches the core first,
                    // as when every TLV went on its own (an Update, then data for
                    // its subnet).
                    if let Err(why) = batch.send(links, close).await {
                        return why;
                    }
                    let snapshot = path.snapshot.load();
                    path.handle_data(&mut local, &snapshot, packet).await;
                }
                Some(Ok(tlv)) => {
                    let wait = control_rate.take(1, std::time::Instant::now());
                    if !wait.is_zero() {
                        // Over its rate: this link is not read until it is back
                        // under it (TCP pushes back on the sender meanwhile).
                        NodeStats::bump(&links.stats().control_throttled);
                        counters.received_packets(std::mem::take(&mut packets));
                        if let Err(why) = batch.send(links, close).await {
                            return why;
                        }
                        path.finish(&mut local).await;
                        tokio::select! {
                            _ = close.cancelled() => return "closed".into(),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    batch.tlvs.push(tlv);
                    if batch.tlvs.len() >= CONTROL_BATCH {
                        if let Err(why) = batch.send(links, close).await {
                            return why;
                        }
                    }
                }
                Some(Err(why)) => {
                    NodeStats::bump(&links.stats().control_ignored);
                    tracing::debug!("{peer}: skipped a control packet: {why}");
                }
            }
        }
        // Everything read so far is handled: hand the core its TLVs, and write what
        // is for us in one batch.
        if let Err(why) = batch.send(links, close).await {
            return why;
        }
        counters.received_packets(packets);
        if data > 0 {
            data_packets.fetch_add(data, Ordering::Relaxed);
        }
        path.finish(&mut local).await;
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

/// How a QUIC link sends data packets as datagrams.
struct Datagrams {
    conn: quinn::Connection,
    /// Test only (`--upstream-quic-datagrams`): as upstream v0.7.10 does, every
    /// data packet goes as a datagram whatever its size, and one the QUIC library
    /// refuses (too large) ends the whole connection, which the peer sees closed
    /// with code 0 and no reason, as when upstream drops its connection. Our
    /// default writes a packet that does not fit on the stream instead.
    upstream: bool,
}

/// The link must end: upstream's datagram behaviour dropped the connection.
struct Dropped;

/// Sends a data packet as a datagram if the link has datagrams and it fits;
/// returns it back otherwise (for the stream).
fn try_datagram(
    datagrams: &Option<Datagrams>,
    packet: Bytes,
    sent: &mut Sent,
) -> Result<Option<Bytes>, Dropped> {
    let Some(d) = datagrams else {
        return Ok(Some(packet));
    };
    if d.upstream {
        let len = packet.len();
        return match d.conn.send_datagram(packet) {
            Ok(()) => {
                sent.add(len);
                Ok(None)
            }
            Err(e) => {
                tracing::info!(
                    "upstream QUIC emulation: a {len}-byte data packet for {} cannot go \
                     as a datagram ({e}; limit {:?}); dropping the connection",
                    d.conn.remote_address(),
                    d.conn.max_datagram_size()
                );
                // Code 0, no reason: what quinn sends when upstream drops its
                // last handle on the connection.
                d.conn.close(0u32.into(), b"");
                Err(Dropped)
            }
        };
    }
    match d.conn.max_datagram_size() {
        Some(max) if packet.len() <= max => match d.conn.send_datagram(packet.clone()) {
            Ok(()) => {
                sent.add(packet.len());
                Ok(None)
            }
            Err(_) => Ok(Some(packet)),
        },
        _ => Ok(Some(packet)),
    }
}

/// Where a writer reports what it sent.
struct Tallies {
    /// The registry entry's counters.
    link: Arc<LinkCounters>,
    /// Data packets this link carried.
    data_packets: Arc<AtomicU64>,
}

/// What a writer sent since it last told the link's counters.
#[derive(Default)]
struct Sent {
    bytes: usize,
    packets: u64,
    /// Data packets among them.
    data: u64,
}

impl Sent {
    /// Counts one data packet.
    fn add(&mut self, bytes: usize) {
        self.add_packets(bytes, 1);
        self.data += 1;
    }

    fn add_packets(&mut self, bytes: usize, packets: u64) {
        self.bytes += bytes;
        self.packets += packets;
    }

    fn report(&mut self, tallies: &Tallies) {
        tallies.link.sent(self.bytes, self.packets);
        if self.data > 0 {
            tallies.data_packets.fetch_add(self.data, Ordering::Relaxed);
        }
        *self = Self::default();
    }
}

/// What the writer takes next: control chunks before data.
enum Outgoing {
    Control(ControlChunk),
    Data(Bytes),
}

/// Items a writer takes into one write at most.
const WRITE_BATCH: usize = 512;
/// The write buffer of a link whose stream cannot write from many buffers at once
/// (TLS, the QUIC stream): what it gathers is copied into one buffer of this size.
/// TCP and vsock links write the queued packets where they lie, without one.
const WRITE_BUFFER: usize = 256 * 1024;

/// The packets of one write, written from where they lie: a [`Buf`] over many
/// `Bytes`, so a stream that writes vectored sends them in one system call.
#[derive(Default)]
struct Gather {
    parts: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl Gather {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push_back(b);
        }
    }
}

impl bytes::Buf for Gather {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| &b[..])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = std::io::IoSlice::new(part);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        self.len -= cnt.min(self.len);
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }
}

/// Buffers one vectored write passes at most (Linux takes 1,024).
const MAX_IOV: usize = 512;

/// Writes everything in `gather`, as many buffers per system call as the stream
/// takes (tokio's own `write_all_buf` passes 64 at most).
async fn write_gathered<W: AsyncWrite + Unpin>(
    out: &mut W,
    gather: &mut Gather,
) -> std::io::Result<()> {
    use bytes::Buf;
    while gather.has_remaining() {
        let n = {
            let mut slices = [std::io::IoSlice::new(&[]); MAX_IOV];
            let count = gather.chunks_vectored(&mut slices);
            out.write_vectored(&slices[..count]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        gather.advance(n);
    }
    Ok(())
}

async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut control: ControlRx,
    mut data: mpsc::Receiver<Bytes>,
    close: CancellationToken,
    datagrams: Option<Datagrams>,
    tallies: Tallies,
) {
    // A buffer of capacity 0 passes vectored writes straight through.
    let capacity = if writer.is_write_vectored() {
        0
    } else {
        WRITE_BUFFER
    };
    let mut out = BufWriter::with_capacity(capacity, writer);
    let mut sent = Sent::default();
    let mut gather = Gather::default();
    // Control chunks in `gather`, uncharged once written.
    let mut chunks: Vec<ControlChunk> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            Some(c) = control.recv() => Some(Outgoing::Control(c)),
            Some(b) = data.recv() => match try_datagram(&datagrams, b, &mut sent) {
                Ok(b) => b.map(Outgoing::Data),
                Err(Dropped) => break,
            },
            else => break,
        };
        // Batch whatever else is ready into the same write: control first. A control
        // chunk holds every control packet the core had for this link at once, so
        // one chunk may be a whole routing table.
        let mut next = first;
        let mut dropped = false;
        for _ in 0..WRITE_BATCH {
            let item = match next.take() {
                Some(item) => item,
                None => match control.try_recv() {
                    Some(c) => Outgoing::Control(c),
                    None => match data.try_recv() {
                        Ok(b) => match try_datagram(&datagrams, b, &mut sent) {
                            Ok(Some(b)) => Outgoing::Data(b),
                            Ok(None) => continue,
                            Err(Dropped) => {
                                dropped = true;
                                break;
                            }
                        },
                        Err(_) => break,
                    },
                },
            };
            match item {
                Outgoing::Control(c) => {
                    sent.add_packets(c.bytes.len(), c.packets);
                    gather.push(c.bytes.clone());
                    chunks.push(c);
                }
                Outgoing::Data(b) => {
                    sent.add(b.len());
                    gather.push(b);
                }
            }
        }
        let written = !dropped
            && write_gathered(&mut out, &mut gather).await.is_ok()
            && out.flush().await.is_ok();
        for c in chunks.drain(..) {
            control.done(&c);
        }
        if !written {
            break;
        }
        sent.report(&tallies);
    }
    close.cancel();
    let _ = out.shutdown().await;
}
