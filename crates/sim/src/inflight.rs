//! TLVs in flight, in 16 bytes each.
//!
//! At the height of a flood most of a large network's TLVs are on their way at once
//! (10,000 nodes send each other about 300 million). A [`Tlv`] is 64 bytes, mostly
//! the 40-byte router id and the 18-byte subnet; here both are numbers into tables
//! of the values seen, which stay small: a simulated network has a few router ids
//! and subnets per node.

use std::collections::HashMap;

use mycelium_proto::wire::tlv::{Hello, Ihu, RouteRequest, SeqnoRequest, Update};
use mycelium_proto::wire::{Interval, Metric, SeqNo, Tlv};
use mycelium_proto::{RouterId, Subnet};

/// "No prefix": a wildcard route request.
const WILDCARD: u32 = u32::MAX;

/// A TLV as it waits in a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packed {
    Hello {
        unicast: bool,
        seqno: u16,
        interval: u16,
    },
    Ihu {
        rx_cost: u16,
        interval: u16,
    },
    Update {
        interval: u16,
        seqno: u16,
        metric: u16,
        subnet: u32,
        router_id: u32,
    },
    RouteRequest {
        generation: u8,
        prefix: u32,
    },
    SeqnoRequest {
        seqno: u16,
        hop_count: u8,
        router_id: u32,
        prefix: u32,
    },
    /// Anything else (an IHU naming an address), kept whole aside.
    Other(u32),
}

/// The tables the packed form points into.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    subnets: Vec<Subnet>,
    subnet_ids: HashMap<Subnet, u32>,
    router_ids: Vec<RouterId>,
    router_id_ids: HashMap<RouterId, u32>,
    others: Vec<Option<Tlv>>,
    free_others: Vec<u32>,
}

impl Interner {
    fn subnet(&mut self, s: Subnet) -> u32 {
        if let Some(&i) = self.subnet_ids.get(&s) {
            return i;
        }
        let i = u32::try_from(self.subnets.len()).expect("fewer than 2^32 subnets");
        self.subnets.push(s);
        self.subnet_ids.insert(s, i);
        i
    }

    fn router_id(&mut self, r: RouterId) -> u32 {
        if let Some(&i) = self.router_id_ids.get(&r) {
            return i;
        }
        let i = u32::try_from(self.router_ids.len()).expect("fewer than 2^32 router ids");
        self.router_ids.push(r);
        self.router_id_ids.insert(r, i);
        i
    }

    /// The packed form of `tlv`.
    pub(crate) fn pack(&mut self, tlv: Tlv) -> Packed {
        match tlv {
            Tlv::Hello(h) => Packed::Hello {
                unicast: h.unicast,
                seqno: h.seqno.0,
                interval: h.interval.0,
            },
            Tlv::Ihu(i) if i.address.is_none() => Packed::Ihu {
                rx_cost: i.rx_cost.0,
                interval: i.interval.0,
            },
            Tlv::Update(u) => Packed::Update {
                interval: u.interval.0,
                seqno: u.seqno.0,
                metric: u.metric.0,
                subnet: self.subnet(u.subnet),
                router_id: self.router_id(u.router_id),
            },
            Tlv::RouteRequest(r) => Packed::RouteRequest {
                generation: r.generation,
                prefix: r.prefix.map_or(WILDCARD, |p| self.subnet(p)),
            },
            Tlv::SeqnoRequest(r) => Packed::SeqnoRequest {
                seqno: r.seqno.0,
                hop_count: r.hop_count,
                router_id: self.router_id(r.router_id),
                prefix: self.subnet(r.prefix),
            },
            other => {
                let i = match self.free_others.pop() {
                    Some(i) => {
                        self.others[i as usize] = Some(other);
                        i
                    }
                    None => {
                        self.others.push(Some(other));
                        (self.others.len() - 1) as u32
                    }
                };
                Packed::Other(i)
            }
        }
    }

    /// The TLV back; what was kept aside for it is released.
    pub(crate) fn unpack(&mut self, p: Packed) -> Tlv {
        match p {
            Packed::Hello {
                unicast,
                seqno,
                interval,
            } => Tlv::Hello(Hello {
                unicast,
                seqno: SeqNo(seqno),
                interval: Interval(interval),
            }),
            Packed::Ihu { rx_cost, interval } => Tlv::Ihu(Ihu {
                rx_cost: Metric(rx_cost),
                interval: Interval(interval),
                address: None,
            }),
            Packed::Update {
                interval,
                seqno,
                metric,
                subnet,
                router_id,
            } => Tlv::Update(Update {
                interval: Interval(interval),
                seqno: SeqNo(seqno),
                metric: Metric(metric),
                subnet: self.subnets[subnet as usize],
                router_id: self.router_ids[router_id as usize],
            }),
            Packed::RouteRequest { generation, prefix } => Tlv::RouteRequest(RouteRequest {
                generation,
                prefix: (prefix != WILDCARD).then(|| self.subnets[prefix as usize]),
            }),
            Packed::SeqnoRequest {
                seqno,
                hop_count,
                router_id,
                prefix,
            } => Tlv::SeqnoRequest(SeqnoRequest {
                seqno: SeqNo(seqno),
                hop_count,
                router_id: self.router_ids[router_id as usize],
                prefix: self.subnets[prefix as usize],
            }),
            Packed::Other(i) => {
                let tlv = self.others[i as usize].take();
                self.free_others.push(i);
                tlv.expect("a packed TLV is unpacked once")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mycelium_proto::PublicKey;

    #[test]
    fn every_kind_round_trips_in_sixteen_bytes() {
        assert!(std::mem::size_of::<Packed>() <= 16);
        let key = PublicKey::from_bytes([7; 32]);
        let id = RouterId::new(key, [1; 6]);
        let tlvs = [
            Tlv::Hello(Hello {
                unicast: true,
                seqno: SeqNo(3),
                interval: Interval(25),
            }),
            Tlv::Ihu(Ihu {
                rx_cost: Metric(9),
                interval: Interval(600),
                address: None,
            }),
            Tlv::Ihu(Ihu {
                rx_cost: Metric(9),
                interval: Interval(600),
                address: Some("fe80::1".parse().unwrap()),
            }),
            Tlv::Update(Update {
                interval: Interval(3000),
                seqno: SeqNo(4),
                metric: Metric(17),
                subnet: key.subnet(),
                router_id: id,
            }),
            Tlv::RouteRequest(RouteRequest {
                generation: 2,
                prefix: None,
            }),
            Tlv::RouteRequest(RouteRequest {
                generation: 0,
                prefix: Some(key.subnet()),
            }),
            Tlv::SeqnoRequest(SeqnoRequest {
                seqno: SeqNo(5),
                hop_count: 64,
                router_id: id,
                prefix: key.subnet(),
            }),
        ];
        let mut i = Interner::default();
        for tlv in tlvs {
            let p = i.pack(tlv);
            assert_eq!(i.unpack(p), tlv);
        }
        assert_eq!((i.subnets.len(), i.router_ids.len()), (1, 1));
    }
}
