//! Properties of the message bus under hostile input: any bytes, and any sequence of
//! well-formed but arbitrary frames from several sources, never panic, never push
//! the bus past its bounds, and leave nothing behind once the readers have read
//! and the timers have run.
#![allow(clippy::unwrap_used)]

use std::net::Ipv6Addr;
use std::time::Duration;

use mycelium_proto::identity::SecretKey;
use mycelium_proto::messages::{
    BusConfig, BusUsage, Event, MessageBus, TopicConfig, TopicConfigError,
};
use mycelium_proto::time::Instant;
use mycelium_proto::wire::message::{Frame, MessageId};
use proptest::prelude::*;

/// A small bus, so that the bounds are reached.
fn small() -> BusConfig {
    BusConfig {
        max_message_size: 4000,
        max_inbox_bytes: 6000,
        max_inbox_messages: 5,
        max_partial_per_source: 2,
        max_partial_bytes_per_source: 5000,
        max_partial_total: 4,
        max_completed: 3,
        ..BusConfig::default()
    }
}

/// One step of an adversarial run.
#[derive(Debug, Clone)]
enum Step {
    Frame { source: u8, id: u8, kind: Kind },
    Raw(u8, Vec<u8>),
    Pop { peek: bool },
    Wait(u16),
}

#[derive(Debug, Clone)]
enum Kind {
    Init {
        reply: bool,
        length: u16,
        topic: u8,
    },
    Chunk {
        index: u8,
        offset: u16,
        size: u16,
        data: u16,
    },
    Done {
        chunks: u8,
        honest: bool,
    },
    Aborted,
    Acks(u8),
    /// A whole well-formed message: INIT, its chunks, DONE.
    Whole {
        length: u16,
        reply: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let kind = prop_oneof![
        (any::<bool>(), 0u16..5000, 0u8..3).prop_map(|(reply, length, topic)| Kind::Init {
            reply,
            length,
            topic
        }),
        (0u8..20, 0u16..5000, 0u16..1400, 0u16..1400).prop_map(|(index, offset, size, data)| {
            Kind::Chunk {
                index,
                offset,
                size,
                data,
            }
        }),
        (0u8..6, any::<bool>()).prop_map(|(chunks, honest)| Kind::Done { chunks, honest }),
        Just(Kind::Aborted),
        any::<u8>().prop_map(Kind::Acks),
        (0u16..5000, any::<bool>()).prop_map(|(length, reply)| Kind::Whole { length, reply }),
    ];
    prop_oneof![
        6 => (0u8..3, 0u8..4, kind).prop_map(|(source, id, kind)| Step::Frame { source, id, kind }),
        1 => (0u8..3, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(s, b)| Step::Raw(s, b)),
        1 => any::<bool>().prop_map(|peek| Step::Pop { peek }),
        1 => (0u16..2000).prop_map(Step::Wait),
    ]
}

/// Content of message `id` from `source`, `length` bytes: what an honest sender
/// would send, so honest DONEs can complete.
fn content(source: u8, id: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|i| (i as u8) ^ source ^ id.wrapping_mul(31))
        .collect()
}

fn check_bounds(u: &BusUsage, cfg: &BusConfig) {
    assert!(u.held <= cfg.max_inbox_messages, "{u:?}");
    assert!(u.held_bytes <= cfg.max_inbox_bytes, "{u:?}");
    assert!(u.partial <= cfg.max_partial_total, "{u:?}");
    assert!(u.completed <= cfg.max_completed, "{u:?}");
    assert!(u.inbox + u.partial <= u.held, "{u:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_frames_keep_the_bus_bounded_and_leave_nothing_behind(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let cfg = small();
        let mut bus = MessageBus::new(cfg.clone(), TopicConfig::default());
        let keys: Vec<_> = (1..=3u8).map(|i| SecretKey::from_bytes([i; 32]).public_key()).collect();
        let me: Ipv6Addr = SecretKey::from_bytes([9; 32]).public_key().address();
        let mut now = Instant::ZERO;
        let mut lengths = std::collections::BTreeMap::new();
        for s in steps {
            match s {
                Step::Frame { source, id, kind } => {
                    let src = keys[usize::from(source)].address();
                    let mid = MessageId([id; 8]);
                    let mut buf = Vec::new();
                    match kind {
                        Kind::Init { reply, length, topic } => {
                            lengths.insert((source, id), usize::from(length));
                            Frame::Init { id: mid, reply, length: length.into(), topic: &[b'a'; 3][..usize::from(topic)] }
                                .encode(&mut buf);
                        }
                        Kind::Chunk { index, offset, size, data } => {
                            let body = content(source, id, usize::from(data));
                            Frame::Chunk { id: mid, index: index.into(), offset: offset.into(), size: size.into(), data: &body }
                                .encode(&mut buf);
                        }
                        Kind::Done { chunks, honest } => {
                            let len = lengths.get(&(source, id)).copied().unwrap_or(0);
                            let checksum = if honest { *blake3::hash(&content(source, id, len)).as_bytes() } else { [7; 32] };
                            Frame::Done { id: mid, chunks: chunks.into(), checksum }.encode(&mut buf);
                        }
                        Kind::Aborted => Frame::Aborted { id: mid }.encode(&mut buf),
                        Kind::Whole { length, reply } => {
                            let data = content(source, id, usize::from(length));
                            let mut frames = Vec::new();
                            let mut f = Vec::new();
                            Frame::Init { id: mid, reply, length: length.into(), topic: b"" }.encode(&mut f);
                            frames.push(f);
                            for (i, piece) in data.chunks(1300).enumerate() {
                                let mut f = Vec::new();
                                Frame::Chunk { id: mid, index: i as u64, offset: i as u64 * 1300, size: piece.len() as u64, data: piece }
                                    .encode(&mut f);
                                frames.push(f);
                            }
                            let mut f = Vec::new();
                            Frame::Done { id: mid, chunks: data.chunks(1300).count() as u64, checksum: *blake3::hash(&data).as_bytes() }
                                .encode(&mut f);
                            frames.push(f);
                            for f in frames {
                                bus.handle_frame(now, src, me, keys[usize::from(source)], &f);
                            }
                            lengths.insert((source, id), usize::from(length));
                        }
                        Kind::Acks(which) => match which % 4 {
                            0 => Frame::InitAck { id: mid, reply: false, length: 1, topic_len: 0 }.encode(&mut buf),
                            1 => Frame::ChunkAck { id: mid, index: 0, offset: 0, size: 1 }.encode(&mut buf),
                            2 => Frame::DoneAck { id: mid, chunks: 0, checksum: [0; 32] }.encode(&mut buf),
                            _ => Frame::Read { id: mid }.encode(&mut buf),
                        },
                    }
                    bus.handle_frame(now, src, me, keys[usize::from(source)], &buf);
                }
                Step::Raw(source, bytes) => {
                    let src = keys[usize::from(source)].address();
                    bus.handle_frame(now, src, me, keys[usize::from(source)], &bytes);
                }
                Step::Pop { peek } => {
                    bus.pop(peek, None);
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms) * 100);
                    bus.handle_timeout(now);
                }
            }
            while bus.poll_transmit().is_some() {}
            while let Some(e) = bus.poll_event() {
                prop_assert!(matches!(e, Event::MessageReceived { .. }), "{e:?}");
            }
            check_bounds(&bus.usage(), &cfg);
        }
        while bus.pop(false, None).is_some() {}
        while let Some(t) = bus.poll_timeout() {
            bus.handle_timeout(t);
        }
        prop_assert_eq!(bus.usage(), BusUsage::default());
    }

    #[test]
    fn topic_config_parsing_never_panics(text in "\\PC{0,200}") {
        let _: Result<_, TopicConfigError> = TopicConfig::from_toml(&text);
    }

    #[test]
    fn topic_config_errors_point_inside_the_text(
        lines in proptest::collection::vec("[a-z\\[\\]=\"/:0-9 ]{0,30}", 0..8)
    ) {
        let text = lines.join("\n");
        if let Err(e) = TopicConfig::from_toml(&text) {
            prop_assert!(e.line >= 1 && e.line <= lines.len().max(1), "{e} in {text:?}");
        }
    }
}
