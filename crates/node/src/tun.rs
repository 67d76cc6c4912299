//! The TUN device (Linux; other systems say so at start-up).
//!
//! The device gets the node address with prefix length 7, so the kernel routes all
//! of `400::/7` into it, and MTU 1400, as upstream (PROTOCOL.md §1.3).

use std::io;
use std::net::Ipv6Addr;

/// MTU of the TUN device.
pub(crate) const MTU: u16 = 1400;

/// The device type the data plane reads and writes.
pub(crate) type Tun = tun_rs::AsyncDevice;

/// Packets moved per TUN read or write batch.
pub(crate) const BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Largest read from a device with offload: a virtio-net header and a 64 KiB
/// segmentation-offload super-packet.
pub(crate) const SUPER_PACKET: usize = tun_rs::VIRTIO_NET_HDR_LEN + 65_535;

/// Creates and configures the TUN device, with segmentation offload: the kernel
/// hands over and takes up to 64 KiB of one TCP flow per read and write (split into
/// MTU-sized packets for the overlay, and coalesced again on delivery), which saves
/// most of the per-packet system calls.
#[cfg(target_os = "linux")]
pub(crate) fn open(name: &str, addr: Ipv6Addr) -> io::Result<Tun> {
    tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(MTU)
        .ipv6(addr, 7u8)
        .offload(true)
        .build_async()
}

/// TUN support is only implemented on Linux so far.
#[cfg(not(target_os = "linux"))]
pub(crate) fn open(_name: &str, _addr: Ipv6Addr) -> io::Result<Tun> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TUN is only supported on Linux in this build; run with --no-tun",
    ))
}
