//! The peer registry: every endpoint the node knows, how it came to know it, whether
//! it is connected, and the bytes moved over it.
//!
//! Static peers come from the command line, the config file or the API; they are
//! dialled until removed. Discovered peers come from link-local beacons and are
//! forgotten after repeated failures. Inbound peers exist while their connection
//! does. Each entry owns a cancellation token: removing the entry stops its dialler
//! and closes its connection, which is how `DELETE /admin/peers/{endpoint}` works.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mycelium_proto::endpoint::{Endpoint, EndpointAddr};
use tokio_util::sync::CancellationToken;

/// Peers found by link-local discovery kept at once; beyond it, new beacons are
/// ignored.
pub(crate) const MAX_DISCOVERED: usize = 256;

/// Static peers at once (API additions included).
pub(crate) const MAX_STATIC: usize = 4_096;

/// How the node came to know a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Configured (command line, config file or API); redialled until removed.
    Static,
    /// Found by link-local discovery.
    LinkLocalDiscovery,
    /// Connected to us.
    Inbound,
}

/// Whether a peer is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A link is up.
    Alive,
    /// A connection attempt is running.
    Connecting,
    /// Not connected.
    Dead,
}

/// A peer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Where the peer is.
    pub endpoint: Endpoint,
    /// How we know it.
    pub kind: PeerKind,
    /// Whether it is connected.
    pub state: ConnectionState,
    /// Bytes written to it, all framing included, over every connection.
    pub tx_bytes: u64,
    /// Bytes read from it.
    pub rx_bytes: u64,
    /// Packets (data and control) written to it.
    pub tx_packets: u64,
    /// Packets read from it.
    pub rx_packets: u64,
    /// Time since the endpoint became known.
    pub discovered: Duration,
    /// Time since the last successful connection, if there was one.
    pub last_connected: Option<Duration>,
}

/// Why a peer could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// An entry with the same protocol and address exists.
    #[error("A peer identified by that endpoint already exists")]
    AlreadyExists,
    /// No entry has that protocol and address.
    #[error("A peer identified by that endpoint does not exist")]
    NotFound,
    /// The registry holds as many peers of that kind as it may.
    #[error("too many peers")]
    TooMany,
    /// The node is shutting down.
    #[error("the node is stopping")]
    Stopping,
}

/// Byte counters of one endpoint, shared with whichever link serves it.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    tx: AtomicU64,
    rx: AtomicU64,
    tx_packets: AtomicU64,
    rx_packets: AtomicU64,
}

impl LinkCounters {
    /// Counts `packets` packets of `bytes` bytes in all written (a writer adds
    /// up a batch and counts it once).
    pub(crate) fn sent(&self, bytes: usize, packets: u64) {
        if packets > 0 {
            self.tx.fetch_add(bytes as u64, Ordering::Relaxed);
            self.tx_packets.fetch_add(packets, Ordering::Relaxed);
        }
    }

    /// Counts `n` bytes read.
    pub(crate) fn received(&self, n: usize) {
        self.rx.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` packets read.
    pub(crate) fn received_packets(&self, n: u64) {
        if n > 0 {
            self.rx_packets.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn packet_totals(&self) -> (u64, u64) {
        (
            self.tx_packets.load(Ordering::Relaxed),
            self.rx_packets.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.tx.load(Ordering::Relaxed),
            self.rx.load(Ordering::Relaxed),
        )
    }
}

/// What a link needs from its registry entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryHandle {
    pub(crate) endpoint: Endpoint,
    pub(crate) counters: Arc<LinkCounters>,
    /// Cancelled when the entry is removed or the node stops.
    pub(crate) cancel: CancellationToken,
    /// An inbound connection served under another kind's entry (see
    /// [`Registry::insert`]): it neither changes nor forgets that entry.
    borrowed: bool,
}

#[derive(Debug)]
struct Entry {
    handle: EntryHandle,
    kind: PeerKind,
    state: ConnectionState,
    discovered: Instant,
    last_connected: Option<Instant>,
}

/// Two endpoints name the same peer when protocol and address agree; an IPv4
/// address and its IPv4-mapped IPv6 form (how a dual-stack socket reports it) agree.
fn same(a: &Endpoint, b: &Endpoint) -> bool {
    let canonical = |e: &Endpoint| match e.addr() {
        EndpointAddr::Socket(s) => {
            EndpointAddr::Socket(std::net::SocketAddr::new(s.ip().to_canonical(), s.port()))
        }
        other => other,
    };
    a.proto() == b.proto() && canonical(a) == canonical(b)
}

/// Every known peer. Small (bounded by the inbound limit, [`MAX_STATIC`] and the
/// discovery bound), read by the API and written on connection events, never on the
/// packet path.
#[derive(Debug)]
pub(crate) struct Registry {
    entries: Mutex<Vec<Entry>>,
    shutdown: CancellationToken,
    /// Inbound peers kept at once; more are refused at accept time.
    max_inbound: usize,
}

impl Registry {
    pub(crate) fn new(shutdown: CancellationToken, max_inbound: usize) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            shutdown,
            max_inbound,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new endpoint, refusing one that is known already or one past the
    /// bound for its kind.
    pub(crate) fn insert(
        &self,
        endpoint: Endpoint,
        kind: PeerKind,
        state: ConnectionState,
    ) -> Result<EntryHandle, PeerError> {
        if self.shutdown.is_cancelled() {
            return Err(PeerError::Stopping);
        }
        let mut entries = self.lock();
        if let Some(at) = entries
            .iter()
            .position(|e| same(&e.handle.endpoint, &endpoint))
        {
            if kind != PeerKind::Inbound {
                return Err(PeerError::AlreadyExists);
            }
            let known = &entries[at];
            if known.kind != PeerKind::Inbound {
                // A peer we dial connects to us from the address we dial (QUIC
                // shares one socket for both): serve the connection under its
                // entry. Refusing it would leave two nodes that list each other
                // with no link at all when each refuses the other's dial.
                return Ok(EntryHandle {
                    endpoint,
                    counters: known.handle.counters.clone(),
                    cancel: known.handle.cancel.child_token(),
                    borrowed: true,
                });
            }
            // A newer connection from the same address replaces the old one, as
            // upstream does for QUIC (a peer that restarted).
            let old = entries.swap_remove(at);
            old.handle.cancel.cancel();
        }
        let bound = match kind {
            PeerKind::Inbound => self.max_inbound,
            PeerKind::Static => MAX_STATIC,
            PeerKind::LinkLocalDiscovery => MAX_DISCOVERED,
        };
        if entries.iter().filter(|e| e.kind == kind).count() >= bound {
            return Err(PeerError::TooMany);
        }
        let now = Instant::now();
        let handle = EntryHandle {
            endpoint,
            counters: Arc::default(),
            cancel: self.shutdown.child_token(),
            borrowed: false,
        };
        entries.push(Entry {
            handle: handle.clone(),
            kind,
            state,
            discovered: now,
            last_connected: (state == ConnectionState::Alive).then_some(now),
        });
        Ok(handle)
    }

    /// Removes an endpoint, stopping its dialler and closing its connection.
    pub(crate) fn remove(&self, endpoint: &Endpoint) -> Result<(), PeerError> {
        let mut entries = self.lock();
        let at = entries
            .iter()
            .position(|e| same(&e.handle.endpoint, endpoint))
            .ok_or(PeerError::NotFound)?;
        let entry = entries.swap_remove(at);
        entry.handle.cancel.cancel();
        Ok(())
    }

    /// Removes the entry `handle` came from, if it is still there (a dialler that
    /// gave up, an inbound connection that ended).
    pub(crate) fn forget(&self, handle: &EntryHandle) {
        if handle.borrowed {
            return;
        }
        let mut entries = self.lock();
        if let Some(at) = entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.handle.counters, &handle.counters))
        {
            entries.swap_remove(at);
        }
    }

    /// Updates an entry's connection state.
    pub(crate) fn set_state(&self, handle: &EntryHandle, state: ConnectionState) {
        if handle.borrowed {
            return;
        }
        let mut entries = self.lock();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| Arc::ptr_eq(&e.handle.counters, &handle.counters))
        {
            e.state = state;
            if state == ConnectionState::Alive {
                e.last_connected = Some(Instant::now());
            }
        }
    }

    /// Whether an endpoint with this address is known (any kind).
    pub(crate) fn knows_socket(&self, addr: std::net::SocketAddr) -> bool {
        self.lock()
            .iter()
            .any(|e| e.handle.endpoint.addr() == EndpointAddr::Socket(addr))
    }

    /// Every entry, as the API shows it.
    pub(crate) fn list(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|e| {
                let (tx_bytes, rx_bytes) = e.handle.counters.totals();
                let (tx_packets, rx_packets) = e.handle.counters.packet_totals();
                PeerInfo {
                    endpoint: e.handle.endpoint,
                    kind: e.kind,
                    state: e.state,
                    tx_bytes,
                    rx_bytes,
                    tx_packets,
                    rx_packets,
                    discovered: now.saturating_duration_since(e.discovered),
                    last_connected: e.last_connected.map(|t| now.saturating_duration_since(t)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn duplicates_are_refused_by_protocol_and_address() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        r.insert(
            ep("tcp://127.0.0.1:9651"),
            PeerKind::Static,
            ConnectionState::Dead,
        )
        .unwrap();
        assert_eq!(
            r.insert(
                ep("tcp://127.0.0.1:9651"),
                PeerKind::Static,
                ConnectionState::Dead
            )
            .unwrap_err(),
            PeerError::AlreadyExists
        );
        // Another protocol on the same address is another peer.
        r.insert(
            ep("quic://127.0.0.1:9651"),
            PeerKind::Static,
            ConnectionState::Dead,
        )
        .unwrap();
        assert_eq!(r.list().len(), 2);
    }

    #[test]
    fn removing_cancels_the_entry() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        let h = r
            .insert(ep("tcp://[::1]:1"), PeerKind::Static, ConnectionState::Dead)
            .unwrap();
        assert_eq!(r.remove(&ep("tcp://[::1]:2")), Err(PeerError::NotFound));
        r.remove(&ep("tcp://[::1]:1")).unwrap();
        assert!(h.cancel.is_cancelled());
        assert!(r.list().is_empty());
    }

    #[test]
    fn state_and_counters_show_in_the_list() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        let h = r
            .insert(
                ep("tcp://[::1]:1"),
                PeerKind::Inbound,
                ConnectionState::Connecting,
            )
            .unwrap();
        assert_eq!(r.list()[0].last_connected, None);
        r.set_state(&h, ConnectionState::Alive);
        h.counters.sent(10, 1);
        h.counters.received(7);
        let info = &r.list()[0];
        assert_eq!(info.state, ConnectionState::Alive);
        assert_eq!((info.tx_bytes, info.rx_bytes), (10, 7));
        assert!(info.last_connected.is_some());
        r.forget(&h);
        assert!(r.list().is_empty());
    }

    #[test]
    fn a_new_inbound_connection_replaces_the_old_one() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        let old = r
            .insert(
                ep("quic://[::1]:9"),
                PeerKind::Inbound,
                ConnectionState::Alive,
            )
            .unwrap();
        let new = r
            .insert(
                ep("quic://[::1]:9"),
                PeerKind::Inbound,
                ConnectionState::Alive,
            )
            .unwrap();
        assert!(old.cancel.is_cancelled() && !new.cancel.is_cancelled());
        // The old link ending does not take the new entry with it.
        r.forget(&old);
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn an_inbound_connection_from_a_static_peer_is_served_under_its_entry() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        let dialled = r
            .insert(
                ep("quic://[::1]:9"),
                PeerKind::Static,
                ConnectionState::Dead,
            )
            .unwrap();
        let inbound = r
            .insert(
                ep("quic://[::1]:9"),
                PeerKind::Inbound,
                ConnectionState::Alive,
            )
            .unwrap();
        inbound.counters.sent(5, 1);
        r.set_state(&inbound, ConnectionState::Alive);
        r.forget(&inbound);
        let list = r.list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].kind, list[0].tx_bytes), (PeerKind::Static, 5));
        // Removing the static peer closes the inbound link too.
        r.remove(&ep("quic://[::1]:9")).unwrap();
        assert!(dialled.cancel.is_cancelled() && inbound.cancel.is_cancelled());
        // But an API add of a known endpoint is still a conflict.
        r.insert(
            ep("tcp://[::1]:9"),
            PeerKind::Inbound,
            ConnectionState::Alive,
        )
        .unwrap();
        assert_eq!(
            r.insert(ep("tcp://[::1]:9"), PeerKind::Static, ConnectionState::Dead)
                .unwrap_err(),
            PeerError::AlreadyExists
        );
    }

    const MAX_INBOUND: usize = 1_024;

    #[test]
    fn inbound_entries_are_bounded() {
        let r = Registry::new(CancellationToken::new(), MAX_INBOUND);
        for port in 0..MAX_INBOUND as u16 {
            r.insert(
                Endpoint::tcp(([127, 0, 0, 1], port).into()),
                PeerKind::Inbound,
                ConnectionState::Alive,
            )
            .unwrap();
        }
        let more = r.insert(
            Endpoint::tcp(([127, 0, 0, 2], 1).into()),
            PeerKind::Inbound,
            ConnectionState::Alive,
        );
        assert_eq!(more.unwrap_err(), PeerError::TooMany);
    }
}
