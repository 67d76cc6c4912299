//! The `cdn-meta` format (version 1): what a registry stores about a file or a
//! directory, as bytes.
//!
//! A blob is the magic `MCDN`, a version byte, then one value laid out the way
//! bincode 2 lays it out in its big-endian, fixed-width configuration: integers
//! big-endian, strings and lists prefixed by a `u64` length or count, options by
//! a `00`/`01` byte, enums by a `u32` variant index.
//!
//! This module owns the pure decoder and encoder and nothing else: no I/O, no
//! crypto (sealed blobs are the `crypto` module's). The decoder never trusts a
//! declared length: every string length and element count is checked against the
//! bytes that remain before anything is allocated, and the whole blob is capped
//! at [`MAX_METADATA_LEN`], so a forged `u64` length is a clean error instead of
//! an allocation of that size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"MCDN";
/// The only format version there is.
pub const VERSION: u8 = 1;
/// The largest blob we decode (or fetch). Real metadata is a few hundred bytes
/// per block, so this holds files of thousands of blocks.
pub const MAX_METADATA_LEN: usize = 1024 * 1024;
/// The most shards a block may name: the erasure code works over GF(2^8).
pub const MAX_SHARDS: usize = 256;

/// The variant indices of [`Metadata`].
const FILE: u32 = 0;
const DIRECTORY: u32 = 1;
/// The variant indices of a socket address.
const V4: u32 = 0;
const V6: u32 = 1;
/// The only variant of [`RedisAuth`].
const TOKEN: u32 = 0;

/// The smallest encodings, which bound how many elements a count can honestly
/// announce in what is left of the input.
const MIN_SHARD_LOCATION_LEN: usize = 4 + 4 + 2 + 2 + 1;
const MIN_BLOCK_LEN: usize = 8 + 2 + 8 + 8 + 16 + 16 + 12;
const MIN_DIR_ENTRY_LEN: usize = 16 + 1;

/// What a blob describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// A file: its blocks, in order.
    File(File),
    /// A directory: references to other blobs.
    Directory(Directory),
}

impl Metadata {
    /// The name a directory listing shows for this object.
    pub fn name(&self) -> &str {
        match self {
            Self::File(f) => &f.name,
            Self::Directory(d) => &d.name,
        }
    }
}

/// A file made of encrypted, erasure-coded blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// BLAKE3 (first 16 bytes) of the whole file.
    pub content_hash: [u8; 16],
    /// The file's name.
    pub name: String,
    /// Its media type, sent as `Content-Type`.
    pub mime: Option<String>,
    /// Its blocks; the file is their plaintexts in this order.
    pub blocks: Vec<Block>,
}

/// A directory: a list of other blobs, each with its id and optional key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// The entries, in listing order.
    pub files: Vec<DirEntry>,
    /// The directory's name.
    pub name: String,
}

/// One entry of a [`Directory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's metadata id (the registry's key for it).
    pub meta_id: [u8; 16],
    /// The key its metadata is sealed with, if it is sealed.
    pub meta_key: Option<[u8; 16]>,
}

/// One block of a file: where its shards are and how to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Where each shard is stored: data shards first, then parity shards.
    pub shards: Vec<ShardLocation>,
    /// How many of the shards are data shards (`k`).
    pub required_shards: u16,
    /// Declared offset of the block's first byte in the file (informative).
    pub start_offset: u64,
    /// Declared offset of its last byte (informative; wrong for a short last block).
    pub end_offset: u64,
    /// BLAKE3 (first 16 bytes) of the plaintext; also its AES-128-GCM key.
    pub content_hash: [u8; 16],
    /// BLAKE3 (first 16 bytes) of the ciphertext and tag; the shards' Redis key.
    pub encrypted_hash: [u8; 16],
    /// The AES-128-GCM nonce.
    pub nonce: [u8; 12],
}

/// A Redis-protocol server holding one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLocation {
    /// The server's address.
    pub host: SocketAddr,
    /// The database to `SELECT`.
    pub db: u16,
    /// Credentials for the server, if the uploader recorded them.
    pub auth: Option<RedisAuth>,
}

/// Credentials of a shard server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAuth {
    /// A session token.
    Token(String),
}

/// Why bytes are not a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_METADATA_LEN`].
    #[error("metadata of {0} bytes is larger than we accept")]
    TooLarge(usize),
    /// Not `MCDN`.
    #[error("not CDN metadata (bad magic)")]
    BadMagic,
    /// A version other than 1.
    #[error("unknown metadata version {0}")]
    BadVersion(u8),
    /// The input ends inside a field.
    #[error("metadata ends in the middle of a field")]
    Truncated,
    /// A string length or element count larger than what is left of the input.
    #[error("metadata declares {declared} bytes or elements where {remaining} bytes remain")]
    LengthBeyondInput {
        /// The declared length or count.
        declared: u64,
        /// The bytes left.
        remaining: usize,
    },
    /// An option byte other than `00` or `01`.
    #[error("bad option tag {0:#04x}")]
    BadOption(u8),
    /// An enum variant index we do not know.
    #[error("unknown variant {0}")]
    UnknownVariant(u32),
    /// A string that is not UTF-8.
    #[error("a string is not UTF-8")]
    BadUtf8,
    /// More shards in one block than the erasure code allows.
    #[error("a block names {0} shards, more than {MAX_SHARDS}")]
    TooManyShards(u64),
}

/// A decoded blob, and how many bytes followed the value (tolerated, as by
/// upstream; worth a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The value.
    pub metadata: Metadata,
    /// Bytes left over after it.
    pub trailing: usize,
}

/// Decodes a plaintext blob.
pub fn decode(blob: &[u8]) -> Result<Decoded, DecodeError> {
    if blob.len() > MAX_METADATA_LEN {
        return Err(DecodeError::TooLarge(blob.len()));
    }
    let mut r = Reader { buf: blob };
    if r.take(4).map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let metadata = match r.u32()? {
        FILE => Metadata::File(r.file()?),
        DIRECTORY => Metadata::Directory(r.directory()?),
        v => return Err(DecodeError::UnknownVariant(v)),
    };
    Ok(Decoded {
        metadata,
        trailing: r.buf.len(),
    })
}

/// A cursor over the input; every read checks the length first.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `u64` count of elements at least `min_len` bytes each, refused unless
    /// that many could fit in what is left.
    fn count(&mut self, min_len: usize) -> Result<usize, DecodeError> {
        let declared = self.u64()?;
        let remaining = self.buf.len();
        match usize::try_from(declared) {
            Ok(n) if n.checked_mul(min_len).is_some_and(|b| b <= remaining) => Ok(n),
            _ => Err(DecodeError::LengthBeyondInput {
                declared,
                remaining,
            }),
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.count(1)?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8)
    }

    fn present(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::BadOption(b)),
        }
    }

    fn file(&mut self) -> Result<File, DecodeError> {
        let content_hash = self.array()?;
        let name = self.string()?;
        let mime = if self.present()? {
            Some(self.string()?)
        } else {
            None
        };
        let n = self.count(MIN_BLOCK_LEN)?;
        let mut blocks = Vec::with_capacity(n);
        for _ in 0..n {
            blocks.push(self.block()?);
        }
        Ok(File {
            content_hash,
            name,
            mime,
            blocks,
        })
    }

    fn directory(&mut self) -> Result<Directory, DecodeError> {
        let n = self.count(MIN_DIR_ENTRY_LEN)?;
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            let meta_id = self.array()?;
            let meta_key = if self.present()? {
                Some(self.array()?)
            } else {
                None
            };
            files.push(DirEntry { meta_id, meta_key });
        }
        let name = self.string()?;
        Ok(Directory { files, name })
    }

    fn block(&mut self) -> Result<Block, DecodeError> {
        let n = self.count(MIN_SHARD_LOCATION_LEN)?;
        if n > MAX_SHARDS {
            return Err(DecodeError::TooManyShards(n as u64));
        }
        let mut shards = Vec::with_capacity(n);
        for _ in 0..n {
            shards.push(self.shard_location()?);
        }
        Ok(Block {
            shards,
            required_shards: self.u16()?,
            start_offset: self.u64()?,
            end_offset: self.u64()?,
            content_hash: self.array()?,
            encrypted_hash: self.array()?,
            nonce: self.array()?,
        })
    }

    fn shard_location(&mut self) -> Result<ShardLocation, DecodeError> {
        let ip = match self.u32()? {
            V4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            V6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            v => return Err(DecodeError::UnknownVariant(v)),
        };
        let host = SocketAddr::new(ip, self.u16()?);
        let db = self.u16()?;
        let auth = if self.present()? {
            match self.u32()? {
                TOKEN => Some(RedisAuth::Token(self.string()?)),
                v => return Err(DecodeError::UnknownVariant(v)),
            }
        } else {
            None
        };
        Ok(ShardLocation { host, db, auth })
    }
}

impl Metadata {
    /// The exact length of [`Metadata::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        let string = |s: &str| 8 + s.len();
        let body = match self {
            Self::File(f) => {
                16 + string(&f.name)
                    + 1
                    + f.mime.as_deref().map_or(0, string)
                    + 8
                    + f.blocks.iter().map(block_len).sum::<usize>()
            }
            Self::Directory(d) => {
                8 + d
                    .files
                    .iter()
                    .map(|e| 17 + if e.meta_key.is_some() { 16 } else { 0 })
                    .sum::<usize>()
                    + string(&d.name)
            }
        };
        5 + 4 + body
    }

    /// Appends the blob (magic, version, value) to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        match self {
            Self::File(f) => {
                out.put_u32(FILE);
                out.put_slice(&f.content_hash);
                put_string(out, &f.name);
                match &f.mime {
                    Some(m) => {
                        out.put_u8(1);
                        put_string(out, m);
                    }
                    None => out.put_u8(0),
                }
                out.put_u64(f.blocks.len() as u64);
                for b in &f.blocks {
                    put_block(out, b);
                }
            }
            Self::Directory(d) => {
                out.put_u32(DIRECTORY);
                out.put_u64(d.files.len() as u64);
                for e in &d.files {
                    out.put_slice(&e.meta_id);
                    match &e.meta_key {
                        Some(k) => {
                            out.put_u8(1);
                            out.put_slice(k);
                        }
                        None => out.put_u8(0),
                    }
                }
                put_string(out, &d.name);
            }
        }
    }

    /// The blob as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

fn block_len(b: &Block) -> usize {
    let location = |s: &ShardLocation| {
        let addr = if s.host.is_ipv4() { 4 + 4 } else { 4 + 16 };
        let auth = match &s.auth {
            Some(RedisAuth::Token(t)) => 4 + 8 + t.len(),
            None => 0,
        };
        addr + 2 + 2 + 1 + auth
    };
    8 + b.shards.iter().map(location).sum::<usize>() + 2 + 8 + 8 + 16 + 16 + 12
}

fn put_string(out: &mut impl BufMut, s: &str) {
    out.put_u64(s.len() as u64);
    out.put_slice(s.as_bytes());
}

fn put_block(out: &mut impl BufMut, b: &Block) {
    out.put_u64(b.shards.len() as u64);
    for s in &b.shards {
        match s.host.ip() {
            IpAddr::V4(ip) => {
                out.put_u32(V4);
                out.put_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.put_u32(V6);
                out.put_slice(&ip.octets());
            }
        }
        out.put_u16(s.host.port());
        out.put_u16(s.db);
        match &s.auth {
            Some(RedisAuth::Token(t)) => {
                out.put_u8(1);
                out.put_u32(TOKEN);
                put_string(out, t);
            }
            None => out.put_u8(0),
        }
    }
    out.put_u16(b.required_shards);
    out.put_u64(b.start_offset);
    out.put_u64(b.end_offset);
    out.put_slice(&b.content_hash);
    out.put_slice(&b.encrypted_hash);
    out.put_slice(&b.nonce);
}

#[cfg(test)]
mod tests;
