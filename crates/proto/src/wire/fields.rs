//! The scalar fields the control TLVs carry: sequence numbers, metrics and
//! intervals.

use std::fmt;
use std::time::Duration;

/// A 16-bit sequence number compared modulo 2^16 (RFC 8966 §3.2.1).
///
/// Modular comparison is not a total order (two numbers 32768 apart are neither older
/// nor newer), so this type offers named comparisons instead of `PartialOrd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNo(pub u16);

impl SeqNo {
    /// `self < other` in modular order.
    pub const fn is_older_than(self, other: SeqNo) -> bool {
        self.0 != other.0 && other.0.wrapping_sub(self.0) < 0x8000
    }

    /// `self > other` in modular order.
    pub const fn is_newer_than(self, other: SeqNo) -> bool {
        other.is_older_than(self)
    }

    /// The next number, wrapping at 2^16.
    #[must_use]
    pub const fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A route metric; `0xFFFF` is infinite (unreachable, a retraction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Metric(pub u16);

impl Metric {
    /// Unreachable.
    pub const INFINITE: Metric = Metric(0xFFFF);
    /// The largest finite metric a sum saturates to.
    pub const MAX_FINITE: Metric = Metric(0xFFFE);

    /// Whether this is the infinite metric.
    pub const fn is_infinite(self) -> bool {
        self.0 == Self::INFINITE.0
    }

    /// Sum that stays infinite if either side is, and otherwise saturates at
    /// [`Metric::MAX_FINITE`], so a finite route never turns into a retraction by
    /// overflow.
    #[must_use]
    pub const fn saturating_add(self, other: Metric) -> Metric {
        if self.is_infinite() || other.is_infinite() {
            return Metric::INFINITE;
        }
        let sum = self.0 as u32 + other.0 as u32;
        if sum > Self::MAX_FINITE.0 as u32 {
            Self::MAX_FINITE
        } else {
            Metric(sum as u16)
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_infinite() {
            f.write_str("infinite")
        } else {
            self.0.fmt(f)
        }
    }
}

/// An interval in centiseconds, as TLVs carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interval(pub u16);

impl Interval {
    /// The interval for `d`, truncated to whole centiseconds (upstream truncates:
    /// 6 ms becomes 0) and saturated at the field's maximum.
    pub fn from_duration(d: Duration) -> Self {
        Self(u16::try_from(d.as_millis() / 10).unwrap_or(u16::MAX))
    }

    /// The interval as a duration.
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqno_comparison_wraps() {
        assert!(SeqNo(0xFFFF).is_older_than(SeqNo(0)));
        assert!(SeqNo(0).is_newer_than(SeqNo(0xFFFF)));
        assert!(!SeqNo(5).is_older_than(SeqNo(5)));
        assert!(!SeqNo(0).is_older_than(SeqNo(0x8000)));
        assert!(!SeqNo(0).is_newer_than(SeqNo(0x8000)));
        assert!(SeqNo(0).is_older_than(SeqNo(0x7FFF)));
        assert_eq!(SeqNo(0xFFFF).next(), SeqNo(0));
    }

    #[test]
    fn metric_sum_saturates_below_infinity() {
        assert_eq!(Metric(0xFFF0).saturating_add(Metric(0x20)), Metric(0xFFFE));
        assert_eq!(Metric::INFINITE.saturating_add(Metric(0)), Metric::INFINITE);
        assert_eq!(Metric(3).saturating_add(Metric::INFINITE), Metric::INFINITE);
        assert_eq!(Metric(3).saturating_add(Metric(4)), Metric(7));
    }

    #[test]
    fn interval_truncates_to_centiseconds() {
        assert_eq!(
            Interval::from_duration(Duration::from_millis(6)),
            Interval(0)
        );
        assert_eq!(
            Interval::from_duration(Duration::from_secs(300)),
            Interval(30000)
        );
        assert_eq!(
            Interval::from_duration(Duration::from_secs(3600)),
            Interval(u16::MAX)
        );
        assert_eq!(Interval(2000).as_duration(), Duration::from_secs(20));
    }
}
