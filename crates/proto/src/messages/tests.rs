//! Unit tests of the bus: one rule each, two buses wired by hand.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::identity::SecretKey;
use crate::wire::message::flags;
use std::path::PathBuf;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// Deterministic ids.
struct Counter(u64);

impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

struct Node {
    bus: MessageBus,
    key: PublicKey,
    ip: Ipv6Addr,
}

fn node(n: u8, cfg: BusConfig) -> Node {
    let key = SecretKey::from_bytes([n; 32]).public_key();
    Node {
        bus: MessageBus::new(cfg, TopicConfig::default()),
        key,
        ip: key.address(),
    }
}

fn pair() -> (Node, Node) {
    (node(1, BusConfig::default()), node(2, BusConfig::default()))
}

fn msg(from: &Node, to: &Node, topic: &[u8], payload: &[u8]) -> NewMessage {
    NewMessage {
        src: from.ip,
        dst: to.ip,
        topic: topic.to_vec(),
        payload: Bytes::copy_from_slice(payload),
        reply_to: None,
        try_for: None,
    }
}

fn drain(bus: &mut MessageBus) -> Vec<Transmit> {
    std::iter::from_fn(|| bus.poll_transmit()).collect()
}

fn events(bus: &mut MessageBus) -> Vec<Event> {
    std::iter::from_fn(|| bus.poll_event()).collect()
}

fn flags_of(t: &Transmit) -> u16 {
    Frame::decode(&t.frame).unwrap().flags()
}

/// Delivers everything in flight both ways until both are quiet. Returns the
/// number of frames moved.
fn shuttle(a: &mut Node, b: &mut Node, now: Instant) -> usize {
    let mut moved = 0;
    loop {
        let from_a = drain(&mut a.bus);
        let from_b = drain(&mut b.bus);
        if from_a.is_empty() && from_b.is_empty() {
            return moved;
        }
        moved += from_a.len() + from_b.len();
        for t in from_a {
            b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
        }
        for t in from_b {
            a.bus.handle_frame(now, t.src, t.dst, b.key, &t.frame);
        }
    }
}

#[test]
fn a_message_goes_through_and_its_state_follows() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"t", b"hello"), &mut Counter(0))
        .unwrap();
    let info = a.bus.message_info(now, id).unwrap();
    assert_eq!(info.state, MessageState::Pending);
    assert_eq!(info.deadline, now + Duration::from_secs(300));
    assert_eq!(info.len, 5);
    shuttle(&mut a, &mut b, now);
    assert_eq!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Received
    );
    assert_eq!(events(&mut a.bus), [Event::Delivered { id }]);
    assert_eq!(events(&mut b.bus), [Event::MessageReceived { id }]);
    let got = b.bus.pop(false, None).unwrap();
    assert_eq!(
        (
            got.id,
            got.src,
            got.dst,
            got.src_key,
            &got.topic[..],
            &got.payload[..],
            got.reply
        ),
        (id, a.ip, b.ip, a.key, &b"t"[..], &b"hello"[..], false)
    );
    shuttle(&mut a, &mut b, now);
    assert_eq!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Read
    );
    assert_eq!(events(&mut a.bus), [Event::Read { id }]);
    assert!(b.bus.pop(false, None).is_none());
}

#[test]
fn init_is_resent_with_backoff_to_a_silent_receiver() {
    let (mut a, b) = pair();
    let mut now = Instant::ZERO;
    a.bus
        .push(now, msg(&a, &b, b"", b"x"), &mut Counter(0))
        .unwrap();
    let mut sends = vec![now];
    drain(&mut a.bus);
    while now < Instant::ZERO + Duration::from_secs(10) {
        now = a.bus.poll_timeout().unwrap();
        a.bus.handle_timeout(now);
        for t in drain(&mut a.bus) {
            assert_eq!(flags_of(&t), flags::INIT);
            sends.push(now);
        }
    }
    let gaps: Vec<u128> = sends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(&gaps[..5], [100, 200, 400, 800, 1000]);
    assert!(gaps[5..].iter().all(|&g| g == 1000), "{gaps:?}");
}

#[test]
fn an_empty_message_is_done_right_after_init_ack() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    a.bus
        .push(now, msg(&a, &b, b"", b""), &mut Counter(0))
        .unwrap();
    let init = drain(&mut a.bus);
    b.bus
        .handle_frame(now, init[0].src, init[0].dst, a.key, &init[0].frame);
    let ack = drain(&mut b.bus);
    a.bus
        .handle_frame(now, ack[0].src, ack[0].dst, b.key, &ack[0].frame);
    let done = drain(&mut a.bus);
    assert_eq!(done.len(), 1);
    assert_eq!(
        Frame::decode(&done[0].frame).unwrap(),
        Frame::Done {
            id: Frame::decode(&init[0].frame).unwrap().id(),
            chunks: 0,
            checksum: *blake3::hash(b"").as_bytes(),
        }
    );
    b.bus
        .handle_frame(now, done[0].src, done[0].dst, a.key, &done[0].frame);
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.pop(false, None).unwrap().payload.len(), 0);
}

#[test]
fn a_1301_byte_message_goes_as_1051_and_250() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let data = vec![9u8; 1301];
    a.bus
        .push(now, msg(&a, &b, b"", &data), &mut Counter(0))
        .unwrap();
    let init = drain(&mut a.bus);
    b.bus
        .handle_frame(now, init[0].src, init[0].dst, a.key, &init[0].frame);
    let ack = drain(&mut b.bus);
    a.bus
        .handle_frame(now, ack[0].src, ack[0].dst, b.key, &ack[0].frame);
    let sizes: Vec<(u64, u64, u64)> = drain(&mut a.bus)
        .iter()
        .map(|t| match Frame::decode(&t.frame).unwrap() {
            Frame::Chunk {
                index,
                offset,
                size,
                ..
            } => (index, offset, size),
            f => panic!("{f:?}"),
        })
        .collect();
    assert_eq!(sizes, [(0, 0, 1051), (1, 1051, 250)]);
}

#[test]
fn init_ack_echoes_length_and_topic_length_only() {
    let (a, mut b) = pair();
    let mut init = Vec::new();
    Frame::Init {
        id: MessageId([7; 8]),
        reply: false,
        length: 14,
        topic: b"vectors",
    }
    .encode(&mut init);
    b.bus.handle_frame(Instant::ZERO, a.ip, b.ip, a.key, &init);
    let ack = drain(&mut b.bus);
    assert_eq!((ack[0].src, ack[0].dst), (b.ip, a.ip));
    assert_eq!(ack[0].frame[..12], [7, 7, 7, 7, 7, 7, 7, 7, 0x81, 0, 0, 0]);
    assert_eq!(ack[0].frame[12..], [0, 0, 0, 0, 0, 0, 0, 14, 7]);
}

#[test]
fn a_refused_topic_is_not_acknowledged() {
    let (mut a, mut b) = pair();
    b.bus.topics_mut().set_default_accept(false);
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"t", b"x"), &mut Counter(0))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.stats().refused_by_policy, 1);
    assert_eq!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Pending
    );
    b.bus
        .topics_mut()
        .add_source(b"t".to_vec(), crate::Subnet::v6_64(a.ip));
    let later = now + 100 * MS;
    a.bus.handle_timeout(later);
    shuttle(&mut a, &mut b, later);
    assert_eq!(b.bus.pop(false, Some(b"t")).unwrap().id, id);
}

#[test]
fn an_oversized_init_is_refused_without_allocating() {
    let (a, mut b) = pair();
    let mut init = Vec::new();
    Frame::Init {
        id: MessageId([1; 8]),
        reply: false,
        length: 1 << 50,
        topic: b"",
    }
    .encode(&mut init);
    b.bus.handle_frame(Instant::ZERO, a.ip, b.ip, a.key, &init);
    assert!(drain(&mut b.bus).is_empty());
    assert_eq!(b.bus.stats().refused_too_large, 1);
}

#[test]
fn a_full_inbox_defers_new_messages_until_read() {
    let cfg = BusConfig {
        max_inbox_messages: 1,
        ..BusConfig::default()
    };
    let mut a = node(1, BusConfig::default());
    let mut b = node(2, cfg);
    let mut now = Instant::ZERO;
    let first = a
        .bus
        .push(now, msg(&a, &b, b"", b"one"), &mut Counter(0))
        .unwrap();
    let second = a
        .bus
        .push(now, msg(&a, &b, b"", b"two"), &mut Counter(9))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.inbox_len(), 1);
    assert_eq!(b.bus.stats().refused_full, 1);
    assert_eq!(
        a.bus.message_info(now, second).unwrap().state,
        MessageState::Pending
    );
    assert_eq!(b.bus.pop(false, None).unwrap().id, first);
    now += Duration::from_secs(2);
    a.bus.handle_timeout(now);
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.pop(false, None).unwrap().id, second);
}

#[test]
fn a_retransmitted_done_after_delivery_is_acknowledged_not_redelivered() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    a.bus
        .push(now, msg(&a, &b, b"", b"abc"), &mut Counter(0))
        .unwrap();
    // Run the exchange up to the DONE, keep it, and lose its ACK.
    let mut done = None;
    loop {
        let out = drain(&mut a.bus);
        if out.is_empty() {
            break;
        }
        for t in out {
            if flags_of(&t) == flags::DONE {
                done = Some(t.clone());
            }
            b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
        }
        for t in drain(&mut b.bus) {
            if flags_of(&t) != flags::DONE | flags::ACK {
                a.bus.handle_frame(now, t.src, t.dst, b.key, &t.frame);
            }
        }
    }
    let done = done.unwrap();
    assert_eq!(b.bus.inbox_len(), 1);
    b.bus
        .handle_frame(now, done.src, done.dst, a.key, &done.frame);
    let ack = drain(&mut b.bus);
    assert_eq!(ack.len(), 1);
    assert_eq!(flags_of(&ack[0]), flags::DONE | flags::ACK);
    assert_eq!(b.bus.inbox_len(), 1);
    assert_eq!(b.bus.stats().duplicates, 1);
}

#[test]
fn a_duplicate_init_keeps_the_chunks_already_stored() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let data = vec![5u8; 3000];
    a.bus
        .push(now, msg(&a, &b, b"", &data), &mut Counter(0))
        .unwrap();
    let init = drain(&mut a.bus).remove(0);
    b.bus
        .handle_frame(now, init.src, init.dst, a.key, &init.frame);
    let ack = drain(&mut b.bus).remove(0);
    a.bus.handle_frame(now, ack.src, ack.dst, b.key, &ack.frame);
    let chunks = drain(&mut a.bus);
    for t in &chunks {
        b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
    }
    // The INIT again, late: upstream would forget the chunks here.
    b.bus
        .handle_frame(now, init.src, init.dst, a.key, &init.frame);
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.pop(false, None).unwrap().payload, data);
}

#[test]
fn aborted_drops_the_partial_message_and_its_budget() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"", &[1; 5000]), &mut Counter(0))
        .unwrap();
    let init = drain(&mut a.bus).remove(0);
    b.bus
        .handle_frame(now, init.src, init.dst, a.key, &init.frame);
    assert_eq!(b.bus.held.bytes, 5000);
    let mut abort = Vec::new();
    Frame::Aborted { id }.encode(&mut abort);
    b.bus.handle_frame(now, a.ip, b.ip, a.key, &abort);
    assert_eq!((b.bus.held.bytes, b.bus.held.count), (0, 0));
    assert!(b.bus.partial.is_empty());
    assert_eq!(b.bus.timers.len(), 0);
}

#[test]
fn the_deadline_aborts_once_and_the_status_lasts_600_s() {
    let (mut a, b) = pair();
    let start = Instant::ZERO;
    let id = a
        .bus
        .push(
            start,
            NewMessage {
                try_for: Some(Duration::from_secs(5)),
                ..msg(&a, &b, b"", b"x")
            },
            &mut Counter(0),
        )
        .unwrap();
    let mut aborts = 0;
    while let Some(t) = a.bus.poll_timeout() {
        a.bus.handle_timeout(t);
        aborts += drain(&mut a.bus)
            .iter()
            .filter(|t| flags_of(t) == flags::ABORTED)
            .count();
        if t <= start + Duration::from_secs(599) {
            assert!(a.bus.message_info(t, id).is_some());
        }
        if t == start + Duration::from_secs(5) {
            assert_eq!(
                a.bus.message_info(t, id).unwrap().state,
                MessageState::Aborted
            );
        }
    }
    assert_eq!(aborts, 1);
    assert!(events(&mut a.bus).contains(&Event::SendFailed { id }));
    assert!(a
        .bus
        .message_info(start + Duration::from_secs(600), id)
        .is_none());
    assert_eq!(a.bus.outbound_active.count, 0);
    assert_eq!(a.bus.outbound_active.bytes, 0);
}

#[test]
fn a_reply_goes_to_its_waiter() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"q", b"ping"), &mut Counter(0))
        .unwrap();
    a.bus
        .wait_for_reply(id, now + Duration::from_secs(10))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    let got = b.bus.pop(false, None).unwrap();
    let reply = NewMessage {
        reply_to: Some(got.id),
        ..msg(&b, &a, b"ignored", b"pong")
    };
    assert_eq!(b.bus.push(now, reply, &mut Counter(0)), Ok(id));
    shuttle(&mut a, &mut b, now);
    assert!(events(&mut a.bus).contains(&Event::ReplyReceived { id }));
    let r = a.bus.take_reply(id).unwrap();
    assert!(r.reply);
    assert_eq!((&r.payload[..], &r.topic[..]), (&b"pong"[..], &b""[..]));
    assert_eq!(a.bus.inbox_len(), 0);
    assert_eq!(a.bus.held.count, 0);
}

#[test]
fn a_waiter_times_out_and_a_late_reply_lands_in_the_inbox() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"", b"ping"), &mut Counter(0))
        .unwrap();
    a.bus
        .wait_for_reply(id, now + Duration::from_secs(1))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    let later = now + Duration::from_secs(1);
    a.bus.handle_timeout(later);
    assert!(events(&mut a.bus).contains(&Event::ReplyTimedOut { id }));
    b.bus.pop(false, None).unwrap();
    let reply = NewMessage {
        reply_to: Some(id),
        ..msg(&b, &a, b"", b"pong")
    };
    b.bus.push(later, reply, &mut Counter(0)).unwrap();
    shuttle(&mut a, &mut b, later);
    assert!(a.bus.pop(false, None).unwrap().reply);
}

#[test]
fn unsolicited_replies_face_the_topic_check() {
    let (mut a, mut b) = pair();
    a.bus.topics_mut().set_default_accept(false);
    let now = Instant::ZERO;
    let stray = NewMessage {
        reply_to: Some(MessageId([3; 8])),
        ..msg(&b, &a, b"", b"spam")
    };
    b.bus.push(now, stray, &mut Counter(0)).unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(a.bus.stats().refused_by_policy, 1);
    // A reply to something we sent passes.
    let id = a
        .bus
        .push(now, msg(&a, &b, b"", b"q"), &mut Counter(50))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    b.bus.pop(false, None).unwrap();
    let answer = NewMessage {
        reply_to: Some(id),
        ..msg(&b, &a, b"", b"a")
    };
    b.bus.push(now, answer, &mut Counter(0)).unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(a.bus.pop(false, None).unwrap().payload, &b"a"[..]);
}

#[test]
fn a_forward_socket_gets_the_message_and_its_answer_is_the_reply() {
    let (mut a, mut b) = pair();
    b.bus
        .topics_mut()
        .add_source(b"rpc".to_vec(), "400::/7".parse().unwrap());
    assert!(b
        .bus
        .topics_mut()
        .set_forward_socket(b"rpc", "/tmp/s".into()));
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"rpc", b"2+2"), &mut Counter(0))
        .unwrap();
    a.bus
        .wait_for_reply(id, now + Duration::from_secs(9))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    let Some(Event::Forward {
        ticket,
        socket,
        message,
    }) = b.bus.poll_event()
    else {
        panic!("no forward");
    };
    assert_eq!(socket, PathBuf::from("/tmp/s"));
    assert_eq!(message.payload, &b"2+2"[..]);
    assert_eq!(b.bus.inbox_len(), 0);
    b.bus
        .handle_forward_result(now, ticket, Some(Bytes::from_static(b"4")), &mut Counter(0));
    shuttle(&mut a, &mut b, now);
    assert_eq!(a.bus.take_reply(id).unwrap().payload, &b"4"[..]);
    assert_eq!(b.bus.held.count, 0);
}

#[test]
fn a_failed_forward_falls_back_to_the_inbox() {
    let (mut a, mut b) = pair();
    b.bus
        .topics_mut()
        .add_source(b"rpc".to_vec(), "400::/7".parse().unwrap());
    b.bus
        .topics_mut()
        .set_forward_socket(b"rpc", "/tmp/s".into());
    let now = Instant::ZERO;
    a.bus
        .push(now, msg(&a, &b, b"rpc", b"x"), &mut Counter(0))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    let Some(Event::Forward { ticket, .. }) = b.bus.poll_event() else {
        panic!("no forward");
    };
    b.bus
        .handle_forward_result(now, ticket, Some(Bytes::new()), &mut Counter(0));
    assert_eq!(b.bus.pop(false, Some(b"rpc")).unwrap().payload, &b"x"[..]);
}

#[test]
fn acknowledgements_from_another_address_are_ignored() {
    let (mut a, b) = pair();
    let c = node(3, BusConfig::default());
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"", b"x"), &mut Counter(0))
        .unwrap();
    drain(&mut a.bus);
    let mut ack = Vec::new();
    Frame::InitAck {
        id,
        reply: false,
        length: 1,
        topic_len: 0,
    }
    .encode(&mut ack);
    a.bus.handle_frame(now, c.ip, a.ip, c.key, &ack);
    assert_eq!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Pending
    );
    a.bus.handle_frame(now, b.ip, a.ip, b.key, &ack);
    assert!(matches!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Sending { .. }
    ));
}

#[test]
fn an_idle_partial_message_is_dropped() {
    let (a, mut b) = pair();
    let mut init = Vec::new();
    Frame::Init {
        id: MessageId([1; 8]),
        reply: false,
        length: 10,
        topic: b"",
    }
    .encode(&mut init);
    let now = Instant::ZERO;
    b.bus.handle_frame(now, a.ip, b.ip, a.key, &init);
    // A repeat at 100 s pushes the expiry to 400 s.
    b.bus
        .handle_frame(now + Duration::from_secs(100), a.ip, b.ip, a.key, &init);
    b.bus.handle_timeout(now + Duration::from_secs(300));
    assert_eq!(b.bus.partial.len(), 1);
    assert_eq!(b.bus.poll_timeout(), Some(now + Duration::from_secs(400)));
    b.bus.handle_timeout(now + Duration::from_secs(400));
    assert!(b.bus.partial.is_empty());
    assert_eq!((b.bus.held.count, b.bus.stats().partial_expired), (0, 1));
}

#[test]
fn one_source_cannot_hold_more_partial_messages_than_its_share() {
    let (a, mut b) = pair();
    let share = b.bus.cfg.max_partial_per_source;
    for i in 0..share as u16 + 4 {
        let mut init = Vec::new();
        let [hi, lo] = i.to_be_bytes();
        Frame::Init {
            id: MessageId([hi, lo, 0, 0, 0, 0, 0, 1]),
            reply: false,
            length: 10,
            topic: b"",
        }
        .encode(&mut init);
        // Another address of the same /64 counts as the same source.
        let mut src = a.ip.octets();
        src[15] = lo;
        b.bus
            .handle_frame(Instant::ZERO, Ipv6Addr::from(src), b.ip, a.key, &init);
    }
    assert_eq!(b.bus.partial.len(), share);
    assert_eq!(b.bus.stats().refused_partial_limit, 4);
}

#[test]
fn peek_keeps_the_message_and_both_send_read() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    a.bus
        .push(now, msg(&a, &b, b"x", b"1"), &mut Counter(0))
        .unwrap();
    a.bus
        .push(now, msg(&a, &b, b"", b"2"), &mut Counter(10))
        .unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(b.bus.pop(true, Some(b"")).unwrap().payload, &b"2"[..]);
    assert_eq!(b.bus.pop(true, Some(b"")).unwrap().payload, &b"2"[..]);
    let reads = drain(&mut b.bus);
    assert_eq!(reads.len(), 2);
    assert!(reads.iter().all(|t| flags_of(t) == flags::READ));
    assert!(b.bus.pop(false, Some(b"y")).is_none());
    assert_eq!(b.bus.pop(false, None).unwrap().payload, &b"1"[..]);
    assert_eq!(b.bus.pop(false, None).unwrap().payload, &b"2"[..]);
}

#[test]
fn push_refuses_what_it_cannot_send() {
    let cfg = BusConfig {
        max_message_size: 10,
        max_outbound_messages: 1,
        ..BusConfig::default()
    };
    let mut a = node(1, cfg);
    let b = node(2, BusConfig::default());
    let now = Instant::ZERO;
    let mut rng = Counter(0);
    assert_eq!(
        a.bus.push(now, msg(&a, &b, &[0; 256], b""), &mut rng),
        Err(PushError::TopicTooLong(256))
    );
    assert_eq!(
        a.bus.push(now, msg(&a, &b, b"", &[0; 11]), &mut rng),
        Err(PushError::TooLarge { len: 11, max: 10 })
    );
    a.bus
        .push(now, msg(&a, &b, b"", b"12345"), &mut rng)
        .unwrap();
    let refused = a.bus.push(now, msg(&a, &b, b"", b""), &mut rng);
    assert_eq!(
        refused,
        Err(PushError::QueueFull {
            budget: Budget::Messages,
            used: 1,
            limit: 1
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "outbound messages budget full: 1 of 1 messages"
    );
}

#[test]
fn the_byte_budget_refuses_first_and_says_how_full_it_is() {
    let cfg = BusConfig {
        max_outbound_bytes: 8,
        max_outbound_messages: 1,
        ..BusConfig::default()
    };
    let mut a = node(1, cfg);
    let b = node(2, BusConfig::default());
    let (now, mut rng) = (Instant::ZERO, Counter(0));
    a.bus
        .push(now, msg(&a, &b, b"", b"12345"), &mut rng)
        .unwrap();
    let refused = a.bus.push(now, msg(&a, &b, b"", b"6789"), &mut rng);
    assert_eq!(
        refused,
        Err(PushError::QueueFull {
            budget: Budget::Bytes,
            used: 5,
            limit: 8
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "outbound bytes budget full: 5 of 8 bytes"
    );
}

#[test]
fn malformed_frames_are_counted() {
    let (a, mut b) = pair();
    b.bus
        .handle_frame(Instant::ZERO, a.ip, b.ip, a.key, &[0; 5]);
    assert_eq!(b.bus.stats().malformed, 1);
    assert!(drain(&mut b.bus).is_empty());
}

#[test]
fn a_lost_done_ack_is_made_good_by_read() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let id = a
        .bus
        .push(now, msg(&a, &b, b"", b"abc"), &mut Counter(0))
        .unwrap();
    loop {
        let out = drain(&mut a.bus);
        if out.is_empty() {
            break;
        }
        for t in out {
            b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
        }
        for t in drain(&mut b.bus) {
            if flags_of(&t) != flags::DONE | flags::ACK {
                a.bus.handle_frame(now, t.src, t.dst, b.key, &t.frame);
            }
        }
    }
    b.bus.pop(false, None).unwrap();
    shuttle(&mut a, &mut b, now);
    assert_eq!(
        a.bus.message_info(now, id).unwrap().state,
        MessageState::Read
    );
    assert_eq!(
        events(&mut a.bus),
        [Event::Delivered { id }, Event::Read { id }]
    );
}

#[test]
fn a_deadline_past_the_retention_still_aborts_and_reports() {
    let (mut a, b) = pair();
    let start = Instant::ZERO;
    let try_for = Duration::from_secs(700);
    let id = a
        .bus
        .push(
            start,
            NewMessage {
                try_for: Some(try_for),
                ..msg(&a, &b, b"", b"x")
            },
            &mut Counter(0),
        )
        .unwrap();
    while let Some(t) = a.bus.poll_timeout() {
        a.bus.handle_timeout(t);
        drain(&mut a.bus);
        if t == start + try_for {
            assert_eq!(
                a.bus.message_info(t, id).unwrap().state,
                MessageState::Aborted
            );
        }
        // Kept half the retention past the deadline.
        let kept = a.bus.message_info(t, id).is_some();
        assert_eq!(kept, t < start + Duration::from_secs(1000), "at {t:?}");
    }
    assert!(events(&mut a.bus).contains(&Event::SendFailed { id }));
    assert_eq!(a.bus.usage(), BusUsage::default());
}

#[test]
fn a_burst_to_one_destination_starts_within_the_receivers_partial_limit() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let mut rng = Counter(0);
    let gate = a.bus.cfg.max_sending_per_destination;
    // The receiver takes as many at once as the sender starts.
    assert_eq!(gate, b.bus.cfg.max_partial_per_source);
    let ids: Vec<_> = (0..gate + 40)
        .map(|i| {
            a.bus
                .push(now, msg(&a, &b, b"", &[i as u8; 100]), &mut rng)
                .unwrap()
        })
        .collect();
    // Only the first `gate` send their INIT; the rest wait, Pending.
    let inits = drain(&mut a.bus);
    assert_eq!(inits.len(), gate);
    for t in inits {
        assert_eq!(flags_of(&t), flags::INIT);
        b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
    }
    assert_eq!(
        a.bus.message_info(now, ids[gate]).unwrap().state,
        MessageState::Pending
    );
    // As messages finish, the queued ones start, in order, and nothing is refused
    // or retransmitted.
    shuttle(&mut a, &mut b, now);
    let got: Vec<_> = std::iter::from_fn(|| b.bus.pop(false, None))
        .map(|m| m.id)
        .collect();
    assert_eq!(got, ids);
    assert_eq!(b.bus.stats().refused_partial_limit, 0);
    assert_eq!(a.bus.stats().retransmissions, 0);
    for id in ids {
        assert_eq!(
            a.bus.message_info(now, id).unwrap().state,
            MessageState::Received
        );
    }
    assert!(a.bus.gates.is_empty());
}

#[test]
fn the_gate_is_per_destination_and_counts_bytes() {
    let cfg = BusConfig {
        max_sending_per_destination: 2,
        max_sending_bytes_per_destination: 250,
        ..BusConfig::default()
    };
    let mut a = node(1, cfg);
    let b = node(2, BusConfig::default());
    let c = node(3, BusConfig::default());
    let now = Instant::ZERO;
    let mut rng = Counter(0);
    // A message larger than the byte limit still starts alone.
    a.bus
        .push(now, msg(&a, &b, b"", &[0; 300]), &mut rng)
        .unwrap();
    a.bus
        .push(now, msg(&a, &b, b"", &[1; 10]), &mut rng)
        .unwrap();
    // Another destination has its own gate.
    a.bus
        .push(now, msg(&a, &c, b"", &[2; 100]), &mut rng)
        .unwrap();
    a.bus
        .push(now, msg(&a, &c, b"", &[3; 100]), &mut rng)
        .unwrap();
    a.bus
        .push(now, msg(&a, &c, b"", &[4; 10]), &mut rng)
        .unwrap();
    let sent: Vec<_> = drain(&mut a.bus).iter().map(|t| t.dst).collect();
    assert_eq!(sent, [b.ip, c.ip, c.ip]);
}

#[test]
fn large_messages_start_no_more_than_the_window_budget_allows() {
    let (mut a, mut b) = pair();
    let now = Instant::ZERO;
    let mut rng = Counter(0);
    let cfg = a.bus.cfg.clone();
    let full_window = (cfg.send_window * cfg.chunk_size) as u64;
    let fit = (cfg.max_sending_window_per_destination / full_window) as usize;
    assert!((2..cfg.max_sending_per_destination).contains(&fit));
    // Large messages, then small ones behind them: push order is kept, so the
    // small ones wait too.
    let large = vec![7u8; 2 * full_window as usize];
    let mut ids = Vec::new();
    for i in 0..fit + 8 {
        let payload = if i < fit + 3 {
            large.clone()
        } else {
            vec![i as u8; 10]
        };
        let m = msg(&a, &b, b"", &payload);
        ids.push(a.bus.push(now, m, &mut rng).unwrap());
    }
    let inits = drain(&mut a.bus);
    assert_eq!(inits.len(), fit);
    for t in inits {
        b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
    }
    assert_eq!(
        a.bus.message_info(now, ids[fit]).unwrap().state,
        MessageState::Pending
    );
    // Everything arrives, nothing refused.
    shuttle(&mut a, &mut b, now);
    let mut got: Vec<_> = std::iter::from_fn(|| b.bus.pop(false, None))
        .map(|m| m.id)
        .collect();
    // Started in push order; the small ones finish first.
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert_eq!(b.bus.stats().refused_partial_limit, 0);
    assert!(a.bus.gates.is_empty());
}

#[test]
fn a_large_queue_aborted_at_once_empties_its_gate() {
    let (mut a, b) = pair();
    let now = Instant::ZERO;
    let mut rng = Counter(0);
    // 50,000 messages to a silent destination, all given up on at the same time:
    // the queue is walked once, not once per message.
    for i in 0..50_000u32 {
        let mut m = msg(&a, &b, b"", &i.to_be_bytes());
        m.try_for = Some(Duration::from_secs(1));
        a.bus.push(now, m, &mut rng).unwrap();
    }
    drain(&mut a.bus);
    let started = std::time::Instant::now();
    a.bus.handle_timeout(now + Duration::from_secs(1));
    let aborted = drain(&mut a.bus);
    // Only the messages that had sent their INIT say ABORTED.
    assert_eq!(aborted.len(), a.bus.cfg.max_sending_per_destination);
    assert_eq!(a.bus.stats().aborted, 50_000);
    assert!(a.bus.gates.is_empty());
    assert_eq!((a.bus.usage().sending, a.bus.usage().sending_bytes), (0, 0));
    // Generous: quadratic removal took minutes here.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_queued_message_is_aborted_silently_and_leaves_the_queue() {
    let cfg = BusConfig {
        max_sending_per_destination: 1,
        ..BusConfig::default()
    };
    let mut a = node(1, cfg);
    let mut b = node(2, BusConfig::default());
    let mut now = Instant::ZERO;
    let mut rng = Counter(0);
    let first = a
        .bus
        .push(now, msg(&a, &b, b"", b"first"), &mut rng)
        .unwrap();
    let mut short = msg(&a, &b, b"", b"short");
    short.try_for = Some(Duration::from_secs(1));
    let short = a.bus.push(now, short, &mut rng).unwrap();
    let last = a
        .bus
        .push(now, msg(&a, &b, b"", b"last"), &mut rng)
        .unwrap();
    // The INIT of `first` is lost; `short` times out in the queue.
    assert_eq!(drain(&mut a.bus).len(), 1);
    now += Duration::from_secs(1);
    a.bus.handle_timeout(now);
    assert_eq!(
        a.bus.message_info(now, short).unwrap().state,
        MessageState::Aborted
    );
    assert_eq!(events(&mut a.bus), [Event::SendFailed { id: short }]);
    // No ABORTED for it; `first` retransmits its INIT.
    for t in drain(&mut a.bus) {
        assert_eq!(flags_of(&t), flags::INIT);
        b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
    }
    shuttle(&mut a, &mut b, now);
    let got: Vec<_> = std::iter::from_fn(|| b.bus.pop(false, None))
        .map(|m| m.id)
        .collect();
    assert_eq!(got, [first, last]);
    assert!(a.bus.gates.is_empty());
}

/// Runs `a` and `b` joined by a link that takes `one_way` each way, from `now`
/// until `a` has no message being sent (or `limit` passes). Returns the time.
fn run_delayed(
    a: &mut Node,
    b: &mut Node,
    mut now: Instant,
    one_way: Duration,
    limit: Instant,
) -> Instant {
    // Frames on the link: (arrival, towards b, frame).
    let mut link: VecDeque<(Instant, bool, Transmit)> = VecDeque::new();
    loop {
        for t in drain(&mut a.bus) {
            link.push_back((now + one_way, true, t));
        }
        for t in drain(&mut b.bus) {
            link.push_back((now + one_way, false, t));
        }
        if a.bus.usage().sending == 0 && link.is_empty() {
            return now;
        }
        let next = [
            link.front().map(|f| f.0),
            a.bus.poll_timeout(),
            b.bus.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
        assert!(next <= limit, "still sending at {limit:?}");
        now = next.max(now);
        while link.front().is_some_and(|f| f.0 <= now) {
            let (_, to_b, t) = link.pop_front().unwrap();
            if to_b {
                b.bus.handle_frame(now, t.src, t.dst, a.key, &t.frame);
            } else {
                a.bus.handle_frame(now, t.src, t.dst, b.key, &t.frame);
            }
        }
        if a.bus.poll_timeout().is_some_and(|t| t <= now) {
            a.bus.handle_timeout(now);
        }
        if b.bus.poll_timeout().is_some_and(|t| t <= now) {
            b.bus.handle_timeout(now);
        }
    }
}

#[test]
fn a_new_message_starts_from_the_round_trip_the_last_one_measured() {
    let (mut a, mut b) = pair();
    let one_way = Duration::from_millis(150);
    let mut rng = Counter(0);
    let limit = Instant::ZERO + Duration::from_secs(600);
    // The first message over a 300 ms round trip learns it the hard way: its INIT
    // times out at 100 ms and goes again.
    a.bus
        .push(Instant::ZERO, msg(&a, &b, b"", b"first"), &mut rng)
        .unwrap();
    let now = run_delayed(&mut a, &mut b, Instant::ZERO, one_way, limit);
    let learning = a.bus.stats().retransmissions;
    assert!(learning >= 1, "{learning}");
    // The next ones to the same destination start from what it measured: nothing
    // is sent twice, however many go at once.
    for i in 0..50u32 {
        a.bus
            .push(now, msg(&a, &b, b"", &i.to_be_bytes()), &mut rng)
            .unwrap();
    }
    let now = run_delayed(&mut a, &mut b, now, one_way, limit);
    assert_eq!(a.bus.stats().retransmissions, learning);
    assert_eq!(b.bus.inbox_len(), 51);
    // Two minutes later the memory has lapsed: a new message starts from the
    // initial timeout again.
    let later = now + PATH_MEMORY_FOR;
    a.bus.handle_timeout(later);
    a.bus
        .push(later, msg(&a, &b, b"", b"later"), &mut rng)
        .unwrap();
    run_delayed(&mut a, &mut b, later, one_way, limit + PATH_MEMORY_FOR);
    assert!(a.bus.stats().retransmissions > learning);
}

#[test]
fn the_path_memory_is_bounded_and_forgets_the_stalest() {
    let mut paths = BTreeMap::new();
    let t0 = Instant::ZERO;
    for p in 0..PATH_MEMORY as u64 {
        remember_path(&mut paths, p, 10 * MS, t0 + Duration::from_millis(p));
    }
    assert_eq!(paths.len(), PATH_MEMORY);
    // A new destination in a full memory replaces the one sampled longest ago.
    let now = t0 + Duration::from_secs(10);
    remember_path(&mut paths, u64::MAX, 10 * MS, now);
    assert_eq!(paths.len(), PATH_MEMORY);
    assert!(!paths.contains_key(&0) && paths.contains_key(&1) && paths.contains_key(&u64::MAX));
    // A sample to a known one updates it in place.
    remember_path(&mut paths, 1, 30 * MS, now);
    assert_eq!(paths.len(), PATH_MEMORY);
    assert_eq!(paths[&1].updated, now);
}
