//! The outer packet header and how packets follow each other on a stream.
//!
//! Every packet starts with `01 <type> 00 00`; there is no other framing, each body
//! carries its own length. [`decode`] takes the bytes buffered from a stream (or one
//! QUIC datagram) and returns the first packet and how many bytes it used.

use bytes::BufMut;

use super::control::{self, Ignored};
use super::data::{DataHeader, DataPacket};
use super::reader::Reader;
use super::tlv::Tlv;

/// The only outer version.
pub const VERSION: u8 = 1;
/// Outer type of a data packet.
pub const TYPE_DATA: u8 = 0;
/// Outer type of a control packet.
pub const TYPE_CONTROL: u8 = 1;
/// Length of the outer header.
pub const HEADER_LEN: usize = 4;
/// The longest packet the framing can express: a data packet with a 65535-byte
/// payload. A reader never needs to buffer more than this for one packet.
pub const MAX_PACKET_LEN: usize = HEADER_LEN + DataHeader::LEN + u16::MAX as usize;

/// A packet that cannot be framed. Everything but [`FrameError::Incomplete`] means
/// the stream is corrupt and the connection must be closed (as upstream does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The packet is not complete yet; at least `needed` more bytes are required.
    #[error("packet incomplete, {needed} more bytes needed")]
    Incomplete {
        /// Lower bound of the bytes still missing.
        needed: usize,
    },
    /// The outer version byte is not 1.
    #[error("unknown packet version {0}")]
    Version(u8),
    /// The outer type byte is neither data nor control.
    #[error("unknown packet type {0}")]
    PacketType(u8),
}

/// One decoded packet, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A data packet; its payload is still sealed.
    Data(DataPacket<'a>),
    /// A control packet with a TLV we understand.
    Control(Tlv),
    /// A well-framed control packet we skip: unknown TLV, bad babel header, or an
    /// invalid TLV value. The stream stays in sync.
    Ignored(Ignored),
}

/// A packet and the number of input bytes it occupied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The packet.
    pub packet: Packet<'a>,
    /// Bytes consumed from the start of the input.
    pub len: usize,
}

/// Decodes the first packet of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, FrameError> {
    let mut r = Reader::new(buf);
    let header: [u8; HEADER_LEN] = r.array().map_err(|_| FrameError::Incomplete {
        needed: HEADER_LEN - buf.len(),
    })?;
    if header[0] != VERSION {
        return Err(FrameError::Version(header[0]));
    }
    let body = &buf[HEADER_LEN..];
    let (packet, body_len) = match header[1] {
        TYPE_DATA => {
            let (p, n) = DataPacket::decode(body)?;
            (Packet::Data(p), n)
        }
        TYPE_CONTROL => {
            let (p, n) = control::decode(body)?;
            (
                match p {
                    Ok(tlv) => Packet::Control(tlv),
                    Err(ignored) => Packet::Ignored(ignored),
                },
                n,
            )
        }
        other => return Err(FrameError::PacketType(other)),
    };
    Ok(Decoded {
        packet,
        len: HEADER_LEN + body_len,
    })
}

/// Appends an outer header of the given type.
pub fn encode_header(packet_type: u8, buf: &mut impl BufMut) {
    buf.put_slice(&[VERSION, packet_type, 0, 0]);
}

impl Packet<'_> {
    /// Exact encoded length, outer header included. [`Packet::Ignored`] has none:
    /// we never send what we would skip.
    pub fn encoded_len(&self) -> Option<usize> {
        match self {
            Packet::Data(p) => Some(HEADER_LEN + DataHeader::LEN + p.payload.len()),
            Packet::Control(t) => Some(HEADER_LEN + control::HEADER_LEN + 2 + t.value_len()),
            Packet::Ignored(_) => None,
        }
    }

    /// Appends the packet, outer header included. Returns `false` (and writes
    /// nothing) for [`Packet::Ignored`] and for a data payload too long for the
    /// length field.
    pub fn encode(&self, buf: &mut impl BufMut) -> bool {
        match self {
            Packet::Data(p) => p.encode(buf),
            Packet::Control(t) => {
                control::encode(t, buf);
                true
            }
            Packet::Ignored(_) => false,
        }
    }
}
