#![allow(clippy::unwrap_used)] // a vector that does not decode should fail the test

use proptest::prelude::*;

use super::*;
use crate::crypto::{open_metadata, seal_metadata};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

/// The 165-byte file blob: one block, one shard at 127.0.0.1:6379 db 7.
fn file_blob() -> Vec<u8> {
    let mut b = unhex("4d43444e01 00000000");
    b.extend([1; 16]);
    b.extend(unhex("0000000000000008"));
    b.extend(b"test.bin");
    b.extend(unhex("01 0000000000000018"));
    b.extend(b"application/octet-stream");
    b.extend(unhex(
        "0000000000000001 0000000000000001 00000000 7f000001 18eb 0007 00 0001",
    ));
    b.extend(unhex("0000000000000000 0000000000000003"));
    b.extend([2; 16]);
    b.extend([3; 16]);
    b.extend([4; 12]);
    b
}

fn file_value() -> Metadata {
    Metadata::File(File {
        content_hash: [1; 16],
        name: "test.bin".into(),
        mime: Some("application/octet-stream".into()),
        blocks: vec![Block {
            shards: vec![ShardLocation {
                host: "127.0.0.1:6379".parse().unwrap(),
                db: 7,
                auth: None,
            }],
            required_shards: 1,
            start_offset: 0,
            end_offset: 3,
            content_hash: [2; 16],
            encrypted_hash: [3; 16],
            nonce: [4; 12],
        }],
    })
}

const DIR_BLOB: &str = "4d43444e01 00000001 0000000000000002 11111111111111111111111111111111 01
    22222222222222222222222222222222 33333333333333333333333333333333 00 0000000000000004 646f6373";

const SEALED_DIR_BLOB: &str =
    "e7c57cf57f89330a8b78b5004612b06051ff321992062cbe3401608a539c9eb98ba267132dc8ce4f5dfcc0e6
    8df92bf29e767f7a00b2a5deb105bdf9d656374ec202b3d26b7691c2d0138bd6364a36e4d274b47420092b0b
    3bd98f1b5d5e50a0a1a2a3a4a5a6a7a8a9aaab";

fn dir_value() -> Metadata {
    Metadata::Directory(Directory {
        files: vec![
            DirEntry {
                meta_id: [0x11; 16],
                meta_key: Some([0x22; 16]),
            },
            DirEntry {
                meta_id: [0x33; 16],
                meta_key: None,
            },
        ],
        name: "docs".into(),
    })
}

#[test]
fn the_recorded_file_blob_decodes() {
    let blob = file_blob();
    assert_eq!(blob.len(), 165);
    let d = decode(&blob).unwrap();
    assert_eq!(d.metadata, file_value());
    assert_eq!(d.trailing, 0);
    assert_eq!(file_value().to_bytes(), blob);
    assert_eq!(file_value().encoded_len(), 165);
}

#[test]
fn the_recorded_directory_blob_decodes() {
    let blob = unhex(DIR_BLOB);
    assert_eq!(blob.len(), 79);
    assert_eq!(decode(&blob).unwrap().metadata, dir_value());
    assert_eq!(dir_value().to_bytes(), blob);
    assert_eq!(dir_value().encoded_len(), 79);
}

#[test]
fn the_recorded_sealed_blob_opens_to_the_directory_blob() {
    let key: [u8; 16] = core::array::from_fn(|i| i as u8);
    let nonce: [u8; 12] = core::array::from_fn(|i| 0xa0 + i as u8);
    let sealed = unhex(SEALED_DIR_BLOB);
    assert_eq!(sealed.len(), 107);
    assert_eq!(open_metadata(&key, &sealed).unwrap(), unhex(DIR_BLOB));
    assert_eq!(seal_metadata(&key, nonce, &unhex(DIR_BLOB)), sealed);
    let mut wrong = key;
    wrong[0] ^= 1;
    assert!(open_metadata(&wrong, &sealed).is_err());
    assert!(open_metadata(&key, &sealed[..11]).is_err());
    assert!(open_metadata(&key, &sealed[sealed.len() - 20..]).is_err());
}

#[test]
fn trailing_bytes_are_accepted_and_counted() {
    let mut blob = unhex(DIR_BLOB);
    blob.extend([0xff; 3]);
    let d = decode(&blob).unwrap();
    assert_eq!((d.metadata, d.trailing), (dir_value(), 3));
}

#[test]
fn a_huge_string_length_is_refused_before_allocating() {
    // The name's length is the u64 at offset 25 of the file blob.
    let mut blob = file_blob();
    blob[25..33].copy_from_slice(&(1u64 << 45).to_be_bytes());
    assert_eq!(
        decode(&blob),
        Err(DecodeError::LengthBeyondInput {
            declared: 1 << 45,
            remaining: 132
        })
    );
}

#[test]
fn a_huge_list_count_is_refused_before_allocating() {
    let mut blob = unhex(DIR_BLOB);
    blob[9..17].copy_from_slice(&(1u64 << 60).to_be_bytes());
    assert!(matches!(
        decode(&blob),
        Err(DecodeError::LengthBeyondInput { declared, .. }) if declared == 1 << 60
    ));
    // A count whose elements would not fit, though the count itself is small.
    let mut blob = unhex(DIR_BLOB);
    blob[9..17].copy_from_slice(&4u64.to_be_bytes());
    assert!(matches!(
        decode(&blob),
        Err(DecodeError::LengthBeyondInput { declared: 4, .. })
    ));
}

#[test]
fn more_than_256_shards_in_a_block_are_refused() {
    let Metadata::File(mut f) = file_value() else {
        unreachable!()
    };
    let loc = f.blocks[0].shards[0].clone();
    f.blocks[0].shards = vec![loc; 257];
    let blob = Metadata::File(f).to_bytes();
    assert_eq!(decode(&blob), Err(DecodeError::TooManyShards(257)));
}

#[test]
fn a_bad_option_byte_is_refused() {
    let mut blob = file_blob();
    blob[41] = 2; // the mime's option tag
    assert_eq!(decode(&blob), Err(DecodeError::BadOption(2)));
}

#[test]
fn unknown_variants_are_refused() {
    let mut blob = file_blob();
    blob[8] = 2;
    assert_eq!(decode(&blob), Err(DecodeError::UnknownVariant(2)));
    // The socket address variant of the shard location.
    let mut blob = file_blob();
    blob[93] = 7;
    assert_eq!(decode(&blob), Err(DecodeError::UnknownVariant(7)));
}

#[test]
fn bad_utf8_is_refused() {
    let mut blob = file_blob();
    blob[33] = 0xff; // first byte of the name
    assert_eq!(decode(&blob), Err(DecodeError::BadUtf8));
}

#[test]
fn bad_prefixes_and_truncations_are_refused() {
    assert_eq!(decode(b"MCD"), Err(DecodeError::BadMagic));
    assert_eq!(decode(b"MCDX\x01"), Err(DecodeError::BadMagic));
    assert_eq!(decode(b"MCDN\x02\0\0\0\0"), Err(DecodeError::BadVersion(2)));
    assert_eq!(decode(b"MCDN"), Err(DecodeError::Truncated));
    let blob = file_blob();
    for cut in 5..blob.len() {
        assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn blobs_beyond_the_cap_are_refused() {
    let blob = vec![0; MAX_METADATA_LEN + 1];
    assert_eq!(
        decode(&blob),
        Err(DecodeError::TooLarge(MAX_METADATA_LEN + 1))
    );
}

fn arb_location() -> impl Strategy<Value = ShardLocation> {
    (
        any::<std::net::SocketAddr>(),
        any::<u16>(),
        proptest::option::of(".{0,12}"),
    )
        .prop_map(|(host, db, token)| ShardLocation {
            // The format keeps neither flow info nor scope id.
            host: SocketAddr::new(host.ip(), host.port()),
            db,
            auth: token.map(RedisAuth::Token),
        })
}

fn arb_block() -> impl Strategy<Value = Block> {
    (
        proptest::collection::vec(arb_location(), 0..5),
        any::<(u16, u64, u64)>(),
        any::<([u8; 16], [u8; 16], [u8; 12])>(),
    )
        .prop_map(|(shards, (k, s, e), (c, h, n))| Block {
            shards,
            required_shards: k,
            start_offset: s,
            end_offset: e,
            content_hash: c,
            encrypted_hash: h,
            nonce: n,
        })
}

fn arb_metadata() -> impl Strategy<Value = Metadata> {
    let file = (
        any::<[u8; 16]>(),
        ".{0,20}",
        proptest::option::of(".{0,20}"),
        proptest::collection::vec(arb_block(), 0..4),
    )
        .prop_map(|(content_hash, name, mime, blocks)| {
            Metadata::File(File {
                content_hash,
                name,
                mime,
                blocks,
            })
        });
    let dir = (
        proptest::collection::vec(any::<([u8; 16], Option<[u8; 16]>)>(), 0..6),
        ".{0,20}",
    )
        .prop_map(|(files, name)| {
            Metadata::Directory(Directory {
                files: files
                    .into_iter()
                    .map(|(meta_id, meta_key)| DirEntry { meta_id, meta_key })
                    .collect(),
                name,
            })
        });
    prop_oneof![file, dir]
}

proptest! {
    #[test]
    fn what_is_encoded_decodes_to_itself(m in arb_metadata()) {
        let blob = m.to_bytes();
        prop_assert_eq!(blob.len(), m.encoded_len());
        let d = decode(&blob).unwrap();
        prop_assert_eq!(d.trailing, 0);
        prop_assert_eq!(d.metadata, m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        if bytes.len() >= 5 {
            bytes[..5].copy_from_slice(b"MCDN\x01");
            let _ = decode(&bytes);
        }
    }
}
