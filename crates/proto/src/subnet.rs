//! IP prefixes as the protocol carries them: an address and a prefix length.
//!
//! Routing keys, update and request TLVs and the topic ACL all name subnets. The
//! address is kept exactly as it arrived (as upstream: bits past the prefix length
//! are sent as they are), so re-encoding a decoded prefix gives the same bytes;
//! [`Subnet::network`] gives the masked form for comparisons.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The overlay range every node address lives in: `400::/7`.
pub const OVERLAY_RANGE: Subnet = Subnet {
    addr: IpAddr::V6(Ipv6Addr::new(0x400, 0, 0, 0, 0, 0, 0, 0)),
    prefix_len: 7,
};

/// An IPv4 or IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a prefix could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {prefix_len} is longer than the {max}-bit address")]
pub struct PrefixLenError {
    /// The length that was asked for.
    pub prefix_len: u8,
    /// The address width.
    pub max: u8,
}

impl Subnet {
    /// A prefix of `prefix_len` bits of `addr`. Bits of `addr` past the prefix are
    /// kept as given; see [`Subnet::network`].
    pub const fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, PrefixLenError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(PrefixLenError { prefix_len, max });
        }
        Ok(Self { addr, prefix_len })
    }

    /// The `/64` that contains `addr`, host bits cleared: a node's own subnet.
    pub fn v6_64(addr: Ipv6Addr) -> Self {
        let bits = u128::from(addr) & !(u128::MAX >> 64);
        Self {
            addr: IpAddr::V6(Ipv6Addr::from(bits)),
            prefix_len: 64,
        }
    }

    /// The address as stored.
    pub const fn address(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The same prefix with every bit past the prefix length cleared.
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix_len))),
        };
        Self { addr, ..*self }
    }

    /// Whether `ip` lies inside this prefix. Addresses of the other family never do.
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask32(self.prefix_len);
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask128(self.prefix_len);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix_len >= self.prefix_len && self.contains_ip(other.addr)
    }

    /// Whether this is an IPv6 prefix inside the overlay range `400::/7`.
    pub fn is_overlay(&self) -> bool {
        OVERLAY_RANGE.contains_subnet(self)
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a subnet string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetParseError {
    /// The address part is not an IP address.
    #[error("invalid address in subnet: {0:?}")]
    Address(String),
    /// The part after `/` is not a number.
    #[error("invalid prefix length in subnet: {0:?}")]
    PrefixLen(String),
    /// The prefix length exceeds the address width.
    #[error(transparent)]
    TooLong(#[from] PrefixLenError),
}

impl FromStr for Subnet {
    type Err = SubnetParseError;

    /// `addr/len`, or a bare address meaning a host prefix (`/128` or `/32`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| SubnetParseError::Address(addr.to_owned()))?;
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| SubnetParseError::PrefixLen(l.to_owned()))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Ok(Subnet::new(addr, len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_subnet_is_the_covering_64() {
        let ip: Ipv6Addr = "595:178f:8073:5d22:eb75:e266:e04c:d8ae".parse().unwrap();
        let s = Subnet::v6_64(ip);
        assert_eq!(s.to_string(), "595:178f:8073:5d22::/64");
        assert!(s.contains_ip(IpAddr::V6(ip)));
        assert!(s.is_overlay());
    }

    #[test]
    fn overlay_range_has_two_first_bytes() {
        assert!(OVERLAY_RANGE.contains_ip("4ff::1".parse().unwrap()));
        assert!(OVERLAY_RANGE.contains_ip("5ff::1".parse().unwrap()));
        assert!(!OVERLAY_RANGE.contains_ip("600::1".parse().unwrap()));
        assert!(!OVERLAY_RANGE.contains_ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bare_address_parses_as_host_prefix() {
        assert_eq!("::1".parse::<Subnet>().unwrap().prefix_len(), 128);
        assert_eq!("10.1.2.3".parse::<Subnet>().unwrap().prefix_len(), 32);
        assert!("10.1.2.3/33".parse::<Subnet>().is_err());
        assert!("zz/3".parse::<Subnet>().is_err());
    }

    #[test]
    fn zero_length_prefix_contains_everything_of_its_family() {
        let all: Subnet = "::/0".parse().unwrap();
        assert!(all.contains_ip("1234::5".parse().unwrap()));
        assert!(!all.contains_ip("1.2.3.4".parse().unwrap()));
    }
}
