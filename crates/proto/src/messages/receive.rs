//! The receiving half of the bus: INIT, CHUNK and DONE from a sender, reassembly
//! into the budget, and delivery to a reply waiter, a forward socket or the inbox.
//! The rules are upstream's except where the module
//! documentation of [`super`] says otherwise.

use std::net::{IpAddr, Ipv6Addr};

use bytes::Bytes;

use super::inbound::{Completed, Partial};
use super::outbound::emit;
use super::timers::TimerKey;
use super::{prefix_64, same_64, Event, ForwardTicket, InKey, MessageBus, ReceivedMessage};
use crate::identity::PublicKey;
use crate::time::Instant;
use crate::wire::message::{Frame, MessageId, CHECKSUM_LEN};

impl MessageBus {
    #[allow(clippy::too_many_arguments)] // one frame's fields, unpacked
    pub(super) fn on_init(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: MessageId,
        reply: bool,
        length: u64,
        topic: &[u8],
    ) {
        let key = (src, id);
        let ack = |bus: &mut Self| {
            emit(
                &mut bus.transmits,
                dst,
                src,
                Frame::InitAck {
                    id,
                    reply,
                    length,
                    topic_len: topic.len() as u8,
                },
            );
        };
        if let Some(p) = self.partial.get_mut(&key) {
            if p.same_init(reply, length, topic) {
                p.expires = now + self.cfg.partial_idle_timeout;
                ack(self);
                return;
            }
            // A different message under the same id replaces it, as upstream.
            self.drop_partial(key);
        }
        if let Some(c) = self.completed.get_mut(&key) {
            if c.reply == reply && c.length == length && usize::from(c.topic_len) == topic.len() {
                c.expires = now + self.cfg.completed_memory;
                self.stats.duplicates += 1;
                ack(self);
                return;
            }
            self.forget_completed(key);
        }
        let checked =
            !reply || (self.cfg.check_unsolicited_replies && !self.reply_expected(id, src));
        if checked && !self.topics.allows(topic, IpAddr::V6(src)) {
            self.stats.refused_by_policy += 1;
            return;
        }
        if length > self.cfg.max_message_size {
            self.stats.refused_too_large += 1;
            return;
        }
        let source = self
            .partial_by_source
            .get(&prefix_64(src))
            .copied()
            .unwrap_or_default();
        if source.count >= self.cfg.max_partial_per_source
            || source.bytes + length > self.cfg.max_partial_bytes_per_source
            || self.partial.len() >= self.cfg.max_partial_total
        {
            self.stats.refused_partial_limit += 1;
            return;
        }
        if self.held.count >= self.cfg.max_inbox_messages
            || self.held.bytes + length > self.cfg.max_inbox_bytes
        {
            self.stats.refused_full += 1;
            return;
        }
        let expires = now + self.cfg.partial_idle_timeout;
        self.partial.insert(
            key,
            Partial::new(dst, reply, length, topic.to_vec(), expires),
        );
        self.timers
            .reset(TimerKey::Partial(src, id), None, Some(expires));
        let use_ = self.partial_by_source.entry(prefix_64(src)).or_default();
        use_.count += 1;
        use_.bytes += length;
        self.held.count += 1;
        self.held.bytes += length;
        ack(self);
    }

    pub(super) fn forget_completed(&mut self, key: InKey) {
        if let Some(c) = self.completed.remove(&key) {
            self.timers
                .reset(TimerKey::Completed(key.0, key.1), Some(c.timer), None);
        }
    }

    /// Whether a REPLY with `id` from `src` answers something of ours.
    pub(super) fn reply_expected(&self, id: MessageId, src: Ipv6Addr) -> bool {
        self.waiters.contains_key(&id)
            || self.outbound.get(&id).is_some_and(|o| same_64(o.dst, src))
    }

    /// Forgets a partial message and gives back its budget.
    pub(super) fn drop_partial(&mut self, key: InKey) {
        let Some(p) = self.partial.remove(&key) else {
            return;
        };
        self.timers
            .reset(TimerKey::Partial(key.0, key.1), Some(p.timer), None);
        self.unaccount_partial(key.0, p.length);
        self.release(p.length);
    }

    pub(super) fn unaccount_partial(&mut self, src: Ipv6Addr, length: u64) {
        let prefix = prefix_64(src);
        if let Some(u) = self.partial_by_source.get_mut(&prefix) {
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(length);
            if u.count == 0 {
                self.partial_by_source.remove(&prefix);
            }
        }
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.held.count = self.held.count.saturating_sub(1);
        self.held.bytes = self.held.bytes.saturating_sub(bytes);
    }

    pub(super) fn on_chunk(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: MessageId,
        (index, offset, size): (u64, u64, u64),
        data: &[u8],
    ) {
        let key = (src, id);
        if let Some(p) = self.partial.get_mut(&key) {
            if !p.store(index, offset, data, self.cfg.min_chunk_size as u64) {
                self.stats.bad_chunks += 1;
                return;
            }
            p.expires = now + self.cfg.partial_idle_timeout;
        } else if let Some(c) = self.completed.get_mut(&key) {
            c.expires = now + self.cfg.completed_memory;
            self.stats.duplicates += 1;
        } else {
            return;
        }
        emit(
            &mut self.transmits,
            dst,
            src,
            Frame::ChunkAck {
                id,
                index,
                offset,
                size,
            },
        );
    }

    #[allow(clippy::too_many_arguments)] // one frame's fields, unpacked
    pub(super) fn on_done(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_key: PublicKey,
        id: MessageId,
        chunks: u64,
        checksum: [u8; CHECKSUM_LEN],
    ) {
        let key = (src, id);
        let ack = |bus: &mut Self| {
            emit(
                &mut bus.transmits,
                dst,
                src,
                Frame::DoneAck {
                    id,
                    chunks,
                    checksum,
                },
            );
        };
        if let Some(p) = self.partial.get(&key) {
            let Some(data) = p.assemble(chunks, &checksum) else {
                self.stats.bad_dones += 1;
                return;
            };
            let Some(p) = self.partial.remove(&key) else {
                return;
            };
            self.timers
                .reset(TimerKey::Partial(src, id), Some(p.timer), None);
            self.unaccount_partial(src, p.length);
            self.forget_completed(key);
            if self.completed.len() < self.cfg.max_completed {
                let expires = now + self.cfg.completed_memory;
                self.completed.insert(
                    key,
                    Completed {
                        reply: p.reply,
                        length: p.length,
                        topic_len: p.topic.len() as u8,
                        chunks,
                        checksum,
                        expires,
                        timer: expires,
                    },
                );
                self.timers
                    .reset(TimerKey::Completed(src, id), None, Some(expires));
            }
            ack(self);
            self.stats.delivered += 1;
            self.deliver(ReceivedMessage {
                id,
                reply: p.reply,
                src,
                src_key,
                dst: p.dst,
                topic: p.topic,
                payload: Bytes::from(data),
            });
        } else if let Some(c) = self.completed.get_mut(&key) {
            if c.chunks == chunks && c.checksum == checksum {
                c.expires = now + self.cfg.completed_memory;
                self.stats.duplicates += 1;
                ack(self);
            }
        }
    }

    /// Hands a completed message (already counted in the budget) to its reader.
    pub(super) fn deliver(&mut self, msg: ReceivedMessage) {
        let id = msg.id;
        if msg.reply {
            if let Some(w) = self.waiters.get_mut(&id) {
                if w.reply.is_none() {
                    w.reply = Some(msg);
                    self.events.push_back(Event::ReplyReceived { id });
                    return;
                }
            }
        }
        if let Some(socket) = self.topics.forward_socket(&msg.topic) {
            let ticket = ForwardTicket(self.next_ticket);
            self.next_ticket += 1;
            self.events.push_back(Event::Forward {
                ticket,
                socket: socket.to_path_buf(),
                message: msg.clone(),
            });
            self.forwards.insert(ticket, msg);
            return;
        }
        self.inbox.push_back(msg);
        self.events.push_back(Event::MessageReceived { id });
    }
}
