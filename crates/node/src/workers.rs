//! The data plane's own tasks: the TUN reader, and the worker that takes the
//! packets other tasks hand it (those the router task held, ICMPv6 errors for our
//! TUN). Link readers move their packets themselves ([`crate::link`]).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buffer::{BUF_LEN, HEADROOM};
use crate::cmd::Work;
use crate::path::DataPath;
use crate::stats::NodeStats;
use crate::tun::{Tun, BATCH, SUPER_PACKET};

/// Work items handled between two TUN writes at most.
const WORK_BATCH: usize = 256;

/// Reads the TUN device until shutdown, sending each packet on its way.
///
/// Packets are read in batches (a segmentation-offload super-packet split into
/// MTU-sized packets, or on the portable path what is waiting) into one arena;
/// each packet is then an owned piece of the arena with room for its headers, tag
/// and nonce, so nothing is allocated per packet.
pub(crate) async fn tun_reader(path: Arc<DataPath>, tun: Arc<Tun>, shutdown: CancellationToken) {
    let mut local = path.local();
    let mut original = vec![0u8; SUPER_PACKET];
    let mut sizes = vec![0usize; BATCH];
    let mut arena = BytesMut::new();
    // A full super-packet splits into at most 65535 / (1400 - 60) < 49 packets.
    // Arenas stay under malloc's mmap threshold (128 KiB), so their memory is
    // recycled from the heap instead of being mapped and faulted in each time.
    const MIN_FREE: usize = 49;
    const ARENA: usize = 80;
    loop {
        if arena.len() < MIN_FREE * BUF_LEN {
            // Reuses the arena's memory when every packet cut from it has been sent
            // and dropped (the usual case), and allocates a fresh one otherwise.
            arena.clear();
            arena.reserve(ARENA * BUF_LEN);
            arena.resize(ARENA * BUF_LEN, 0);
        }
        let n = {
            let mut bufs: Vec<&mut [u8]> = arena.chunks_mut(BUF_LEN).collect();
            let count = bufs.len();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tun.recv_batch(&mut original, &mut bufs, &mut sizes[..count], HEADROOM) => match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!("reading the TUN device: {e}");
                        NodeStats::bump(&path.stats.malformed);
                        continue;
                    }
                },
            }
        };
        let snapshot = path.snapshot.load();
        for &size in &sizes[..n] {
            NodeStats::bump(&path.stats.tun_rx);
            let mut packet = arena.split_to(BUF_LEN);
            if size == 0 {
                continue;
            }
            packet.truncate(HEADROOM + size);
            path.send_local(&mut local, &snapshot, packet, size);
        }
        path.finish(&mut local).await;
    }
}

/// Does the work queued for the data plane, in batches, until shutdown.
pub(crate) async fn worker(
    path: Arc<DataPath>,
    mut rx: mpsc::Receiver<Work>,
    shutdown: CancellationToken,
) {
    let mut local = path.local();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
        };
        // Loaded after the work arrived: the router task published the routes it
        // hands packets back for before it did.
        let snapshot = path.snapshot.load();
        path.work(&mut local, &snapshot, first).await;
        for _ in 1..WORK_BATCH {
            let Ok(work) = rx.try_recv() else { break };
            path.work(&mut local, &snapshot, work).await;
        }
        path.finish(&mut local).await;
    }
}
