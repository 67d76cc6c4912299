//! The message bus against the message frames recorded between two upstream
//! v0.7.10 nodes (`fixtures/interop/tcp-session`): the dialer sent two messages, the
//! listener acknowledged every frame and, when its API popped them, sent READs.
//!
//! Fed the dialer's frames, our bus must deliver the two recorded messages and
//! answer with the listener's exact frames; pushing the same messages under the
//! same ids, it must send the dialer's exact frames and end `read` on the
//! listener's answers.
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

mod common;

use std::collections::VecDeque;
use std::net::Ipv6Addr;

use base64::Engine as _;
use bytes::Bytes;
use common::{fixture, key_fixture};
use mycelium_proto::crypto::SharedSecret;
use mycelium_proto::messages::{
    BusConfig, Event, MessageBus, MessageState, NewMessage, TopicConfig, Transmit,
};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::{Frame, MessageId};
use mycelium_proto::wire::payload::{self, PayloadType};
use mycelium_proto::wire::{self, Packet};
use mycelium_proto::PublicKey;

/// One message frame of a recorded stream, with the data packet's addresses.
struct Recorded {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    frame: Vec<u8>,
}

fn message_frames(stream: &str, secret: &SharedSecret) -> Vec<Recorded> {
    let stream = fixture(stream);
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let d = wire::decode(&stream[at..]).unwrap();
        if let Packet::Data(p) = d.packet {
            let mut buf = p.payload.to_vec();
            let n = secret.open_in_place(&mut buf).unwrap();
            let (ty, body) = payload::decode(&buf[..n]).unwrap();
            if ty == PayloadType::Message {
                out.push(Recorded {
                    src: p.header.src,
                    dst: p.header.dst,
                    frame: body.to_vec(),
                });
            }
        }
        at += d.len;
    }
    out
}

struct Session {
    dialer: PublicKey,
    listener: PublicKey,
    /// Dialer to listener.
    sent: Vec<Recorded>,
    /// Listener to dialer.
    answers: Vec<Recorded>,
    expected: Vec<serde_json::Value>,
}

fn session() -> Session {
    let dialer = key_fixture("tcp-session/dialer.key.hex");
    let listener = key_fixture("tcp-session/listener.key.hex");
    let secret = SharedSecret::new(&dialer, &listener.public_key());
    let expected = String::from_utf8(fixture("tcp-session/messages_received_by_listener.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Session {
        dialer: dialer.public_key(),
        listener: listener.public_key(),
        sent: message_frames("tcp-session/dialer_to_listener.bin", &secret),
        answers: message_frames("tcp-session/listener_to_dialer.bin", &secret),
        expected,
    }
}

fn drain(bus: &mut MessageBus) -> Vec<Transmit> {
    std::iter::from_fn(|| bus.poll_transmit()).collect()
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn assert_same(ours: &[Transmit], theirs: &[&Recorded]) {
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(
            (o.src, o.dst),
            (t.src, t.dst),
            "{:?}",
            Frame::decode(&t.frame)
        );
        assert_eq!(o.frame, t.frame, "we sent {:?}", Frame::decode(&o.frame));
    }
}

#[test]
fn recorded_messages_reassemble_and_get_the_recorded_acknowledgements() {
    let s = session();
    let mut bus = MessageBus::new(BusConfig::default(), TopicConfig::default());
    let now = Instant::ZERO;
    let mut acks = Vec::new();
    for r in &s.sent {
        bus.handle_frame(now, r.src, r.dst, s.dialer, &r.frame);
        acks.extend(drain(&mut bus));
    }
    // Every answer but the READs, which come when a reader takes the messages.
    let (reads, ack_answers): (Vec<&Recorded>, Vec<&Recorded>) = s
        .answers
        .iter()
        .partition(|r| matches!(Frame::decode(&r.frame), Ok(Frame::Read { .. })));
    assert_same(&acks, &ack_answers);

    let mut popped_reads = Vec::new();
    for want in &s.expected {
        let got = bus.pop(false, None).unwrap();
        assert_eq!(got.id.to_string(), want["id"].as_str().unwrap());
        assert_eq!(got.src.to_string(), want["srcIp"].as_str().unwrap());
        assert_eq!(got.src_key.to_string(), want["srcPk"].as_str().unwrap());
        assert_eq!(got.dst.to_string(), want["dstIp"].as_str().unwrap());
        assert_eq!(s.listener.to_string(), want["dstPk"].as_str().unwrap());
        assert_eq!(got.topic, b64(&want["topic"]));
        assert_eq!(got.payload, b64(&want["payload"]));
        assert!(!got.reply);
        popped_reads.extend(drain(&mut bus));
    }
    assert!(bus.pop(false, None).is_none());
    assert_same(&popped_reads, &reads);

    // The dialer's frames again, as retransmissions: acknowledged, not delivered.
    for r in &s.sent {
        bus.handle_frame(now, r.src, r.dst, s.dialer, &r.frame);
    }
    assert_eq!(drain(&mut bus).len(), ack_answers.len());
    assert_eq!(bus.inbox_len(), 0);
}

/// Hands out the given ids, in order.
struct Ids(VecDeque<[u8; 8]>);

impl rand_core::RngCore for Ids {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("ids only")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("ids only")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&self.0.pop_front().unwrap());
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[test]
fn our_sender_sends_the_recorded_frames_and_ends_read() {
    let s = session();
    let mut bus = MessageBus::new(BusConfig::default(), TopicConfig::default());
    let now = Instant::ZERO;
    let dialer_ip = s.dialer.address();
    let listener_ip = s.sent[0].dst;
    let mut ids = Vec::new();
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for want in &s.expected {
        let id: MessageId = want["id"].as_str().unwrap().parse().unwrap();
        ids.push(id);
        let pushed = bus
            .push(
                now,
                NewMessage {
                    src: dialer_ip,
                    dst: listener_ip,
                    topic: b64(&want["topic"]),
                    payload: Bytes::from(b64(&want["payload"])),
                    reply_to: None,
                    try_for: None,
                },
                &mut Ids(VecDeque::from([id.0])),
            )
            .unwrap();
        assert_eq!(pushed, id);
        // Answer each frame with the recorded answer to it, as the listener did.
        let mut pending = drain(&mut bus);
        while let Some(t) = pending.first().cloned() {
            pending.remove(0);
            let answer = s
                .answers
                .iter()
                .find(|a| answers(&a.frame, &t.frame))
                .unwrap_or_else(|| panic!("no recorded answer to {:?}", Frame::decode(&t.frame)));
            sent.push(t);
            bus.handle_frame(now, answer.src, answer.dst, s.listener, &answer.frame);
            pending.extend(drain(&mut bus));
        }
        events.extend(std::iter::from_fn(|| bus.poll_event()));
    }
    let theirs: Vec<&Recorded> = s.sent.iter().collect();
    assert_same(&sent, &theirs);
    for &id in &ids {
        assert_eq!(
            bus.message_info(now, id).unwrap().state,
            MessageState::Received
        );
    }
    for r in s
        .answers
        .iter()
        .filter(|r| matches!(Frame::decode(&r.frame), Ok(Frame::Read { .. })))
    {
        bus.handle_frame(now, r.src, r.dst, s.listener, &r.frame);
    }
    for &id in &ids {
        let info = bus.message_info(now, id).unwrap();
        assert_eq!(info.state, MessageState::Read);
        assert_eq!(info.dst, listener_ip);
    }
    events.extend(std::iter::from_fn(|| bus.poll_event()));
    assert_eq!(
        events,
        [
            Event::Delivered { id: ids[0] },
            Event::Delivered { id: ids[1] },
            Event::Read { id: ids[0] },
            Event::Read { id: ids[1] },
        ]
    );
}

/// Whether `answer` acknowledges `frame`.
fn answers(answer: &[u8], frame: &[u8]) -> bool {
    let (Ok(a), Ok(f)) = (Frame::decode(answer), Frame::decode(frame)) else {
        return false;
    };
    match (a, f) {
        (Frame::InitAck { id: a, .. }, Frame::Init { id: f, .. })
        | (Frame::DoneAck { id: a, .. }, Frame::Done { id: f, .. }) => a == f,
        (
            Frame::ChunkAck {
                id: a, index: ai, ..
            },
            Frame::Chunk {
                id: f, index: fi, ..
            },
        ) => a == f && ai == fi,
        _ => false,
    }
}
