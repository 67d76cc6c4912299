//! Prometheus metrics on `--metrics-api-address`: `GET /metrics` in the
//! OpenMetrics text format.
//!
//! Nothing is collected for metrics alone: every scrape reads the node's own
//! counters (data plane, control TLVs, links, peers, routing table) and renders them.
//! Upstream's family names are kept where we count the same thing; the rest are the
//! figures an operator needs: peers by state, bytes and packets per peer, table
//! sizes, decryption failures and drops by reason.

use std::future::Future;
use std::io;
use std::sync::atomic::AtomicU64;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use mycelium_node::{ConnectionState, Node, NodeStats, PeerKind, TLV_TYPES};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

type Labels = Vec<(&'static str, String)>;

/// Serves `/metrics` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let node = node.clone();
            async move { scrape(&node).await }
        }),
    );
    mycelium_api::httpd::serve(
        listener,
        app,
        mycelium_api::httpd::Limits::default(),
        shutdown,
    )
    .await
}

async fn scrape(node: &Node) -> axum::response::Response {
    let registry = collect(node).await;
    let mut text = String::new();
    match encode(&mut text, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response(),
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64, AtomicU64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn value(c: &AtomicU64) -> u64 {
    NodeStats::get(c)
}

/// A registry holding the node's figures as they are now.
pub(crate) async fn collect(node: &Node) -> Registry {
    let mut r = Registry::default();
    let stats = node.stats();
    let router = node.router().await;

    // Upstream's families, where we count the same events.
    let tlvs = Family::<Labels, Counter>::default();
    for (i, name) in TLV_TYPES.iter().enumerate() {
        tlvs.get_or_create(&vec![("tlv_type", (*name).to_owned())])
            .inc_by(value(&stats.tlvs[i]));
    }
    r.register(
        "mycelium_router_processed_tlvs",
        "Control TLVs handed to the router, by type",
        tlvs,
    );
    let received: u64 = stats.tlvs.iter().map(value).sum();
    counter(
        &mut r,
        "mycelium_router_received_tlvs",
        "Control TLVs received",
        received,
    );
    counter(
        &mut r,
        "mycelium_router_tlv_discarded",
        "Control packets skipped as invalid or unknown",
        value(&stats.control_ignored),
    );
    counter(
        &mut r,
        "mycelium_router_peer_added",
        "Links that came up",
        value(&stats.links_up),
    );
    counter(
        &mut r,
        "mycelium_router_peer_removed",
        "Links that went down",
        value(&stats.links_down),
    );
    counter(
        &mut r,
        "mycelium_tls_handshake_failures",
        "TLS handshakes with peers that failed (private networks: another network's name or key)",
        value(&stats.tls_handshake_failures),
    );
    counter(
        &mut r,
        "mycelium_router_peer_died",
        "Neighbours closed for sending no IHU for too long",
        value(&stats.peers_died),
    );
    counter(
        &mut r,
        "mycelium_router_update_denied",
        "Updates refused by the subnet filters or for our own subnet",
        router.stats.updates_filtered + router.stats.updates_for_own_subnet,
    );
    counter(
        &mut r,
        "mycelium_router_update_dead_peer",
        "TLVs from neighbours the router does not know",
        router.stats.tlvs_from_unknown_peers,
    );

    // Peers.
    let peers = node.peers();
    gauge(
        &mut r,
        "mycelium_peer_manager_known_peers",
        "Peers the node knows",
        peers.len(),
    );
    let by_state = Family::<Labels, Gauge>::default();
    for state in ["alive", "connecting", "dead"] {
        let _ = by_state.get_or_create(&vec![("state", state.to_owned())]);
    }
    let tx_bytes = Family::<Labels, Counter>::default();
    let rx_bytes = Family::<Labels, Counter>::default();
    let tx_packets = Family::<Labels, Counter>::default();
    let rx_packets = Family::<Labels, Counter>::default();
    for p in &peers {
        let state = match p.state {
            ConnectionState::Alive => "alive",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Dead => "dead",
        };
        by_state
            .get_or_create(&vec![("state", state.to_owned())])
            .inc();
        let kind = match p.kind {
            PeerKind::Static => "static",
            PeerKind::LinkLocalDiscovery => "linkLocalDiscovery",
            PeerKind::Inbound => "inbound",
        };
        let labels = vec![
            ("endpoint", p.endpoint.to_string()),
            ("type", kind.to_owned()),
        ];
        tx_bytes.get_or_create(&labels).inc_by(p.tx_bytes);
        rx_bytes.get_or_create(&labels).inc_by(p.rx_bytes);
        tx_packets.get_or_create(&labels).inc_by(p.tx_packets);
        rx_packets.get_or_create(&labels).inc_by(p.rx_packets);
    }
    r.register("mycelium_peers", "Peers by connection state", by_state);
    r.register(
        "mycelium_peer_tx_bytes",
        "Bytes written to a peer, framing included",
        tx_bytes,
    );
    r.register(
        "mycelium_peer_rx_bytes",
        "Bytes read from a peer, framing included",
        rx_bytes,
    );
    r.register(
        "mycelium_peer_tx_packets",
        "Packets written to a peer",
        tx_packets,
    );
    r.register(
        "mycelium_peer_rx_packets",
        "Packets read from a peer",
        rx_packets,
    );

    // Neighbours that drop QUIC links whenever they have a large packet for us
    // (upstream v0.7.10 does): the peer list cannot say why such a QUIC peer is
    // not connected (the API's peer object has a fixed set of fields), so the
    // metrics do.
    counter(
        &mut r,
        "mycelium_quic_oversize_drops",
        "QUIC links a neighbour closed without a reason right after they opened or carried \
         data: how upstream drops a link when a packet for us does not fit a datagram",
        value(&stats.quic_oversize_drops),
    );
    counter(
        &mut r,
        "mycelium_quic_oversize_neighbours",
        "Neighbours recognised as dropping QUIC links whenever they have a large packet for us",
        value(&stats.quic_oversize_neighbours),
    );
    counter(
        &mut r,
        "mycelium_quic_paused_refusals",
        "Inbound QUIC connections refused while QUIC to their address was paused",
        value(&stats.quic_paused_refusals),
    );
    let pauses = node.quic_pauses().await;
    gauge(
        &mut r,
        "mycelium_quic_paused_peers",
        "QUIC peers neither dialled nor accepted for now: they drop QUIC links when they \
         have large packets for us, and a TCP link to them carries their traffic",
        pauses.len(),
    );
    let left = Family::<Labels, Gauge>::default();
    for (endpoint, d) in &pauses {
        left.get_or_create(&vec![("endpoint", endpoint.to_string())])
            .set(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    }
    r.register(
        "mycelium_quic_pause_seconds",
        "Seconds left in the pause of QUIC to a peer, by endpoint",
        left,
    );

    // The routing table.
    gauge(
        &mut r,
        "mycelium_routes_selected",
        "Subnets with a selected route",
        router.selected,
    );
    gauge(&mut r, "mycelium_routes", "Route entries", router.routes);
    gauge(
        &mut r,
        "mycelium_subnets",
        "Subnets known or being looked for",
        router.subnets,
    );
    gauge(
        &mut r,
        "mycelium_neighbours",
        "Neighbours the router knows",
        router.neighbours,
    );
    gauge(
        &mut r,
        "mycelium_pending_packets",
        "Packets waiting for a route or a key",
        router.pending_packets,
    );
    if let Some(capacity) = router.leaf_capacity {
        gauge(
            &mut r,
            "mycelium_leaf_cache_subnets",
            "Leaf mode: subnets the route cache holds",
            router.subnets,
        );
        gauge(
            &mut r,
            "mycelium_leaf_cache_capacity",
            "Leaf mode: subnets the route cache holds at most",
            capacity,
        );
        counter(
            &mut r,
            "mycelium_leaf_cache_hits",
            "Leaf mode: packets sent to or received from a subnet in the route cache",
            router.stats.leaf_hits,
        );
        counter(
            &mut r,
            "mycelium_leaf_cache_misses",
            "Leaf mode: packets that found no route in the cache and waited for one",
            router.stats.leaf_misses,
        );
        counter(
            &mut r,
            "mycelium_leaf_cache_evictions",
            "Leaf mode: subnets forgotten to make room for others",
            router.stats.leaf_evictions,
        );
        counter(
            &mut r,
            "mycelium_leaf_updates_ignored",
            "Leaf mode: updates dropped for subnets not in the cache",
            router.stats.leaf_updates_ignored,
        );
    }
    counter(
        &mut r,
        "mycelium_router_updates_over_limit",
        "Updates refused because a routing table bound was reached",
        router.stats.updates_over_limit,
    );

    // The data plane.
    counter(
        &mut r,
        "mycelium_tun_rx_packets",
        "Packets read from the TUN device",
        value(&stats.tun_rx),
    );
    counter(
        &mut r,
        "mycelium_tun_tx_packets",
        "Packets written to the TUN device",
        value(&stats.tun_tx),
    );
    counter(
        &mut r,
        "mycelium_forwarded_packets",
        "Data packets forwarded for others",
        value(&stats.forwarded),
    );
    counter(
        &mut r,
        "mycelium_decryption_failures",
        "Data packets addressed to us that failed to decrypt",
        value(&stats.decrypt_failures),
    );
    let dropped = Family::<Labels, Counter>::default();
    for (reason, c) in [
        ("link_queue_full", &stats.link_queue_full),
        ("no_route", &stats.no_route),
        ("hop_limit", &stats.hop_limit_exceeded),
        ("malformed", &stats.malformed),
        ("decryption_failed", &stats.decrypt_failures),
    ] {
        dropped
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc_by(value(c));
    }
    r.register(
        "mycelium_dropped_packets",
        "Data packets dropped, by reason",
        dropped,
    );

    // Every defence against a hostile or broken peer, one label each (README,
    // "Security").
    let defences = Family::<Labels, Counter>::default();
    let rs = &router.stats;
    for (defence, n) in [
        ("framing_error", value(&stats.framing_errors)),
        ("control_packet_skipped", value(&stats.control_ignored)),
        ("control_rate_throttled", value(&stats.control_throttled)),
        ("update_filtered", rs.updates_filtered),
        ("update_for_own_subnet", rs.updates_for_own_subnet),
        ("update_over_limit", rs.updates_over_limit),
        ("tlv_from_unknown_peer", rs.tlvs_from_unknown_peers),
        ("route_request_too_old", rs.route_requests_too_old),
        ("source_evicted", rs.sources_evicted),
        ("decryption_failed", value(&stats.decrypt_failures)),
        ("spoofed_inner_address", value(&stats.spoofed)),
        ("replayed_packet", value(&stats.replayed)),
        ("malformed_packet", value(&stats.malformed)),
        ("hop_limit_exceeded", value(&stats.hop_limit_exceeded)),
        ("link_queue_full", value(&stats.link_queue_full)),
        ("message_bus_busy", value(&stats.bus_queue_full)),
        (
            "connection_rate_limited",
            value(&stats.connections_rate_limited),
        ),
        (
            "connection_over_limit",
            value(&stats.connections_over_limit),
        ),
        ("tls_handshake_failed", value(&stats.tls_handshake_failures)),
    ] {
        defences
            .get_or_create(&vec![("defence", defence.to_owned())])
            .inc_by(n);
    }
    let bus = node.messages().stats().await.unwrap_or_default();
    // The message bus's own traffic.
    counter(
        &mut r,
        "mycelium_messages_pushed",
        "Messages accepted for sending",
        bus.pushed,
    );
    counter(
        &mut r,
        "mycelium_messages_delivered",
        "Messages received complete",
        bus.delivered,
    );
    counter(
        &mut r,
        "mycelium_message_retransmissions",
        "Message frames sent again after a retransmission timeout",
        bus.retransmissions,
    );
    for (defence, n) in [
        ("message_frame_malformed", bus.malformed),
        ("message_refused_by_topic_policy", bus.refused_by_policy),
        ("message_refused_too_large", bus.refused_too_large),
        ("message_refused_inbox_full", bus.refused_full),
        ("message_refused_partial_limit", bus.refused_partial_limit),
        ("message_chunk_invalid", bus.bad_chunks),
        ("message_done_invalid", bus.bad_dones),
        ("message_frame_duplicate", bus.duplicates),
    ] {
        defences
            .get_or_create(&vec![("defence", defence.to_owned())])
            .inc_by(n);
    }
    r.register(
        "mycelium_defences",
        "Hostile or broken input refused, by the defence that refused it",
        defences,
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use mycelium_node::NodeConfig;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn a_router_only_node_renders_every_family() {
        let shutdown = CancellationToken::new();
        let cfg = NodeConfig {
            peers: vec!["tcp://127.0.0.1:1".parse().unwrap()],
            ..NodeConfig::router_only(mycelium_proto::SecretKey::from_bytes([7; 32]))
        };
        let (node, done) = mycelium_node::start(cfg, shutdown.clone()).await.unwrap();
        let mut text = String::new();
        encode(&mut text, &collect(&node).await).unwrap();
        for family in [
            "mycelium_router_processed_tlvs_total{tlv_type=\"hello\"} 0",
            "mycelium_peer_manager_known_peers 1",
            "mycelium_peer_tx_bytes_total{endpoint=\"tcp://127.0.0.1:1\",type=\"static\"}",
            "mycelium_dropped_packets_total{reason=\"no_route\"} 0",
            "mycelium_routes_selected 0",
            "mycelium_defences_total{defence=\"replayed_packet\"} 0",
            "mycelium_defences_total{defence=\"update_for_own_subnet\"} 0",
            "mycelium_quic_oversize_drops_total 0",
            "mycelium_quic_oversize_neighbours_total 0",
            "mycelium_quic_paused_peers 0",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
        shutdown.cancel();
        done.await;
    }
}
