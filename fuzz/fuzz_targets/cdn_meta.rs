//! CDN helper input: a metadata blob as a registry returns it, either plain or
//! sealed (opened with a fixed key), and a shard server's RESP reply.
//!
//! The first byte picks which. What decodes must re-encode to the bytes it came
//! from (bar the tolerated trailing bytes); nothing may panic or allocate beyond
//! what the input can justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_cdn::crypto::open_metadata;
use mycelium_cdn::meta::decode;
use mycelium_cdn::shard::{parse_reply, ParseError};

fn round_trip(blob: &[u8]) {
    if let Ok(d) = decode(blob) {
        let value = d.metadata.to_bytes();
        assert_eq!(value.len(), d.metadata.encoded_len());
        assert_eq!(value, blob[..blob.len() - d.trailing]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => round_trip(rest),
        1 => {
            if let Ok(plain) = open_metadata(&[0x42; 16], rest) {
                round_trip(&plain);
            }
        }
        _ => match parse_reply(rest, 1024) {
            Ok((_, used)) => assert!(used <= rest.len()),
            Err(ParseError::Incomplete(want)) => assert!(want > rest.len() && want <= 1024 + 4096 + 8),
            Err(_) => {}
        },
    }
});
