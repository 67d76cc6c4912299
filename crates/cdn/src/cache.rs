//! The on-disk block cache: one file per block, named by the block's encrypted
//! hash in lower-case hex (the names upstream uses), holding the block's
//! plaintext.
//!
//! Unlike upstream, an entry is only trusted after checking it: its plaintext
//! must hash to the block's content hash, else the file is deleted and the block
//! fetched again. Entries are written to a temporary file in the same directory
//! and renamed into place, so a reader never sees half an entry. Nothing is
//! evicted.

use std::io;
use std::path::{Path, PathBuf};

use crate::crypto::b16;
use crate::meta::Block;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// The longest entry read; a longer file is not a block of ours.
    max_len: u64,
}

impl Cache {
    /// A cache in `dir` (which must exist), with entries up to `max_len` bytes.
    pub fn new(dir: PathBuf, max_len: u64) -> Self {
        Self { dir, max_len }
    }

    /// Where the entry of `block` lives.
    pub fn path(&self, block: &Block) -> PathBuf {
        self.dir.join(hex::encode(block.encrypted_hash))
    }

    /// The cached plaintext of `block`, if there is a valid entry. A file that
    /// fails the check is removed.
    pub async fn get(&self, block: &Block) -> Option<Vec<u8>> {
        let path = self.path(block);
        let (want, max_len) = (block.content_hash, self.max_len);
        let read = tokio::task::spawn_blocking(move || read_checked(&path, want, max_len)).await;
        match read {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(
                    "CDN cache: cannot read {}: {e}",
                    hex::encode(block.encrypted_hash)
                );
                None
            }
            Err(_) => None,
        }
    }

    /// Stores the plaintext of `block`; failures are only logged (the content is
    /// served anyway).
    pub async fn put(&self, block: &Block, plain: bytes::Bytes) {
        let path = self.path(block);
        let dir = self.dir.clone();
        let written =
            tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &plain)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(
                "CDN cache: cannot store {}: {e}",
                hex::encode(block.encrypted_hash)
            );
        }
    }
}

/// Reads an entry and checks it; `Ok(None)` when absent or removed as invalid.
fn read_checked(path: &Path, want: [u8; 16], max_len: u64) -> io::Result<Option<Vec<u8>>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let valid = if meta.is_file() && meta.len() <= max_len {
        let plain = std::fs::read(path)?;
        if b16(&plain) == want {
            return Ok(Some(plain));
        }
        false
    } else {
        false
    };
    if !valid {
        tracing::warn!(
            "CDN cache: {} does not match its block; removing it",
            path.display()
        );
        std::fs::remove_file(path)?;
    }
    Ok(None)
}

/// Writes `data` to a temporary file in `dir` and renames it to `path`.
fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut nonce = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let tmp = dir.join(format!(".tmp-{}", hex::encode(nonce)));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn block(plain: &[u8]) -> Block {
        Block {
            shards: Vec::new(),
            required_shards: 1,
            start_offset: 0,
            end_offset: 0,
            content_hash: b16(plain),
            encrypted_hash: [0xab; 16],
            nonce: [0; 12],
        }
    }

    #[tokio::test]
    async fn an_entry_is_stored_under_its_encrypted_hash_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned(), 1 << 20);
        let b = block(b"hello");
        assert_eq!(cache.get(&b).await, None);
        cache.put(&b, bytes::Bytes::from_static(b"hello")).await;
        let name = dir.path().join("abababababababababababababababab");
        assert_eq!(std::fs::read(&name).unwrap(), b"hello");
        assert_eq!(cache.get(&b).await.unwrap(), b"hello");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_corrupted_entry_is_removed_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned(), 1 << 20);
        let b = block(b"hello");
        std::fs::write(cache.path(&b), b"hellO").unwrap();
        assert_eq!(cache.get(&b).await, None);
        assert!(!cache.path(&b).exists());
    }

    #[tokio::test]
    async fn an_oversized_entry_is_removed_unread() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned(), 4);
        let b = block(b"hello");
        std::fs::write(cache.path(&b), b"hello").unwrap();
        assert_eq!(cache.get(&b).await, None);
        assert!(!cache.path(&b).exists());
    }
}
