//! Message-subsystem frames: the 12-byte header (id, flags,
//! reserved) and the body each flag combination implies.
//!
//! A frame is carried whole inside one sealed data payload of type
//! [`super::payload::PayloadType::Message`]. Dispatch follows upstream: with ACK set
//! the first of INIT, CHUNK, DONE, READ wins; without it the first of INIT, CHUNK,
//! DONE, READ, ABORTED.

use std::fmt;
use std::str::FromStr;

use bytes::BufMut;

use super::reader::{Reader, Truncated};

/// Length of the frame header.
pub const HEADER_LEN: usize = 12;
/// Length of a CHUNK header (frame header and the three u64 fields).
pub const CHUNK_HEADER_LEN: usize = HEADER_LEN + 24;
/// Length of a BLAKE3-256 message checksum.
pub const CHECKSUM_LEN: usize = 32;
/// Longest topic a frame can carry.
pub const MAX_TOPIC_LEN: usize = u8::MAX as usize;

/// Flag bits.
pub mod flags {
    /// Start of a message.
    pub const INIT: u16 = 0x8000;
    /// All chunks sent.
    pub const DONE: u16 = 0x4000;
    /// The sender gave up.
    pub const ABORTED: u16 = 0x2000;
    /// One data chunk.
    pub const CHUNK: u16 = 0x1000;
    /// A local reader consumed the message.
    pub const READ: u16 = 0x0800;
    /// With INIT: this message replies to the message with the same id.
    pub const REPLY: u16 = 0x0400;
    /// Acknowledges the frame type whose flag is also set.
    pub const ACK: u16 = 0x0100;
}

/// An 8-byte message id, shown as 16 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub [u8; 8]);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// The text is not 16 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message id is 16 hex characters")]
pub struct MessageIdParseError;

impl FromStr for MessageId {
    type Err = MessageIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(s, &mut id).map_err(|_| MessageIdParseError)?;
        Ok(Self(id))
    }
}

/// Why bytes are not a message frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame ends before its fields do.
    #[error("message frame truncated")]
    Truncated,
    /// Bytes after the last field of a fixed-size frame.
    #[error("{0} trailing bytes after the message frame")]
    TrailingBytes(usize),
    /// No known frame type for this flag combination.
    #[error("no frame type for flags {0:#06x}")]
    Flags(u16),
}

impl From<Truncated> for FrameError {
    fn from(_: Truncated) -> Self {
        FrameError::Truncated
    }
}

/// One message frame, borrowing topic and chunk data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Announces a message: its length and topic.
    Init {
        /// Message id.
        id: MessageId,
        /// Whether this message replies to the message with the same id.
        reply: bool,
        /// Total message length in bytes.
        length: u64,
        /// Topic bytes (at most 255).
        topic: &'a [u8],
    },
    /// Acknowledges an INIT. Echoes the length and the topic *length*, not the topic.
    InitAck {
        /// Message id.
        id: MessageId,
        /// Echo of the INIT's reply flag.
        reply: bool,
        /// Echo of the length.
        length: u64,
        /// Echo of the topic-length byte.
        topic_len: u8,
    },
    /// One piece of the message.
    Chunk {
        /// Message id.
        id: MessageId,
        /// Chunk index from 0.
        index: u64,
        /// Byte offset of the data in the message.
        offset: u64,
        /// Declared data size.
        size: u64,
        /// The data: `min(size, bytes present)` bytes, as upstream reads it.
        data: &'a [u8],
    },
    /// Acknowledges a chunk, echoing its three fields.
    ChunkAck {
        /// Message id.
        id: MessageId,
        /// Echoed index.
        index: u64,
        /// Echoed offset.
        offset: u64,
        /// Echoed declared size.
        size: u64,
    },
    /// All chunks were sent.
    Done {
        /// Message id.
        id: MessageId,
        /// Number of chunks the sender used.
        chunks: u64,
        /// BLAKE3-256 of the whole message.
        checksum: [u8; CHECKSUM_LEN],
    },
    /// Acknowledges DONE: the message was delivered.
    DoneAck {
        /// Message id.
        id: MessageId,
        /// Echoed chunk count.
        chunks: u64,
        /// Echoed checksum.
        checksum: [u8; CHECKSUM_LEN],
    },
    /// A local reader at the receiver obtained the message.
    Read {
        /// Message id.
        id: MessageId,
    },
    /// Acknowledges READ; understood but never sent by upstream.
    ReadAck {
        /// Message id.
        id: MessageId,
    },
    /// The sender gave up on the message.
    Aborted {
        /// Message id.
        id: MessageId,
    },
}

impl<'a> Frame<'a> {
    /// The message id.
    pub const fn id(&self) -> MessageId {
        match *self {
            Frame::Init { id, .. }
            | Frame::InitAck { id, .. }
            | Frame::Chunk { id, .. }
            | Frame::ChunkAck { id, .. }
            | Frame::Done { id, .. }
            | Frame::DoneAck { id, .. }
            | Frame::Read { id }
            | Frame::ReadAck { id }
            | Frame::Aborted { id } => id,
        }
    }

    /// Decodes one frame filling `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FrameError> {
        let mut r = Reader::new(buf);
        let id = MessageId(r.array()?);
        let fl = r.u16()?;
        let _reserved = r.u16()?;
        let has = |bit: u16| fl & bit != 0;
        let reply = has(flags::REPLY);
        let frame = if has(flags::ACK) {
            if has(flags::INIT) {
                Frame::InitAck {
                    id,
                    reply,
                    length: r.u64()?,
                    topic_len: r.u8()?,
                }
            } else if has(flags::CHUNK) {
                Frame::ChunkAck {
                    id,
                    index: r.u64()?,
                    offset: r.u64()?,
                    size: r.u64()?,
                }
            } else if has(flags::DONE) {
                Frame::DoneAck {
                    id,
                    chunks: r.u64()?,
                    checksum: r.array()?,
                }
            } else if has(flags::READ) {
                Frame::ReadAck { id }
            } else {
                return Err(FrameError::Flags(fl));
            }
        } else if has(flags::INIT) {
            let length = r.u64()?;
            let topic_len = r.u8()?;
            Frame::Init {
                id,
                reply,
                length,
                topic: r.take(usize::from(topic_len))?,
            }
        } else if has(flags::CHUNK) {
            let index = r.u64()?;
            let offset = r.u64()?;
            let size = r.u64()?;
            let present = r.rest();
            // Upstream uses min(declared, present) and ignores anything past it.
            let n = usize::try_from(size).map_or(present.len(), |s| s.min(present.len()));
            Frame::Chunk {
                id,
                index,
                offset,
                size,
                data: &present[..n],
            }
        } else if has(flags::DONE) {
            Frame::Done {
                id,
                chunks: r.u64()?,
                checksum: r.array()?,
            }
        } else if has(flags::READ) {
            Frame::Read { id }
        } else if has(flags::ABORTED) {
            Frame::Aborted { id }
        } else {
            return Err(FrameError::Flags(fl));
        };
        match r.remaining() {
            0 => Ok(frame),
            n => Err(FrameError::TrailingBytes(n)),
        }
    }

    /// The flag word this frame is sent with.
    pub const fn flags(&self) -> u16 {
        const fn reply(r: bool) -> u16 {
            if r {
                flags::REPLY
            } else {
                0
            }
        }
        match *self {
            Frame::Init { reply: r, .. } => flags::INIT | reply(r),
            Frame::InitAck { reply: r, .. } => flags::INIT | flags::ACK | reply(r),
            Frame::Chunk { .. } => flags::CHUNK,
            Frame::ChunkAck { .. } => flags::CHUNK | flags::ACK,
            Frame::Done { .. } => flags::DONE,
            Frame::DoneAck { .. } => flags::DONE | flags::ACK,
            Frame::Read { .. } => flags::READ,
            Frame::ReadAck { .. } => flags::READ | flags::ACK,
            Frame::Aborted { .. } => flags::ABORTED,
        }
    }

    /// Exact encoded length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Init { topic, .. } => 9 + topic.len().min(MAX_TOPIC_LEN),
                Frame::InitAck { .. } => 9,
                Frame::Chunk { data, .. } => 24 + data.len(),
                Frame::ChunkAck { .. } => 24,
                Frame::Done { .. } | Frame::DoneAck { .. } => 8 + CHECKSUM_LEN,
                Frame::Read { .. } | Frame::ReadAck { .. } | Frame::Aborted { .. } => 0,
            }
    }

    /// Appends the frame. A topic longer than 255 bytes is cut to 255: callers check
    /// topic lengths where the user gives them.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.id().0);
        buf.put_u16(self.flags());
        buf.put_u16(0);
        match *self {
            Frame::Init { length, topic, .. } => {
                let topic = &topic[..topic.len().min(MAX_TOPIC_LEN)];
                buf.put_u64(length);
                buf.put_u8(topic.len() as u8);
                buf.put_slice(topic);
            }
            Frame::InitAck {
                length, topic_len, ..
            } => {
                buf.put_u64(length);
                buf.put_u8(topic_len);
            }
            Frame::Chunk {
                index,
                offset,
                size,
                data,
                ..
            } => {
                buf.put_u64(index);
                buf.put_u64(offset);
                buf.put_u64(size);
                buf.put_slice(data);
            }
            Frame::ChunkAck {
                index,
                offset,
                size,
                ..
            } => {
                buf.put_u64(index);
                buf.put_u64(offset);
                buf.put_u64(size);
            }
            Frame::Done {
                chunks, checksum, ..
            }
            | Frame::DoneAck {
                chunks, checksum, ..
            } => {
                buf.put_u64(chunks);
                buf.put_slice(&checksum);
            }
            Frame::Read { .. } | Frame::ReadAck { .. } | Frame::Aborted { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_frame(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn protocol_vector_init_decodes() {
        let bytes = hex_frame("0102030405060708 8000 0000 0000000000000005 00");
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!(
            f,
            Frame::Init {
                id: MessageId([1, 2, 3, 4, 5, 6, 7, 8]),
                reply: false,
                length: 5,
                topic: b"",
            }
        );
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn init_ack_echoes_topic_length_only() {
        let bytes = hex_frame("0102030405060708 8100 0000 000000000000000e 07");
        assert_eq!(
            Frame::decode(&bytes),
            Ok(Frame::InitAck {
                id: MessageId([1, 2, 3, 4, 5, 6, 7, 8]),
                reply: false,
                length: 14,
                topic_len: 7,
            })
        );
    }

    #[test]
    fn ack_of_reply_init_keeps_the_reply_flag() {
        let f = Frame::InitAck {
            id: MessageId::default(),
            reply: true,
            length: 0,
            topic_len: 0,
        };
        assert_eq!(f.flags(), 0x8500);
    }

    #[test]
    fn chunk_data_is_the_smaller_of_declared_and_present() {
        let mut bytes = hex_frame("0000000000000000 1000 0000");
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&10u64.to_be_bytes());
        bytes.extend_from_slice(b"abc");
        let Ok(Frame::Chunk { size, data, .. }) = Frame::decode(&bytes) else {
            panic!("not a chunk");
        };
        assert_eq!((size, data), (10, &b"abc"[..]));
    }

    #[test]
    fn unknown_flag_combinations_are_refused() {
        let bytes = hex_frame("0000000000000000 2100 0000");
        assert_eq!(Frame::decode(&bytes), Err(FrameError::Flags(0x2100)));
        let bytes = hex_frame("0000000000000000 0000 0000");
        assert_eq!(Frame::decode(&bytes), Err(FrameError::Flags(0)));
    }

    #[test]
    fn fixed_frames_refuse_trailing_bytes() {
        let bytes = hex_frame("0000000000000000 0800 0000 00");
        assert_eq!(Frame::decode(&bytes), Err(FrameError::TrailingBytes(1)));
        assert_eq!(Frame::decode(&bytes[..11]), Err(FrameError::Truncated));
    }

    #[test]
    fn message_id_parses_from_hex() {
        let id: MessageId = "d28cf6144a607715".parse().unwrap();
        assert_eq!(id.to_string(), "d28cf6144a607715");
        assert!("d28cf6144a6077".parse::<MessageId>().is_err());
    }
}
