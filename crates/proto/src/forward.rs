//! What happens to a data packet at a node, decided without I/O: the rules every
//! node applies, upstream's among them, for the node's data path and the simulator
//! alike.
//!
//! Three moments:
//! - [`transit`]: a whole data packet arrives from a peer. Its hop limit is
//!   checked, then it is for us or goes on to a next hop.
//! - [`outbound`]: an IPv6 packet arrives from our TUN device. It may get an ICMPv6
//!   error back instead of leaving.
//! - [`inbound`]: a data packet for us has been opened. Its payload is an IPv6
//!   packet, a message frame or an out-of-band ICMP report, or is refused.
//!
//! The functions change only the hop-limit bytes they say they change; the caller
//! moves the bytes.

use std::net::Ipv6Addr;

use crate::crypto::OVERHEAD;
use crate::icmp;
use crate::wire::payload::{self, PayloadType};
use crate::wire::view::{DataFrame, Ipv6Packet};
use crate::Subnet;

/// Where a data packet from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit<L> {
    /// It has fewer than two hops left: dropped, and reported to its source as
    /// "time exceeded". Unchanged.
    Expired,
    /// It is for this node's subnet: open it. One hop taken.
    Deliver,
    /// It goes on through `L`. One hop taken.
    Forward(L),
    /// No route is known: the router looks for one. Unchanged, so the decision can
    /// be made again once it has.
    Unrouted,
}

/// Decides what to do with a data packet from a peer, for a node owning `own`;
/// `route` gives the next hop for a destination, if the node knows one.
pub fn transit<T, L>(
    frame: &mut DataFrame<T>,
    own: Subnet,
    route: impl FnOnce(Ipv6Addr) -> Option<L>,
) -> Transit<L>
where
    T: AsRef<[u8]> + AsMut<[u8]>,
{
    let hop = frame.hop_limit();
    if hop < 2 {
        return Transit::Expired;
    }
    let dst = frame.dst();
    let verdict = if own.contains_ip(dst.into()) {
        Transit::Deliver
    } else {
        match route(dst) {
            Some(link) => Transit::Forward(link),
            None => return Transit::Unrouted,
        }
    };
    frame.set_hop_limit(hop - 1);
    verdict
}

/// What becomes of an IPv6 packet read from our TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Sealed and sent with this hop limit (one hop taken).
    Send {
        /// The data header's hop limit.
        hop_limit: u8,
    },
    /// Not sent: this ICMPv6 error goes back to our TUN device instead.
    Refused(IcmpError),
    /// Written back to our TUN device as it is (macOS delivers a packet for the
    /// node's own address to the device, not to the local stack).
    Reflect,
    /// Too long to fit a data packet once sealed: dropped.
    TooLong,
}

/// An ICMPv6 error for our TUN device, about the packet that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// The error's source address.
    pub src: Ipv6Addr,
    /// Its destination (the offending packet's source).
    pub dst: Ipv6Addr,
    /// Its hop limit.
    pub hop_limit: u8,
    /// ICMPv6 type.
    pub kind: u8,
    /// ICMPv6 code.
    pub code: u8,
}

/// The longest IPv6 packet a data packet can carry: the payload length field is 16
/// bits and holds the payload header and the seal too.
pub const MAX_INNER_PACKET: usize = u16::MAX as usize - payload::HEADER_LEN - OVERHEAD;

/// Decides what to do with an IPv6 packet from our TUN device, at the node whose
/// address is `own_ip` in `own`; `reflect_own` says whether packets for `own_ip`
/// are written back (macOS).
pub fn outbound<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
    own_ip: Ipv6Addr,
    own: Subnet,
    reflect_own: bool,
) -> Outbound {
    let (hop, src, dst) = (ip.hop_limit(), ip.src(), ip.dst());
    if reflect_own && dst == own_ip {
        return Outbound::Reflect;
    }
    let refuse = |src, hop_limit, kind, code| {
        Outbound::Refused(IcmpError {
            src,
            dst: ip.src(),
            hop_limit,
            kind,
            code,
        })
    };
    if own.contains_ip(dst.into()) {
        // An address of our /64 that is not ours: nobody is there.
        return refuse(
            own_ip,
            64,
            icmp::DESTINATION_UNREACHABLE,
            icmp::CODE_ADDRESS_UNREACHABLE,
        );
    }
    if src.octets()[0] & 0xfe != 0x04 {
        // Only overlay sources may leave.
        return refuse(
            own_ip,
            64,
            icmp::DESTINATION_UNREACHABLE,
            icmp::CODE_SOURCE_POLICY,
        );
    }
    if hop < 2 {
        // Upstream sends this one from the packet's own source to itself.
        return refuse(src, hop, icmp::TIME_EXCEEDED, 0);
    }
    if ip.as_bytes().len() > MAX_INNER_PACKET {
        return Outbound::TooLong;
    }
    Outbound::Send { hop_limit: hop - 1 }
}

/// What an opened data packet for us carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// An IPv6 packet for our TUN device, its hop limit set to the data header's;
    /// it starts [`payload::HEADER_LEN`] bytes into the plaintext.
    Ipv6,
    /// A message frame, [`payload::HEADER_LEN`] bytes into the plaintext.
    Message,
    /// An out-of-band ICMP report about a packet we sent, [`payload::HEADER_LEN`]
    /// bytes into the plaintext.
    OobIcmp,
    /// An IPv6 packet whose inner source or destination lies outside the outer
    /// ones' `/64`s (a forged source, or a packet turned round): dropped.
    Spoofed,
    /// Neither a payload header we know nor a whole IPv6 header behind it.
    Malformed,
}

/// Decides what the plaintext of a data packet from `src` to `dst`, which arrived
/// with `hop` hops left, carries. For an IPv6 packet, sets its hop limit to `hop`.
///
/// Upstream checks nothing about the inner addresses. We require them to lie in
/// the outer ones' `/64`s, so a packet cannot be turned round (source and
/// destination swapped on the outer header) and delivered as if the peer had sent
/// it.
pub fn inbound(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, plain: &mut [u8]) -> Inbound {
    let kind = match payload::decode(plain) {
        Ok((kind, _)) => kind,
        Err(_) => return Inbound::Malformed,
    };
    match kind {
        PayloadType::Message => return Inbound::Message,
        PayloadType::OobIcmp => return Inbound::OobIcmp,
        PayloadType::Ipv6 => {}
    }
    let Ok(mut ip) = Ipv6Packet::new_checked(&mut plain[payload::HEADER_LEN..]) else {
        return Inbound::Malformed;
    };
    if !Subnet::v6_64(src).contains_ip(ip.src().into())
        || !Subnet::v6_64(dst).contains_ip(ip.dst().into())
    {
        return Inbound::Spoofed;
    }
    ip.set_hop_limit(hop);
    Inbound::Ipv6
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::data::DataHeader;
    use crate::wire::packet;

    const A: Ipv6Addr = Ipv6Addr::new(0x400, 0xa, 0, 0, 0, 0, 0, 1);
    const B: Ipv6Addr = Ipv6Addr::new(0x400, 0xb, 0, 0, 0, 0, 0, 1);
    const C: Ipv6Addr = Ipv6Addr::new(0x400, 0xc, 0, 0, 0, 0, 0, 1);

    fn data(hop: u8, src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        packet::encode_header(packet::TYPE_DATA, &mut buf);
        DataHeader {
            hop_limit: hop,
            src,
            dst,
        }
        .encode(payload_len as u16, &mut buf);
        buf.resize(buf.len() + payload_len, 0xee);
        buf
    }

    fn ipv6(hop: u8, src: Ipv6Addr, dst: Ipv6Addr, body: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + body];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(body as u16).to_be_bytes());
        p[6] = 59;
        p[7] = hop;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p
    }

    fn own(addr: Ipv6Addr) -> Subnet {
        Subnet::v6_64(addr)
    }

    #[test]
    fn transit_takes_a_hop_from_two_and_above_and_stops_below() {
        for (hop, want) in [
            (0, Transit::Expired),
            (1, Transit::Expired),
            (2, Transit::Forward(7)),
            (255, Transit::Forward(7)),
        ] {
            let mut buf = data(hop, A, C, 16);
            let mut frame = DataFrame::new_checked(&mut buf[..]).unwrap();
            assert_eq!(transit(&mut frame, own(B), |_| Some(7)), want, "hop {hop}");
            let left = if want == Transit::Expired {
                hop
            } else {
                hop - 1
            };
            assert_eq!(frame.hop_limit(), left, "hop {hop}");
        }
    }

    #[test]
    fn a_packet_for_our_subnet_is_delivered_whatever_the_routes() {
        let mut buf = data(2, A, B, 16);
        let mut frame = DataFrame::new_checked(&mut buf[..]).unwrap();
        let verdict = transit(&mut frame, own(B), |_| -> Option<u8> {
            panic!("looked up")
        });
        assert_eq!(verdict, Transit::Deliver);
        assert_eq!(frame.hop_limit(), 1);
    }

    #[test]
    fn an_unknown_destination_goes_to_the_router_unchanged() {
        let mut buf = data(9, A, C, 16);
        let before = buf.clone();
        let mut frame = DataFrame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(
            transit(&mut frame, own(B), |_| None::<u8>),
            Transit::Unrouted
        );
        assert_eq!(buf, before);
    }

    #[test]
    fn short_and_mislabelled_packets_have_no_view() {
        let whole = data(9, A, C, 16);
        assert!(DataFrame::new_checked(&whole[..39]).is_err());
        assert!(DataFrame::new_checked(&whole[..whole.len() - 1]).is_err());
        let mut longer = whole.clone();
        longer.push(0);
        assert!(DataFrame::new_checked(&longer[..]).is_err());
        assert!(Ipv6Packet::new_checked(&ipv6(9, A, C, 0)[..39]).is_err());
    }

    #[test]
    fn outbound_refuses_with_the_errors_upstream_sends() {
        let me = A;
        let cases = [
            // Another address of our /64.
            (
                ipv6(64, A, Ipv6Addr::new(0x400, 0xa, 0, 0, 0, 0, 0, 2), 8),
                Outbound::Refused(IcmpError {
                    src: me,
                    dst: A,
                    hop_limit: 64,
                    kind: icmp::DESTINATION_UNREACHABLE,
                    code: icmp::CODE_ADDRESS_UNREACHABLE,
                }),
            ),
            // A source outside the overlay.
            (
                ipv6(64, "fd00::1".parse().unwrap(), C, 8),
                Outbound::Refused(IcmpError {
                    src: me,
                    dst: "fd00::1".parse().unwrap(),
                    hop_limit: 64,
                    kind: icmp::DESTINATION_UNREACHABLE,
                    code: icmp::CODE_SOURCE_POLICY,
                }),
            ),
            // No hop left to give: from the packet's own source, as upstream does.
            (
                ipv6(1, A, C, 8),
                Outbound::Refused(IcmpError {
                    src: A,
                    dst: A,
                    hop_limit: 1,
                    kind: icmp::TIME_EXCEEDED,
                    code: 0,
                }),
            ),
            (
                ipv6(0, A, C, 8),
                Outbound::Refused(IcmpError {
                    src: A,
                    dst: A,
                    hop_limit: 0,
                    kind: icmp::TIME_EXCEEDED,
                    code: 0,
                }),
            ),
            (ipv6(2, A, C, 8), Outbound::Send { hop_limit: 1 }),
            (ipv6(64, A, C, 8), Outbound::Send { hop_limit: 63 }),
        ];
        for (packet, want) in cases {
            let view = Ipv6Packet::new_checked(&packet[..]).unwrap();
            assert_eq!(outbound(&view, me, own(me), false), want);
        }
    }

    #[test]
    fn only_a_reflecting_system_reflects_and_only_our_own_address() {
        let p = ipv6(64, A, A, 8);
        let view = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(outbound(&view, A, own(A), true), Outbound::Reflect);
        assert!(matches!(
            outbound(&view, A, own(A), false),
            Outbound::Refused(_)
        ));
    }

    #[test]
    fn an_inner_packet_too_long_to_seal_is_dropped() {
        let fits = ipv6(64, A, C, MAX_INNER_PACKET - 40);
        let view = Ipv6Packet::new_checked(&fits[..]).unwrap();
        assert_eq!(
            outbound(&view, A, own(A), false),
            Outbound::Send { hop_limit: 63 }
        );
        // The view does not read the length field: what the device said counts.
        let mut long = fits.clone();
        long.push(0);
        let view = Ipv6Packet::new_checked(&long[..]).unwrap();
        assert_eq!(outbound(&view, A, own(A), false), Outbound::TooLong);
    }

    fn plain(kind: PayloadType, inner: &[u8]) -> Vec<u8> {
        let mut p = payload::header(kind).to_vec();
        p.extend_from_slice(inner);
        p
    }

    #[test]
    fn inbound_accepts_an_ipv6_packet_between_the_outer_subnets_and_sets_its_hops() {
        let mut p = plain(PayloadType::Ipv6, &ipv6(64, A, B, 8));
        assert_eq!(inbound(A, B, 17, &mut p), Inbound::Ipv6);
        assert_eq!(p[payload::HEADER_LEN + 7], 17);
    }

    #[test]
    fn inbound_refuses_spoofed_inner_addresses() {
        // A forged inner source, a forged inner destination, and a packet turned
        // round (outer addresses swapped).
        for (outer_src, outer_dst, inner) in [
            (A, B, ipv6(64, C, B, 8)),
            (A, B, ipv6(64, A, C, 8)),
            (B, A, ipv6(64, A, B, 8)),
        ] {
            let mut p = plain(PayloadType::Ipv6, &inner);
            let before = p.clone();
            assert_eq!(inbound(outer_src, outer_dst, 17, &mut p), Inbound::Spoofed);
            assert_eq!(p, before, "the packet was changed");
        }
    }

    #[test]
    fn inbound_tells_messages_and_reports_and_refuses_the_rest() {
        assert_eq!(
            inbound(A, B, 9, &mut plain(PayloadType::Message, b"x")),
            Inbound::Message
        );
        assert_eq!(
            inbound(A, B, 9, &mut plain(PayloadType::OobIcmp, b"x")),
            Inbound::OobIcmp
        );
        assert_eq!(inbound(A, B, 9, &mut [0xff, 0, 0, 0]), Inbound::Malformed);
        assert_eq!(inbound(A, B, 9, &mut []), Inbound::Malformed);
        let short = ipv6(64, A, B, 8);
        assert_eq!(
            inbound(A, B, 9, &mut plain(PayloadType::Ipv6, &short[..39])),
            Inbound::Malformed
        );
    }
}
