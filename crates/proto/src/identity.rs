//! Node identity: the X25519 key pair, the overlay address derived from the public
//! key, and the router id.
//!
//! Reading and writing the key file is the binary's job; this module only turns the
//! 32 key-file bytes into a key and a key into addresses.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use x25519_dalek::StaticSecret;

use crate::subnet::Subnet;

/// Length of a secret key, a public key and a key file.
pub const KEY_LEN: usize = 32;

/// A node's X25519 secret key, exactly the 32 bytes of its key file.
///
/// The bytes are stored unclamped; clamping happens inside the scalar
/// multiplication (RFC 7748), as upstream does. Dropping the key zeroes it.
#[derive(Clone)]
pub struct SecretKey(StaticSecret);

impl SecretKey {
    /// The key whose key-file bytes are `bytes`.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// A fresh key from `rng`, which must be a cryptographically secure generator.
    pub fn generate(rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng)) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The bytes to store in a key file.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The raw X25519 output with `peer`: upstream's end-to-end key.
    pub(crate) fn diffie_hellman(&self, peer: &PublicKey) -> [u8; KEY_LEN] {
        self.0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0))
            .to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A node's X25519 public key. Displayed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// The key with these bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The overlay address of the node owning this key (as upstream v0.7.10 derives it):
    /// the first 16 bytes of BLAKE3(key) with the first byte replaced by
    /// `0x04 | parity`, where parity is the number of set bits of the hash's first
    /// byte, modulo 2.
    pub fn address(&self) -> Ipv6Addr {
        let hash = blake3::hash(&self.0);
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&hash.as_bytes()[..16]);
        addr[0] = 0x04 | (addr[0].count_ones() as u8 & 1);
        Ipv6Addr::from(addr)
    }

    /// The `/64` the node owns and announces.
    pub fn subnet(&self) -> Subnet {
        Subnet::v6_64(self.address())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// Why a public key string did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyParseError {
    /// Not 64 characters.
    #[error("a public key is 64 hex characters, got {0}")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("a public key is hex, found {0:?}")]
    NotHex(char),
}

impl FromStr for PublicKey {
    type Err = PublicKeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(PublicKeyParseError::NotHex(c));
        }
        if s.len() != 2 * KEY_LEN {
            return Err(PublicKeyParseError::Length(s.len()));
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| PublicKeyParseError::Length(s.len()))?;
        Ok(Self(bytes))
    }
}

/// Length of a router id on the wire.
pub const ROUTER_ID_LEN: usize = 40;

/// A router id: public key, a 2-byte zone (always zero when we
/// make one), and 6 random bytes chosen at every start, so that a restarted node is
/// a new source for feasibility and may restart its sequence numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterId([u8; ROUTER_ID_LEN]);

impl RouterId {
    /// The router id for `key` with a zero zone and the given random tail.
    pub fn new(key: PublicKey, random: [u8; 6]) -> Self {
        let mut id = [0u8; ROUTER_ID_LEN];
        id[..32].copy_from_slice(&key.0);
        id[34..].copy_from_slice(&random);
        Self(id)
    }

    /// The router id made of these exact bytes, as read from the wire.
    pub const fn from_bytes(bytes: [u8; ROUTER_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The wire bytes.
    pub const fn as_bytes(&self) -> &[u8; ROUTER_ID_LEN] {
        &self.0
    }

    /// The public key of the node this id names.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&self.0[..32]);
        PublicKey(key)
    }
}

impl fmt::Display for RouterId {
    /// `<64 hex pubkey>-<4 hex zone>-<12 hex random>`, the form upstream logs and puts
    /// in its QUIC certificate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            hex::encode(&self.0[..32]),
            hex::encode(&self.0[32..34]),
            hex::encode(&self.0[34..])
        )
    }
}

impl fmt::Debug for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouterId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_str: &str) -> SecretKey {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut b).unwrap();
        SecretKey::from_bytes(b)
    }

    #[test]
    fn protocol_vector_one_derives_its_address() {
        let sk = key("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
        let pk = sk.public_key();
        assert_eq!(
            pk.to_string(),
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
        );
        assert_eq!(
            pk.address().to_string(),
            "5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e"
        );
        assert_eq!(pk.subnet().to_string(), "5a6:f0c6:f365:177d::/64");
    }

    #[test]
    fn protocol_vector_two_has_even_parity() {
        let pk = SecretKey::from_bytes([0x42; 32]).public_key();
        assert_eq!(
            pk.address().to_string(),
            "4a1:acf3:2837:d9cf:d930:4520:c759:467b"
        );
    }

    #[test]
    fn readme_keys_follow_the_blake3_derivation() {
        for (pk, addr) in [
            (
                "a47c1d6f2a15b2c670d3a88fbe0aeb301ced12f7bcb4c8e3aa877b20f8559c02",
                "548:c783:d7ce:74a3:9ba1:a0cb:ae21:338d",
            ),
            (
                "955bf6bea5e1150fd8e270c12e5b2fc08f08f7c5f3799d10550096cc137d671b",
                "514:74ce:dd13:296f:ada7:4d2e:9335:acac",
            ),
        ] {
            let pk: PublicKey = pk.parse().unwrap();
            assert_eq!(pk.address().to_string(), addr);
        }
    }

    #[test]
    fn public_key_parse_names_the_problem() {
        assert_eq!(
            "abc".parse::<PublicKey>(),
            Err(PublicKeyParseError::Length(3))
        );
        assert_eq!(
            "zz".parse::<PublicKey>(),
            Err(PublicKeyParseError::NotHex('z'))
        );
    }

    #[test]
    fn router_id_text_form_has_three_parts() {
        let pk = SecretKey::from_bytes([0x42; 32]).public_key();
        let id = RouterId::new(pk, [1, 2, 3, 4, 5, 6]);
        assert_eq!(id.to_string(), format!("{pk}-0000-010203040506"));
        assert_eq!(id.public_key(), pk);
    }
}
