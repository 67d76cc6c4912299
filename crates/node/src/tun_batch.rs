//! Packets for our TUN device, gathered by one task and written in one batch.

use std::net::Ipv6Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_proto::wire::view::{Ipv6Packet, TcpHeader};

use crate::buffer::HEADROOM;
use crate::stats::NodeStats;
use crate::tun::{Tun, TunPath, BATCH};

/// Room for a coalesced super-packet behind the headroom.
const SUPER_BUFFER: usize = HEADROOM + 65_535;
/// Large buffers one task keeps between batches.
const SPARE_SUPER_BUFFERS: usize = 8;
/// The IPv6 next-header value of TCP.
const TCP: u8 = 6;

/// Packets for our TUN gathered by one task while it works through what it read,
/// written in one batch (coalesced by the kernel where it can) when the task has
/// nothing more at hand. Written from the task itself: no hand-off per packet.
///
/// Coalescing (GRO) appends the segments of one TCP flow to the buffer of the run's
/// first packet, and only does so when that buffer has room for a whole 64 KiB
/// super-packet. Packets cut from a link's read buffer have none, so the first
/// packet of each run is moved into a large buffer kept for reuse: one copy of one
/// packet buys one write per run instead of one per packet. A run ends where GRO
/// would end it: another flow, other TCP options (a new timestamp), or a segment
/// after one with PSH set.
pub(crate) struct TunBatch {
    tun: Option<Arc<Tun>>,
    packets: Vec<BytesMut>,
    /// Large buffers to reuse, at most [`SPARE_SUPER_BUFFERS`].
    spare: Vec<BytesMut>,
    /// What GRO compares of the last packet added, to see where a run starts.
    last: Option<RunKey>,
}

/// The flow (addresses and ports), the TCP header length and options of a packet,
/// and whether it ends a run (PSH).
#[derive(Clone, Copy, PartialEq, Eq)]
struct RunKey {
    flow: (Ipv6Addr, Ipv6Addr, u16, u16),
    options: [u8; 41],
    psh: bool,
}

impl RunKey {
    /// For a TCP segment with data over IPv6 without extension headers; `None`
    /// otherwise (GRO leaves segments without data, pure ACKs, alone, so they are
    /// not worth a large buffer).
    fn of(ip: &[u8]) -> Option<Self> {
        let ip = Ipv6Packet::new_checked(ip).ok()?;
        if ip.next_header() != TCP {
            return None;
        }
        let tcp = TcpHeader::new_checked(ip.payload()).ok()?;
        if ip.payload().len() <= tcp.header_len() {
            return None;
        }
        let (sport, dport) = tcp.ports();
        let opts = tcp.options();
        let mut options = [0u8; 41];
        options[0] = tcp.header_len() as u8;
        options[1..1 + opts.len()].copy_from_slice(opts);
        Some(Self {
            flow: (ip.src(), ip.dst(), sport, dport),
            options,
            psh: tcp.psh(),
        })
    }

    /// Whether a packet with key `self` continues the run of `last`.
    fn continues(&self, last: &Option<Self>) -> bool {
        last.is_some_and(|l| !l.psh && l.flow == self.flow && l.options == self.options)
    }
}

impl TunBatch {
    /// A batch for `tun` (without one, packets are dropped).
    pub(crate) fn new(tun: Option<Arc<Tun>>) -> Self {
        Self {
            tun,
            packets: Vec::new(),
            spare: Vec::new(),
            last: None,
        }
    }

    /// Adds a packet (IPv6 at `HEADROOM`); writes the batch first if it is full.
    pub(crate) async fn push(&mut self, stats: &NodeStats, mut packet: BytesMut) {
        let Some(tun) = &self.tun else {
            // Tests read what would have been written.
            #[cfg(test)]
            self.packets.push(packet);
            return;
        };
        // Only a device with offload coalesces; elsewhere packets go one by one.
        let coalesces = tun.path() == TunPath::Offload;
        if self.packets.len() >= BATCH {
            self.flush(stats).await;
        }
        let key = RunKey::of(packet.get(HEADROOM..).unwrap_or_default()).filter(|_| coalesces);
        let starts_run = key.is_some_and(|k| !k.continues(&self.last));
        if starts_run && packet.capacity() < SUPER_BUFFER {
            let mut big = self
                .spare
                .pop()
                .unwrap_or_else(|| BytesMut::with_capacity(SUPER_BUFFER));
            big.clear();
            big.extend_from_slice(&packet);
            packet = big;
        }
        self.last = key;
        self.packets.push(packet);
    }

    /// The packets gathered and not yet written.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> &[BytesMut] {
        &self.packets
    }

    /// Writes what was gathered.
    pub(crate) async fn flush(&mut self, stats: &NodeStats) {
        if self.packets.is_empty() {
            return;
        }
        if let Some(tun) = &self.tun {
            let count = self.packets.len() as u64;
            match tun.send_batch(&mut self.packets, HEADROOM).await {
                Ok(_) => {
                    stats.tun_tx.fetch_add(count, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("writing to the TUN device: {e}"),
            }
        }
        for mut p in self.packets.drain(..) {
            if p.capacity() >= SUPER_BUFFER && self.spare.len() < SPARE_SUPER_BUFFERS {
                p.clear();
                self.spare.push(p);
            }
        }
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An IPv6 TCP segment with these ports, options and flags, and 100 bytes of
    /// data.
    fn segment(sport: u16, options: &[u8], flags: u8) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let mut p = vec![0u8; 40 + tcp_len + 100];
        p[0] = 0x60;
        p[6] = TCP;
        p[8] = 4;
        p[24] = 5;
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&80u16.to_be_bytes());
        p[52] = ((tcp_len / 4) as u8) << 4;
        p[53] = flags;
        p[60..60 + options.len()].copy_from_slice(options);
        p
    }

    #[test]
    fn a_run_continues_on_the_same_flow_and_options_until_psh() {
        let ts1 = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 9];
        let ts2 = [1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 9];
        let first = RunKey::of(&segment(1000, &ts1, 0x10));
        assert!(first.is_some());
        let same = RunKey::of(&segment(1000, &ts1, 0x10)).unwrap();
        assert!(same.continues(&first));
        assert!(!RunKey::of(&segment(1001, &ts1, 0x10))
            .unwrap()
            .continues(&first));
        assert!(!RunKey::of(&segment(1000, &ts2, 0x10))
            .unwrap()
            .continues(&first));
        let pushed = RunKey::of(&segment(1000, &ts1, 0x18));
        assert!(!same.continues(&pushed));
        assert!(!same.continues(&None));
    }

    #[test]
    fn only_tcp_over_plain_ipv6_has_a_run_key() {
        let mut udp = segment(1000, &[], 0);
        udp[6] = 17;
        assert!(RunKey::of(&udp).is_none());
        assert!(RunKey::of(&segment(1000, &[], 0)[..59]).is_none());
        // A pure ACK: headers only.
        assert!(RunKey::of(&segment(1000, &[], 0x10)[..60]).is_none());
        assert!(RunKey::of(&segment(1000, &[], 0x10)[..61]).is_some());
    }
}
