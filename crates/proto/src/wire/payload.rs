//! The 4-byte header at the front of every decrypted data payload: version 1, the
//! payload type, two reserved bytes.

use bytes::BufMut;

/// Length of the header.
pub const HEADER_LEN: usize = 4;
/// The only version.
pub const VERSION: u8 = 1;

/// What the rest of the plaintext holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadType {
    /// One complete IPv6 packet.
    Ipv6 = 0,
    /// One message-subsystem frame (see [`super::message`]).
    Message = 1,
    /// An out-of-band ICMP report from a transit node.
    OobIcmp = 2,
}

/// Why a decrypted payload is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Shorter than the header.
    #[error("plaintext shorter than the {HEADER_LEN}-byte header")]
    TooShort,
    /// Version other than 1.
    #[error("payload version {0}")]
    Version(u8),
    /// A type we do not know.
    #[error("payload type {0}")]
    UnknownType(u8),
}

/// Splits a plaintext into its type and body. The reserved bytes are ignored, as
/// upstream ignores them.
pub fn decode(plaintext: &[u8]) -> Result<(PayloadType, &[u8]), PayloadError> {
    let [version, ty, _, _, body @ ..] = plaintext else {
        return Err(PayloadError::TooShort);
    };
    if *version != VERSION {
        return Err(PayloadError::Version(*version));
    }
    let ty = match ty {
        0 => PayloadType::Ipv6,
        1 => PayloadType::Message,
        2 => PayloadType::OobIcmp,
        other => return Err(PayloadError::UnknownType(*other)),
    };
    Ok((ty, body))
}

/// The header bytes for a payload of type `ty`.
pub const fn header(ty: PayloadType) -> [u8; HEADER_LEN] {
    [VERSION, ty as u8, 0, 0]
}

/// Appends the header for a payload of type `ty`.
pub fn encode_header(ty: PayloadType, buf: &mut impl BufMut) {
    buf.put_slice(&header(ty));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_for_every_type() {
        for ty in [
            PayloadType::Ipv6,
            PayloadType::Message,
            PayloadType::OobIcmp,
        ] {
            let mut bytes = header(ty).to_vec();
            bytes.push(0xaa);
            assert_eq!(decode(&bytes), Ok((ty, &[0xaa][..])));
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(decode(&[1, 0, 0]), Err(PayloadError::TooShort));
        assert_eq!(decode(&[2, 0, 0, 0]), Err(PayloadError::Version(2)));
        assert_eq!(decode(&[1, 3, 0, 0]), Err(PayloadError::UnknownType(3)));
        assert_eq!(decode(&[1, 1, 9, 9]), Ok((PayloadType::Message, &[][..])));
    }
}
