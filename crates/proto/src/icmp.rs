//! ICMPv6 error messages a node writes to its own TUN:
//! destination unreachable and time exceeded, quoting the packet that caused them.

use std::net::Ipv6Addr;

use bytes::BufMut;

/// ICMPv6 type: destination unreachable.
pub const DESTINATION_UNREACHABLE: u8 = 1;
/// ICMPv6 type: time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Unreachable code: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Unreachable code: address unreachable.
pub const CODE_ADDRESS_UNREACHABLE: u8 = 3;
/// Unreachable code: source address failed ingress/egress policy.
pub const CODE_SOURCE_POLICY: u8 = 5;
/// IPv6 next-header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// How much of the offending packet an error quotes: enough for the whole error to
/// fit the IPv6 minimum MTU of 1280 (RFC 4443 §2.4).
pub const MAX_QUOTE: usize = 1232;

/// The ICMPv6 checksum over the pseudo-header and `message` (whose checksum field
/// must be zero).
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Appends a whole IPv6 packet carrying an ICMPv6 error of `icmp_type`/`code` from
/// `src` to `dst`, quoting at most [`MAX_QUOTE`] bytes of `offending`.
pub fn encode_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp_type: u8,
    code: u8,
    offending: &[u8],
    out: &mut impl BufMut,
) {
    let quote = &offending[..offending.len().min(MAX_QUOTE)];
    let mut message = Vec::with_capacity(8 + quote.len());
    message.extend_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    message.extend_from_slice(quote);
    let sum = checksum(src, dst, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    out.put_u32(0x6000_0000);
    out.put_u16(message.len() as u16);
    out.put_u8(NEXT_HEADER_ICMPV6);
    out.put_u8(hop_limit);
    out.put_slice(&src.octets());
    out.put_slice(&dst.octets());
    out.put_slice(&message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_packet_has_a_valid_checksum_and_bounded_quote() {
        let src: Ipv6Addr = "400::1".parse().unwrap();
        let dst: Ipv6Addr = "500::2".parse().unwrap();
        let offending = vec![0x60; 2000];
        let mut out = Vec::new();
        encode_error(
            src,
            dst,
            64,
            DESTINATION_UNREACHABLE,
            CODE_NO_ROUTE,
            &offending,
            &mut out,
        );
        assert_eq!(out.len(), 40 + 8 + MAX_QUOTE);
        assert_eq!(out[6], NEXT_HEADER_ICMPV6);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]) as usize, 8 + MAX_QUOTE);
        // Summing the message with its checksum in place gives zero.
        assert_eq!(checksum(src, dst, &out[40..]), 0);
    }

    #[test]
    fn checksum_matches_a_known_echo_request() {
        // An ICMPv6 echo request (type 128) from ::1 to ::1, id 0, seq 1, no data.
        let lo = Ipv6Addr::LOCALHOST;
        let mut msg = [128u8, 0, 0, 0, 0, 0, 0, 1];
        let sum = checksum(lo, lo, &msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(lo, lo, &msg), 0);
        // 0x0001 + 0x0001 + 0x0008 + 0x003a + 0x8000 + 0x0001 = 0x8045, complemented.
        assert_eq!(sum, 0x7fba);
    }
}
