//! Typed views of packet bytes, read and changed in place.
//!
//! The data path moves packets as owned buffers and must not copy or re-encode
//! them: a transit node changes one byte (the hop limit) and reads two addresses.
//! These views name those fields over any buffer (`&[u8]`, `&mut [u8]`,
//! `BytesMut`, ...), after one length check at construction, so no code outside
//! this module knows an offset.
//!
//! - [`DataFrame`]: a whole data packet as it travels between peers: the outer
//!   header, the data header (hop limit, overlay source and destination) and the
//!   sealed payload.
//! - [`Ipv6Packet`]: the fixed IPv6 header of a packet from or for the TUN device.

use std::net::Ipv6Addr;

use super::data::DataHeader;
use super::packet::{HEADER_LEN, TYPE_DATA, VERSION};

/// Why bytes are not a packet of the kind asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// Shorter than the fixed header.
    #[error("{len} bytes is shorter than the {need}-byte header")]
    Truncated {
        /// The buffer's length.
        len: usize,
        /// The header's length.
        need: usize,
    },
    /// Not a data packet, or not IPv6.
    #[error("not a packet of this kind (leading byte {0:#04x})")]
    Kind(u8),
    /// The length field and the buffer disagree.
    #[error("the header declares {declared} payload bytes, the buffer holds {held}")]
    Length {
        /// What the header says.
        declared: usize,
        /// What follows the header.
        held: usize,
    },
}

fn addr(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(a)
}

/// A whole data packet in a buffer: `01 00 00 00`, then the data header, then the
/// sealed payload, exactly as long as the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<T> {
    buf: T,
}

impl DataFrame<()> {
    /// Bytes before the payload: the outer header and the data header.
    pub const HEADER_LEN: usize = HEADER_LEN + DataHeader::LEN;
}

const LEN_AT: usize = HEADER_LEN + 1;
const HOP_AT: usize = HEADER_LEN + 3;
const SRC_AT: usize = HEADER_LEN + 4;
const DST_AT: usize = HEADER_LEN + 20;

impl<T: AsRef<[u8]>> DataFrame<T> {
    /// The view, once `buf` is checked to hold a data packet whose payload length
    /// matches the header.
    pub fn new_checked(buf: T) -> Result<Self, ViewError> {
        let bytes = buf.as_ref();
        let need = DataFrame::HEADER_LEN;
        if bytes.len() < need {
            return Err(ViewError::Truncated {
                len: bytes.len(),
                need,
            });
        }
        if bytes[0] != VERSION || bytes[1] != TYPE_DATA {
            return Err(ViewError::Kind(bytes[1]));
        }
        let declared = usize::from(u16::from_be_bytes([bytes[LEN_AT], bytes[LEN_AT + 1]]));
        let held = bytes.len() - need;
        if declared != held {
            return Err(ViewError::Length { declared, held });
        }
        Ok(Self { buf })
    }

    /// Hops left.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[HOP_AT]
    }

    /// The overlay address of the sender.
    pub fn src(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), SRC_AT)
    }

    /// The overlay address of the receiver.
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), DST_AT)
    }

    /// The sealed payload.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[DataFrame::HEADER_LEN..]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataFrame<T> {
    /// Sets the hops left.
    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buf.as_mut()[HOP_AT] = hops;
    }

    /// The sealed payload, to open in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[DataFrame::HEADER_LEN..]
    }
}

/// An IPv6 packet in a buffer: the fixed 40-byte header and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T> {
    buf: T,
}

impl Ipv6Packet<()> {
    /// The fixed header's length.
    pub const HEADER_LEN: usize = 40;
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// The view, once `buf` is checked to start with an IPv6 header. The payload
    /// length field is not checked: the TUN device and the sealed payload say how
    /// long the packet is.
    pub fn new_checked(buf: T) -> Result<Self, ViewError> {
        let bytes = buf.as_ref();
        if bytes.len() < Ipv6Packet::HEADER_LEN {
            return Err(ViewError::Truncated {
                len: bytes.len(),
                need: Ipv6Packet::HEADER_LEN,
            });
        }
        if bytes[0] >> 4 != 6 {
            return Err(ViewError::Kind(bytes[0]));
        }
        Ok(Self { buf })
    }

    /// The protocol of what follows the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }

    /// Hops left.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }

    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), 8)
    }

    /// The destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), 24)
    }

    /// What follows the fixed header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[Ipv6Packet::HEADER_LEN..]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the hops left.
    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buf.as_mut()[7] = hops;
    }
}

/// The body of an out-of-band ICMP report, the plaintext past
/// its payload header: the destination of the packet it is about, then an ICMPv6
/// error whose message quotes that packet's sealed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OobReport<T> {
    buf: T,
}

impl OobReport<()> {
    /// The shortest report: a destination, an IPv6 header, an ICMPv6 header and a
    /// quote as long as a seal's tag.
    pub const MIN_LEN: usize = 16 + Ipv6Packet::HEADER_LEN + 8 + 16;
    /// The longest report: a destination and a minimum-MTU IPv6 packet.
    pub const MAX_LEN: usize = 16 + 1280;
}

/// The ICMPv6 next-header value.
const ICMPV6: u8 = 58;

impl<T: AsRef<[u8]>> OobReport<T> {
    /// The view, once `buf` is checked to be as long as a report may be and to
    /// carry an ICMPv6 packet after the destination.
    pub fn new_checked(buf: T) -> Result<Self, ViewError> {
        let bytes = buf.as_ref();
        let len = bytes.len();
        if len < OobReport::MIN_LEN {
            return Err(ViewError::Truncated {
                len,
                need: OobReport::MIN_LEN,
            });
        }
        if len > OobReport::MAX_LEN {
            return Err(ViewError::Length {
                declared: OobReport::MAX_LEN,
                held: len,
            });
        }
        let ip = Ipv6Packet::new_checked(&bytes[16..])?;
        if ip.next_header() != ICMPV6 {
            return Err(ViewError::Kind(ip.next_header()));
        }
        Ok(Self { buf })
    }

    /// The destination of the packet the report is about.
    pub fn original_dst(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), 0)
    }

    /// The ICMPv6 packet.
    pub fn icmp(&self) -> Ipv6Packet<&[u8]> {
        Ipv6Packet {
            buf: &self.buf.as_ref()[16..],
        }
    }

    /// The ICMPv6 type and code.
    pub fn kind(&self) -> (u8, u8) {
        let m = &self.buf.as_ref()[16 + Ipv6Packet::HEADER_LEN..];
        (m[0], m[1])
    }

    /// What the ICMPv6 message quotes: the sealed payload of the packet reported.
    pub fn quoted(&self) -> &[u8] {
        &self.buf.as_ref()[16 + Ipv6Packet::HEADER_LEN + 8..]
    }
}

/// A TCP header, for the fields a receiver's segment coalescing compares: ports,
/// header length and options, and the PSH flag (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader<T> {
    buf: T,
}

impl TcpHeader<()> {
    /// Bytes of a TCP header without options.
    pub const MIN_LEN: usize = 20;
}

impl<T: AsRef<[u8]>> TcpHeader<T> {
    /// The view, once `buf` is checked to hold a TCP header as long as its data
    /// offset says.
    pub fn new_checked(buf: T) -> Result<Self, ViewError> {
        let bytes = buf.as_ref();
        let need = match bytes.get(12) {
            Some(offset) => usize::from(offset >> 4) * 4,
            None => TcpHeader::MIN_LEN,
        };
        if bytes.len() < need.max(TcpHeader::MIN_LEN) {
            return Err(ViewError::Truncated {
                len: bytes.len(),
                need: need.max(TcpHeader::MIN_LEN),
            });
        }
        if need < TcpHeader::MIN_LEN {
            return Err(ViewError::Kind(bytes[12]));
        }
        Ok(Self { buf })
    }

    /// Source and destination ports.
    pub fn ports(&self) -> (u16, u16) {
        let b = self.buf.as_ref();
        (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        )
    }

    /// The header's length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[12] >> 4) * 4
    }

    /// The options (at most 40 bytes).
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[TcpHeader::MIN_LEN..self.header_len()]
    }

    /// Whether PSH is set.
    pub fn psh(&self) -> bool {
        self.buf.as_ref()[13] & 0x08 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::data::DataPacket;
    use proptest::prelude::*;

    fn frame(hop: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let packet = DataPacket {
            header: DataHeader {
                hop_limit: hop,
                src,
                dst,
            },
            payload,
        };
        assert!(packet.encode(&mut out));
        out
    }

    proptest! {
        /// The view reads what the encoder wrote, and changes only the hop limit.
        #[test]
        fn a_data_frame_reads_what_was_encoded(
            hop in any::<u8>(),
            src in any::<u128>(),
            dst in any::<u128>(),
            payload in prop::collection::vec(any::<u8>(), 0..300),
            new_hop in any::<u8>(),
        ) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let mut bytes = frame(hop, src, dst, &payload);
            let mut view = DataFrame::new_checked(&mut bytes[..]).unwrap();
            prop_assert_eq!((view.hop_limit(), view.src(), view.dst()), (hop, src, dst));
            prop_assert_eq!(view.payload(), &payload[..]);
            view.set_hop_limit(new_hop);
            let decoded = crate::wire::decode(&bytes).unwrap();
            match decoded.packet {
                crate::wire::Packet::Data(d) => {
                    prop_assert_eq!(d.header.hop_limit, new_hop);
                    prop_assert_eq!((d.header.src, d.header.dst), (src, dst));
                    prop_assert_eq!(d.payload, &payload[..]);
                }
                _ => prop_assert!(false, "not a data packet"),
            }
        }

        /// Whatever the bytes, the constructor answers and never panics.
        #[test]
        fn any_bytes_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(view) = DataFrame::new_checked(&bytes[..]) {
                let _ = (view.hop_limit(), view.src(), view.dst(), view.payload().len());
            }
            if let Ok(view) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = (view.hop_limit(), view.src(), view.dst(), view.next_header());
            }
        }
    }

    #[test]
    fn short_foreign_and_mislabelled_frames_are_refused() {
        let mut bytes = frame(5, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, b"abc");
        assert!(matches!(
            DataFrame::new_checked(&bytes[..39]),
            Err(ViewError::Truncated { len: 39, need: 40 })
        ));
        assert!(matches!(
            DataFrame::new_checked(&bytes[..41]),
            Err(ViewError::Length {
                declared: 3,
                held: 1
            })
        ));
        bytes[1] = 1;
        assert_eq!(DataFrame::new_checked(&bytes[..]), Err(ViewError::Kind(1)));
    }

    #[test]
    fn an_ipv6_header_is_read_and_its_hop_limit_set() {
        let mut ip = [0u8; 48];
        ip[0] = 0x60;
        ip[6] = 58;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip[24..40].copy_from_slice(&"400::1".parse::<Ipv6Addr>().unwrap().octets());
        let mut view = Ipv6Packet::new_checked(&mut ip[..]).unwrap();
        assert_eq!(
            (view.next_header(), view.hop_limit(), view.src()),
            (58, 64, Ipv6Addr::LOCALHOST)
        );
        assert_eq!(view.dst(), "400::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(view.payload().len(), 8);
        view.set_hop_limit(3);
        assert_eq!(ip[7], 3);
        ip[0] = 0x45;
        assert_eq!(Ipv6Packet::new_checked(&ip[..]), Err(ViewError::Kind(0x45)));
        assert!(Ipv6Packet::new_checked(&ip[..39]).is_err());
    }

    #[test]
    fn a_tcp_header_is_as_long_as_its_data_offset() {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&[0x1f, 0x90, 0x00, 0x50]);
        h[12] = 8 << 4;
        h[13] = 0x18;
        h[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        let tcp = TcpHeader::new_checked(&h[..]).unwrap();
        assert_eq!(tcp.ports(), (8080, 80));
        assert_eq!(
            (tcp.header_len(), tcp.options().len(), tcp.psh()),
            (32, 12, true)
        );
        assert!(TcpHeader::new_checked(&h[..31]).is_err());
        assert!(TcpHeader::new_checked(&h[..12]).is_err());
        h[12] = 4 << 4;
        assert!(TcpHeader::new_checked(&h[..]).is_err());
    }

    #[test]
    fn an_oob_report_names_its_parts() {
        let dst: Ipv6Addr = "400::9".parse().unwrap();
        let mut body = dst.octets().to_vec();
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[6] = 58;
        body.extend_from_slice(&ip);
        body.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0xab; 16]);
        let report = OobReport::new_checked(&body[..]).unwrap();
        assert_eq!(report.original_dst(), dst);
        assert_eq!(report.kind(), (3, 0));
        assert_eq!(report.quoted(), &[0xab; 16]);
        assert_eq!(report.icmp().next_header(), 58);
        assert!(OobReport::new_checked(&body[..body.len() - 1]).is_err());
        let mut long = body.clone();
        long.resize(OobReport::MAX_LEN + 1, 0);
        assert!(OobReport::new_checked(&long[..]).is_err());
        body[16 + 6] = 17;
        assert!(OobReport::new_checked(&body[..]).is_err());
    }
}
