//! Property tests for every codec: encoding then decoding gives the value back, the
//! encoded length is what `encoded_len` promised, and no input makes a decoder panic.
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mycelium_proto::crypto::SharedSecret;
use mycelium_proto::wire::beacon::Beacon;
use mycelium_proto::wire::data::{DataHeader, DataPacket};
use mycelium_proto::wire::message::{Frame, MessageId};
use mycelium_proto::wire::tlv::{Hello, Ihu, RouteRequest, SeqnoRequest, Update};
use mycelium_proto::wire::{self, payload, FrameError, Interval, Metric, Packet, SeqNo, Tlv};
use mycelium_proto::{RouterId, Subnet};
use proptest::prelude::*;

/// A prefix as it can appear on the wire: bytes past `ceil(plen/8)` are zero.
fn subnet() -> impl Strategy<Value = Subnet> {
    prop_oneof![
        (any::<u128>(), 0u8..=128).prop_map(|(a, len)| {
            let keep = usize::from(len).div_ceil(8);
            let mut o = a.to_be_bytes();
            o[keep..].fill(0);
            Subnet::new(IpAddr::V6(Ipv6Addr::from(o)), len).unwrap()
        }),
        (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
            let keep = usize::from(len).div_ceil(8);
            let mut o = a.to_be_bytes();
            o[keep..].fill(0);
            Subnet::new(IpAddr::V4(Ipv4Addr::from(o)), len).unwrap()
        }),
    ]
}

fn router_id() -> impl Strategy<Value = RouterId> {
    any::<[u8; 40]>().prop_map(RouterId::from_bytes)
}

fn tlv() -> impl Strategy<Value = Tlv> {
    let addr = prop_oneof![
        Just(None),
        any::<u32>().prop_map(|a| Some(IpAddr::V4(a.into()))),
        any::<u128>().prop_map(|a| Some(IpAddr::V6(a.into()))),
    ];
    prop_oneof![
        (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(unicast, s, i)| Tlv::Hello(Hello {
            unicast,
            seqno: SeqNo(s),
            interval: Interval(i),
        })),
        (any::<u16>(), any::<u16>(), addr).prop_map(|(c, i, address)| Tlv::Ihu(Ihu {
            rx_cost: Metric(c),
            interval: Interval(i),
            address,
        })),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            subnet(),
            router_id()
        )
            .prop_map(|(i, s, m, subnet, router_id)| Tlv::Update(Update {
                interval: Interval(i),
                seqno: SeqNo(s),
                metric: Metric(m),
                subnet,
                router_id,
            })),
        (any::<u8>(), proptest::option::of(subnet())).prop_map(|(generation, prefix)| {
            Tlv::RouteRequest(RouteRequest { generation, prefix })
        }),
        (any::<u16>(), any::<u8>(), router_id(), subnet()).prop_map(|(s, h, router_id, prefix)| {
            Tlv::SeqnoRequest(SeqnoRequest {
                seqno: SeqNo(s),
                hop_count: h,
                router_id,
                prefix,
            })
        }),
    ]
}

fn data_header() -> impl Strategy<Value = DataHeader> {
    (any::<u8>(), any::<u128>(), any::<u128>()).prop_map(|(hop_limit, s, d)| DataHeader {
        hop_limit,
        src: s.into(),
        dst: d.into(),
    })
}

/// A frame together with the buffers it borrows.
#[derive(Debug, Clone)]
enum OwnedFrame {
    Init(MessageId, bool, u64, Vec<u8>),
    InitAck(MessageId, bool, u64, u8),
    Chunk(MessageId, u64, u64, Vec<u8>),
    ChunkAck(MessageId, u64, u64, u64),
    Done(MessageId, u64, [u8; 32]),
    DoneAck(MessageId, u64, [u8; 32]),
    Read(MessageId),
    ReadAck(MessageId),
    Aborted(MessageId),
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        match self {
            OwnedFrame::Init(id, reply, length, topic) => Frame::Init {
                id: *id,
                reply: *reply,
                length: *length,
                topic,
            },
            OwnedFrame::InitAck(id, reply, length, topic_len) => Frame::InitAck {
                id: *id,
                reply: *reply,
                length: *length,
                topic_len: *topic_len,
            },
            OwnedFrame::Chunk(id, index, offset, data) => Frame::Chunk {
                id: *id,
                index: *index,
                offset: *offset,
                size: data.len() as u64,
                data,
            },
            OwnedFrame::ChunkAck(id, index, offset, size) => Frame::ChunkAck {
                id: *id,
                index: *index,
                offset: *offset,
                size: *size,
            },
            OwnedFrame::Done(id, chunks, checksum) => Frame::Done {
                id: *id,
                chunks: *chunks,
                checksum: *checksum,
            },
            OwnedFrame::DoneAck(id, chunks, checksum) => Frame::DoneAck {
                id: *id,
                chunks: *chunks,
                checksum: *checksum,
            },
            OwnedFrame::Read(id) => Frame::Read { id: *id },
            OwnedFrame::ReadAck(id) => Frame::ReadAck { id: *id },
            OwnedFrame::Aborted(id) => Frame::Aborted { id: *id },
        }
    }
}

fn message_frame() -> impl Strategy<Value = OwnedFrame> {
    let id = any::<[u8; 8]>().prop_map(MessageId);
    prop_oneof![
        (
            id.clone(),
            any::<bool>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..=255)
        )
            .prop_map(|(i, r, l, t)| OwnedFrame::Init(i, r, l, t)),
        (id.clone(), any::<bool>(), any::<u64>(), any::<u8>())
            .prop_map(|(i, r, l, t)| OwnedFrame::InitAck(i, r, l, t)),
        (
            id.clone(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..1400)
        )
            .prop_map(|(i, x, o, d)| OwnedFrame::Chunk(i, x, o, d)),
        (id.clone(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(i, x, o, s)| OwnedFrame::ChunkAck(i, x, o, s)),
        (id.clone(), any::<u64>(), any::<[u8; 32]>())
            .prop_map(|(i, c, s)| OwnedFrame::Done(i, c, s)),
        (id.clone(), any::<u64>(), any::<[u8; 32]>())
            .prop_map(|(i, c, s)| OwnedFrame::DoneAck(i, c, s)),
        id.clone().prop_map(OwnedFrame::Read),
        id.clone().prop_map(OwnedFrame::ReadAck),
        id.prop_map(OwnedFrame::Aborted),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn control_packets_round_trip(t in tlv()) {
        let packet = Packet::Control(t);
        let mut buf = Vec::new();
        prop_assert!(packet.encode(&mut buf));
        prop_assert_eq!(Some(buf.len()), packet.encoded_len());
        let d = wire::decode(&buf).unwrap();
        prop_assert_eq!(d.len, buf.len());
        prop_assert_eq!(d.packet, packet);
    }

    #[test]
    fn data_packets_round_trip(header in data_header(), payload in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let packet = Packet::Data(DataPacket { header, payload: &payload });
        let mut buf = Vec::new();
        prop_assert!(packet.encode(&mut buf));
        prop_assert_eq!(Some(buf.len()), packet.encoded_len());
        let d = wire::decode(&buf).unwrap();
        prop_assert_eq!(d.len, buf.len());
        prop_assert_eq!(d.packet, packet);
    }

    #[test]
    fn a_stream_of_packets_splits_back_into_the_same_packets(
        tlvs in proptest::collection::vec(tlv(), 1..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut stream = Vec::new();
        for t in &tlvs {
            Packet::Control(*t).encode(&mut stream);
        }
        // Any strict prefix of the stream is incomplete at its last packet, never
        // malformed.
        let prefix = &stream[..cut.index(stream.len())];
        let mut at = 0;
        loop {
            match wire::decode(&prefix[at..]) {
                Ok(d) => at += d.len,
                Err(FrameError::Incomplete { needed }) => {
                    prop_assert!(needed > 0);
                    break;
                }
                Err(e) => prop_assert!(false, "prefix malformed: {}", e),
            }
        }
        let mut at = 0;
        for t in &tlvs {
            let d = wire::decode(&stream[at..]).unwrap();
            prop_assert_eq!(d.packet, Packet::Control(*t));
            at += d.len;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn message_frames_round_trip(owned in message_frame()) {
        let frame = owned.frame();
        let mut buf = Vec::new();
        frame.encode(&mut buf);
        prop_assert_eq!(buf.len(), frame.encoded_len());
        prop_assert_eq!(Frame::decode(&buf), Ok(frame));
    }

    #[test]
    fn beacons_round_trip(port in any::<u16>(), id in router_id()) {
        let b = Beacon { tcp_port: port, router_id: id };
        let mut buf = Vec::new();
        b.encode(&mut buf);
        prop_assert_eq!(Beacon::decode(&buf), Ok(b));
    }

    #[test]
    fn sealed_payloads_open_to_their_plaintext(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let secret = SharedSecret::from_raw(&key);
        let mut buf = plaintext.clone();
        buf.resize(plaintext.len() + 28, 0);
        secret.seal_in_place(nonce, &mut buf).unwrap();
        let n = secret.open_in_place(&mut buf).unwrap();
        prop_assert_eq!(&buf[..n], &plaintext[..]);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wire::decode(&bytes);
        let _ = Frame::decode(&bytes);
        let _ = Beacon::decode(&bytes);
        let _ = payload::decode(&bytes);
        let _ = SharedSecret::from_raw(&[1; 32]).open_in_place(&mut bytes.clone());
    }

    #[test]
    fn control_decoder_never_panics_behind_a_valid_header(
        ty in any::<u8>(),
        value in proptest::collection::vec(any::<u8>(), 0..100),
        body_delta in -3i32..3,
    ) {
        // Arbitrary TLV values behind a well-formed outer and babel header reach the
        // TLV decoders, which random bytes rarely do.
        let body_len = (value.len() as i32 + 2 + body_delta).max(0) as u16;
        let mut buf = vec![1, 1, 0, 0, 0x2a, 3];
        buf.extend_from_slice(&body_len.to_be_bytes());
        buf.push(ty);
        buf.push(value.len() as u8);
        buf.extend_from_slice(&value);
        if let Ok(d) = wire::decode(&buf) {
            prop_assert!(d.len <= buf.len());
        }
    }
}
