//! vsock peers (PROTOCOL.md §2.5, Linux only): a listener on `VMADDR_CID_ANY` and a
//! redialling dialer per `vsock://CID:PORT` static peer. The stream carries the same
//! framing as TCP, without TLS, and the link costs 5.

use std::sync::Arc;
use std::time::Duration;

use mycelium_proto::endpoint::{Endpoint, EndpointAddr, VsockAddr};
use mycelium_proto::routing::LinkKind;
use tokio_vsock::{VsockListener, VsockStream, VMADDR_CID_ANY};

use crate::core::Shared;
use crate::link;
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

/// Accepts vsock peers on `port` (any CID) until shutdown. A port that cannot be
/// bound leaves the node running without the listener.
pub(crate) async fn listen(shared: Arc<Shared>, port: u32) {
    let listener = match VsockListener::bind(tokio_vsock::VsockAddr::new(VMADDR_CID_ANY, port)) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on vsock port {port}: {e}; running without it");
            return;
        }
    };
    tracing::info!("listening for vsock peers on port {port}");
    loop {
        let (stream, remote) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accepting a vsock peer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !shared.admit_connection() {
            continue;
        }
        let remote = ours(remote);
        let entry = match shared.registry.insert(
            Endpoint::vsock(remote),
            PeerKind::Inbound,
            ConnectionState::Alive,
        ) {
            Ok(entry) => entry,
            Err(e) => {
                if e == crate::registry::PeerError::TooMany {
                    crate::stats::NodeStats::bump(&shared.stats.connections_over_limit);
                }
                tracing::debug!("refusing vsock peer {remote}: {e}");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            run_stream(&shared, stream, remote, &entry, "inbound").await;
            shared.registry.forget(&entry);
        });
    }
}

/// Runs a link over a connected vsock stream until it ends.
async fn run_stream(
    shared: &Arc<Shared>,
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
        origin,
        entry: entry.clone(),
    };
    link::run(shared.clone(), r, w, meta).await;
}

async fn connect(addr: VsockAddr) -> std::io::Result<VsockStream> {
    let to = tokio_vsock::VsockAddr::new(addr.cid, addr.port);
    tokio::time::timeout(CONNECT_TIMEOUT, VsockStream::connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Dials a static vsock peer, redialling after each link ends, until its registry
/// entry is removed or the node shuts down.
pub(crate) async fn dial(shared: Arc<Shared>, entry: EntryHandle) {
    let EndpointAddr::Vsock(addr) = entry.endpoint.addr() else {
        return;
    };
    loop {
        shared
            .registry
            .set_state(&entry, ConnectionState::Connecting);
        let attempt = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            r = connect(addr) => r,
        };
        match attempt {
            Ok(stream) => {
                shared.registry.set_state(&entry, ConnectionState::Alive);
                run_stream(&shared, stream, addr, &entry, "static").await;
            }
            Err(e) => tracing::debug!("connecting to vsock://{addr}: {e}"),
        }
        shared.registry.set_state(&entry, ConnectionState::Dead);
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}
