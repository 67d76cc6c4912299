//! Golden vectors of upstream's example packets and the skip rules for bad control packets.

use std::net::IpAddr;

use crate::identity::{RouterId, SecretKey};
use crate::subnet::Subnet;
use crate::wire::control::Ignored;
use crate::wire::data::DataHeader;
use crate::wire::fields::{Interval, Metric, SeqNo};
use crate::wire::packet::{decode, FrameError, Packet};
use crate::wire::tlv::{Hello, Ihu, RouteRequest, SeqnoRequest, Tlv, TlvError, Update};

fn bytes(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("test vector is hex")
}

/// Decodes one whole packet, checks it used every byte and re-encodes identically.
fn golden(hex: &str) -> Tlv {
    let wire = bytes(hex);
    let d = decode(&wire).expect("vector decodes");
    assert_eq!(d.len, wire.len());
    let Packet::Control(tlv) = d.packet else {
        panic!("not a control packet: {:?}", d.packet);
    };
    let mut out = Vec::new();
    assert!(d.packet.encode(&mut out));
    assert_eq!(out, wire);
    tlv
}

fn key_one_router_id() -> RouterId {
    let sk: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    let pk = SecretKey::from_bytes(sk).public_key();
    RouterId::new(pk, [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f])
}

fn key_one_subnet() -> Subnet {
    "5a6:f0c6:f365:177d::/64".parse().unwrap()
}

#[test]
fn hello_vector() {
    let tlv = golden("01 01 00 00 2a 03 00 08 04 06 80 00 00 05 07 d0");
    assert_eq!(
        tlv,
        Tlv::Hello(Hello {
            unicast: true,
            seqno: SeqNo(5),
            interval: Interval(2000),
        })
    );
}

#[test]
fn ihu_vector() {
    let tlv = golden("01 01 00 00 2a 03 00 08 05 06 00 00 03 f7 17 70");
    assert_eq!(
        tlv,
        Tlv::Ihu(Ihu {
            rx_cost: Metric(1015),
            interval: Interval(6000),
            address: None,
        })
    );
}

const UPDATE_VECTOR: &str = "01 01 00 00  2a 03 00 3c  08 3a
    02 00 40 00  75 30  00 07  00 00
    05 a6 f0 c6 f3 65 17 7d
    07 a3 7c bc 14 20 93 c8 b7 55 dc 1b 10 e8 6c b4 26 37 4a d1 6a a8 53 ed 0b df c0 b2 b8 6d 1c 7c
    00 00 0a 0b 0c 0d 0e 0f";

#[test]
fn update_vector() {
    let tlv = golden(UPDATE_VECTOR);
    assert_eq!(
        tlv,
        Tlv::Update(Update {
            interval: Interval(30000),
            seqno: SeqNo(7),
            metric: Metric(0),
            subnet: key_one_subnet(),
            router_id: key_one_router_id(),
        })
    );
    assert_eq!(bytes(UPDATE_VECTOR).len(), 68);
}

#[test]
fn retraction_differs_only_in_metric() {
    let mut wire = bytes(UPDATE_VECTOR);
    wire[18] = 0xff;
    wire[19] = 0xff;
    let Ok(d) = decode(&wire) else { panic!() };
    let Packet::Control(Tlv::Update(u)) = d.packet else {
        panic!()
    };
    assert!(u.metric.is_infinite());
}

#[test]
fn route_request_vectors() {
    let tlv = golden("01 01 00 00 2a 03 00 0d 09 0b 00 02 40 05 a6 f0 c6 f3 65 17 7d");
    assert_eq!(
        tlv,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: Some(key_one_subnet()),
        })
    );
    let tlv = golden("01 01 00 00 2a 03 00 05 09 03 00 00 00");
    assert_eq!(
        tlv,
        Tlv::RouteRequest(RouteRequest {
            generation: 0,
            prefix: None,
        })
    );
}

#[test]
fn seqno_request_vector() {
    let tlv = golden(
        "01 01 00 00  2a 03 00 38  0a 36
         02 40 00 08 40 00
         07 a3 7c bc 14 20 93 c8 b7 55 dc 1b 10 e8 6c b4 26 37 4a d1 6a a8 53 ed 0b df c0 b2 b8 6d 1c 7c
         00 00 0a 0b 0c 0d 0e 0f
         05 a6 f0 c6 f3 65 17 7d",
    );
    assert_eq!(
        tlv,
        Tlv::SeqnoRequest(SeqnoRequest {
            seqno: SeqNo(8),
            hop_count: 64,
            router_id: key_one_router_id(),
            prefix: key_one_subnet(),
        })
    );
}

#[test]
fn data_packet_vector() {
    let wire = bytes(
        "01 00 00 00
         00 00 35 3f
         05 a6 f0 c6 f3 65 17 7d 66 be 4a 2b d9 fd b5 9e
         04 a1 ac f3 28 37 d9 cf d9 30 45 20 c7 59 46 7b
         1c 80 04 9d e0 49 41 26 12 f9 8c 0f 50 47 d1 28
         f1 42 8e de 5e ff 1f 63 f4
         62 aa ca 93 0f aa 8a 84 f3 b1 1b a5 1e 22 37 97
         00 01 02 03 04 05 06 07 08 09 0a 0b",
    );
    let d = decode(&wire).unwrap();
    assert_eq!(d.len, 93);
    let Packet::Data(p) = d.packet else { panic!() };
    assert_eq!(
        p.header,
        DataHeader {
            hop_limit: 63,
            src: "5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e".parse().unwrap(),
            dst: "4a1:acf3:2837:d9cf:d930:4520:c759:467b".parse().unwrap(),
        }
    );
    assert_eq!(p.payload.len(), 53);
    let mut out = Vec::new();
    assert!(d.packet.encode(&mut out));
    assert_eq!(out, wire);
}

#[test]
fn data_header_ignores_the_reserved_top_byte() {
    let mut wire = bytes("01 00 00 00  ff 00 01 05");
    wire.extend_from_slice(&[0; 32]);
    wire.push(0xaa);
    let Packet::Data(p) = decode(&wire).unwrap().packet else {
        panic!()
    };
    assert_eq!((p.header.hop_limit, p.payload), (5, &[0xaa][..]));
}

/// Decodes `first` followed by a Hello and checks that `first` is skipped for
/// `reason` and the Hello still decodes: the stream stays in sync.
fn skipped_then_in_sync(first: &str, reason: Ignored) {
    let hello = bytes("01 01 00 00 2a 03 00 08 04 06 80 00 00 05 07 d0");
    let mut wire = bytes(first);
    let first_len = wire.len();
    wire.extend_from_slice(&hello);
    let d = decode(&wire).unwrap();
    assert_eq!(d.packet, Packet::Ignored(reason));
    assert_eq!(d.len, first_len);
    let next = decode(&wire[d.len..]).unwrap();
    assert!(matches!(next.packet, Packet::Control(Tlv::Hello(_))));
}

#[test]
fn unknown_tlv_is_skipped_by_its_length() {
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 04 07 02 aa bb",
        Ignored::Tlv {
            tlv_type: 7,
            error: TlvError::UnknownType(7),
        },
    );
}

#[test]
fn bad_magic_and_version_are_skipped() {
    skipped_then_in_sync("01 01 00 00 2b 03 00 02 04 00", Ignored::Magic(0x2b));
    skipped_then_in_sync("01 01 00 00 2a 02 00 02 04 00", Ignored::Version(2));
}

#[test]
fn tlv_length_disagreeing_with_body_is_skipped() {
    // A Hello followed by a stray byte inside the body: upstream would desync here.
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 09 04 06 80 00 00 05 07 d0 ff",
        Ignored::BodyLength {
            body: 9,
            tlv: Some(6),
        },
    );
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 01 04",
        Ignored::BodyLength { body: 1, tlv: None },
    );
}

#[test]
fn hello_of_wrong_length_is_skipped() {
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 06 04 04 80 00 00 05",
        Ignored::Tlv {
            tlv_type: 4,
            error: TlvError::Truncated,
        },
    );
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 09 04 07 80 00 00 05 07 d0 00",
        Ignored::Tlv {
            tlv_type: 4,
            error: TlvError::TrailingBytes(1),
        },
    );
}

#[test]
fn bad_address_encodings_are_skipped() {
    // Route request with AE 3 (link-local prefix).
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 0d 09 0b 00 03 40 fe 80 00 00 00 00 00 00",
        Ignored::Tlv {
            tlv_type: 9,
            error: TlvError::AddressEncoding(3),
        },
    );
    // IPv6 prefix longer than 128 bits.
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 05 09 03 00 02 81",
        Ignored::Tlv {
            tlv_type: 9,
            error: TlvError::PrefixLen { ae: 2, plen: 129 },
        },
    );
    // Wildcard with a non-zero length.
    skipped_then_in_sync(
        "01 01 00 00 2a 03 00 05 09 03 00 00 08",
        Ignored::Tlv {
            tlv_type: 9,
            error: TlvError::PrefixLen { ae: 0, plen: 8 },
        },
    );
}

#[test]
fn ihu_accepts_every_address_encoding() {
    for (hex, addr) in [
        (
            "01 01 00 00 2a 03 00 0c 05 0a 01 00 00 01 17 70 0a 00 00 01",
            "10.0.0.1",
        ),
        (
            "01 01 00 00 2a 03 00 10 05 0e 03 00 00 01 17 70 00 00 00 00 00 00 00 01",
            "fe80::1",
        ),
    ] {
        let wire = bytes(hex);
        let d = decode(&wire).unwrap();
        let Packet::Control(Tlv::Ihu(ihu)) = d.packet else {
            panic!("{hex}")
        };
        assert_eq!(ihu.address, Some(addr.parse::<IpAddr>().unwrap()));
    }
}

#[test]
fn wildcard_update_decodes_as_the_default_route() {
    let mut wire = bytes("01 01 00 00 2a 03 00 34 08 32 00 00 00 00 75 30 00 01 00 00");
    wire.extend_from_slice(&[9; 40]);
    let Packet::Control(Tlv::Update(u)) = decode(&wire).unwrap().packet else {
        panic!()
    };
    assert_eq!(u.subnet, "::/0".parse().unwrap());
}

#[test]
fn framing_errors_are_fatal_or_incomplete() {
    assert_eq!(decode(&[]), Err(FrameError::Incomplete { needed: 4 }));
    assert_eq!(decode(&[1, 1]), Err(FrameError::Incomplete { needed: 2 }));
    assert_eq!(decode(&[2, 1, 0, 0]), Err(FrameError::Version(2)));
    assert_eq!(decode(&[1, 2, 0, 0]), Err(FrameError::PacketType(2)));
    assert_eq!(
        decode(&bytes("01 01 00 00 2a 03 00 08 04")),
        Err(FrameError::Incomplete { needed: 7 })
    );
    assert_eq!(
        decode(&bytes("01 00 00 00 00 00 10 40")),
        Err(FrameError::Incomplete { needed: 32 + 16 })
    );
}
