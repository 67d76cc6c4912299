//! The forwarding snapshot: what the packet path needs, published by the core after
//! every change and read without locks.

use std::net::{IpAddr, Ipv6Addr};

use bytes::Bytes;
use mycelium_proto::routing::{PeerId, Router};
use mycelium_proto::{PublicKey, Subnet};
use tokio::sync::mpsc;

/// Where the data plane sends bytes for one link.
pub(crate) type LinkTx = mpsc::Sender<Bytes>;

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An immutable view of the routing table and the links.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Every known subnet: its owner's key, and the link of its selected route if
    /// there is one.
    subnets: Map<Subnet, (PublicKey, Option<PeerId>)>,
    /// Prefix lengths present, longest first.
    prefix_lens: Vec<u8>,
    links: Map<PeerId, LinkTx>,
}

/// A routing decision for one destination.
pub(crate) enum Route<'a> {
    /// Send on this link, encrypting for this key.
    Via(&'a LinkTx, PublicKey),
    /// The core must decide (unknown, being resolved, or no selected route).
    Ask,
}

impl Snapshot {
    pub(crate) fn build(router: &Router, links: &Map<PeerId, LinkTx>) -> Self {
        let mut subnets = Map::default();
        let mut lens = Vec::new();
        for (subnet, key, next) in router.forwarding_entries() {
            subnets.insert(subnet, (key, next));
            if !lens.contains(&subnet.prefix_len()) {
                lens.push(subnet.prefix_len());
            }
        }
        lens.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            subnets,
            prefix_lens: lens,
            links: links.clone(),
        }
    }

    fn lookup(&self, addr: Ipv6Addr) -> Option<&(PublicKey, Option<PeerId>)> {
        self.prefix_lens.iter().find_map(|&len| {
            let key = Subnet::new(IpAddr::V6(addr), len).ok()?.network();
            self.subnets.get(&key)
        })
    }

    /// The route for a destination.
    pub(crate) fn route(&self, dst: Ipv6Addr) -> Route<'_> {
        match self.lookup(dst) {
            Some((key, Some(peer))) => match self.links.get(peer) {
                Some(tx) => Route::Via(tx, *key),
                None => Route::Ask,
            },
            _ => Route::Ask,
        }
    }

    /// The key owning the subnet of `addr`, from any route, selected or not.
    pub(crate) fn key_for(&self, addr: Ipv6Addr) -> Option<PublicKey> {
        self.lookup(addr).map(|(k, _)| *k)
    }
}
