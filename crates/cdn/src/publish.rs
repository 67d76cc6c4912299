//! The uploader's side, for tests and tools: cutting content into sealed,
//! erasure-coded blocks and sealing metadata, as uploaders do.
//!
//! Nothing here stores anything; the caller puts each shard on its server with
//! `SET <encrypted hash> <shard>` and the sealed blob on a registry.

use std::net::SocketAddr;

use crate::crypto::{b16, seal, seal_metadata};
use crate::erasure::{self, ErasureError};
use crate::meta::{Block, Metadata, ShardLocation};

/// One block ready to store: its metadata and its `n` shards.
#[derive(Debug, Clone)]
pub struct PreparedBlock {
    /// The block as the file's metadata lists it.
    pub block: Block,
    /// The shards, one per server, in the block's order.
    pub shards: Vec<Vec<u8>>,
}

/// Seals `chunk` (the `index`-th of a file cut into `chunk_size` pieces) with
/// `nonce` and codes it into `k` data shards out of one per server.
pub fn prepare_block(
    chunk: &[u8],
    index: u64,
    chunk_size: u64,
    k: u16,
    servers: &[(SocketAddr, u16)],
    nonce: [u8; 12],
) -> Result<PreparedBlock, ErasureError> {
    let key = b16(chunk);
    let sealed = seal(&key, nonce, chunk);
    let shards = erasure::encode(usize::from(k), servers.len(), &sealed)?;
    let block = Block {
        shards: servers
            .iter()
            .map(|&(host, db)| ShardLocation {
                host,
                db,
                auth: None,
            })
            .collect(),
        required_shards: k,
        start_offset: index * chunk_size,
        end_offset: (index + 1) * chunk_size - 1,
        content_hash: key,
        encrypted_hash: b16(&sealed),
        nonce,
    };
    Ok(PreparedBlock { block, shards })
}

/// A sealed metadata blob with its name and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMetadata {
    /// What the registry stores.
    pub blob: Vec<u8>,
    /// Its id: BLAKE3 (16 bytes) of the blob.
    pub id: [u8; 16],
    /// Its key: BLAKE3 (16 bytes) of the plaintext.
    pub key: [u8; 16],
}

/// Seals `metadata` as uploaders do, with `nonce`.
pub fn seal_meta(metadata: &Metadata, nonce: [u8; 12]) -> SealedMetadata {
    let plain = metadata.to_bytes();
    let key = b16(&plain);
    let blob = seal_metadata(&key, nonce, &plain);
    SealedMetadata {
        id: b16(&blob),
        key,
        blob,
    }
}
