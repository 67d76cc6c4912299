//! Golden tests against bytes recorded from two real upstream v0.7.10 nodes
//! (`fixtures/interop`, copied from the shared interop vectors; see its README).
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

mod common;

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use base64::Engine as _;
use common::{fixture, key_fixture};
use mycelium_proto::crypto::{SharedSecret, OVERHEAD};
use mycelium_proto::wire::data::DataHeader;
use mycelium_proto::wire::message::{Frame, MessageId};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::{self, FrameError, Packet, Tlv};
use mycelium_proto::{PublicKey, SecretKey};

#[test]
fn every_recorded_key_derives_the_recorded_public_key_and_address() {
    let table = String::from_utf8(fixture("addresses.tsv")).unwrap();
    let mut rows = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [secret, public, address] = cols[..] else {
            panic!("bad row {line:?}");
        };
        let mut sk = [0u8; 32];
        hex::decode_to_slice(secret, &mut sk).unwrap();
        let pk = SecretKey::from_bytes(sk).public_key();
        assert_eq!(pk.to_string(), public);
        let expected: Ipv6Addr = address.parse().unwrap();
        assert_eq!(pk.address(), expected, "row {line}");
        assert_eq!(public.parse::<PublicKey>().unwrap().address(), expected);
        rows += 1;
    }
    assert_eq!(rows, 32);
}

/// One packet of a recorded stream.
struct Recorded<'a> {
    bytes: &'a [u8],
    packet: Packet<'a>,
}

/// Walks a whole recorded stream. Returns its packets and the length of a last
/// packet cut short by the recorder's close (0 if the stream ends cleanly).
fn walk(stream: &[u8]) -> (Vec<Recorded<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        match wire::decode(&stream[at..]) {
            Ok(d) => {
                out.push(Recorded {
                    bytes: &stream[at..at + d.len],
                    packet: d.packet,
                });
                at += d.len;
            }
            Err(FrameError::Incomplete { .. }) => return (out, stream.len() - at),
            Err(e) => panic!("stream corrupt at byte {at}: {e}"),
        }
    }
    (out, 0)
}

fn streams() -> [(&'static str, Vec<u8>); 2] {
    [
        (
            "dialer_to_listener",
            fixture("tcp-session/dialer_to_listener.bin"),
        ),
        (
            "listener_to_dialer",
            fixture("tcp-session/listener_to_dialer.bin"),
        ),
    ]
}

#[test]
fn both_streams_decode_completely_and_reencode_to_the_same_bytes() {
    for (name, stream) in streams() {
        let (packets, cut) = walk(&stream);
        assert_eq!(cut, 0, "{name}: the recorder cut the last packet");
        let mut kinds = BTreeMap::new();
        for p in &packets {
            let kind = match p.packet {
                Packet::Data(_) => "data",
                Packet::Control(Tlv::Hello(_)) => "hello",
                Packet::Control(Tlv::Ihu(_)) => "ihu",
                Packet::Control(Tlv::Update(_)) => "update",
                Packet::Control(Tlv::RouteRequest(_)) => "route request",
                Packet::Control(Tlv::SeqnoRequest(_)) => "seqno request",
                Packet::Ignored(i) => panic!("{name}: upstream sent a packet we skip: {i}"),
            };
            *kinds.entry(kind).or_insert(0) += 1;
            let mut again = Vec::new();
            assert!(p.packet.encode(&mut again));
            assert_eq!(
                again, p.bytes,
                "{name}: {:?} re-encodes differently",
                p.packet
            );
            assert_eq!(p.packet.encoded_len(), Some(p.bytes.len()));
        }
        for kind in ["data", "hello", "ihu", "update"] {
            assert!(kinds.contains_key(kind), "{name}: no {kind} in {kinds:?}");
        }
    }
}

#[test]
fn recorded_first_packet_is_the_senders_own_route() {
    let dialer = key_fixture("tcp-session/dialer.key.hex").public_key();
    let listener = key_fixture("tcp-session/listener.key.hex").public_key();
    for ((name, stream), key) in streams().into_iter().zip([dialer, listener]) {
        let (packets, _) = walk(&stream);
        let Packet::Control(Tlv::Update(u)) = packets[0].packet else {
            panic!("{name}: first packet is {:?}", packets[0].packet);
        };
        assert_eq!(u.subnet, key.subnet(), "{name}");
        assert_eq!(u.router_id.public_key(), key, "{name}");
        assert_eq!((u.metric.0, u.interval.0), (0, 30000), "{name}");
    }
}

/// Every data packet of a stream, opened.
fn open_all(stream: &[u8], secret: &SharedSecret) -> Vec<(DataHeader, PayloadType, Vec<u8>)> {
    let (packets, _) = walk(stream);
    packets
        .iter()
        .filter_map(|p| match p.packet {
            Packet::Data(d) => Some(d),
            _ => None,
        })
        .map(|d| {
            let mut buf = d.payload.to_vec();
            let n = secret
                .open_in_place(&mut buf)
                .unwrap_or_else(|e| panic!("packet {:?} does not open: {e}", d.header));
            let (ty, body) = payload::decode(&buf[..n]).unwrap();
            (d.header, ty, body.to_vec())
        })
        .collect()
}

fn session_secret() -> (SharedSecret, SharedSecret, Ipv6Addr, Ipv6Addr) {
    let dialer = key_fixture("tcp-session/dialer.key.hex");
    let listener = key_fixture("tcp-session/listener.key.hex");
    (
        SharedSecret::new(&dialer, &listener.public_key()),
        SharedSecret::new(&listener, &dialer.public_key()),
        dialer.public_key().address(),
        listener.public_key().address(),
    )
}

#[test]
fn every_data_packet_opens_and_carries_three_echo_requests_and_three_replies() {
    let (from_dialer, from_listener, dialer_ip, listener_ip) = session_secret();
    let [(_, d2l), (_, l2d)] = streams();
    for (stream, secret, src, dst, icmp_type) in [
        (&d2l, &from_listener, dialer_ip, listener_ip, 128u8),
        (&l2d, &from_dialer, listener_ip, dialer_ip, 129u8),
    ] {
        let opened = open_all(stream, secret);
        let mut echoes = 0;
        for (header, ty, body) in &opened {
            assert_eq!((header.src, header.dst), (src, dst));
            if *ty != PayloadType::Ipv6 {
                continue;
            }
            assert!(body.len() >= 40, "short IPv6 packet");
            assert_eq!(body[0] >> 4, 6, "IPv6 version");
            assert_eq!(
                usize::from(u16::from_be_bytes([body[4], body[5]])),
                body.len() - 40
            );
            assert_eq!(body[6], 58, "next header ICMPv6");
            assert_eq!(body[40], icmp_type);
            let inner_src: [u8; 16] = body[8..24].try_into().unwrap();
            assert_eq!(Ipv6Addr::from(inner_src), src);
            // The sender leaves the inner hop limit as the application set it; the
            // outer one was decremented once by the sender.
            assert_eq!(header.hop_limit, body[7] - 1);
            echoes += 1;
        }
        assert_eq!(echoes, 3);
    }
}

#[derive(Default)]
struct Inbound {
    topic: Vec<u8>,
    length: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
    checksum: Option<[u8; 32]>,
}

#[test]
fn message_frames_reassemble_into_the_two_recorded_messages() {
    let (_, from_listener, _, _) = session_secret();
    let [(_, d2l), _] = streams();
    let mut messages: BTreeMap<MessageId, Inbound> = BTreeMap::new();
    let mut order = Vec::new();
    for (_, ty, body) in open_all(&d2l, &from_listener) {
        if ty != PayloadType::Message {
            continue;
        }
        match Frame::decode(&body).unwrap() {
            Frame::Init {
                id, length, topic, ..
            } => {
                if !messages.contains_key(&id) {
                    order.push(id);
                }
                let m = messages.entry(id).or_default();
                m.topic = topic.to_vec();
                m.length = length;
            }
            Frame::Chunk {
                id, index, data, ..
            } => {
                messages
                    .entry(id)
                    .or_default()
                    .chunks
                    .insert(index, data.to_vec());
            }
            Frame::Done {
                id,
                chunks,
                checksum,
            } => {
                let m = messages.entry(id).or_default();
                assert_eq!(chunks, m.chunks.len() as u64);
                m.checksum = Some(checksum);
            }
            other => panic!("unexpected frame from the sender: {other:?}"),
        }
    }
    let expected =
        String::from_utf8(fixture("tcp-session/messages_received_by_listener.jsonl")).unwrap();
    let expected: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(order.len(), expected.len());
    let b64 = base64::engine::general_purpose::STANDARD;
    for (id, want) in order.iter().zip(&expected) {
        let m = &messages[id];
        let data: Vec<u8> = m.chunks.values().flatten().copied().collect();
        assert_eq!(data.len() as u64, m.length);
        assert_eq!(Some(*blake3::hash(&data).as_bytes()), m.checksum);
        assert_eq!(id.to_string(), want["id"].as_str().unwrap());
        assert_eq!(data, b64.decode(want["payload"].as_str().unwrap()).unwrap());
        assert_eq!(
            m.topic,
            b64.decode(want["topic"].as_str().unwrap()).unwrap()
        );
    }
}

#[test]
fn receiver_acknowledges_with_frames_we_decode() {
    let (from_dialer, _, _, _) = session_secret();
    let [_, (_, l2d)] = streams();
    let mut acks = BTreeMap::new();
    for (_, ty, body) in open_all(&l2d, &from_dialer) {
        if ty == PayloadType::Message {
            let frame = Frame::decode(&body).unwrap();
            *acks.entry(format!("{:#06x}", frame.flags())).or_insert(0) += 1;
            let mut again = Vec::new();
            frame.encode(&mut again);
            assert_eq!(again, body);
        }
    }
    for flags in ["0x8100", "0x1100", "0x4100"] {
        assert!(acks.contains_key(flags), "no {flags} ack in {acks:?}");
    }
}

#[test]
fn flipping_any_byte_of_a_recorded_sealed_payload_makes_it_fail_to_open() {
    let (_, from_listener, _, _) = session_secret();
    let [(_, d2l), _] = streams();
    let (packets, _) = walk(&d2l);
    let mut checked = 0;
    for p in packets
        .iter()
        .filter(|p| matches!(p.packet, Packet::Data(_)))
        .take(4)
    {
        let Packet::Data(d) = p.packet else {
            unreachable!()
        };
        assert!(d.payload.len() > OVERHEAD);
        for i in 0..d.payload.len() {
            let mut buf = d.payload.to_vec();
            buf[i] ^= 0x01;
            assert!(
                from_listener.open_in_place(&mut buf).is_err(),
                "flip at {i} opened"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}
