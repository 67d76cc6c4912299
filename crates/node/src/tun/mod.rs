//! The TUN device, per system, behind two calls: read a batch, write a batch.
//!
//! Every system gives the device the node address with prefix length 7, so the
//! kernel's on-link route for the prefix covers all of `400::/7`, and MTU 1400; no
//! route is added separately.
//!
//! - **Linux** with segmentation offload (the default): the kernel hands over and
//!   takes up to 64 KiB of one TCP flow per read and write, split into MTU-sized
//!   packets for the overlay and coalesced again on delivery, which saves most of
//!   the per-packet system calls.
//! - **The portable path** (macOS, Windows, and Linux without offload): one packet
//!   per read and write. A read that finds one packet drains whatever else is
//!   already waiting without blocking, so a burst is still handled as a batch.
//! - **macOS**: a `utunN` device ([`utun`] picks the name as upstream does). The
//!   4-byte address-family header utun puts in front of every packet is added and
//!   stripped by the device layer; the data plane sees bare IPv6.
//! - **Windows**: a Wintun adapter; `wintun.dll` is looked for first ([`wintun`]),
//!   so that a missing DLL is reported by name.

pub(crate) mod utun;
pub(crate) mod wintun;

use std::io;
use std::net::Ipv6Addr;

use bytes::BytesMut;

/// MTU of the TUN device.
pub(crate) const MTU: u16 = 1400;

/// Prefix length of the node address on the device: the route for `400::/7`.
const PREFIX_LEN: u8 = 7;

/// Packets moved per TUN read or write batch.
#[cfg(target_os = "linux")]
pub(crate) const BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Packets moved per TUN read or write batch.
#[cfg(not(target_os = "linux"))]
pub(crate) const BATCH: usize = 128;

/// Scratch a read needs before it is split into packets: with offload, a
/// virtio-net header and a 64 KiB segmentation-offload super-packet; on the
/// portable path none (packets are read straight into their buffers).
#[cfg(target_os = "linux")]
pub(crate) const SUPER_PACKET: usize = tun_rs::VIRTIO_NET_HDR_LEN + 65_535;
/// Scratch a read needs before it is split into packets (none: see the Linux one).
#[cfg(not(target_os = "linux"))]
pub(crate) const SUPER_PACKET: usize = 0;

/// How packets cross the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunPath {
    /// Segmentation offload in both directions (Linux).
    Offload,
    /// One packet per read and write.
    Portable,
}

/// The TUN device the data plane reads and writes.
pub(crate) struct Tun {
    dev: tun_rs::AsyncDevice,
    path: TunPath,
    /// On Linux with offload, the tables that coalesce the segments of one flow
    /// into one write (about 1.8 MB each), lent to one batch write at a time: as
    /// many exist as writes ever ran at once, not one per task that delivers.
    #[cfg(target_os = "linux")]
    coalescers: std::sync::Mutex<Vec<tun_rs::GROTable>>,
}

/// Coalescing tables kept for reuse at most.
#[cfg(target_os = "linux")]
const SPARE_COALESCERS: usize = 4;

impl Tun {
    /// Creates and configures the device named `name` (macOS may pick another; the
    /// log says which), with `addr/7` on it. `offload` asks for segmentation
    /// offload where the system has it; a kernel that refuses it gets the portable
    /// path, with a warning.
    pub(crate) fn open(name: &str, addr: Ipv6Addr, offload: bool) -> io::Result<Self> {
        let (dev, path) = open_device(name, addr, offload)?;
        let name = dev.name().unwrap_or_else(|_| name.to_owned());
        tracing::info!(tun = %name, ?path, "TUN device up; node overlay address {addr}");
        Ok(Self {
            dev,
            path,
            #[cfg(target_os = "linux")]
            coalescers: std::sync::Mutex::default(),
        })
    }

    /// How packets cross this device.
    pub(crate) fn path(&self) -> TunPath {
        self.path
    }

    /// Reads at least one packet: each lands in `bufs[i][offset..]` and its length in
    /// `sizes[i]`. Returns how many were read. `scratch` ([`SUPER_PACKET`] bytes)
    /// takes an offload super-packet before it is split.
    pub(crate) async fn recv_batch(
        &self,
        scratch: &mut [u8],
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.path == TunPath::Offload {
            return self.dev.recv_multiple(scratch, bufs, sizes, offset).await;
        }
        let _ = scratch;
        let count = bufs.len().min(sizes.len());
        let Some(first) = bufs.first_mut().filter(|_| count > 0) else {
            return Ok(0);
        };
        sizes[0] = self.dev.recv(&mut first[offset..]).await?;
        let mut n = 1;
        while n < count {
            match self.dev.try_recv(&mut bufs[n][offset..]) {
                Ok(size) => {
                    sizes[n] = size;
                    n += 1;
                }
                // Nothing more waiting (or an error the next blocking read will
                // report): hand over what we have.
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// Writes `packets` (each an IPv6 packet at `offset`), in order. On the portable
    /// path a packet the device refuses is counted out and the rest still go;
    /// returns the first error.
    pub(crate) async fn send_batch(
        &self,
        packets: &mut [BytesMut],
        offset: usize,
    ) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.path == TunPath::Offload {
            let lock = || {
                self.coalescers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            let taken = lock().pop();
            let mut gro = taken.unwrap_or_default();
            let result = self.dev.send_multiple(&mut gro, packets, offset).await;
            let mut spare = lock();
            if spare.len() < SPARE_COALESCERS {
                spare.push(gro);
            }
            return result.map(drop);
        }
        let mut first_error = None;
        for p in packets.iter() {
            if let Err(e) = self.dev.send(&p[offset..]).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(target_os = "linux")]
fn open_device(
    name: &str,
    addr: Ipv6Addr,
    offload: bool,
) -> io::Result<(tun_rs::AsyncDevice, TunPath)> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(MTU)
            .ipv6(addr, PREFIX_LEN)
            .offload(offload)
            .build_async()
    };
    if offload {
        match build(true) {
            Ok(dev) => return Ok((dev, TunPath::Offload)),
            // A kernel without TUN offload refuses the flags; anything else (no
            // permission, a name in use) fails the same way without them.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                tracing::warn!("TUN segmentation offload refused ({e}); one packet per read");
            }
            Err(e) => return Err(e),
        }
    }
    Ok((build(false)?, TunPath::Portable))
}

#[cfg(target_os = "macos")]
fn open_device(
    name: &str,
    addr: Ipv6Addr,
    _offload: bool,
) -> io::Result<(tun_rs::AsyncDevice, TunPath)> {
    let existing: Vec<String> = getifaddrs::getifaddrs()?
        .map(|i| i.name)
        .filter(|n| n.starts_with("utun"))
        .collect();
    let chosen = utun::choose(name, &existing);
    match &chosen {
        utun::Choice::AsAsked => {}
        utun::Choice::Invalid(next) => tracing::warn!(
            tun_name = name,
            "invalid utun name (utun followed by a number); using the first free one, {next}"
        ),
        utun::Choice::Taken(next) => tracing::warn!(
            tun_name = name,
            "TUN name already in use; using the first free one, {next}"
        ),
    }
    let dev = tun_rs::DeviceBuilder::new()
        .name(chosen.name(name))
        .mtu(MTU)
        .ipv6(addr, PREFIX_LEN)
        // The kernel derives the 400::/7 route from the prefix, as upstream relies on.
        .associate_route(false)
        .build_async()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (creating a utun device needs root: run with sudo)"),
            )
        })?;
    Ok((dev, TunPath::Portable))
}

#[cfg(windows)]
fn open_device(
    name: &str,
    addr: Ipv6Addr,
    _offload: bool,
) -> io::Result<(tun_rs::AsyncDevice, TunPath)> {
    let dll = wintun::locate_here().map_err(|looked| {
        io::Error::new(io::ErrorKind::NotFound, wintun::missing_message(&looked))
    })?;
    tracing::info!("using {}", dll.display());
    let dev = tun_rs::DeviceBuilder::new()
        .name(name)
        .description("Mycelium")
        .mtu(MTU)
        .ipv6(addr, PREFIX_LEN)
        .wintun_file(dll.to_string_lossy().into_owned())
        .ring_capacity(wintun::RING_CAPACITY)
        .build_async()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e} (creating a Wintun adapter needs an administrator prompt)"),
            )
        })?;
    Ok((dev, TunPath::Portable))
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn open_device(
    _name: &str,
    _addr: Ipv6Addr,
    _offload: bool,
) -> io::Result<(tun_rs::AsyncDevice, TunPath)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this system has no TUN support in mycelium; run with --no-tun",
    ))
}

/// Whether a packet read from our own TUN for the node's own address goes straight
/// back into it.
///
/// macOS sends a packet for the interface's own address out of the utun instead of
/// looping it back, so without this `ping` of one's own overlay address would go
/// unanswered. Upstream writes such packets back for any destination in its /64
/// and then also answers them with an unreachable error; we reflect only the
/// node's own address, the one the kernel can answer, and report the rest of the
/// /64 unreachable as on every other system
/// ([`mycelium_proto::forward::outbound`] decides).
pub(crate) const REFLECTS_OWN_ADDRESS: bool = cfg!(target_os = "macos");
