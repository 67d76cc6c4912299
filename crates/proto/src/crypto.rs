//! End-to-end encryption of data-packet payloads.
//!
//! The key for a pair of nodes is the raw X25519 output of their static keys, used
//! directly as an AES-256-GCM key in both directions, with no associated data. On the
//! wire a sealed payload is `ciphertext ‖ tag (16) ‖ nonce (12)`: the nonce comes
//! last. Both directions work in place on the caller's buffer, so the packet path
//! never allocates.
//!
//! The format gives no replay protection and no forward secrecy; it cannot change
//! without breaking compatibility. See the README's security notes.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

use crate::identity::{PublicKey, SecretKey};

/// Length of the GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the nonce appended after the tag.
pub const NONCE_LEN: usize = 12;
/// Bytes a sealed payload adds to its plaintext.
pub const OVERHEAD: usize = TAG_LEN + NONCE_LEN;

/// The symmetric key shared by two nodes, ready to seal and open payloads.
///
/// Backed by `ring`'s AES-256-GCM, whose assembly implementations (AES-NI with
/// carry-less multiplication on x86-64, the crypto extensions on ARMv8) are several
/// times faster than portable code on the packet path.
pub struct SharedSecret {
    key: LessSafeKey,
}

/// Why a payload did not open. Deliberately carries no detail: a forger learns
/// nothing from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than a tag and a nonce.
    #[error("sealed payload shorter than {OVERHEAD} bytes")]
    TooShort,
    /// The tag does not match: wrong key, or the bytes were changed.
    #[error("payload failed authentication")]
    Forged,
}

/// The caller's buffer has no room for the tag and nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {0} bytes has no room for the {OVERHEAD}-byte tag and nonce")]
pub struct SealError(pub usize);

impl SharedSecret {
    /// The secret between our key and a peer's public key.
    pub fn new(ours: &SecretKey, theirs: &PublicKey) -> Self {
        let mut raw = ours.diffie_hellman(theirs);
        let secret = Self::from_raw(&raw);
        raw.zeroize();
        secret
    }

    /// A secret from its 32 raw bytes (the X25519 output), for tests and tools.
    pub fn from_raw(raw: &[u8; 32]) -> Self {
        let key =
            UnboundKey::new(&AES_256_GCM, raw).expect("a 32-byte key always fits AES-256-GCM");
        Self {
            key: LessSafeKey::new(key),
        }
    }

    /// Seals `buf[..buf.len() - OVERHEAD]` in place and writes the tag and `nonce`
    /// into the last [`OVERHEAD`] bytes, giving the wire form of the payload.
    ///
    /// `nonce` must never repeat under this key: take it from a CSPRNG.
    pub fn seal_in_place(&self, nonce: [u8; NONCE_LEN], buf: &mut [u8]) -> Result<(), SealError> {
        let Some(pt_len) = buf.len().checked_sub(OVERHEAD) else {
            return Err(SealError(buf.len()));
        };
        let (plaintext, trailer) = buf.split_at_mut(pt_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                plaintext,
            )
            .map_err(|_| SealError(pt_len))?;
        trailer[..TAG_LEN].copy_from_slice(tag.as_ref());
        trailer[TAG_LEN..].copy_from_slice(&nonce);
        Ok(())
    }

    /// Opens a payload in its wire form in place. On success the plaintext is
    /// `payload[..n]` for the returned `n`; on failure the buffer content is
    /// unspecified.
    pub fn open_in_place(&self, payload: &mut [u8]) -> Result<usize, OpenError> {
        let Some(pt_len) = payload.len().checked_sub(OVERHEAD) else {
            return Err(OpenError::TooShort);
        };
        // On the wire: ciphertext ‖ tag ‖ nonce. The first two are what ring opens.
        let (sealed, nonce) = payload.split_at_mut(pt_len + TAG_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        self.key
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::empty(), sealed)
            .map_err(|_| OpenError::Forged)?;
        Ok(pt_len)
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_keys() -> (SecretKey, SecretKey) {
        let mut x = [0u8; 32];
        for (i, b) in x.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        (SecretKey::from_bytes(x), SecretKey::from_bytes([0x42; 32]))
    }

    #[test]
    fn both_sides_derive_the_protocol_vector_secret() {
        let (x, y) = vector_keys();
        let expected = "cee33c43821b272c6d690aea5cbdddca86bdc0812203cc004656bda4c37f3a26";
        assert_eq!(hex::encode(x.diffie_hellman(&y.public_key())), expected);
        assert_eq!(hex::encode(y.diffie_hellman(&x.public_key())), expected);
    }

    #[test]
    fn seals_the_protocol_vector_bytes() {
        let (x, y) = vector_keys();
        let secret = SharedSecret::new(&x, &y.public_key());
        let plaintext =
            hex::decode("010100000102030405060708800000000000000000000005 00".replace(' ', ""))
                .unwrap();
        let mut buf = plaintext.clone();
        buf.resize(plaintext.len() + OVERHEAD, 0);
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        secret.seal_in_place(nonce, &mut buf).unwrap();
        assert_eq!(
            hex::encode(&buf),
            "1c80049de049412612f98c0f5047d128f1428ede5eff1f63f4\
             62aaca930faa8a84f3b11ba51e223797\
             000102030405060708090a0b"
        );
        let n = SharedSecret::new(&y, &x.public_key())
            .open_in_place(&mut buf)
            .unwrap();
        assert_eq!(&buf[..n], &plaintext[..]);
    }

    #[test]
    fn short_payload_is_refused_not_indexed() {
        let s = SharedSecret::from_raw(&[7; 32]);
        assert_eq!(s.open_in_place(&mut [0u8; 27]), Err(OpenError::TooShort));
        assert_eq!(s.open_in_place(&mut [0u8; 28]), Err(OpenError::Forged));
        assert_eq!(s.seal_in_place([0; 12], &mut [0u8; 27]), Err(SealError(27)));
    }
}
