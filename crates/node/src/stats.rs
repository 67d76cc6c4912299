//! Counters of the data plane, shared by every task that moves packets.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What the node moved and dropped. Read with [`NodeStats::get`].
#[derive(Debug, Default)]
pub struct NodeStats {
    /// IPv6 packets read from the TUN device.
    pub tun_rx: AtomicU64,
    /// IPv6 packets written to the TUN device.
    pub tun_tx: AtomicU64,
    /// Data packets forwarded for others.
    pub forwarded: AtomicU64,
    /// Data packets that failed to decrypt.
    pub decrypt_failures: AtomicU64,
    /// Packets dropped because a link's queue was full.
    pub link_queue_full: AtomicU64,
    /// Packets dropped for want of a route.
    pub no_route: AtomicU64,
    /// Packets dropped because their hop limit ran out.
    pub hop_limit_exceeded: AtomicU64,
    /// Packets dropped as malformed (bad IPv6 header, bad payload header).
    pub malformed: AtomicU64,
    /// Control packets skipped as invalid (unknown TLV and the like).
    pub control_ignored: AtomicU64,
    /// Control TLVs handed to the router, by type: Hello, IHU, Update, route
    /// request, seqno request.
    pub tlvs: [AtomicU64; 5],
    /// Links that came up.
    pub links_up: AtomicU64,
    /// Links that went down.
    pub links_down: AtomicU64,
    /// Neighbours closed for sending no IHU for too long.
    pub peers_died: AtomicU64,
    /// Message frames dropped because the message bus was busy (their senders
    /// retransmit them).
    pub bus_queue_full: AtomicU64,
    /// TLS handshakes with peers that failed, either direction: another private
    /// network's name or key, or a peer that does not speak TLS (private networks
    /// only).
    pub tls_handshake_failures: AtomicU64,
    /// Data packets for us whose inner IPv6 source or destination lies outside the
    /// outer header's `/64`s (a forged source, or a packet turned round).
    pub spoofed: AtomicU64,
    /// Data packets for us that were opened before (replays).
    pub replayed: AtomicU64,
    /// Links closed because their byte stream did not frame (garbage, a bad
    /// version or type, an oversized length).
    pub framing_errors: AtomicU64,
    /// Times a link was not read for a while because it sent control TLVs faster
    /// than its rate.
    pub control_throttled: AtomicU64,
    /// Inbound connection attempts closed for arriving faster than the rate.
    pub connections_rate_limited: AtomicU64,
    /// Inbound connections closed because the inbound peer table was full.
    pub connections_over_limit: AtomicU64,
    /// QUIC links a neighbour dropped the way upstream does when it has a packet
    /// too large for a datagram to send us (closed by the peer without a reason,
    /// right after carrying data or opening; see `quic_flaps`).
    pub quic_oversize_drops: AtomicU64,
    /// Neighbours recognised as dropping QUIC links that way (each once, until
    /// forgotten).
    pub quic_oversize_neighbours: AtomicU64,
    /// Inbound QUIC connections refused because QUIC to their address was paused.
    pub quic_paused_refusals: AtomicU64,
}

/// The names of [`NodeStats::tlvs`]' entries, in order.
pub const TLV_TYPES: [&str; 5] = ["hello", "ihu", "update", "route_request", "seqno_request"];

impl NodeStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Addresses each packet table holds; packets of further addresses are counted in
/// [`PacketStats::untracked`] only, so a peer sending from many addresses cannot
/// grow the tables without bound.
const MAX_ADDRESSES: usize = 65_536;

/// Counts per address.
pub(crate) type AddrCounts = Vec<(Ipv6Addr, Count)>;

/// Packet and byte counts per address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Data packets.
    pub packets: u64,
    /// Bytes of their encrypted payloads.
    pub bytes: u64,
}

/// `/64`s whose use is remembered between two reports to the router; packets of
/// further ones are not reported until the next round.
const MAX_RECENT: usize = 4_096;

#[derive(Debug, Default)]
struct Tables {
    by_source: Map<Ipv6Addr, Count>,
    by_destination: Map<Ipv6Addr, Count>,
    untracked: u64,
    /// Packets per source and destination `/64` since the last
    /// [`PacketStats::take_recent`]: what the router is told the data plane used.
    recent: Map<u64, u64>,
}

/// Data packets by source and by destination address: every packet
/// sent, forwarded or delivered. Tasks on the packet path count into their own
/// [`Tally`] and merge it here once per batch, so the lock is taken per batch, not
/// per packet.
#[derive(Debug, Default)]
pub(crate) struct PacketStats {
    tables: Mutex<Tables>,
}

impl PacketStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Both tables, and the packets whose addresses did not fit.
    pub(crate) fn snapshot(&self) -> (AddrCounts, AddrCounts, u64) {
        let t = self.lock();
        (
            t.by_source.iter().map(|(a, c)| (*a, *c)).collect(),
            t.by_destination.iter().map(|(a, c)| (*a, *c)).collect(),
            t.untracked,
        )
    }

    /// The `/64`s (their first 64 bits) packets came from or went to since the
    /// last call, with packet counts, appended to `out`.
    pub(crate) fn take_recent(&self, out: &mut Vec<(u64, u64)>) {
        let recent = std::mem::take(&mut self.lock().recent);
        out.extend(recent);
    }
}

/// The first 64 bits of `addr`.
pub(crate) fn prefix64(addr: Ipv6Addr) -> u64 {
    (u128::from(addr) >> 64) as u64
}

/// Tallies per task, merged into [`PacketStats`] when full and after every batch.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    entries: Vec<(Ipv6Addr, Ipv6Addr, Count)>,
}

/// Distinct (source, destination) pairs a tally holds before it merges.
const TALLY_PAIRS: usize = 16;

impl Tally {
    /// Counts one data packet with an encrypted payload of `bytes`.
    pub(crate) fn count(
        &mut self,
        stats: &PacketStats,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        bytes: usize,
    ) {
        // A batch is usually one flow: the last pair is the likely hit.
        if let Some((_, _, c)) = self
            .entries
            .iter_mut()
            .rev()
            .find(|(s, d, _)| *s == src && *d == dst)
        {
            c.packets += 1;
            c.bytes += bytes as u64;
            return;
        }
        if self.entries.len() >= TALLY_PAIRS {
            self.merge(stats);
        }
        self.entries.push((
            src,
            dst,
            Count {
                packets: 1,
                bytes: bytes as u64,
            },
        ));
    }

    /// Adds what was counted to the shared tables.
    pub(crate) fn merge(&mut self, stats: &PacketStats) {
        if self.entries.is_empty() {
            return;
        }
        let mut t = stats.lock();
        for (src, dst, c) in self.entries.drain(..) {
            for prefix in [prefix64(src), prefix64(dst)] {
                let n = t.recent.len();
                match t.recent.get_mut(&prefix) {
                    Some(used) => *used += c.packets,
                    None if n < MAX_RECENT => {
                        t.recent.insert(prefix, c.packets);
                    }
                    None => {}
                }
            }
            for (table, addr) in [(0, src), (1, dst)] {
                let tables = &mut *t;
                let map = if table == 0 {
                    &mut tables.by_source
                } else {
                    &mut tables.by_destination
                };
                if let Some(e) = map.get_mut(&addr) {
                    e.packets += c.packets;
                    e.bytes += c.bytes;
                } else if map.len() < MAX_ADDRESSES {
                    map.insert(addr, c);
                } else {
                    tables.untracked += c.packets;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_per_address() {
        let stats = PacketStats::default();
        let mut tally = Tally::default();
        let a: Ipv6Addr = "400::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let b: Ipv6Addr = "400::2".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        for _ in 0..3 {
            tally.count(&stats, a, b, 100);
        }
        tally.count(&stats, b, a, 50);
        tally.merge(&stats);
        let (src, dst, untracked) = stats.snapshot();
        assert_eq!(untracked, 0);
        let find = |v: &[(Ipv6Addr, Count)], ip| v.iter().find(|(x, _)| *x == ip).map(|(_, c)| *c);
        assert_eq!(
            find(&src, a),
            Some(Count {
                packets: 3,
                bytes: 300
            })
        );
        assert_eq!(
            find(&src, b),
            Some(Count {
                packets: 1,
                bytes: 50
            })
        );
        assert_eq!(
            find(&dst, b),
            Some(Count {
                packets: 3,
                bytes: 300
            })
        );
        // Many pairs merge on their own.
        for i in 0..100u16 {
            tally.count(&stats, Ipv6Addr::new(0x401, 0, 0, 0, 0, 0, 0, i), b, 1);
        }
        tally.merge(&stats);
        assert_eq!(stats.snapshot().0.len(), 102);
    }
}
