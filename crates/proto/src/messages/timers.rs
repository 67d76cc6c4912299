//! One timer table for the whole bus: every outbound message, partial inbound
//! message, remembered completion and reply waiter has at most one deadline in it,
//! and the bus only ever exposes the earliest.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use crate::time::Instant;
use crate::wire::message::MessageId;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// An outbound message: retransmission, its deadline or the end of its status.
    Outbound(MessageId),
    /// A partial inbound message that went idle.
    Partial(Ipv6Addr, MessageId),
    /// A remembered completion that may be forgotten.
    Completed(Ipv6Addr, MessageId),
    /// A reply waiter whose time is up.
    Waiter(MessageId),
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    /// Moves `key`'s deadline from `old` (as registered) to `new`.
    pub(super) fn reset(&mut self, key: TimerKey, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.set.remove(&(old, key));
        }
        if let Some(new) = new {
            self.set.insert((new, key));
        }
    }

    /// Removes and returns a deadline that is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let &(at, key) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.pop_first();
        Some(key)
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}
