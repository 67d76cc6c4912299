//! Getting one block's plaintext: from the cache if a valid entry is there,
//! else from its shard servers.
//!
//! Shards are fetched concurrently; as soon as `k` of them with the same length
//! have arrived the block is rebuilt (parity stands in for data shards that
//! failed) and the rest are abandoned. The rebuilt ciphertext must hash to the
//! block's encrypted hash and the plaintext to its content hash before it is
//! served or cached, so neither a faulty shard server nor metadata naming another
//! object's block can put foreign content under a block's name.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::cache::Cache;
use crate::crypto::{b16, open};
use crate::erasure::{self, ErasureError};
use crate::meta::Block;
use crate::shard::ShardFetch;

/// The largest block: ciphertext, tag and padding. Uploaders cut files into
/// chunks of at most 5 MiB.
pub const MAX_BLOCK_LEN: usize = 8 * 1024 * 1024;

/// Why a block could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block's `k` and `n` make no erasure code.
    #[error("{0}")]
    Shape(ErasureError),
    /// Fewer than `k` shards could be fetched.
    #[error("{have} of {n} shards fetched, {k} needed (last error: {last})")]
    Shards {
        /// Shards fetched with a common length.
        have: usize,
        /// Needed.
        k: usize,
        /// Named.
        n: usize,
        /// Why the last failing shard failed.
        last: String,
    },
    /// The shards do not rebuild the block the metadata describes: bad padding,
    /// a hash that does not match, or a tag that does not verify.
    #[error("block content does not match its metadata: {0}")]
    Content(&'static str),
}

/// Fetches blocks through the cache.
#[derive(Debug, Clone)]
pub struct Blocks {
    /// The on-disk cache.
    pub cache: Cache,
    /// How shards are fetched.
    pub shards: ShardFetch,
}

impl Blocks {
    /// The plaintext of `block`.
    pub async fn get(&self, block: &Block) -> Result<Bytes, BlockError> {
        let (k, n) = (usize::from(block.required_shards), block.shards.len());
        erasure::check_shape(k, n).map_err(BlockError::Shape)?;
        if let Some(plain) = self.cache.get(block).await {
            return Ok(Bytes::from(plain));
        }
        let data = self.download(block, k).await?;
        let sealed = erasure::unpad(k, &data).map_err(|_| BlockError::Content("bad padding"))?;
        if b16(sealed) != block.encrypted_hash {
            return Err(BlockError::Content("encrypted hash"));
        }
        let plain = open(&block.content_hash, block.nonce, sealed)
            .map_err(|_| BlockError::Content("decryption failed"))?;
        if b16(&plain) != block.content_hash {
            return Err(BlockError::Content("content hash"));
        }
        let plain = Bytes::from(plain);
        self.cache.put(block, plain.clone()).await;
        Ok(plain)
    }

    /// The data shards' bytes, from the first `k` shards of one length.
    async fn download(&self, block: &Block, k: usize) -> Result<Vec<u8>, BlockError> {
        let n = block.shards.len();
        let fetch = ShardFetch {
            max_len: MAX_BLOCK_LEN.div_ceil(k),
            ..self.shards
        };
        let mut tasks = JoinSet::new();
        for (i, loc) in block.shards.iter().enumerate() {
            let (addr, db, key) = (loc.host, loc.db, block.encrypted_hash);
            tasks.spawn(async move { (i, fetch.get(addr, db, &key).await) });
        }
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut by_len: HashMap<usize, usize> = HashMap::new();
        let mut last = String::from("none");
        while let Some(joined) = tasks.join_next().await {
            let Ok((i, result)) = joined else { continue };
            match result {
                Ok(shard) if !shard.is_empty() => {
                    let len = shard.len();
                    shards[i] = Some(shard);
                    let count = by_len.entry(len).or_default();
                    *count += 1;
                    if *count == k {
                        // Enough: drop the others (and the shards of another length).
                        tasks.abort_all();
                        for s in &mut shards {
                            if s.as_ref().is_some_and(|s| s.len() != len) {
                                *s = None;
                            }
                        }
                        return erasure::reconstruct(k, shards).map_err(BlockError::Shape);
                    }
                }
                Ok(_) => last = format!("shard {i} from {}: empty", block.shards[i].host),
                Err(e) => {
                    tracing::debug!("CDN shard {i} from {}: {e}", block.shards[i].host);
                    last = format!("shard {i} from {}: {e}", block.shards[i].host);
                }
            }
        }
        Err(BlockError::Shards {
            have: by_len.values().copied().max().unwrap_or(0),
            k,
            n,
            last,
        })
    }
}
