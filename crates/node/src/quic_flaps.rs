//! Neighbours that drop our QUIC link whenever they have a large packet for us.
//!
//! Upstream v0.7.10 sends every data packet to a QUIC neighbour as a datagram, and
//! when the QUIC library refuses one as too large it ends the whole connection. The
//! largest datagram upstream can send is a few dozen bytes short of a full-size data
//! packet, so the first full-size packet of any bulk flow it forwards to us over
//! QUIC ends the link. Its link costs prefer QUIC to TCP, so a node that reaches it
//! over both (as its operators advise) sees the QUIC link dropped, redials it,
//! routes are moved back onto it, and the next large packet drops it again.
//!
//! We cannot change what the neighbour sends; we decide what we dial and accept.
//! This module recognises such a neighbour and, while a stream link (TCP) to the
//! same node is up, pauses QUIC to it with a back-off that grows, so its traffic
//! stays on the stream link and nothing is lost to the flapping.
//!
//! # What counts
//!
//! A *suspect drop* is a QUIC connection that the peer closed with application
//! error code 0 and no reason (what quinn sends when an application drops every
//! handle on a connection, which is how upstream ends a link), and that carried
//! data packets or lived less than [`SHORT_LIFE`] (a neighbour with nothing to
//! send us has no reason to drop a fresh link). Our own node always gives a
//! reason when it closes a link, so links to our nodes never count. Two suspect
//! drops from one remote address, each within [`STRIKE_WINDOW`] of the one before,
//! recognise the neighbour: it is logged once and counted.
//!
//! # What is done
//!
//! - A stream link to the same node is up (same public key by the neighbours' own
//!   routes, see `Router::neighbour_router_id`; the same IP address when a key is
//!   not known): QUIC to that address is paused, [`FIRST_PAUSE`] first, doubling
//!   on every further drop up to [`MAX_PAUSE`]. Paused, the dialler does not dial
//!   and the listener refuses QUIC connections from that address. A pause ends
//!   early when the stream link goes down: then QUIC is all there is.
//! - QUIC is the only link to it: nothing is paused (a flapping link still carries
//!   small packets, none would carry nothing); the log says once why large packets
//!   from it fail, and the drops are counted.
//!
//! The back-off starts over when a QUIC connection to the neighbour has stayed up
//! for [`HEALTHY_LIFE`] (the neighbour stopped dropping it, or has nothing large to
//! send), and a neighbour is forgotten [`FORGET_AFTER`] after its last drop.

use std::net::SocketAddr;
use std::time::Duration;

use mycelium_proto::time::Instant;
use mycelium_proto::PublicKey;

/// Suspect drops, each within [`STRIKE_WINDOW`] of the one before, that recognise a
/// neighbour. One could be anything; two in a row, each right after the link came
/// up or carried data, is the pattern.
pub(crate) const STRIKES: u32 = 2;
/// Suspect drops further apart than this are not counted as a row.
pub(crate) const STRIKE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// A peer-closed connection that carried no data at all counts only if it was
/// dropped this soon after it opened.
pub(crate) const SHORT_LIFE: Duration = Duration::from_secs(60);
/// The first pause: long enough that a bulk transfer of a few minutes does not
/// see another drop.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_secs(5 * 60);
/// The longest pause: QUIC is tried again at least this often, in case the
/// neighbour was upgraded.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(60 * 60);
/// A QUIC connection that lived this long was not being dropped: the back-off
/// starts over.
pub(crate) const HEALTHY_LIFE: Duration = Duration::from_secs(10 * 60);
/// A neighbour not dropped for this long (and not paused) is forgotten.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(2 * 60 * 60);
/// Remote addresses remembered at once; beyond it the one idle longest makes room.
/// Bounded, because inbound QUIC connections come from any address.
pub(crate) const MAX_RECORDS: usize = 1_024;

/// How a QUIC connection ended, as far as our side can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The peer closed it with application error code 0 and no reason: how
    /// upstream's links end (quinn's close when every handle is dropped).
    PeerDropped,
    /// The peer closed it and said why (another code or a reason text).
    PeerClosed,
    /// We closed it, or the node is stopping.
    Local,
    /// Nothing heard within the idle time-out.
    TimedOut,
    /// A transport error, a reset, or anything else.
    Other,
}

impl CloseCause {
    /// How `conn` ended, as far as this side can tell; `Local` while it is open.
    /// Must be read before our side closes it, which would overwrite the reason.
    pub(crate) fn of(conn: &quinn::Connection) -> Self {
        match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                if c.error_code == quinn::VarInt::from_u32(0) && c.reason.is_empty() {
                    Self::PeerDropped
                } else {
                    Self::PeerClosed
                }
            }
            None | Some(quinn::ConnectionError::LocallyClosed) => Self::Local,
            Some(quinn::ConnectionError::TimedOut) => Self::TimedOut,
            Some(_) => Self::Other,
        }
    }
}

/// What the core learns when a QUIC link ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuicLinkEnd {
    /// The remote socket address (what we dial, or what the neighbour dialled from:
    /// upstream dials from its listening port).
    pub(crate) remote: SocketAddr,
    pub(crate) cause: CloseCause,
    /// How long the link was up.
    pub(crate) lived: Duration,
    /// Data packets it carried, both ways.
    pub(crate) data_packets: u64,
}

impl QuicLinkEnd {
    /// Whether this end looks like a neighbour dropping the link because a packet
    /// for us did not fit a datagram.
    pub(crate) fn is_suspect(&self) -> bool {
        self.cause == CloseCause::PeerDropped && (self.data_packets > 0 || self.lived < SHORT_LIFE)
    }
}

/// What a QUIC link's end meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a suspect drop.
    Ignored,
    /// A suspect drop, counted; not enough yet to say.
    Counted {
        /// Suspect drops in the current row.
        strikes: u32,
    },
    /// The neighbour is recognised, now.
    Recognised {
        strikes: u32,
        /// How long QUIC to it is paused; `None` without a stream link to it (or
        /// with pausing off).
        pause: Option<Duration>,
    },
    /// A neighbour recognised before dropped the link again.
    Again { pause: Option<Duration> },
}

/// Whether to connect over QUIC to (or accept QUIC from) an address now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead.
    Go,
    /// Paused for this much longer.
    Paused(Duration),
    /// Go ahead: a pause just ended, for this reason.
    Resumed(Resume),
}

/// Why a pause ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// It ran its time.
    Elapsed,
    /// The stream link to the neighbour is down: QUIC is all there is.
    StreamLinkDown,
}

#[derive(Debug, Clone)]
struct Record {
    /// The neighbour's public key, when its routes named it.
    identity: Option<PublicKey>,
    /// Suspect drops in the current row.
    strikes: u32,
    last_strike: Instant,
    recognised: bool,
    /// The next pause's length.
    next_pause: Duration,
    paused_until: Option<Instant>,
}

/// What the node knows of QUIC neighbours that drop their links. Owned by the core.
#[derive(Debug)]
pub(crate) struct QuicFlaps {
    records: std::collections::HashMap<SocketAddr, Record>,
    /// Pausing on (the default); off, neighbours are still recognised and counted.
    pause_enabled: bool,
}

/// An IPv4 peer reaches a dual-stack socket as an IPv4-mapped address, and is
/// dialled as either: one key for both.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl QuicFlaps {
    pub(crate) fn new(pause_enabled: bool) -> Self {
        Self {
            records: std::collections::HashMap::new(),
            pause_enabled,
        }
    }

    /// Takes in a QUIC link's end. `identity` is the key of the node at its other
    /// end, if known; `stream_link_up` whether a stream link to that same node is
    /// up now.
    pub(crate) fn link_down(
        &mut self,
        now: Instant,
        end: &QuicLinkEnd,
        identity: Option<PublicKey>,
        stream_link_up: bool,
    ) -> Verdict {
        let key = canonical(end.remote);
        if end.lived >= HEALTHY_LIFE {
            // The link carried what it had to for a long while: what came before
            // is history.
            self.records.remove(&key);
        }
        if !end.is_suspect() {
            return Verdict::Ignored;
        }
        self.sweep(now);
        if !self.records.contains_key(&key) && self.records.len() >= MAX_RECORDS {
            self.make_room();
        }
        let pause_enabled = self.pause_enabled;
        let r = self.records.entry(key).or_insert(Record {
            identity: None,
            strikes: 0,
            last_strike: now,
            recognised: false,
            next_pause: FIRST_PAUSE,
            paused_until: None,
        });
        if identity.is_some() {
            r.identity = identity;
        }
        if now - r.last_strike > STRIKE_WINDOW && !r.recognised {
            r.strikes = 0;
        }
        r.strikes = r.strikes.saturating_add(1);
        r.last_strike = now;
        let recognised_now = !r.recognised && r.strikes >= STRIKES;
        if !r.recognised && !recognised_now {
            // One drop alone pauses nothing.
            return Verdict::Counted { strikes: r.strikes };
        }
        let pause = (stream_link_up && pause_enabled).then(|| {
            let pause = r.next_pause;
            r.next_pause = (pause * 2).min(MAX_PAUSE);
            r.paused_until = Some(now + pause);
            pause
        });
        if recognised_now {
            r.recognised = true;
            Verdict::Recognised {
                strikes: r.strikes,
                pause,
            }
        } else {
            Verdict::Again { pause }
        }
    }

    /// The key of the neighbour QUIC to `addr` is paused for, if a pause is
    /// recorded (the outer `None`: no pause; the inner: the key is not known).
    /// The core checks whether a stream link to it is up before [`Self::admit`].
    pub(crate) fn paused_neighbour(&self, addr: SocketAddr) -> Option<Option<PublicKey>> {
        let r = self.records.get(&canonical(addr))?;
        r.paused_until.map(|_| r.identity)
    }

    /// Whether QUIC to or from `addr` may go ahead now; `stream_link_up`: whether
    /// a stream link to the neighbour of a recorded pause is still up.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        stream_link_up: bool,
    ) -> Admission {
        let Some(r) = self.records.get_mut(&canonical(addr)) else {
            return Admission::Go;
        };
        let Some(until) = r.paused_until else {
            return Admission::Go;
        };
        if now >= until {
            r.paused_until = None;
            return Admission::Resumed(Resume::Elapsed);
        }
        if !stream_link_up {
            r.paused_until = None;
            return Admission::Resumed(Resume::StreamLinkDown);
        }
        Admission::Paused(until - now)
    }

    /// The addresses QUIC is paused for now, with the time left.
    pub(crate) fn pauses(&self, now: Instant) -> Vec<(SocketAddr, Duration)> {
        self.records
            .iter()
            .filter_map(|(addr, r)| {
                let until = r.paused_until?;
                (until > now).then(|| (*addr, until - now))
            })
            .collect()
    }

    /// Forgets neighbours neither paused nor dropping for [`FORGET_AFTER`].
    fn sweep(&mut self, now: Instant) {
        self.records.retain(|_, r| {
            r.paused_until.is_some_and(|until| until > now) || now - r.last_strike <= FORGET_AFTER
        });
    }

    /// Drops the record whose last drop is oldest.
    fn make_room(&mut self) {
        let oldest = self
            .records
            .iter()
            .min_by_key(|(_, r)| r.last_strike)
            .map(|(addr, _)| *addr);
        if let Some(addr) = oldest {
            self.records.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(secs))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0u8; 16], 0)))
    }

    fn dropped(remote: &str) -> QuicLinkEnd {
        QuicLinkEnd {
            remote: addr(remote),
            cause: CloseCause::PeerDropped,
            lived: Duration::from_millis(300),
            data_packets: 3,
        }
    }

    const U: &str = "[fd00::2]:9651";

    #[test]
    fn only_plain_peer_drops_of_busy_or_young_links_count() {
        let young_idle = QuicLinkEnd {
            data_packets: 0,
            ..dropped(U)
        };
        assert!(young_idle.is_suspect());
        let old_busy = QuicLinkEnd {
            lived: Duration::from_secs(300),
            ..dropped(U)
        };
        assert!(old_busy.is_suspect());
        let old_idle = QuicLinkEnd {
            lived: Duration::from_secs(300),
            data_packets: 0,
            ..dropped(U)
        };
        assert!(!old_idle.is_suspect());
        for cause in [
            CloseCause::PeerClosed,
            CloseCause::Local,
            CloseCause::TimedOut,
            CloseCause::Other,
        ] {
            let end = QuicLinkEnd {
                cause,
                ..dropped(U)
            };
            assert!(!end.is_suspect(), "{cause:?}");
            let mut f = QuicFlaps::new(true);
            for t in 0..10 {
                assert_eq!(f.link_down(at(t * 5), &end, None, true), Verdict::Ignored);
            }
            assert!(f.pauses(at(60)).is_empty());
        }
    }

    #[test]
    fn two_drops_in_a_row_recognise_and_pause_with_a_stream_link() {
        let mut f = QuicFlaps::new(true);
        let key = Some(PublicKey::from_bytes([2; 32]));
        assert_eq!(
            f.link_down(at(10), &dropped(U), key, true),
            Verdict::Counted { strikes: 1 }
        );
        // One drop pauses nothing.
        assert_eq!(f.admit(at(15), addr(U), true), Admission::Go);
        assert_eq!(
            f.link_down(at(16), &dropped(U), key, true),
            Verdict::Recognised {
                strikes: 2,
                pause: Some(FIRST_PAUSE)
            }
        );
        assert_eq!(f.paused_neighbour(addr(U)), Some(key));
        assert_eq!(
            f.admit(at(20), addr(U), true),
            Admission::Paused(FIRST_PAUSE - Duration::from_secs(4))
        );
        // The IPv4-mapped and plain forms of an address are one neighbour.
        let mut g = QuicFlaps::new(true);
        g.link_down(at(0), &dropped("[::ffff:192.0.2.1]:9651"), None, true);
        g.link_down(at(5), &dropped("192.0.2.1:9651"), None, true);
        assert!(matches!(
            g.admit(at(6), addr("192.0.2.1:9651"), true),
            Admission::Paused(_)
        ));
        // Other addresses are not affected.
        assert_eq!(f.admit(at(20), addr("[fd00::9]:9651"), true), Admission::Go);
        assert_eq!(f.pauses(at(20)).len(), 1);
        // The pause runs its time, then QUIC is tried again; the next drop pauses
        // twice as long at once, and so on up to the longest pause.
        let mut t = 16 + FIRST_PAUSE.as_secs();
        assert_eq!(
            f.admit(at(t), addr(U), true),
            Admission::Resumed(Resume::Elapsed)
        );
        assert_eq!(f.admit(at(t), addr(U), true), Admission::Go);
        let mut expected = FIRST_PAUSE * 2;
        for _ in 0..6 {
            t += 1;
            assert_eq!(
                f.link_down(at(t), &dropped(U), key, true),
                Verdict::Again {
                    pause: Some(expected)
                }
            );
            t += expected.as_secs();
            assert_eq!(
                f.admit(at(t), addr(U), true),
                Admission::Resumed(Resume::Elapsed)
            );
            expected = (expected * 2).min(MAX_PAUSE);
        }
        assert_eq!(expected, MAX_PAUSE);
    }

    #[test]
    fn drops_far_apart_do_not_recognise() {
        let mut f = QuicFlaps::new(true);
        let step = STRIKE_WINDOW + Duration::from_secs(1);
        let mut t = at(0);
        for _ in 0..5 {
            assert_eq!(
                f.link_down(t, &dropped(U), None, true),
                Verdict::Counted { strikes: 1 }
            );
            t += step;
        }
    }

    #[test]
    fn without_a_stream_link_nothing_is_paused() {
        let mut f = QuicFlaps::new(true);
        f.link_down(at(0), &dropped(U), None, false);
        assert_eq!(
            f.link_down(at(5), &dropped(U), None, false),
            Verdict::Recognised {
                strikes: 2,
                pause: None
            }
        );
        assert_eq!(f.admit(at(6), addr(U), false), Admission::Go);
        assert_eq!(
            f.link_down(at(11), &dropped(U), None, false),
            Verdict::Again { pause: None }
        );
        // A stream link appears: the next drop pauses, for the first pause.
        assert_eq!(
            f.link_down(at(16), &dropped(U), None, true),
            Verdict::Again {
                pause: Some(FIRST_PAUSE)
            }
        );
        // And the pause ends as soon as the stream link is gone.
        assert_eq!(
            f.admit(at(30), addr(U), false),
            Admission::Resumed(Resume::StreamLinkDown)
        );
        assert_eq!(f.admit(at(31), addr(U), false), Admission::Go);
    }

    #[test]
    fn pausing_off_still_recognises() {
        let mut f = QuicFlaps::new(false);
        f.link_down(at(0), &dropped(U), None, true);
        assert_eq!(
            f.link_down(at(5), &dropped(U), None, true),
            Verdict::Recognised {
                strikes: 2,
                pause: None
            }
        );
        assert_eq!(f.admit(at(6), addr(U), true), Admission::Go);
    }

    #[test]
    fn a_long_healthy_link_starts_the_back_off_over() {
        let mut f = QuicFlaps::new(true);
        f.link_down(at(0), &dropped(U), None, true);
        f.link_down(at(5), &dropped(U), None, true);
        let resumed = 5 + FIRST_PAUSE.as_secs();
        assert_eq!(
            f.admit(at(resumed), addr(U), true),
            Admission::Resumed(Resume::Elapsed)
        );
        // Up for a long time, then closed without a drop: forgotten.
        let healthy = QuicLinkEnd {
            cause: CloseCause::Local,
            lived: HEALTHY_LIFE,
            ..dropped(U)
        };
        assert_eq!(
            f.link_down(at(resumed + 700), &healthy, None, true),
            Verdict::Ignored
        );
        assert_eq!(
            f.link_down(at(resumed + 710), &dropped(U), None, true),
            Verdict::Counted { strikes: 1 }
        );
        // Up for a long time, then dropped: a first drop again.
        f.link_down(at(resumed + 720), &dropped(U), None, true);
        let long_then_dropped = QuicLinkEnd {
            lived: HEALTHY_LIFE,
            ..dropped(U)
        };
        assert_eq!(
            f.link_down(at(resumed + 2_000), &long_then_dropped, None, true),
            Verdict::Counted { strikes: 1 }
        );
    }

    #[test]
    fn records_are_bounded_and_forgotten() {
        let mut f = QuicFlaps::new(true);
        for i in 0..(MAX_RECORDS as u64 + 50) {
            let remote = format!("[fd00::{:x}]:9651", i + 1);
            f.link_down(at(i), &dropped(&remote), None, false);
            assert!(f.records.len() <= MAX_RECORDS);
        }
        // Long after, any drop sweeps the idle ones away.
        let later = at(MAX_RECORDS as u64 + 50) + FORGET_AFTER + Duration::from_secs(1);
        f.link_down(later, &dropped(U), None, false);
        assert_eq!(f.records.len(), 1);
    }
}
