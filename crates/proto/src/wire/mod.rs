//! Everything that crosses a peer link, as bytes: the outer packet header and stream
//! framing ([`packet`]), data packets ([`data`]), control packets ([`control`]) and
//! their TLVs ([`tlv`]), the header inside every decrypted payload ([`payload`]), the
//! message-subsystem frames ([`message`]) and the link-local discovery beacon
//! ([`beacon`]).
//!
//! Decoders are pure functions over byte slices that bound every read by a declared
//! length and never panic. They give three distinct answers: *need more bytes*
//! ([`packet::FrameError::Incomplete`]), *malformed* (an error the caller acts on),
//! and *valid but ignored* (for example an unknown TLV, [`packet::Packet::Ignored`]).
//! Encoders append to a caller's [`bytes::BufMut`] and report their exact length
//! beforehand.

pub mod beacon;
pub mod control;
pub mod data;
pub mod fields;
pub mod message;
pub mod packet;
pub mod payload;
pub mod tlv;
pub mod view;

mod reader;

pub use fields::{Interval, Metric, SeqNo};
pub use packet::{decode, Decoded, FrameError, Packet};
pub use tlv::Tlv;
