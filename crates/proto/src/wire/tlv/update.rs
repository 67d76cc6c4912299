//! The Update TLV (type 8): a route announcement, or with an infinite metric a
//! retraction. Unlike RFC 8966 the 40-byte router id rides
//! inside the Update, after the prefix.

use bytes::BufMut;

use super::{ae_of, decode_prefix, encode_prefix, prefix_bytes, TlvError};
use crate::identity::RouterId;
use crate::subnet::Subnet;
use crate::wire::fields::{Interval, Metric, SeqNo};
use crate::wire::reader::Reader;

/// An Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The sender's promise for its next update of this route (upstream: 300 s, or
    /// 0 for an expired retracted route).
    pub interval: Interval,
    /// The originator's sequence number carried by the route.
    pub seqno: SeqNo,
    /// The sender's metric including its link to its next hop; 0 for the sender's own
    /// subnet, infinite for a retraction.
    pub metric: Metric,
    /// The announced prefix. A wildcard (AE 0) decodes as `::/0`.
    pub subnet: Subnet,
    /// The router id of the route's source.
    pub router_id: RouterId,
}

impl Update {
    pub(super) fn value_len(&self) -> usize {
        10 + prefix_bytes(self.subnet.prefix_len()) + 40
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, TlvError> {
        let encoding = r.u8()?;
        // Flags: upstream sends 0 and ignores what survives its mask; so do we.
        let _flags = r.u8()?;
        let plen = r.u8()?;
        // Omitted: always 0 on the wire, and upstream assumes 0 whatever it says.
        let _omitted = r.u8()?;
        let interval = Interval(r.u16()?);
        let seqno = SeqNo(r.u16()?);
        let metric = Metric(r.u16()?);
        let subnet = decode_prefix(encoding, plen, r)?;
        let router_id = RouterId::from_bytes(r.array()?);
        Ok(Self {
            interval,
            seqno,
            metric,
            subnet,
            router_id,
        })
    }

    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ae_of(&self.subnet));
        buf.put_u8(0);
        buf.put_u8(self.subnet.prefix_len());
        buf.put_u8(0);
        buf.put_u16(self.interval.0);
        buf.put_u16(self.seqno.0);
        buf.put_u16(self.metric.0);
        encode_prefix(&self.subnet, buf);
        buf.put_slice(self.router_id.as_bytes());
    }
}
