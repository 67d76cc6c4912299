//! The forwarding snapshot: what the packet path needs, published by the core and
//! read without locks.
//!
//! It has two parts, published in two ways, because they change at very different
//! rates and sizes:
//!
//! - the links (peer id to sender): a handful, changing when a link comes or goes.
//!   [`Snapshot`] holds them and is replaced whole through the node's `ArcSwap`.
//! - the forwarding table (subnet to its owner's key and the next hop of its
//!   selected route): up to `max_subnets` entries (250,000 by default; a public
//!   node holds about 100,000), changing with every selection the router makes.
//!   [`ForwardingTable`] is shared by every snapshot and updated in place, shard
//!   by shard, by the core only ([`TableWriter`]).
//!
//! # Why sharded read-copy-update
//!
//! Rebuilding a whole map after every batch of router input costs O(table) per
//! batch: 13 to 25 ms for 100,000 subnets, some 1,500 times while a public node
//! takes in four neighbours' tables (the core then needed 15 s of CPU for 400,000
//! updates). Copy-on-write of a whole snapshot made of shards would still pay for
//! every shard's reference count on each publication. Here each shard sits behind
//! its own `ArcSwap`: a change rebuilds only the shard that holds the subnet (a
//! dozen or two entries) and swaps its pointer, so publishing costs O(changes x
//! shard size) and nothing per unchanged shard: 0.35 to 0.6 us per changed subnet
//! at 100,000 subnets, the router's lookup of the new value included. A reader
//! loads one shard pointer per lookup (lock-free, no allocation), binary searches
//! its sorted keys, and copies the entry out.
//!
//! A reader may see one shard updated and another not yet; every entry it finds is
//! one the router held at some point, which is all a snapshot ever promised. Once
//! [`TableWriter::update`] returns, every later lookup sees the new entries, so
//! packets the core sends right after publishing find the routes it published,
//! and a new route reaches the data plane with the flush that follows the input
//! that made it (the core flushes at least every `FLUSH_TLVS` control TLVs).
//!
//! # Memory
//!
//! One copy at steady state (an old shard lives only while a reader still holds
//! it). Nearly every subnet is a `/64`, kept in a table keyed by the 64-bit prefix:
//! 48 bytes per entry (8 prefix, 32 key, 8 next hop), in exactly sized sorted
//! slices, plus the shard pointers and headers: 53 bytes per subnet at 100,000
//! (57 with the allocator's headers), against 84 for the map it replaces (which a
//! rebuild also held twice). Other prefix lengths go to a second table of the same
//! kind keyed by address and length.
//!
//! Shards are picked by a hash keyed per node, so a peer cannot pile its subnets
//! into one shard to make every change there expensive.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use foldhash::fast::FixedState;
use mycelium_proto::routing::PeerId;
use mycelium_proto::{PublicKey, Subnet};
use tokio::sync::mpsc;

/// Where the data plane sends bytes for one link.
pub(crate) type LinkTx = mpsc::Sender<Bytes>;

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Entries per shard when the table is at its largest (`max_subnets`): a change
/// copies about this many entries (48 bytes each); fewer would spend more on
/// shard pointers and headers.
const SHARD_TARGET: usize = 32;

/// An immutable view of the links, with the shared forwarding table.
#[derive(Debug)]
pub(crate) struct Snapshot {
    links: Map<PeerId, LinkTx>,
    table: Arc<ForwardingTable>,
}

/// A routing decision for one destination.
pub(crate) enum Route<'a> {
    /// Send on this link, encrypting for this key.
    Via(&'a LinkTx, PublicKey),
    /// The core must decide (unknown, being resolved, or no selected route).
    Ask,
}

impl Snapshot {
    /// The links as they are now, with the table.
    pub(crate) fn new(links: Map<PeerId, LinkTx>, table: Arc<ForwardingTable>) -> Self {
        Self { links, table }
    }

    /// The route for a destination.
    pub(crate) fn route(&self, dst: Ipv6Addr) -> Route<'_> {
        match self.table.lookup(dst) {
            Some(Forward {
                key,
                hop: Some(peer),
            }) => match self.links.get(&PeerId(peer.get())) {
                Some(tx) => Route::Via(tx, key),
                None => Route::Ask,
            },
            _ => Route::Ask,
        }
    }

    /// The key owning the subnet of `addr`, from any route, selected or not.
    pub(crate) fn key_for(&self, addr: Ipv6Addr) -> Option<PublicKey> {
        self.table.lookup(addr).map(|f| f.key)
    }
}

/// What the data plane needs of one subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward {
    /// The key of the node owning the subnet.
    pub(crate) key: PublicKey,
    /// The link of the selected route, if there is one. The node numbers links from
    /// 1, so a non-zero id loses nothing and saves 8 bytes per entry.
    hop: Option<NonZeroU64>,
}

impl Forward {
    pub(crate) fn new(key: PublicKey, next_hop: Option<PeerId>) -> Self {
        Self {
            key,
            hop: next_hop.and_then(|p| NonZeroU64::new(p.0)),
        }
    }

    #[cfg(test)]
    pub(crate) fn next_hop(&self) -> Option<PeerId> {
        self.hop.map(|p| PeerId(p.get()))
    }
}

/// A prefix other than a `/64`: its masked address and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Other {
    hi: u64,
    lo: u64,
    len: u8,
}

/// Where a subnet lives in the table.
enum TableKey {
    Slash64(u64),
    Other(Other),
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl TableKey {
    /// IPv4 subnets have none: the table answers IPv6 lookups only. Neither has a
    /// prefix with bits set past its length (a prefix as it came off the wire): the
    /// router's own lookups never find those, so neither must the data plane's.
    fn of(subnet: &Subnet) -> Option<Self> {
        let IpAddr::V6(addr) = subnet.address() else {
            return None;
        };
        let len = subnet.prefix_len();
        let bits = u128::from(addr);
        if bits & !mask128(len) != 0 {
            return None;
        }
        Some(if len == 64 {
            TableKey::Slash64((bits >> 64) as u64)
        } else {
            TableKey::Other(Other {
                hi: (bits >> 64) as u64,
                lo: bits as u64,
                len,
            })
        })
    }
}

/// What a shard is keyed by.
trait ShardKey: Copy + Ord + Hash {
    /// The subnet this key stands for.
    fn subnet(self) -> Subnet;
}

impl ShardKey for u64 {
    fn subnet(self) -> Subnet {
        Subnet::v6_64(Ipv6Addr::from(u128::from(self) << 64))
    }
}

impl ShardKey for Other {
    fn subnet(self) -> Subnet {
        let addr = Ipv6Addr::from((u128::from(self.hi) << 64) | u128::from(self.lo));
        // The length came from a subnet, so it is at most 128.
        Subnet::new(IpAddr::V6(addr), self.len).unwrap_or_else(|_| Subnet::v6_64(addr))
    }
}

/// One entry of a shard.
#[derive(Debug, Clone, Copy)]
struct Slot<K> {
    key: K,
    fwd: Forward,
}

/// Entries sorted by key, exactly sized. The keys are apart from the rest so a
/// lookup searches a few cache lines of keys (a dozen or two, 8 bytes each for a
/// `/64`), not the whole entries: with the entries together, each probe of the
/// search was a cache miss of its own, and lookups took five times as long.
#[derive(Debug)]
struct Shard<K> {
    keys: Box<[K]>,
    fwds: Box<[Forward]>,
}

impl<K: Ord + Copy> Shard<K> {
    fn get(&self, key: K) -> Option<Forward> {
        let i = self.keys.binary_search(&key).ok()?;
        self.fwds.get(i).copied()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn slot(&self, i: usize) -> Slot<K> {
        Slot {
            key: self.keys[i],
            fwd: self.fwds[i],
        }
    }

    fn slots(&self) -> impl Iterator<Item = Slot<K>> + '_ {
        (0..self.len()).map(|i| self.slot(i))
    }
}

/// A table split into shards, each replaced whole when it changes.
#[derive(Debug)]
struct Shards<K> {
    shards: Box<[ArcSwap<Shard<K>>]>,
    /// Shared by every empty shard, so an empty table costs one pointer per shard.
    empty: Arc<Shard<K>>,
}

impl<K: ShardKey> Shards<K> {
    fn new(count: usize) -> Self {
        let empty = Arc::new(Shard {
            keys: Box::default(),
            fwds: Box::default(),
        });
        Self {
            shards: (0..count.max(1))
                .map(|_| ArcSwap::new(empty.clone()))
                .collect(),
            empty,
        }
    }

    fn index(&self, hasher: &FixedState, key: K) -> usize {
        // Scales the hash to the shard count (no modulo, any count).
        ((u128::from(hasher.hash_one(key)) * self.shards.len() as u128) >> 64) as usize
    }

    fn get(&self, hasher: &FixedState, key: K) -> Option<Forward> {
        self.shards[self.index(hasher, key)].load().get(key)
    }

    /// Brings the entries of `ops` (shard index and key, sorted, no key twice) up
    /// to date with `current` (`None`: the subnet is gone). Calls `counted` with
    /// +1 for every entry added and -1 for every entry removed.
    fn apply(
        &self,
        ops: &[(usize, K)],
        current: &impl Fn(&Subnet) -> Option<Forward>,
        mut counted: impl FnMut(K, i64),
    ) {
        // The new value of each key of one shard: looked up first, so that a shard
        // nothing changed in is not copied, and one that changed is built once at
        // its exact size.
        let mut values = Vec::new();
        for group in ops.chunk_by(|a, b| a.0 == b.0) {
            let index = group[0].0;
            let old = self.shards[index].load();
            values.clear();
            let mut len = old.len();
            let mut changed = false;
            for &(_, key) in group {
                let value = current(&key.subnet());
                match (old.get(key), value) {
                    (Some(was), Some(now)) => changed |= was != now,
                    (Some(_), None) => {
                        changed = true;
                        len -= 1;
                    }
                    (None, Some(_)) => {
                        changed = true;
                        len += 1;
                    }
                    (None, None) => {}
                }
                values.push(value);
            }
            if !changed {
                continue;
            }
            let mut keys = Vec::with_capacity(len);
            let mut fwds = Vec::with_capacity(len);
            let mut i = 0;
            for (&(_, key), value) in group.iter().zip(&values) {
                while i < old.len() && old.keys[i] < key {
                    keys.push(old.keys[i]);
                    fwds.push(old.fwds[i]);
                    i += 1;
                }
                let existed = i < old.len() && old.keys[i] == key;
                if existed {
                    i += 1;
                }
                match value {
                    Some(fwd) => {
                        keys.push(key);
                        fwds.push(*fwd);
                        if !existed {
                            counted(key, 1);
                        }
                    }
                    None if existed => counted(key, -1),
                    None => {}
                }
            }
            keys.extend_from_slice(&old.keys[i..]);
            fwds.extend_from_slice(&old.fwds[i..]);
            self.store(index, keys, fwds);
        }
    }

    /// Makes the table hold exactly `entries`, sorted by shard and key with no key
    /// twice; shards whose entries are unchanged are left alone.
    fn replace_all(&self, entries: &[(usize, K, Forward)]) {
        let mut rest = entries;
        for index in 0..self.shards.len() {
            let n = rest.iter().take_while(|e| e.0 == index).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let old = self.shards[index].load();
            let same = old.len() == group.len()
                && old
                    .slots()
                    .zip(group)
                    .all(|(s, e)| s.key == e.1 && s.fwd == e.2);
            if !same {
                let keys = group.iter().map(|e| e.1).collect();
                let fwds = group.iter().map(|e| e.2).collect();
                self.store(index, keys, fwds);
            }
        }
    }

    /// Replaces shard `index` with these entries (sorted, as many keys as values).
    fn store(&self, index: usize, keys: Vec<K>, fwds: Vec<Forward>) {
        let shard = if keys.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(Shard {
                keys: keys.into_boxed_slice(),
                fwds: fwds.into_boxed_slice(),
            })
        };
        self.shards[index].store(shard);
    }

    /// Heap bytes held: shard pointers, and each non-empty shard's header and
    /// entries (allocator overhead not counted).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let pointers = self.shards.len() * std::mem::size_of::<ArcSwap<Shard<K>>>();
        let shards: usize = self
            .shards
            .iter()
            .map(|s| s.load())
            .filter(|s| s.len() > 0)
            .map(|s| {
                // The Arc's two counters and the two boxed slices' pointers and
                // lengths, then the slices.
                2 * std::mem::size_of::<usize>()
                    + std::mem::size_of::<Shard<K>>()
                    + s.len() * (std::mem::size_of::<K>() + std::mem::size_of::<Forward>())
            })
            .sum();
        pointers + shards
    }

    #[cfg(test)]
    fn non_empty_shards(&self) -> usize {
        self.shards.iter().filter(|s| s.load().len() > 0).count()
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(K, Forward)> {
        self.shards
            .iter()
            .flat_map(|s| s.load().slots().map(|e| (e.key, e.fwd)).collect::<Vec<_>>())
            .collect()
    }
}

/// Subnet to forwarding entry, for longest-prefix lookups by the data plane.
/// Readers use [`ForwardingTable::lookup`] (through [`Snapshot`]); only the core's
/// [`TableWriter`] changes it.
#[derive(Debug)]
pub(crate) struct ForwardingTable {
    hasher: FixedState,
    slash64: Shards<u64>,
    others: Shards<Other>,
    /// The prefix lengths present in `others`, one bit per length 0..=128, so a
    /// lookup tries only those (nearly always none).
    other_lens: [AtomicU64; 3],
}

impl ForwardingTable {
    fn new(max_subnets: usize, seed: u64) -> Self {
        let shards = max_subnets.div_ceil(SHARD_TARGET).clamp(1, 1 << 16);
        Self {
            hasher: FixedState::with_seed(seed),
            slash64: Shards::new(shards),
            others: Shards::new(shards),
            other_lens: Default::default(),
        }
    }

    /// The entry of the longest prefix holding `addr`.
    pub(crate) fn lookup(&self, addr: Ipv6Addr) -> Option<Forward> {
        let bits = u128::from(addr);
        let lens = [
            self.other_lens[0].load(Ordering::Acquire),
            self.other_lens[1].load(Ordering::Acquire),
            self.other_lens[2].load(Ordering::Acquire),
        ];
        let other = |len: u8| {
            let masked = bits & mask128(len);
            self.others.get(
                &self.hasher,
                Other {
                    hi: (masked >> 64) as u64,
                    lo: masked as u64,
                    len,
                },
            )
        };
        // Longer than /64 first, longest first: bit i of `above` is length 65 + i.
        let mut above = (lens[1] >> 1) | (lens[2] << 63);
        while above != 0 {
            let i = 63 - above.leading_zeros();
            above &= !(1 << i);
            if let Some(f) = other(65 + i as u8) {
                return Some(f);
            }
        }
        if let Some(f) = self.slash64.get(&self.hasher, (bits >> 64) as u64) {
            return Some(f);
        }
        // Then shorter ones: bit i of `below` is length i.
        let mut below = lens[0];
        while below != 0 {
            let i = 63 - below.leading_zeros();
            below &= !(1 << i);
            if let Some(f) = other(i as u8) {
                return Some(f);
            }
        }
        None
    }
}

/// The only writer of a [`ForwardingTable`] (the core owns it): keeps the counts
/// the table's readers need and the scratch space of updates.
#[derive(Debug)]
pub(crate) struct TableWriter {
    table: Arc<ForwardingTable>,
    slash64_len: usize,
    other_counts: [usize; 129],
    /// Scratch: the shard and key of each subnet to update.
    ops64: Vec<(usize, u64)>,
    ops_other: Vec<(usize, Other)>,
}

impl TableWriter {
    /// An empty table for at most `max_subnets` subnets, with its shards picked by a
    /// hash keyed by `seed` (random per node).
    pub(crate) fn new(max_subnets: usize, seed: u64) -> Self {
        Self {
            table: Arc::new(ForwardingTable::new(max_subnets, seed)),
            slash64_len: 0,
            other_counts: [0; 129],
            ops64: Vec::new(),
            ops_other: Vec::new(),
        }
    }

    /// The table, for snapshots.
    pub(crate) fn table(&self) -> &Arc<ForwardingTable> {
        &self.table
    }

    /// Subnets in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slash64_len + self.other_counts.iter().sum::<usize>()
    }

    /// Heap bytes the table holds (see [`Shards::heap_bytes`]), and its non-empty
    /// shards (three allocations each: the `Arc`, the keys, the rest).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> (usize, usize) {
        let t = &self.table;
        (
            t.slash64.heap_bytes() + t.others.heap_bytes(),
            t.slash64.non_empty_shards() + t.others.non_empty_shards(),
        )
    }

    /// Notes where `subnet` lives; `false` if it has no place in the table.
    fn push_op(&mut self, subnet: &Subnet) -> bool {
        let t = &self.table;
        match TableKey::of(subnet) {
            Some(TableKey::Slash64(k)) => self.ops64.push((t.slash64.index(&t.hasher, k), k)),
            Some(TableKey::Other(k)) => self.ops_other.push((t.others.index(&t.hasher, k), k)),
            None => return false,
        }
        true
    }

    /// Sorts the ops by shard and key, once each.
    fn sort_ops(&mut self) {
        self.ops64.sort_unstable();
        self.ops64.dedup();
        self.ops_other.sort_unstable();
        self.ops_other.dedup();
    }

    /// Brings the entries of the `changed` subnets up to date with `current`, the
    /// router's view of one subnet (`None`: not in the table). Costs O(changes x
    /// shard size), asking `current` once per distinct subnet; every lookup that
    /// starts after it returns sees the changes.
    pub(crate) fn update(
        &mut self,
        changed: &[Subnet],
        current: impl Fn(&Subnet) -> Option<(PublicKey, Option<PeerId>)>,
    ) {
        for subnet in changed {
            self.push_op(subnet);
        }
        self.sort_ops();
        let current = |s: &Subnet| current(s).map(|(key, hop)| Forward::new(key, hop));
        let slash64_len = &mut self.slash64_len;
        self.table.slash64.apply(&self.ops64, &current, |_, d| {
            *slash64_len = slash64_len.saturating_add_signed(d as isize);
        });
        let counts = &mut self.other_counts;
        self.table.others.apply(&self.ops_other, &current, |k, d| {
            let n = &mut counts[usize::from(k.len.min(128))];
            *n = n.saturating_add_signed(d as isize);
        });
        self.publish_lens();
        self.ops64.clear();
        self.ops_other.clear();
    }

    /// Makes the table hold exactly `entries` (when the router could not say what
    /// changed). O(table); shards that did not change are kept.
    pub(crate) fn replace_all(
        &mut self,
        entries: impl Iterator<Item = (Subnet, PublicKey, Option<PeerId>)>,
    ) {
        let mut all64 = Vec::new();
        let mut all_other = Vec::new();
        for (subnet, key, hop) in entries {
            let t = &self.table;
            let fwd = Forward::new(key, hop);
            match TableKey::of(&subnet) {
                Some(TableKey::Slash64(k)) => {
                    all64.push((t.slash64.index(&t.hasher, k), k, fwd));
                }
                Some(TableKey::Other(k)) => {
                    all_other.push((t.others.index(&t.hasher, k), k, fwd));
                }
                None => {}
            }
        }
        all64.sort_unstable_by_key(|e| (e.0, e.1));
        all64.dedup_by_key(|e| (e.0, e.1));
        all_other.sort_unstable_by_key(|e| (e.0, e.1));
        all_other.dedup_by_key(|e| (e.0, e.1));
        self.table.slash64.replace_all(&all64);
        self.table.others.replace_all(&all_other);
        self.slash64_len = all64.len();
        self.other_counts = [0; 129];
        for o in &all_other {
            self.other_counts[usize::from(o.1.len.min(128))] += 1;
        }
        self.publish_lens();
    }

    fn publish_lens(&self) {
        let mut lens = [0u64; 3];
        for (len, &n) in self.other_counts.iter().enumerate() {
            if n > 0 {
                lens[len / 64] |= 1 << (len % 64);
            }
        }
        for (word, bits) in self.table.other_lens.iter().zip(lens) {
            word.store(bits, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(n: u32) -> PublicKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        PublicKey::from_bytes(b)
    }

    fn subnet(prefix: u64, len: u8, low: u64) -> Subnet {
        let addr = Ipv6Addr::from((u128::from(prefix) << 64) | u128::from(low));
        Subnet::new(IpAddr::V6(addr), len)
            .unwrap_or_else(|_| Subnet::v6_64(addr))
            .network()
    }

    /// What a full rebuild from `model` holds: the reference the incremental table
    /// must equal.
    fn rebuilt(model: &BTreeMap<Subnet, (PublicKey, Option<PeerId>)>) -> TableWriter {
        let mut w = TableWriter::new(1_000, 7);
        w.replace_all(model.iter().map(|(s, (k, h))| (*s, *k, *h)));
        w
    }

    type Contents = (Vec<(u64, Forward)>, Vec<(Other, Forward)>);

    fn contents(w: &TableWriter) -> Contents {
        let mut a = w.table.slash64.entries();
        a.sort_by_key(|e| e.0);
        let mut b = w.table.others.entries();
        b.sort_by_key(|e| e.0);
        (a, b)
    }

    #[derive(Debug, Clone)]
    enum Change {
        Set {
            prefix: u64,
            len: u8,
            low: u64,
            key: u32,
            hop: Option<u64>,
        },
        Remove(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0u64..64, prop_oneof![4 => Just(64u8), 1 => 60u8..=128], 0u64..4,
                  0u32..1000, proptest::option::of(1u64..5))
                .prop_map(|(prefix, len, low, key, hop)| Change::Set { prefix, len, low, key, hop }),
            1 => (0usize..1000).prop_map(Change::Remove),
        ]
    }

    proptest! {
        /// After any sequence of changes, published in batches of any size, the
        /// table equals a full rebuild, and lookups agree with a longest-prefix
        /// search of the model.
        #[test]
        fn incremental_equals_full_rebuild(
            batches in proptest::collection::vec(proptest::collection::vec(change(), 0..40), 1..12),
            probes in proptest::collection::vec((0u64..64, any::<u64>()), 32),
        ) {
            let mut model: BTreeMap<Subnet, (PublicKey, Option<PeerId>)> = BTreeMap::new();
            let mut w = TableWriter::new(1_000, 7);
            for batch in batches {
                let mut changed = Vec::new();
                for c in batch {
                    match c {
                        Change::Set { prefix, len, low, key: k, hop } => {
                            let s = subnet(prefix, len, low);
                            model.insert(s, (key(k), hop.map(PeerId)));
                            changed.push(s);
                        }
                        Change::Remove(i) => {
                            if let Some(s) = model.keys().nth(i % model.len().max(1)).copied() {
                                model.remove(&s);
                                changed.push(s);
                            }
                        }
                    }
                }
                w.update(&changed, |s| model.get(s).copied());
                prop_assert_eq!(contents(&w), contents(&rebuilt(&model)));
                prop_assert_eq!(w.len(), model.len());
            }
            for (prefix, low) in probes {
                let addr = Ipv6Addr::from((u128::from(prefix) << 64) | u128::from(low % 8));
                let expected = model
                    .iter()
                    .filter(|(s, _)| s.contains_ip(IpAddr::V6(addr)))
                    .max_by_key(|(s, _)| s.prefix_len())
                    .map(|(_, (k, h))| Forward::new(*k, *h));
                prop_assert_eq!(w.table.lookup(addr), expected);
            }
        }
    }

    #[test]
    fn replace_all_keeps_unchanged_shards_and_drops_the_rest() {
        let mut w = TableWriter::new(1_000, 1);
        let entries: Vec<_> = (0..500u64)
            .map(|i| (subnet(i, 64, 0), key(i as u32), Some(PeerId(1))))
            .collect();
        w.replace_all(entries.iter().copied());
        let shards = |w: &TableWriter| -> Vec<_> {
            w.table
                .slash64
                .shards
                .iter()
                .map(|s| s.load_full())
                .collect()
        };
        let before = shards(&w);
        // One subnet changes its next hop: only its shard is rebuilt.
        let mut next = entries.clone();
        next[0].2 = Some(PeerId(2));
        w.replace_all(next.iter().copied());
        let kept = shards(&w)
            .iter()
            .zip(&before)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(kept, before.len() - 1);
        assert_eq!(
            w.table
                .lookup(Ipv6Addr::from(0u128))
                .and_then(|f| f.next_hop()),
            Some(PeerId(2))
        );
        // Half the subnets go.
        w.replace_all(next[..250].iter().copied());
        assert_eq!(w.len(), 250);
        assert!(w.table.lookup(Ipv6Addr::from(300u128 << 64)).is_none());
        assert!(w.table.lookup(Ipv6Addr::from(200u128 << 64)).is_some());
    }

    #[test]
    fn ipv4_subnets_are_left_out() {
        let mut w = TableWriter::new(10, 1);
        let v4 = Subnet::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 0)), 8);
        let Ok(v4) = v4 else { return };
        w.update(&[v4], |_| Some((key(1), None)));
        assert_eq!(w.len(), 0);
    }

    /// The router looks prefixes up with the bits past their length cleared, so a
    /// prefix stored with some set is never found; the data plane does the same.
    #[test]
    fn prefixes_with_bits_past_their_length_are_left_out() {
        let mut w = TableWriter::new(10, 1);
        let raw = Subnet::new(IpAddr::V6(Ipv6Addr::from((5u128 << 64) | 1)), 65);
        let Ok(raw) = raw else { return };
        w.update(&[raw], |_| Some((key(1), Some(PeerId(1)))));
        w.replace_all([(raw, key(1), Some(PeerId(1)))].into_iter());
        assert_eq!(w.len(), 0);
        assert!(w.table.lookup(Ipv6Addr::from((5u128 << 64) | 1)).is_none());
    }
}
