//! QUIC links: one UDP socket for listening and dialling, no ALPN,
//! a throw-away self-signed certificate, control packets on the one bidirectional
//! stream the dialler opens, data packets as DATAGRAM frames.
//!
//! Two departures from upstream, both invisible to it: a data packet too large for
//! the current datagram limit goes on the stream (upstream accepts that; upstream
//! itself kills the connection instead), and a datagram that is not a whole packet is
//! dropped and counted, not taken as a hang-up.
//!
//! Upstream neighbours still drop our QUIC links whenever they have a large packet
//! for us; [`crate::quic_flaps`] recognises them, and while a TCP link to the same
//! node is up we neither dial QUIC to them nor accept it from them for a while
//! ([`dial`], [`accept`] ask the core first). When our node closes a link it says
//! why in the close frame ([`CLOSE_REASON`]), so that our nodes' closes are never
//! taken for upstream's.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::routing::LinkKind;
use mycelium_proto::wire::{self, Packet};
use mycelium_proto::RouterId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::cmd::{CoreCmd, Query};
use crate::link;
use crate::path::DataPath;
use crate::peering::Peering;
use crate::quic_flaps::Admission;
use crate::registry::{ConnectionState, EntryHandle, LinkCounters, PeerError, PeerKind};
use crate::stats::NodeStats;

/// SNI upstream clients send; servers ignore it.
const SERVER_NAME: &str = "dummy.mycelium";
/// Time allowed for a handshake and the first stream, as upstream allows.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream redials a static peer every 5 s.
const REDIAL: Duration = Duration::from_secs(5);
/// While QUIC to a peer is paused, how often the dialler asks again (a pause ends
/// early when the TCP link to the peer goes down).
const PAUSE_RECHECK: Duration = Duration::from_secs(5);
/// The reason our node gives when it closes a QUIC link (code 0). Upstream closes
/// with no reason at all; a reason tells a neighbour of ours that this close is not
/// upstream's datagram-size drop; upstream ignores what a close says.
pub(crate) const CLOSE_REASON: &[u8] = b"link closed";

/// Asks the core whether QUIC to or from `addr` may go ahead now (going ahead if
/// the core is gone: the node is stopping then, and the caller's cancellation
/// comes next).
async fn admission(peering: &Peering, addr: SocketAddr) -> Admission {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let query = CoreCmd::Query(Query::QuicAdmission(addr, tx));
    if peering.links.to_core.send(query).await.is_err() {
        return Admission::Go;
    }
    rx.await.unwrap_or(Admission::Go)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate, as upstream does, but still checks that the handshake
/// was signed with the key of the certificate presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_uni_streams(0u8.into())
        .max_concurrent_bidi_streams(5u8.into())
        .max_idle_timeout(Some(Duration::from_secs(60).try_into().expect("60 s fits")))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .datagram_receive_buffer_size(Some(16 << 20))
        .stream_receive_window((10u32 << 20).into())
        .send_window(80 << 20)
        // Upstream starts at 1500 bytes of UDP payload, more than a 1500-byte link
        // carries (1452 over IPv6, 1472 over IPv4): the kernel refuses every
        // full-size packet, and the datagrams packed into it are lost, about one
        // in 150 under a burst of small ones. We start at QUIC's own minimum and
        // let path MTU discovery climb (to 1452); the peer cannot tell.
        .initial_mtu(1200);
    t
}

/// The QUIC endpoint on `[::]:port`, configured as upstream's (no ALPN, any
/// certificate, datagrams on).
pub(crate) fn endpoint(
    port: u16,
    router_id: RouterId,
    mark: Option<u32>,
) -> std::io::Result<quinn::Endpoint> {
    let err = std::io::Error::other;
    // Upstream's certificate: ECDSA P-256, the router id as the one DNS name,
    // CN "rcgen self signed cert", valid 1975 to 4096.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| err(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![router_id.to_string()])
        .map_err(|e| err(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rcgen self signed cert");
    params.not_before = rcgen::date_time_ymd(1975, 1, 1);
    params.not_after = rcgen::date_time_ymd(4096, 1, 1);
    let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));

    let server_tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .map_err(|e| err(e.to_string()))?;
    let server_quic = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
        .map_err(|e| err(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
    server.transport_config(Arc::new(transport()));

    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth();
    client_tls.alpn_protocols.clear();
    let client_quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
        .map_err(|e| err(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_quic));
    client.transport_config(Arc::new(transport()));

    let mut endpoint_cfg = quinn::EndpointConfig::default();
    // Let upstream peers send us datagrams as large as they can.
    endpoint_cfg
        .max_udp_payload_size(65_527)
        .map_err(|e| err(e.to_string()))?;

    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_only_v6(false)?;
    #[cfg(target_os = "linux")]
    if let Some(mark) = mark {
        socket.set_mark(mark)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = mark;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    let mut endpoint = quinn::Endpoint::new(
        endpoint_cfg,
        Some(server),
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

fn quic_kind(addr: &SocketAddr) -> LinkKind {
    let ipv4 = match addr {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some(),
    };
    LinkKind::Quic { ipv4 }
}

/// Handshakes in progress at once, as upstream allows; more are refused.
const MAX_HANDSHAKES: usize = 10;

/// Accepts inbound QUIC peers until shutdown.
pub(crate) async fn accept(peering: Arc<Peering>, endpoint: quinn::Endpoint) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let incoming = tokio::select! {
            _ = peering.shutdown.cancelled() => return,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
        };
        if !peering.admit_connection() {
            incoming.refuse();
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let remote = incoming.remote_address();
        if let Admission::Paused(left) = admission(&peering, remote).await {
            // A neighbour that drops QUIC links whenever it has a large packet for
            // us, reachable over TCP: its traffic stays there (quic_flaps).
            NodeStats::bump(&peering.stats().quic_paused_refusals);
            tracing::debug!(
                "refusing QUIC from {remote}: paused for {} s more",
                left.as_secs()
            );
            incoming.refuse();
            continue;
        }
        let entry = match peering.registry.insert(
            Endpoint::quic(remote),
            PeerKind::Inbound,
            ConnectionState::Connecting,
        ) {
            Ok(entry) => entry,
            Err(e) => {
                if e == PeerError::TooMany {
                    NodeStats::bump(&peering.stats().connections_over_limit);
                }
                tracing::debug!("refusing QUIC peer {remote}: {e}");
                incoming.refuse();
                continue;
            }
        };
        let (peering, tasks) = (peering.clone(), peering.tasks.clone());
        tasks.spawn(async move {
            let setup = async {
                let conn = incoming.await?;
                let (send, recv) = conn.accept_bi().await?;
                Ok::<_, quinn::ConnectionError>((conn, send, recv))
            };
            let result = tokio::time::timeout(ACCEPT_TIMEOUT, setup).await;
            drop(permit);
            match result {
                Ok(Ok((conn, send, recv))) => {
                    peering.registry.set_state(&entry, ConnectionState::Alive);
                    run(&peering, conn, send, recv, &entry, "inbound").await;
                }
                Ok(Err(e)) => tracing::debug!("QUIC peer {remote} failed to set up: {e}"),
                Err(_) => tracing::debug!("QUIC peer {remote} did not open a stream in time"),
            }
            peering.registry.forget(&entry);
        });
    }
}

/// Keeps a static QUIC peer connected until its registry entry is removed or the
/// node shuts down.
pub(crate) async fn dial(peering: Arc<Peering>, endpoint: quinn::Endpoint, entry: EntryHandle) {
    let Some(addr) = entry.endpoint.socket_addr() else {
        return;
    };
    loop {
        // Not while QUIC to it is paused; the entry stays `Dead` meanwhile.
        while let Admission::Paused(left) = admission(&peering, addr).await {
            tokio::select! {
                _ = entry.cancel.cancelled() => return,
                _ = tokio::time::sleep(left.min(PAUSE_RECHECK)) => {}
            }
        }
        peering
            .registry
            .set_state(&entry, ConnectionState::Connecting);
        let attempt = async {
            let conn = endpoint
                .connect(addr, SERVER_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((conn, send, recv))
        };
        let attempt = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            r = tokio::time::timeout(ACCEPT_TIMEOUT, attempt) => r,
        };
        match attempt {
            Ok(Ok((conn, send, recv))) => {
                peering.registry.set_state(&entry, ConnectionState::Alive);
                run(&peering, conn, send, recv, &entry, "static").await;
            }
            Ok(Err(e)) => tracing::debug!("connecting to quic://{addr}: {e}"),
            Err(_) => tracing::debug!("connecting to quic://{addr}: timed out"),
        }
        peering.registry.set_state(&entry, ConnectionState::Dead);
        tokio::select! {
            _ = entry.cancel.cancelled() => return,
            _ = tokio::time::sleep(REDIAL) => {}
        }
    }
}

async fn run(
    peering: &Arc<Peering>,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    entry: &EntryHandle,
    origin: &'static str,
) {
    let remote = conn.remote_address();
    let meta = link::LinkMeta {
        kind: quic_kind(&remote),
        conn_id: format!("QUIC -> {remote}"),
        remote: Some(remote),
        origin,
        entry: entry.clone(),
    };
    let data_packets = Arc::new(AtomicU64::new(0));
    let datagrams = peering.tasks.spawn(read_datagrams(
        peering.links.path.clone(),
        conn.clone(),
        entry.counters.clone(),
        data_packets.clone(),
    ));
    link::run_with_datagrams(
        &peering.links,
        recv,
        send,
        meta,
        Some(conn.clone()),
        data_packets,
    )
    .await;
    datagrams.abort();
    conn.close(0u32.into(), CLOSE_REASON);
}

/// Data packets arriving as datagrams: one whole packet each.
async fn read_datagrams(
    path: Arc<DataPath>,
    conn: quinn::Connection,
    counters: Arc<LinkCounters>,
    data_packets: Arc<AtomicU64>,
) {
    let mut local = path.local();
    while let Ok(datagram) = conn.read_datagram().await {
        counters.received(datagram.len());
        counters.received_packets(1);
        data_packets.fetch_add(1, Ordering::Relaxed);
        let packet_len = match wire::decode(&datagram) {
            Ok(d) if matches!(d.packet, Packet::Data(_)) => d.len,
            _ => {
                NodeStats::bump(&path.stats.malformed);
                continue;
            }
        };
        let mut datagram = datagram;
        datagram.truncate(packet_len);
        // Opened in place when quinn hands us the only reference, copied otherwise.
        let packet = datagram
            .try_into_mut()
            .unwrap_or_else(|shared_bytes| BytesMut::from(&shared_bytes[..]));
        let snapshot = path.snapshot.load();
        path.handle_data(&mut local, &snapshot, packet).await;
        path.finish(&mut local).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::quic_flaps::CloseCause;
    use mycelium_proto::SecretKey;

    fn node_endpoint() -> quinn::Endpoint {
        let key = SecretKey::generate(&mut rand::thread_rng()).public_key();
        endpoint(0, RouterId::new(key, [0; 6]), None).unwrap()
    }

    /// A connection from `a` to `b`: (a's end, b's end).
    async fn connect(
        a: &quinn::Endpoint,
        b: &quinn::Endpoint,
    ) -> (quinn::Connection, quinn::Connection) {
        let port = b.local_addr().unwrap().port();
        let to = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let connecting = a.connect(to, SERVER_NAME).unwrap();
        let incoming = b.accept().await.unwrap();
        let (ours, theirs) = tokio::join!(connecting, incoming);
        (ours.unwrap(), theirs.unwrap())
    }

    /// What our side sees when the other drops its connection (every handle gone,
    /// as upstream does when a datagram does not fit) is told apart from a close
    /// of ours, which gives a reason, and from our own close.
    #[tokio::test]
    async fn how_a_connection_ended_is_told_apart() {
        let (a, b) = (node_endpoint(), node_endpoint());
        let wait = Duration::from_secs(5);

        let (ours, theirs) = connect(&a, &b).await;
        assert_eq!(CloseCause::of(&ours), CloseCause::Local, "still open");
        drop(theirs);
        tokio::time::timeout(wait, ours.closed()).await.unwrap();
        assert_eq!(CloseCause::of(&ours), CloseCause::PeerDropped);

        let (ours, theirs) = connect(&a, &b).await;
        theirs.close(0u32.into(), CLOSE_REASON);
        tokio::time::timeout(wait, ours.closed()).await.unwrap();
        assert_eq!(CloseCause::of(&ours), CloseCause::PeerClosed);
        // Closing our end afterwards overwrites what is known: read it first.
        ours.close(0u32.into(), CLOSE_REASON);
        assert_eq!(CloseCause::of(&ours), CloseCause::Local);

        let (ours, _theirs) = connect(&a, &b).await;
        ours.close(0u32.into(), CLOSE_REASON);
        assert_eq!(CloseCause::of(&ours), CloseCause::Local);
    }
}
