//! Data packets: a 36-byte header (length, hop limit, overlay source and
//! destination) in front of a sealed payload.
//!
//! Transit nodes read and rewrite only this header; the payload is opaque to them.

use std::net::Ipv6Addr;

use bytes::BufMut;

use super::packet::{encode_header, FrameError, TYPE_DATA};
use super::reader::Reader;

/// The header of a data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// Hops left; every node, the two ends included, takes one.
    pub hop_limit: u8,
    /// Overlay address of the sender.
    pub src: Ipv6Addr,
    /// Overlay address of the receiver.
    pub dst: Ipv6Addr,
}

impl DataHeader {
    /// Length of the header on the wire.
    pub const LEN: usize = 36;

    /// Decodes a header; the payload length comes with it. Upstream reads the first
    /// four bytes as one u32 and ignores its top byte; so do we.
    pub fn decode(buf: &[u8]) -> Result<(Self, u16), FrameError> {
        let mut r = Reader::new(buf);
        let (Ok(word), Ok(src), Ok(dst)) = (r.u32(), r.array::<16>(), r.array::<16>()) else {
            return Err(FrameError::Incomplete {
                needed: Self::LEN - buf.len(),
            });
        };
        Ok((
            Self {
                hop_limit: word as u8,
                src: Ipv6Addr::from(src),
                dst: Ipv6Addr::from(dst),
            },
            (word >> 8) as u16,
        ))
    }

    /// Appends the header for a payload of `payload_len` bytes.
    pub fn encode(&self, payload_len: u16, buf: &mut impl BufMut) {
        buf.put_u8(0);
        buf.put_u16(payload_len);
        buf.put_u8(self.hop_limit);
        buf.put_slice(&self.src.octets());
        buf.put_slice(&self.dst.octets());
    }
}

/// A data packet borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPacket<'a> {
    /// The header.
    pub header: DataHeader,
    /// The sealed payload (see [`crate::crypto`]).
    pub payload: &'a [u8],
}

impl<'a> DataPacket<'a> {
    /// Decodes a data body (after the outer header) and returns its length on the
    /// wire.
    pub(crate) fn decode(body: &'a [u8]) -> Result<(Self, usize), FrameError> {
        // The length sits in the first word, so a partial packet can say exactly how
        // much is missing.
        let total = match body.get(..4) {
            Some(w) => DataHeader::LEN + usize::from(u16::from_be_bytes([w[1], w[2]])),
            None => DataHeader::LEN,
        };
        if body.len() < total {
            return Err(FrameError::Incomplete {
                needed: total - body.len(),
            });
        }
        let (header, _) = DataHeader::decode(body)?;
        Ok((
            Self {
                header,
                payload: &body[DataHeader::LEN..total],
            },
            total,
        ))
    }

    /// Appends the whole packet, outer header included. Returns `false` (and writes
    /// nothing) if the payload is too long for the 16-bit length field.
    pub fn encode(&self, buf: &mut impl BufMut) -> bool {
        let Ok(len) = u16::try_from(self.payload.len()) else {
            return false;
        };
        encode_header(TYPE_DATA, buf);
        self.header.encode(len, buf);
        buf.put_slice(self.payload);
        true
    }
}
