//! Link-local peer discovery: a 50-byte beacon multicast to
//! `[ff02::cafe]:9650` on every qualifying interface every 60 s, and peers found
//! from the beacons of others, dialled over TCP (TLS in a private network) on their
//! link-local address and forgotten after three failed attempts.
//!
//! Interfaces are found from `/sys/class/net` and `/proc/net/if_inet6` on Linux,
//! and from the system's interface list (getifaddrs, or the adapter list on
//! Windows) elsewhere.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mycelium_proto::wire::beacon::{self, Beacon};
use mycelium_proto::RouterId;
use tokio::net::UdpSocket;

use mycelium_proto::endpoint::Endpoint;

use crate::config::DiscoveryConfig;
use crate::peering::Peering;
use crate::registry::{ConnectionState, PeerKind};
use crate::tcp;

/// The multicast group beacons go to.
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xcafe);
/// Beacon period.
const PERIOD: Duration = Duration::from_secs(60);
/// Failed connection attempts after which a discovered peer is forgotten.
const MAX_FAILURES: u32 = 3;

/// An interface beacons can go out on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interface {
    index: u32,
    name: String,
}

/// Up, multicast-capable, not loopback, not point-to-point (which TUN devices are),
/// and holding an `fe80::/64` address.
fn usable(flags: Flags, link_local: bool) -> bool {
    link_local && flags.up && flags.multicast && !flags.loopback && !flags.point_to_point
}

/// The interface flags discovery cares about.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    up: bool,
    multicast: bool,
    loopback: bool,
    point_to_point: bool,
}

/// The interfaces beacons go out on (all that are [`usable`], or those of them named
/// in `only`), from the kernel's own tables.
#[cfg(target_os = "linux")]
fn qualifying_interfaces(only: &[String]) -> Vec<Interface> {
    const IFF_UP: u32 = 0x1;
    const IFF_LOOPBACK: u32 = 0x8;
    const IFF_POINTOPOINT: u32 = 0x10;
    const IFF_MULTICAST: u32 = 0x1000;
    let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return Vec::new();
    };
    let mut found: Vec<Interface> = Vec::new();
    for line in table.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [addr, index, _plen, _scope, _flags, name] = cols[..] else {
            continue;
        };
        let Ok(index) = u32::from_str_radix(index, 16) else {
            continue;
        };
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let bits = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let flags = Flags {
            up: bits & IFF_UP != 0,
            multicast: bits & IFF_MULTICAST != 0,
            loopback: bits & IFF_LOOPBACK != 0,
            point_to_point: bits & IFF_POINTOPOINT != 0,
        };
        let link_local = addr.starts_with("fe80000000000000");
        if usable(flags, link_local) && !found.iter().any(|i| i.index == index) {
            found.push(Interface {
                index,
                name: name.to_owned(),
            });
        }
    }
    found
}

/// The interfaces beacons go out on (all that are [`usable`], or those of them named
/// in `only`), as the system lists them (getifaddrs; on Windows the adapter list).
#[cfg(not(target_os = "linux"))]
fn qualifying_interfaces(only: &[String]) -> Vec<Interface> {
    use getifaddrs::InterfaceFlags as F;
    let Ok(list) = getifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut found: Vec<Interface> = Vec::new();
    for iface in list {
        let Some(index) = iface.index else {
            continue;
        };
        if !only.is_empty() && !only.contains(&iface.name) {
            continue;
        }
        let flags = Flags {
            up: iface.flags.contains(F::UP),
            multicast: iface.flags.contains(F::MULTICAST),
            loopback: iface.flags.contains(F::LOOPBACK),
            point_to_point: iface.flags.contains(F::POINTTOPOINT),
        };
        let link_local = matches!(
            iface.address.ip_addr(),
            Some(std::net::IpAddr::V6(a)) if a.segments()[..4] == [0xfe80, 0, 0, 0]
        );
        if usable(flags, link_local) && !found.iter().any(|i| i.index == index) {
            found.push(Interface {
                index,
                name: iface.name,
            });
        }
    }
    found
}

/// Runs discovery until shutdown: beacons out, beacons in, dialling what is found.
pub(crate) async fn run(
    peering: Arc<Peering>,
    streams: tcp::Streams,
    cfg: DiscoveryConfig,
    router_id: RouterId,
    tcp_port: u16,
    mark: Option<u32>,
) {
    let socket = match bind(cfg.port, mark) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("peer discovery off: cannot bind UDP port {}: {e}", cfg.port);
            return;
        }
    };
    let socket = Arc::new(socket);
    let mut beacon = BytesMut::with_capacity(beacon::LEN);
    Beacon {
        tcp_port,
        router_id,
    }
    .encode(&mut beacon);
    let mut joined: Vec<u32> = Vec::new();
    let mut next = tokio::time::Instant::now();
    let mut sent = 0u32;
    let mut buf = [0u8; 128];
    loop {
        tokio::select! {
            _ = peering.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {
                // Upstream beacons every 60 s from start. Nodes that start together
                // would then miss each other's first beacon (sent before the other
                // joined the group) and wait a minute; we also beacon at 1, 2, 4, 8,
                // 16 and 32 s.
                sent += 1;
                next += if sent <= 6 { Duration::from_secs(1 << (sent - 1)) } else { PERIOD };
                for iface in qualifying_interfaces(&cfg.interfaces) {
                    if !joined.contains(&iface.index) {
                        match socket.join_multicast_v6(&GROUP, iface.index) {
                            Ok(()) => joined.push(iface.index),
                            Err(e) => tracing::debug!("joining {GROUP} on {}: {e}", iface.name),
                        }
                    }
                    let to = SocketAddrV6::new(GROUP, cfg.port, 0, iface.index);
                    if let Err(e) = socket.send_to(&beacon, to).await {
                        tracing::debug!("sending a beacon on {}: {e}", iface.name);
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let SocketAddr::V6(from) = from else { continue };
                // Only link-local senders, only whole beacons, never our own.
                if from.ip().segments()[..4] != [0xfe80, 0, 0, 0] {
                    continue;
                }
                let Ok(b) = Beacon::decode(&buf[..n]) else { continue };
                if b.router_id == router_id {
                    continue;
                }
                let peer = SocketAddr::V6(SocketAddrV6::new(*from.ip(), b.tcp_port, 0, from.scope_id()));
                // A peer already known under any kind (a static peer on the same
                // address, an inbound link from it) is not dialled again.
                if peering.registry.knows_socket(peer) {
                    continue;
                }
                let endpoint = if streams.is_private() {
                    Endpoint::tls(peer)
                } else {
                    Endpoint::tcp(peer)
                };
                let entry = match peering.registry.insert(
                    endpoint,
                    PeerKind::LinkLocalDiscovery,
                    ConnectionState::Connecting,
                ) {
                    Ok(entry) => entry,
                    Err(e) => {
                        tracing::debug!("not dialling discovered {endpoint}: {e}");
                        continue;
                    }
                };
                tracing::info!("discovered a peer at {endpoint}");
                let dial = tcp::dial(peering.clone(), streams.clone(), entry, Some(MAX_FAILURES));
                peering.tasks.spawn(dial);
            }
        }
    }
}

fn bind(port: u16, mark: Option<u32>) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.set_multicast_loop_v6(false)?;
    #[cfg(target_os = "linux")]
    if let Some(mark) = mark {
        socket.set_mark(mark)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mark;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    UdpSocket::from_std(socket.into())
}
