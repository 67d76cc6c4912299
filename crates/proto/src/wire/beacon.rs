//! The link-local discovery beacon: 50 bytes multicast to
//! `[ff02::cafe]:9650`, naming the sender's TCP port and router id.

use bytes::BufMut;

use crate::identity::RouterId;

/// The magic the beacon starts with.
pub const MAGIC: &[u8; 8] = b"mycelium";
/// The beacon's exact length.
pub const LEN: usize = 50;

/// A discovery beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon {
    /// The sender's TCP listen port.
    pub tcp_port: u16,
    /// The sender's router id.
    pub router_id: RouterId,
}

/// Why a datagram is not a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// Not exactly 50 bytes.
    #[error("beacon of {0} bytes, expected {LEN}")]
    Length(usize),
    /// Does not start with `mycelium`.
    #[error("beacon magic mismatch")]
    Magic,
}

impl Beacon {
    /// Decodes a datagram.
    pub fn decode(datagram: &[u8]) -> Result<Self, BeaconError> {
        let Ok(bytes) = <&[u8; LEN]>::try_from(datagram) else {
            return Err(BeaconError::Length(datagram.len()));
        };
        if &bytes[..8] != MAGIC {
            return Err(BeaconError::Magic);
        }
        let mut id = [0u8; 40];
        id.copy_from_slice(&bytes[10..]);
        Ok(Self {
            tcp_port: u16::from_be_bytes([bytes[8], bytes[9]]),
            router_id: RouterId::from_bytes(id),
        })
    }

    /// Appends the 50 bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(MAGIC);
        buf.put_u16(self.tcp_port);
        buf.put_slice(self.router_id.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacon_round_trips_and_checks_its_shape() {
        let b = Beacon {
            tcp_port: 9651,
            router_id: RouterId::from_bytes([7; 40]),
        };
        let mut v = Vec::new();
        b.encode(&mut v);
        assert_eq!(v.len(), LEN);
        assert_eq!(&v[..10], b"mycelium\x25\xb3");
        assert_eq!(Beacon::decode(&v), Ok(b));
        assert_eq!(Beacon::decode(&v[..49]), Err(BeaconError::Length(49)));
        v[0] = b'M';
        assert_eq!(Beacon::decode(&v), Err(BeaconError::Magic));
    }
}
