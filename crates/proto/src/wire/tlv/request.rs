//! Route requests and seqno requests.

use bytes::BufMut;

use super::{ae, ae_of, decode_prefix, encode_prefix, prefix_bytes, TlvError};
use crate::identity::RouterId;
use crate::subnet::Subnet;
use crate::wire::fields::SeqNo;
use crate::wire::reader::Reader;

/// A route request (type 9). Mycelium puts a generation byte first: how many times
/// the request was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRequest {
    /// 0 when originated, +1 at each relay.
    pub generation: u8,
    /// The wanted prefix, or `None` for "send me everything" (AE 0).
    pub prefix: Option<Subnet>,
}

impl RouteRequest {
    pub(super) fn value_len(&self) -> usize {
        3 + self.prefix.map_or(0, |p| prefix_bytes(p.prefix_len()))
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, TlvError> {
        let generation = r.u8()?;
        let encoding = r.u8()?;
        let plen = r.u8()?;
        let prefix = match encoding {
            ae::WILDCARD if plen == 0 => None,
            _ => Some(decode_prefix(encoding, plen, r)?),
        };
        Ok(Self { generation, prefix })
    }

    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.generation);
        match &self.prefix {
            None => buf.put_slice(&[ae::WILDCARD, 0]),
            Some(p) => {
                buf.put_u8(ae_of(p));
                buf.put_u8(p.prefix_len());
                encode_prefix(p, buf);
            }
        }
    }
}

/// A seqno request (type 10): asks the source of a route for a sequence number at
/// least `seqno`. The router id comes before the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqnoRequest {
    /// The sequence number asked for.
    pub seqno: SeqNo,
    /// Remaining hops (64 when originated).
    pub hop_count: u8,
    /// The source whose route is wanted.
    pub router_id: RouterId,
    /// The route's prefix. A wildcard (AE 0) decodes as `::/0`.
    pub prefix: Subnet,
}

impl SeqnoRequest {
    pub(super) fn value_len(&self) -> usize {
        6 + 40 + prefix_bytes(self.prefix.prefix_len())
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, TlvError> {
        let encoding = r.u8()?;
        let plen = r.u8()?;
        let seqno = SeqNo(r.u16()?);
        let hop_count = r.u8()?;
        let _reserved = r.u8()?;
        let router_id = RouterId::from_bytes(r.array()?);
        let prefix = decode_prefix(encoding, plen, r)?;
        Ok(Self {
            seqno,
            hop_count,
            router_id,
            prefix,
        })
    }

    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ae_of(&self.prefix));
        buf.put_u8(self.prefix.prefix_len());
        buf.put_u16(self.seqno.0);
        buf.put_u8(self.hop_count);
        buf.put_u8(0);
        buf.put_slice(self.router_id.as_bytes());
        encode_prefix(&self.prefix, buf);
    }
}
