//! The five control TLVs and the prefix encoding they share.
//!
//! A TLV value is decoded from exactly the bytes its length byte declares: a value
//! that is too short, too long, or names an address encoding we do not take is a
//! [`TlvError`], and the control layer skips that packet by its declared length
//! instead of losing sync with the stream.

mod neighbour;
mod request;
mod update;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

pub use neighbour::{Hello, Ihu, HELLO_FLAG_UNICAST};
pub use request::{RouteRequest, SeqnoRequest};
pub use update::Update;

use super::reader::{Reader, Truncated};
use crate::subnet::Subnet;

/// TLV type numbers.
pub mod tlv_type {
    /// Hello.
    pub const HELLO: u8 = 4;
    /// I Heard You.
    pub const IHU: u8 = 5;
    /// Update.
    pub const UPDATE: u8 = 8;
    /// Route request.
    pub const ROUTE_REQUEST: u8 = 9;
    /// Seqno request.
    pub const SEQNO_REQUEST: u8 = 10;
}

/// Address encodings.
pub mod ae {
    /// No address; a wildcard.
    pub const WILDCARD: u8 = 0;
    /// IPv4.
    pub const IPV4: u8 = 1;
    /// IPv6.
    pub const IPV6: u8 = 2;
    /// IPv6 link-local: 8 bytes appended to `fe80::/64`.
    pub const LINK_LOCAL: u8 = 3;
}

/// Why a TLV value was rejected. The packet carrying it is skipped, not fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlvError {
    /// A type number we do not know.
    #[error("unknown TLV type {0}")]
    UnknownType(u8),
    /// The value ended before its fields did.
    #[error("TLV value truncated")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes after the TLV value")]
    TrailingBytes(usize),
    /// An address encoding this TLV does not allow.
    #[error("address encoding {0} not allowed here")]
    AddressEncoding(u8),
    /// A prefix length the address encoding cannot hold.
    #[error("prefix length {plen} invalid for address encoding {ae}")]
    PrefixLen {
        /// The address encoding.
        ae: u8,
        /// The prefix length.
        plen: u8,
    },
}

impl From<Truncated> for TlvError {
    fn from(_: Truncated) -> Self {
        TlvError::Truncated
    }
}

/// One control TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlv {
    /// Neighbour liveness probe.
    Hello(Hello),
    /// Reply to a Hello.
    Ihu(Ihu),
    /// A route announcement or retraction.
    Update(Update),
    /// A request for routes.
    RouteRequest(RouteRequest),
    /// A request for a newer sequence number.
    SeqnoRequest(SeqnoRequest),
}

impl Tlv {
    /// The TLV type number.
    pub const fn tlv_type(&self) -> u8 {
        match self {
            Tlv::Hello(_) => tlv_type::HELLO,
            Tlv::Ihu(_) => tlv_type::IHU,
            Tlv::Update(_) => tlv_type::UPDATE,
            Tlv::RouteRequest(_) => tlv_type::ROUTE_REQUEST,
            Tlv::SeqnoRequest(_) => tlv_type::SEQNO_REQUEST,
        }
    }

    /// Exact length of the encoded value (without type and length bytes).
    pub fn value_len(&self) -> usize {
        match self {
            Tlv::Hello(_) => Hello::VALUE_LEN,
            Tlv::Ihu(t) => t.value_len(),
            Tlv::Update(t) => t.value_len(),
            Tlv::RouteRequest(t) => t.value_len(),
            Tlv::SeqnoRequest(t) => t.value_len(),
        }
    }

    /// Decodes a value of type `ty` that must fill `value` exactly.
    pub fn decode(ty: u8, value: &[u8]) -> Result<Tlv, TlvError> {
        let mut r = Reader::new(value);
        let tlv = match ty {
            tlv_type::HELLO => Tlv::Hello(Hello::decode(&mut r)?),
            tlv_type::IHU => Tlv::Ihu(Ihu::decode(&mut r)?),
            tlv_type::UPDATE => Tlv::Update(Update::decode(&mut r)?),
            tlv_type::ROUTE_REQUEST => Tlv::RouteRequest(RouteRequest::decode(&mut r)?),
            tlv_type::SEQNO_REQUEST => Tlv::SeqnoRequest(SeqnoRequest::decode(&mut r)?),
            other => return Err(TlvError::UnknownType(other)),
        };
        match r.remaining() {
            0 => Ok(tlv),
            n => Err(TlvError::TrailingBytes(n)),
        }
    }

    /// Appends the value (without type and length bytes).
    pub fn encode_value(&self, buf: &mut impl BufMut) {
        match self {
            Tlv::Hello(t) => t.encode(buf),
            Tlv::Ihu(t) => t.encode(buf),
            Tlv::Update(t) => t.encode(buf),
            Tlv::RouteRequest(t) => t.encode(buf),
            Tlv::SeqnoRequest(t) => t.encode(buf),
        }
    }
}

/// Bytes of address a prefix of `plen` bits takes on the wire.
pub(crate) const fn prefix_bytes(plen: u8) -> usize {
    (plen as usize).div_ceil(8)
}

/// The address encoding we send for `subnet`: IPv6 (2), or IPv4 (1). We never send
/// the link-local form.
pub(crate) fn ae_of(subnet: &Subnet) -> u8 {
    match subnet.address() {
        IpAddr::V4(_) => ae::IPV4,
        IpAddr::V6(_) => ae::IPV6,
    }
}

/// Appends the first `ceil(plen/8)` bytes of the subnet's address.
pub(crate) fn encode_prefix(subnet: &Subnet, buf: &mut impl BufMut) {
    let n = prefix_bytes(subnet.prefix_len());
    match subnet.address() {
        IpAddr::V4(a) => buf.put_slice(&a.octets()[..n]),
        IpAddr::V6(a) => buf.put_slice(&a.octets()[..n]),
    }
}

/// Reads a prefix of `plen` bits in encoding `ae`. A wildcard (AE 0) must have
/// length 0 and decodes as `::/0`, as upstream does. Link-local prefixes (AE 3) can
/// never pass the update filters and are refused here, so that every prefix we
/// decode re-encodes to the same meaning.
pub(crate) fn decode_prefix(ae: u8, plen: u8, r: &mut Reader<'_>) -> Result<Subnet, TlvError> {
    let bad_len = TlvError::PrefixLen { ae, plen };
    let addr = match ae {
        ae::WILDCARD if plen == 0 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ae::WILDCARD => return Err(bad_len),
        ae::IPV4 => {
            if plen > 32 {
                return Err(bad_len);
            }
            let mut o = [0u8; 4];
            o[..prefix_bytes(plen)].copy_from_slice(r.take(prefix_bytes(plen))?);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        ae::IPV6 => {
            if plen > 128 {
                return Err(bad_len);
            }
            let mut o = [0u8; 16];
            o[..prefix_bytes(plen)].copy_from_slice(r.take(prefix_bytes(plen))?);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        other => return Err(TlvError::AddressEncoding(other)),
    };
    Subnet::new(addr, plen).map_err(|_| bad_len)
}

#[cfg(test)]
mod tests;
