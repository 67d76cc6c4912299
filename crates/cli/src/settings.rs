//! The node's settings, resolved from the command line, the config file and the
//! built-in defaults.
//!
//! [`resolve`] applies upstream's precedence rules, quirks included, so a node
//! configured for upstream starts with the same settings here:
//!
//! * `peers`: the command line's list if it is not empty, else the config file's;
//! * ports, `api_addr`, `jsonrpc_addr`, `update_workers`: a command-line value equal
//!   to the built-in default counts as not given, so the config file wins even over
//!   an explicit `-t 9651`;
//! * flags: set if set on the command line or in the config file;
//! * everything else: the command line if given, else the config file.
//!
//! [`NodeSettings`] is what the node is started with; nothing here starts anything.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mycelium_proto::endpoint::Endpoint;
use serde::{Serialize, Serializer};

use mycelium_node::DnsConfig;

use crate::args::{CdnArgs, Cli, DnsArgs};
use crate::config::ConfigFile;
#[cfg(feature = "private")]
use crate::options::parse_network_name;
use crate::options::{
    limits, DEFAULT_API_ADDR, DEFAULT_JSONRPC_ADDR, DEFAULT_PEER_DISCOVERY_PORT,
    DEFAULT_QUIC_LISTEN_PORT, DEFAULT_TCP_LISTEN_PORT, DEFAULT_TUN_NAME, DEFAULT_UPDATE_WORKERS,
};

/// Everything a node needs to know to start, fully resolved.
///
/// Serialises to JSON for `--print-settings`; endpoints appear in their URI form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NodeSettings {
    /// Static peers, dialled and redialled for the node's lifetime.
    #[serde(serialize_with = "as_uris")]
    pub(crate) peers: Vec<Endpoint>,
    /// TCP (TLS in private mode) listen port on `[::]`.
    pub(crate) tcp_listen_port: u16,
    /// UDP port of the QUIC socket, for listening and dialling.
    pub(crate) quic_listen_port: u16,
    /// No QUIC listener, no outbound QUIC.
    pub(crate) disable_quic: bool,
    /// UDP port of link-local discovery.
    pub(crate) peer_discovery_port: u16,
    /// No discovery beacons sent or heard.
    pub(crate) disable_peer_discovery: bool,
    /// Interfaces discovery is limited to; empty means every qualifying interface.
    /// Always empty when discovery is disabled.
    pub(crate) peer_discovery_interfaces: Vec<String>,
    /// HTTP API listen address.
    pub(crate) api_addr: SocketAddr,
    /// JSON-RPC listen address.
    pub(crate) jsonrpc_addr: SocketAddr,
    /// Run without a TUN device.
    pub(crate) no_tun: bool,
    /// No segmentation offload on the TUN device (Linux).
    pub(crate) no_tun_offload: bool,
    /// TUN device name.
    pub(crate) tun_name: String,
    /// Prometheus `/metrics` listen address, if enabled.
    pub(crate) metrics_api_address: Option<SocketAddr>,
    /// File holding the APIs' bearer token, if they require one.
    pub(crate) api_token_file: Option<PathBuf>,
    /// Linux `SO_MARK` for every peer socket.
    pub(crate) firewall_mark: Option<u32>,
    /// Parallel route update processors, 1 to [`crate::options::MAX_UPDATE_WORKERS`].
    pub(crate) update_workers: usize,
    /// Topic ACL file.
    pub(crate) topic_config: Option<PathBuf>,
    /// CDN helper cache directory, if the helper is enabled.
    pub(crate) cdn_cache: Option<PathBuf>,
    /// The CDN helper's listen address, allow-list and timeouts.
    pub(crate) cdn: CdnSettings,
    /// Port to accept vsock peers on.
    pub(crate) vsock_listen_port: Option<u32>,
    /// Run the DNS forwarder on UDP and TCP `[::]:53`.
    pub(crate) enable_dns: bool,
    /// The DNS forwarder's addresses and timers (command line only, hidden).
    pub(crate) dns: DnsSettings,
    /// Serve the SOCKS5 forwarder to other hosts too.
    pub(crate) proxy_allow_remote: bool,
    /// Inbound peers kept at once.
    pub(crate) max_inbound_peers: u64,
    /// Inbound connection attempts accepted a second (0: no limit).
    pub(crate) max_connections_per_second: u64,
    /// Data packets queued per link.
    pub(crate) link_data_queue: u64,
    /// Control TLVs read per link a second (0: no limit).
    pub(crate) link_control_rate: u64,
    /// Subnets in the routing table.
    pub(crate) max_routes: u64,
    /// Routes learned from one neighbour.
    pub(crate) max_routes_per_peer: u64,
    /// Leaf mode: keep only the routes in use.
    pub(crate) leaf: bool,
    /// Subnets a leaf keeps routes for.
    pub(crate) leaf_routes: u64,
    /// Upstream's routing timers (command line only, hidden).
    pub(crate) upstream_timers: bool,
    /// Upstream's QUIC datagram sending (command line only, hidden).
    pub(crate) upstream_quic_datagrams: bool,
    /// No pausing of QUIC to neighbours that drop it (command line only, hidden).
    pub(crate) no_quic_pause: bool,
    /// Private network name (TLS-PSK identity), 2 to 64 bytes.
    #[cfg(feature = "private")]
    pub(crate) network_name: Option<String>,
    /// File holding the private network's pre-shared key.
    #[cfg(feature = "private")]
    pub(crate) network_key_file: Option<PathBuf>,
}

#[cfg(feature = "private")]
impl NodeSettings {
    /// The private network's name and key file, if both are known: private mode
    /// (QUIC off, TCP becomes TLS). Either alone means public mode.
    pub(crate) fn private_network(&self) -> Option<(&str, &std::path::Path)> {
        Some((
            self.network_name.as_deref()?,
            self.network_key_file.as_deref()?,
        ))
    }
}

/// The DNS forwarder's settings: upstream's unless the hidden options say
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DnsSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) candidates: Vec<Ipv6Addr>,
    pub(crate) candidate_port: u16,
    pub(crate) fallback: SocketAddr,
    pub(crate) period_ms: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) max_in_flight: usize,
}

impl DnsSettings {
    fn from_args(args: &DnsArgs) -> Self {
        let d = DnsConfig::default();
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        Self {
            listen: args.dns_listen.unwrap_or(d.listen),
            candidates: if args.dns_no_candidates {
                Vec::new()
            } else if args.dns_candidates.is_empty() {
                d.candidates
            } else {
                args.dns_candidates.clone()
            },
            candidate_port: args.dns_candidate_port.unwrap_or(d.candidate_port),
            fallback: args.dns_fallback.unwrap_or(d.fallback),
            period_ms: args.dns_period_ms.unwrap_or_else(|| ms(d.period)),
            timeout_ms: args.dns_timeout_ms.unwrap_or_else(|| ms(d.timeout)),
            max_in_flight: args.dns_max_in_flight.unwrap_or(d.max_in_flight),
        }
    }

    /// The node's configuration for the forwarder.
    pub(crate) fn to_config(&self) -> DnsConfig {
        DnsConfig {
            listen: self.listen,
            candidates: self.candidates.clone(),
            candidate_port: self.candidate_port,
            fallback: self.fallback,
            period: Duration::from_millis(self.period_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            max_in_flight: self.max_in_flight,
        }
    }
}

/// The CDN helper's settings: upstream's unless the options say otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CdnSettings {
    /// `localhost:80` (resolved at start-up) or the hidden `--cdn-listen`.
    pub(crate) listen: String,
    /// Registries requests may name (`--cdn-registry`, `cdn_registries`).
    pub(crate) registries: Vec<String>,
    pub(crate) fetch_timeout_ms: u64,
    pub(crate) redis_timeout_ms: u64,
}

impl CdnSettings {
    fn resolve(args: &CdnArgs, registries: &[String], file: Option<Vec<String>>) -> Self {
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        Self {
            listen: args.cdn_listen.map_or_else(
                || mycelium_cdn::DEFAULT_LISTEN.to_owned(),
                |a| a.to_string(),
            ),
            registries: if registries.is_empty() {
                file.unwrap_or_else(|| vec![mycelium_cdn::DEFAULT_REGISTRY.to_owned()])
            } else {
                registries.to_vec()
            },
            fetch_timeout_ms: args
                .cdn_fetch_timeout_ms
                .unwrap_or_else(|| ms(mycelium_cdn::DEFAULT_FETCH_TIMEOUT)),
            redis_timeout_ms: args
                .cdn_redis_timeout_ms
                .unwrap_or_else(|| ms(mycelium_cdn::DEFAULT_REDIS_TIMEOUT)),
        }
    }

    /// The helper's configuration, with `cache_dir`.
    pub(crate) fn to_config(&self, cache_dir: PathBuf) -> mycelium_cdn::CdnConfig {
        mycelium_cdn::CdnConfig {
            cache_dir,
            listen: self.listen.clone(),
            registries: self.registries.clone(),
            fetch_timeout: Duration::from_millis(self.fetch_timeout_ms),
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
        }
    }
}

fn as_uris<S: Serializer>(peers: &[Endpoint], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(peers.iter().map(ToString::to_string))
}

/// Merges the command line's node options with the config file's (if any) by
/// upstream's precedence rules (module docs).
///
/// Fails only on a config value that the command line would have refused as a usage
/// error: a private network name of the wrong length.
pub(crate) fn resolve(cli: &Cli, config: Option<ConfigFile>) -> anyhow::Result<NodeSettings> {
    let args = &cli.node;
    let file = config.unwrap_or_default();

    let disable_peer_discovery = args.disable_peer_discovery || flag(file.disable_peer_discovery);
    let mut peer_discovery_interfaces = if args.peer_discovery_interfaces.is_empty() {
        file.peer_discovery_interfaces.unwrap_or_default()
    } else {
        args.peer_discovery_interfaces.clone()
    };
    if disable_peer_discovery && !peer_discovery_interfaces.is_empty() {
        tracing::warn!(
            interfaces = ?peer_discovery_interfaces,
            "peer discovery is disabled; ignoring the discovery interfaces"
        );
        peer_discovery_interfaces.clear();
    }

    #[cfg(not(feature = "private"))]
    if file.network_name.is_some() || file.network_key_file.is_some() {
        tracing::warn!(
            "this build has no private network support; ignoring network_name and \
             network_key_file in the config file"
        );
    }

    Ok(NodeSettings {
        peers: if args.peers.is_empty() {
            file.peers.unwrap_or_default()
        } else {
            args.peers.clone()
        },
        tcp_listen_port: unless_default(
            args.tcp_listen_port,
            DEFAULT_TCP_LISTEN_PORT,
            file.tcp_listen_port,
        ),
        quic_listen_port: unless_default(
            args.quic_listen_port,
            DEFAULT_QUIC_LISTEN_PORT,
            file.quic_listen_port,
        ),
        disable_quic: args.disable_quic || flag(file.disable_quic),
        peer_discovery_port: unless_default(
            args.peer_discovery_port,
            DEFAULT_PEER_DISCOVERY_PORT,
            file.peer_discovery_port,
        ),
        disable_peer_discovery,
        peer_discovery_interfaces,
        api_addr: unless_default(args.api_addr, DEFAULT_API_ADDR, file.api_addr),
        jsonrpc_addr: unless_default(args.jsonrpc_addr, DEFAULT_JSONRPC_ADDR, file.jsonrpc_addr),
        no_tun: args.no_tun || flag(file.no_tun),
        no_tun_offload: args.no_tun_offload || flag(file.no_tun_offload),
        tun_name: args
            .tun_name
            .clone()
            .or(file.tun_name)
            .unwrap_or_else(|| DEFAULT_TUN_NAME.to_owned()),
        metrics_api_address: args.metrics_api_address.or(file.metrics_api_address),
        api_token_file: args.api_token_file.clone().or(file.api_token_file),
        firewall_mark: args.firewall_mark.or(file.firewall_mark),
        update_workers: unless_default(
            args.update_workers,
            DEFAULT_UPDATE_WORKERS,
            file.update_workers,
        ),
        topic_config: args.topic_config.clone().or(file.topic_config),
        cdn_cache: args.cdn_cache.clone().or(file.cdn_cache),
        cdn: CdnSettings::resolve(&args.cdn, &args.cdn_registries, file.cdn_registries),
        vsock_listen_port: args.vsock_listen_port.or(file.vsock_listen_port),
        enable_dns: args.enable_dns || flag(file.enable_dns),
        dns: DnsSettings::from_args(&args.dns),
        proxy_allow_remote: args.proxy_allow_remote || flag(file.proxy_allow_remote),
        max_inbound_peers: args
            .max_inbound_peers
            .or(file.max_inbound_peers)
            .unwrap_or(limits::INBOUND_PEERS.2),
        max_connections_per_second: args
            .max_connections_per_second
            .or(file.max_connections_per_second)
            .unwrap_or(limits::CONNECTIONS_PER_SECOND.2),
        link_data_queue: args
            .link_data_queue
            .or(file.link_data_queue)
            .unwrap_or(limits::LINK_DATA_QUEUE.2),
        link_control_rate: args
            .link_control_rate
            .or(file.link_control_rate)
            .unwrap_or(limits::LINK_CONTROL_RATE.2),
        max_routes: args
            .max_routes
            .or(file.max_routes)
            .unwrap_or(limits::ROUTES.2),
        max_routes_per_peer: args
            .max_routes_per_peer
            .or(file.max_routes_per_peer)
            .unwrap_or(limits::ROUTES_PER_PEER.2),
        leaf: args.leaf || flag(file.leaf),
        leaf_routes: args
            .leaf_routes
            .or(file.leaf_routes)
            .unwrap_or(limits::LEAF_ROUTES.2),
        upstream_timers: args.upstream_timers,
        upstream_quic_datagrams: args.upstream_quic_datagrams,
        no_quic_pause: args.no_quic_pause,
        #[cfg(feature = "private")]
        network_name: match args.private.network_name.clone() {
            Some(name) => Some(name),
            None => file
                .network_name
                .map(|n| parse_network_name(&n))
                .transpose()?,
        },
        #[cfg(feature = "private")]
        network_key_file: args
            .private
            .network_key_file
            .clone()
            .or(file.network_key_file),
    })
}

/// Upstream's rule for options with a built-in default: the command line's value
/// unless it equals the default, then the config file's, then the default.
fn unless_default<T: PartialEq>(cli: T, default: T, config: Option<T>) -> T {
    if cli == default {
        config.unwrap_or(default)
    } else {
        cli
    }
}

fn flag(config: Option<bool>) -> bool {
    config.unwrap_or(false)
}

#[cfg(test)]
mod tests;
