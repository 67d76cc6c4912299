//! The X25519 shared secret for each peer key, computed once per task on first use.

use mycelium_proto::crypto::SharedSecret;
use mycelium_proto::{PublicKey, SecretKey};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Secrets kept per task before the cache starts over.
const MAX: usize = 4096;

/// Shared secrets by peer key, for one packet-moving task.
#[derive(Default)]
pub(crate) struct SecretCache {
    secrets: Map<PublicKey, SharedSecret>,
}

impl SecretCache {
    /// The secret shared by `ours` and `theirs`.
    pub(crate) fn get(&mut self, ours: &SecretKey, theirs: PublicKey) -> &SharedSecret {
        if self.secrets.len() >= MAX && !self.secrets.contains_key(&theirs) {
            self.secrets.clear();
        }
        self.secrets
            .entry(theirs)
            .or_insert_with(|| SharedSecret::new(ours, &theirs))
    }
}
