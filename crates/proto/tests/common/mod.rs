//! Reading the recorded upstream vectors in `fixtures/interop`.
#![allow(dead_code)] // each test crate uses its own part of this module

use mycelium_proto::SecretKey;

/// The bytes of a fixture file.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/interop/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A secret key stored as hex in a fixture file.
pub(crate) fn key_fixture(name: &str) -> SecretKey {
    let text = String::from_utf8(fixture(name)).expect("key fixtures are text");
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).expect("key fixtures are 64 hex digits");
    SecretKey::from_bytes(key)
}
