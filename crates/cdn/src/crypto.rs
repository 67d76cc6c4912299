//! The CDN's two primitives: the 16-byte BLAKE3 digest that names and keys
//! everything, and AES-128-GCM without associated data.
//!
//! Metadata blobs are sealed as ciphertext ‖ tag ‖ nonce (the nonce last); blocks
//! carry their nonce in the metadata, so a sealed block is ciphertext ‖ tag.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, NONCE_LEN};

/// The length of the GCM tag.
pub const TAG_LEN: usize = 16;

/// The first 16 bytes of the BLAKE3 digest of `data`.
pub fn b16(data: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&blake3::hash(data).as_bytes()[..16]);
    out
}

/// The tag did not verify (or the input was too short to hold one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

fn cipher(key: &[u8; 16]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).expect("16-byte AES-128 key"))
}

/// Opens ciphertext ‖ tag sealed with `key` and `nonce`.
pub fn open(key: &[u8; 16], nonce: [u8; 12], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < TAG_LEN {
        return Err(OpenError);
    }
    let mut buf = sealed.to_vec();
    let plain_len = cipher(key)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| OpenError)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// Seals `plain` with `key` and `nonce`: ciphertext ‖ tag.
pub fn seal(key: &[u8; 16], nonce: [u8; 12], plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    cipher(key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .expect("input within GCM's limit");
    buf
}

/// Opens a sealed metadata blob: ciphertext ‖ tag ‖ 12-byte nonce.
pub fn open_metadata(key: &[u8; 16], blob: &[u8]) -> Result<Vec<u8>, OpenError> {
    let Some(split) = blob.len().checked_sub(NONCE_LEN) else {
        return Err(OpenError);
    };
    let (sealed, nonce) = blob.split_at(split);
    let mut n = [0; NONCE_LEN];
    n.copy_from_slice(nonce);
    open(key, n, sealed)
}

/// Seals a metadata blob the way uploaders do: ciphertext ‖ tag ‖ nonce.
pub fn seal_metadata(key: &[u8; 16], nonce: [u8; 12], plain: &[u8]) -> Vec<u8> {
    let mut out = seal(key, nonce, plain);
    out.extend_from_slice(&nonce);
    out
}
