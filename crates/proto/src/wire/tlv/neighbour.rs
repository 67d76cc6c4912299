//! Hello and IHU: the TLVs of neighbour maintenance.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BufMut;

use super::{ae, TlvError};
use crate::wire::fields::{Interval, Metric, SeqNo};
use crate::wire::reader::Reader;

/// The Hello flag upstream always sets.
pub const HELLO_FLAG_UNICAST: u16 = 0x8000;

/// A Hello (type 4): "I am here"; answered at once with an [`Ihu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Whether the unicast flag is set. Upstream always sets it and masks every
    /// other flag bit away on receive; so do we.
    pub unicast: bool,
    /// Per-neighbour Hello counter.
    pub seqno: SeqNo,
    /// When the next Hello is due (upstream: 20 s).
    pub interval: Interval,
}

impl Hello {
    /// Length of the value.
    pub const VALUE_LEN: usize = 6;

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, TlvError> {
        let flags = r.u16()?;
        Ok(Self {
            unicast: flags & HELLO_FLAG_UNICAST != 0,
            seqno: SeqNo(r.u16()?),
            interval: Interval(r.u16()?),
        })
    }

    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16(if self.unicast { HELLO_FLAG_UNICAST } else { 0 });
        buf.put_u16(self.seqno.0);
        buf.put_u16(self.interval.0);
    }
}

/// An IHU (type 5), "I heard you": upstream treats it purely as a timing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ihu {
    /// The sender's cost of the link to us.
    pub rx_cost: Metric,
    /// When the next IHU is due (upstream: 60 s).
    pub interval: Interval,
    /// The neighbour address, if any. Upstream sends none (AE 0). A link-local
    /// address received in the compressed form (AE 3) is re-encoded in full (AE 2).
    pub address: Option<IpAddr>,
}

impl Ihu {
    pub(super) fn value_len(&self) -> usize {
        6 + match self.address {
            None => 0,
            Some(IpAddr::V4(_)) => 4,
            Some(IpAddr::V6(_)) => 16,
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, TlvError> {
        let encoding = r.u8()?;
        let _reserved = r.u8()?;
        let rx_cost = Metric(r.u16()?);
        let interval = Interval(r.u16()?);
        let address = match encoding {
            ae::WILDCARD => None,
            ae::IPV4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
            ae::IPV6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
            ae::LINK_LOCAL => {
                let mut o = [0u8; 16];
                o[..2].copy_from_slice(&[0xfe, 0x80]);
                o[8..].copy_from_slice(&r.array::<8>()?);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            other => return Err(TlvError::AddressEncoding(other)),
        };
        Ok(Self {
            rx_cost,
            interval,
            address,
        })
    }

    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self.address {
            None => ae::WILDCARD,
            Some(IpAddr::V4(_)) => ae::IPV4,
            Some(IpAddr::V6(_)) => ae::IPV6,
        });
        buf.put_u8(0);
        buf.put_u16(self.rx_cost.0);
        buf.put_u16(self.interval.0);
        match self.address {
            None => {}
            Some(IpAddr::V4(a)) => buf.put_slice(&a.octets()),
            Some(IpAddr::V6(a)) => buf.put_slice(&a.octets()),
        }
    }
}
