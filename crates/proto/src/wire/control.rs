//! Control packets: a babel-style header and exactly one TLV.
//!
//! Upstream parses the first TLV and resumes at its end, so extra bytes in the body
//! desynchronise it; we send exactly one TLV whose length agrees with the body
//! length. On receive we are stricter than upstream and kinder to the stream: any
//! body whose header or TLV does not check out is skipped whole, by its declared
//! length, and reported as [`Ignored`].

use bytes::BufMut;

use super::packet::{encode_header, FrameError, TYPE_CONTROL};
use super::reader::Reader;
use super::tlv::{Tlv, TlvError};

/// Babel magic byte (42).
pub const MAGIC: u8 = 0x2a;
/// Babel version; 3, deliberately not RFC 8966's 2.
pub const BABEL_VERSION: u8 = 3;
/// Length of the babel header: magic, version, body length.
pub const HEADER_LEN: usize = 4;

/// Why a well-framed control packet was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ignored {
    /// Magic byte other than 42.
    #[error("bad babel magic {0}")]
    Magic(u8),
    /// Babel version other than 3.
    #[error("bad babel version {0}")]
    Version(u8),
    /// The body length disagrees with the TLV it holds (or cannot hold one).
    #[error("body length {body} does not match the TLV length {tlv:?}")]
    BodyLength {
        /// Declared body length.
        body: u16,
        /// Declared TLV length, when the body holds a TLV header at all.
        tlv: Option<u8>,
    },
    /// The TLV is unknown or its value is invalid.
    #[error("TLV type {tlv_type}: {error}")]
    Tlv {
        /// The TLV type number.
        tlv_type: u8,
        /// What is wrong with it.
        error: TlvError,
    },
}

/// Decodes a control body (after the outer header). Returns the TLV, or why the
/// packet is skipped, and the body's length on the wire.
pub(crate) fn decode(body: &[u8]) -> Result<(Result<Tlv, Ignored>, usize), FrameError> {
    let mut r = Reader::new(body);
    let header: [u8; HEADER_LEN] = r.array().map_err(|_| FrameError::Incomplete {
        needed: HEADER_LEN - body.len(),
    })?;
    let body_len = u16::from_be_bytes([header[2], header[3]]);
    let total = HEADER_LEN + usize::from(body_len);
    let tlv_bytes = r
        .take(usize::from(body_len))
        .map_err(|_| FrameError::Incomplete {
            needed: total - body.len(),
        })?;
    Ok((parse(header, body_len, tlv_bytes), total))
}

fn parse(header: [u8; HEADER_LEN], body_len: u16, tlv_bytes: &[u8]) -> Result<Tlv, Ignored> {
    if header[0] != MAGIC {
        return Err(Ignored::Magic(header[0]));
    }
    if header[1] != BABEL_VERSION {
        return Err(Ignored::Version(header[1]));
    }
    let [tlv_type, tlv_len, value @ ..] = tlv_bytes else {
        return Err(Ignored::BodyLength {
            body: body_len,
            tlv: None,
        });
    };
    if value.len() != usize::from(*tlv_len) {
        return Err(Ignored::BodyLength {
            body: body_len,
            tlv: Some(*tlv_len),
        });
    }
    Tlv::decode(*tlv_type, value).map_err(|error| Ignored::Tlv {
        tlv_type: *tlv_type,
        error,
    })
}

/// Appends a whole control packet (outer header, babel header, one TLV).
pub fn encode(tlv: &Tlv, buf: &mut impl BufMut) {
    let value_len = tlv.value_len();
    // Every TLV value is at most 66 bytes (an Update for a /128), so both length
    // fields always fit.
    debug_assert!(value_len <= usize::from(u8::MAX));
    encode_header(TYPE_CONTROL, buf);
    buf.put_u8(MAGIC);
    buf.put_u8(BABEL_VERSION);
    buf.put_u16(value_len as u16 + 2);
    buf.put_u8(tlv.tlv_type());
    buf.put_u8(value_len as u8);
    tlv.encode_value(buf);
}
