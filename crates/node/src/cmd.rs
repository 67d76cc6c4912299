//! What the node's tasks hand each other: the router task's inputs ([`CoreCmd`]),
//! the packets it hands back to the data plane ([`Work`]), and message frames for
//! the bus ([`InboundFrame`]).

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mycelium_proto::routing::{LinkKind, PeerId};
use mycelium_proto::wire::Tlv;
use mycelium_proto::PublicKey;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::control_queue::ControlTx;
use crate::quic_flaps::{Admission, QuicLinkEnd};
use crate::snapshot::LinkTx;
use crate::views::{RouterView, RoutesView};

/// A packet the forwarding snapshot had no route for, with its destination.
pub(crate) enum Unrouted {
    /// From our TUN: an IPv6 packet of `len` bytes at `HEADROOM` in `buf`.
    Local {
        buf: BytesMut,
        len: usize,
        dst: Ipv6Addr,
    },
    /// A whole data packet in transit, as it arrived.
    Transit { pkt: BytesMut, dst: Ipv6Addr },
    /// A message frame of ours at `HEADROOM` in `buf`.
    Message {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        buf: BytesMut,
    },
}

impl Unrouted {
    /// Where the packet goes.
    pub(crate) fn dst(&self) -> Ipv6Addr {
        match self {
            Self::Local { dst, .. } | Self::Transit { dst, .. } | Self::Message { dst, .. } => *dst,
        }
    }
}

/// Inputs of the router task.
pub(crate) enum CoreCmd {
    LinkUp {
        peer: PeerId,
        kind: LinkKind,
        conn_id: String,
        /// The peer's socket address (none for vsock): names the node at the other
        /// end while its key is not known.
        remote: Option<SocketAddr>,
        data: LinkTx,
        control: ControlTx,
        close: CancellationToken,
    },
    LinkDown {
        peer: PeerId,
        /// How a QUIC link ended; `None` for other links.
        quic: Option<QuicLinkEnd>,
    },
    /// Control TLVs read from one link, in order.
    Control {
        peer: PeerId,
        tlvs: Vec<Tlv>,
        /// One permit per TLV, given back when the command is dropped.
        permit: OwnedSemaphorePermit,
    },
    /// A packet to hold until its destination has a route.
    Unrouted(Unrouted),
    /// A data packet for us from a source whose key we do not know yet.
    UnknownSource { src: Ipv6Addr, packet: BytesMut },
    /// A question from the API.
    Query(Query),
}

/// Questions the API asks the router task; each carries where the answer goes.
pub(crate) enum Query {
    Routes(oneshot::Sender<RoutesView>),
    KeyFor(Ipv6Addr, oneshot::Sender<Option<PublicKey>>),
    Router(oneshot::Sender<RouterView>),
    /// For the DNS forwarder: per address, the metric of the selected route to its
    /// `/64` including our link cost, when finite. With `request_routes`, an
    /// address whose `/64` has no entry at all gets a route request (the only part
    /// of the forwarder peers see).
    DnsCandidates {
        addrs: Vec<Ipv6Addr>,
        request_routes: bool,
        reply: oneshot::Sender<Vec<Option<u16>>>,
    },
    /// Whether QUIC to or from this address may go ahead now (see
    /// [`crate::quic_flaps`]).
    QuicAdmission(SocketAddr, oneshot::Sender<Admission>),
    /// The addresses QUIC is paused for, with the time left.
    QuicPauses(oneshot::Sender<Vec<(SocketAddr, Duration)>>),
}

/// Packets handed to the data plane's worker task: what the router task held, and
/// packets for the TUN device from tasks that do not write it themselves.
pub(crate) enum Work {
    /// Its destination has a route now: send it.
    Retry(Unrouted),
    /// A data packet for us whose source's key is known now: open it.
    Deliver(BytesMut),
    /// A packet from our TUN (`len` bytes at `HEADROOM`) whose destination has no
    /// route: "no route" goes back to the TUN.
    NoRoute { buf: BytesMut, len: usize },
    /// A transit packet whose destination is unreachable: reported to its source.
    Unreachable(BytesMut),
    /// A packet for the TUN device (IPv6 at `HEADROOM`).
    ToTun(BytesMut),
}

/// A message frame the data plane opened: from `src` (whose key is `key`) to our
/// address `dst`.
pub(crate) struct InboundFrame {
    pub(crate) src: Ipv6Addr,
    pub(crate) dst: Ipv6Addr,
    pub(crate) key: PublicKey,
    pub(crate) frame: Bytes,
}
