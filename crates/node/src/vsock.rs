//! vsock peers (Linux only): a listener on `VMADDR_CID_ANY` and a
//! redialling dialer per `vsock://CID:PORT` static peer. The stream carries the same
//! framing as TCP, without TLS, and the link costs 5.

use std::sync::Arc;
use std::time::Duration;

use mycelium_proto::endpoint::{Endpoint, EndpointAddr, VsockAddr};
use mycelium_proto::routing::LinkKind;
use tokio_vsock::{VsockListener, VsockStream, VMADDR_CID_ANY};

use crate::link;
use crate::peering::Peering;
use crate::registry::{ConnectionState, EntryHandle, PeerKind};

/// Static peers are redialled every 5 s, as TCP ones are.
const REDIAL: Duration = Duration::from_secs(5);
/// A connect that has not completed by then is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn ours(addr: tokio_vsock::VsockAddr) -> VsockAddr {
    VsockAddr {
        cid: addr.cid(),
        port: addr.port(),
    }
}

/// The vsock listener on `port` (any CID); `None` (logged) if it cannot be bound,
/// when the node runs without it.
pub(crate) fn bind(port: u32) -> Option<VsockListener> {
    match VsockListener::bind(tokio_vsock::VsockAddr::new(VMADDR_CID_ANY, port)) {
        Ok(l) => {
            tracing::info!("listening for vsock peers on port {port}");
            Some(l)
        }
        Err(e) => {
            tracing::error!("cannot listen on vsock port {port}: {e}; running without it");
            None
        }
    }
}

/// Accepts inbound vsock peers on `listener` until shutdown.
pub(crate) async fn serve(peering: Arc<Peering>, listener: VsockListener) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = peering.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accepting a vsock peer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !peering.admit_connection() {
            continue;
        }
        let remote = ours(remote);
        let entry = match peering.registry.insert(
            Endpoint::vsock(remote),
            PeerKind::Inbound,
            ConnectionState::Alive,
        ) {
            Ok(entry) => entry,
            Err(e) => {
                if e == crate::registry::PeerError::TooMany {
                    crate::stats::NodeStats::bump(&peering.stats().connections_over_limit);
                }
                tracing::debug!("refusing vsock peer {remote}: {e}");
                continue;
            }
        };
        let (peering, tasks) = (peering.clone(), peering.tasks.clone());
        tasks.spawn(async move {
            run_stream(&peering, stream, remote, &entry, "inbound").await;
            peering.registry.forget(&entry);
        });
    }
}

/// Runs a link over a connected vsock stream until it ends.
async fn run_stream(
    peering: &Arc<Peering>,
    stream: VsockStream,
    remote: VsockAddr,
    entry: &EntryHandle,
    origin: &'static str,
) {
    let local = stream
        .local_addr()
        .map_or_else(|_| "?".into(), |a| ours(a).to_string());
    let (r, w) = stream.into_split();
    let meta = link::LinkMeta {
        kind: LinkKind::Vsock,
        conn_id: format!("VSOCK {local} <-> {remote}"),
        remote: None,
        origin,
        entry: entry.clone(),
    };
    link::run(&peering.links, r, w, meta).await;
}

async fn connect(addr: VsockAddr) -> std::io::Result<VsockStream> {
    let to = tokio_vsock::VsockAddr::new(addr.cid, addr.port);
    tokio::time::timeout(CONNECT_TIMEOUT, VsockStream::connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Dials a static vsock peer, redialling after each link ends, until its registry
/// entry is removed or the node shuts down.
pub(crate) async fn dial(peering: Arc<Peering>, entry: EntryHandle) {
    let EndpointAddr::Vsock(addr) = entry.endpoint.addr() else {
        return;
    };
    loop {
        peering
            .registry
            .set_state(&entry, ConnectionState::Connecting);
        let attempt = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            r = connect(addr) => r,
        };
        match attempt {
            Ok(stream) => {
                peering.registry.set_state(&entry, ConnectionState::Alive);
                run_stream(&peering, stream, addr, &entry, "static").await;
            }
            Err(e) => tracing::debug!("connecting to vsock://{addr}: {e}"),
        }
        peering.registry.set_state(&entry, ConnectionState::Dead);
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}
