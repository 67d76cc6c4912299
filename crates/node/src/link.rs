//! A peer link over a byte stream (TCP now; TLS and vsock share this): a reader that
//! splits the stream into packets, and a writer that batches what is queued for it.
//!
//! The reader hands control TLVs to the core and data packets to the data plane; a
//! framing error (bad outer version or type) closes the link, as upstream does.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mycelium_proto::routing::{LinkKind, PeerId};
use mycelium_proto::wire::{self, FrameError, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreCmd, Shared, CONTROL_QUEUE};
use crate::dataplane::{self, SecretCache};
use crate::limits::TokenBucket;
use crate::registry::{EntryHandle, LinkCounters};
use crate::stats::NodeStats;

/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

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
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
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
                        out.flush(shared).await;
                        tokio::select! {
                            _ = close.cancelled() => return "closed".into(),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    if shared
                        .core_tx
                        .send(CoreCmd::Control { peer, tlv })
                        .await
                        .is_err()
                    {
                        return "node stopping".into();
                    }
                }
                Some(Err(why)) => {
                    NodeStats::bump(&shared.stats.control_ignored);
                    tracing::debug!("{peer}: skipped a control packet: {why}");
                }
            }
        }
        // Everything read so far is handled: write what is for us in one batch.
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
        self.bytes += bytes;
        self.packets += 1;
    }

    fn report(&mut self, counters: &LinkCounters) {
        counters.sent(self.bytes, self.packets);
        *self = Self::default();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut control: mpsc::Receiver<Bytes>,
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
            Some(b) = control.recv() => Some(b),
            Some(b) = data.recv() => try_datagram(&datagrams, b, &mut sent),
            else => break,
        };
        if let Some(first) = first {
            if out.write_all(&first).await.is_err() {
                break;
            }
            sent.add(first.len());
        }
        // Batch whatever else is ready into the same flush: control first.
        let mut failed = false;
        for _ in 0..512 {
            let next = match control.try_recv() {
                Ok(b) => b,
                Err(_) => match data.try_recv() {
                    Ok(b) => match try_datagram(&datagrams, b, &mut sent) {
                        Some(b) => b,
                        None => continue,
                    },
                    Err(_) => break,
                },
            };
            if out.write_all(&next).await.is_err() {
                failed = true;
                break;
            }
            sent.add(next.len());
        }
        sent.report(&counters);
        if failed || out.flush().await.is_err() {
            break;
        }
    }
    close.cancel();
    let _ = out.shutdown().await;
}
