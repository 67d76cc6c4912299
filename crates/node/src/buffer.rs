//! How a packet lies in its buffer on the data path.
//!
//! Packets are worked on in place in one buffer from the read to the send: a packet
//! read from the TUN device lands behind room for the outer, data and payload
//! headers ([`HEADROOM`]), is sealed where it lies, and the headers are written in
//! front; a forwarded packet only has its hop-limit byte changed; a delivered one
//! is opened in place and leaves with its IPv6 packet at [`HEADROOM`], where the
//! TUN writer expects it.

use bytes::BytesMut;
use mycelium_proto::crypto::OVERHEAD;
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::{packet, payload};

use crate::tun::MTU;

/// Bytes in front of an IPv6 packet in a buffer: outer header, data header, payload
/// header.
pub(crate) const HEADROOM: usize = packet::HEADER_LEN + DataHeader::LEN + payload::HEADER_LEN;
/// Offset of the sealed payload in a data packet on the wire.
pub(crate) const PAYLOAD_AT: usize = packet::HEADER_LEN + DataHeader::LEN;
/// Size of a buffer that holds any packet we read from the TUN device, sealed.
pub(crate) const BUF_LEN: usize = HEADROOM + MTU as usize + OVERHEAD + 64;

/// A buffer holding `frame` (a message frame, or an IPv6 packet) at [`HEADROOM`],
/// with room for the tag and nonce behind it.
pub(crate) fn with_headroom(frame: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADROOM + frame.len() + OVERHEAD);
    buf.resize(HEADROOM, 0);
    buf.extend_from_slice(frame);
    buf
}
