//! The command line: global options, node options, subcommands.
//!
//! Values are checked here, so a bad one is clap's usage error naming it (exit 2).
//! What the options mean once merged with the config file is the `settings`
//! module's business; their defaults and bounds are in [`crate::options`]. The API
//! client subcommands' own arguments live in the `client` module.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::PublicKey;

use crate::options::{
    limits, DEFAULT_API_ADDR, DEFAULT_JSONRPC_ADDR, DEFAULT_PEER_DISCOVERY_PORT,
    DEFAULT_QUIC_LISTEN_PORT, DEFAULT_TCP_LISTEN_PORT, DEFAULT_UPDATE_WORKERS, MAX_UPDATE_WORKERS,
};

/// A parser for an integer in a limit's range.
fn ranged((min, max, _default): (u64, u64, u64)) -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::<u64>::new().range(min..=max)
}

/// What `--version` says: which implementation this is, and which upstream release
/// it speaks the wire protocol and the APIs of.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (mycelium-rs, compatible with Mycelium v0.7.10 on the wire and in its APIs)"
);

/// A Mycelium-compatible overlay network node.
#[derive(Debug, Parser)]
#[command(name = "mycelium", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Private key file (32 raw bytes). Default: $XDG_DATA_HOME/mycelium/priv_key.bin.
    #[arg(short = 'k', long = "key-file", global = true, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,

    /// Configuration file (TOML). Default: $XDG_CONFIG_HOME/mycelium/mycelium.toml, if it exists.
    #[arg(short = 'c', long = "config-file", global = true, value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,

    /// Log at debug level.
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,

    /// Log errors only (wins over --debug).
    #[arg(long)]
    pub(crate) silent: bool,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Compact)]
    pub(crate) log_format: LogFormat,

    #[command(flatten)]
    pub(crate) node: NodeArgs,

    /// Print the node settings resolved from the command line and the config file
    /// as JSON, then exit. For tests and troubleshooting.
    #[arg(long, hide = true)]
    pub(crate) print_settings: bool,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Compact,
    /// `key=value` pairs.
    Logfmt,
    /// `key=value` pairs, never coloured.
    Plain,
}

/// The options of daemon mode, as given on the command line.
///
/// Options with a built-in default carry it here, because upstream's precedence
/// rules compare the value with that default (see the `settings` module);
/// the others are `None` or empty when not given.
#[derive(Debug, Clone, Args)]
pub(crate) struct NodeArgs {
    /// Static peers: tcp://IP:PORT, quic://IP:PORT, tls://IP:PORT or vsock://CID:PORT.
    /// Takes all following words that are not options.
    #[arg(long, num_args = 1.., value_name = "ENDPOINT")]
    pub(crate) peers: Vec<Endpoint>,

    /// TCP listen port (TLS in private mode).
    #[arg(short = 't', long, value_name = "PORT", default_value_t = DEFAULT_TCP_LISTEN_PORT)]
    pub(crate) tcp_listen_port: u16,

    /// Disable QUIC: no QUIC listener and no outbound QUIC.
    #[arg(long)]
    pub(crate) disable_quic: bool,

    /// UDP port for QUIC, to listen and to dial from.
    #[arg(short = 'q', long, value_name = "PORT", default_value_t = DEFAULT_QUIC_LISTEN_PORT)]
    pub(crate) quic_listen_port: u16,

    /// UDP port for link-local peer discovery.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_PEER_DISCOVERY_PORT)]
    pub(crate) peer_discovery_port: u16,

    /// Neither send nor listen for discovery beacons.
    #[arg(long)]
    pub(crate) disable_peer_discovery: bool,

    /// Only discover peers on this interface (repeatable). Default: every qualifying
    /// interface.
    #[arg(long = "peer-discovery-interface", value_name = "NAME")]
    pub(crate) peer_discovery_interfaces: Vec<String>,

    /// Listen address of the HTTP API; also the address the client subcommands call.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_API_ADDR)]
    pub(crate) api_addr: SocketAddr,

    /// Listen address of the JSON-RPC API.
    #[arg(long, value_name = "ADDR", default_value_t = DEFAULT_JSONRPC_ADDR)]
    pub(crate) jsonrpc_addr: SocketAddr,

    /// Run without a TUN device (still routes and forwards; messages work).
    #[arg(long)]
    pub(crate) no_tun: bool,

    /// Move packets across the TUN device one at a time, without segmentation
    /// offload (Linux; other systems always do). For kernels or sandboxes that
    /// mishandle offload.
    #[arg(long)]
    pub(crate) no_tun_offload: bool,

    /// TUN device name. Default: mycelium (utun0 on macOS).
    #[arg(long, value_name = "NAME")]
    pub(crate) tun_name: Option<String>,

    /// Serve Prometheus metrics at /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_api_address: Option<SocketAddr>,

    /// File holding the bearer token the HTTP and JSON-RPC APIs require (one line).
    /// Required when --api-addr or --jsonrpc-addr is not a loopback address.
    #[arg(long, value_name = "FILE")]
    pub(crate) api_token_file: Option<PathBuf>,

    /// Linux SO_MARK for every peer socket.
    #[arg(long, value_name = "MARK")]
    pub(crate) firewall_mark: Option<u32>,

    /// Accepted for compatibility (1 to 254) and ignored: one core takes in
    /// about 1.8 million route updates a second, so updates are not spread over
    /// threads.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_UPDATE_WORKERS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_UPDATE_WORKERS as u64),
    )]
    pub(crate) update_workers: usize,

    /// Topic access control file for messages.
    #[arg(long, value_name = "FILE")]
    pub(crate) topic_config: Option<PathBuf>,

    /// Run the CDN helper on localhost:80 with this cache directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) cdn_cache: Option<PathBuf>,

    /// A registry the CDN helper may fetch metadata from, HOST or HOST:PORT
    /// (repeatable; replaces the default, cdn.mycelium.grid.tf).
    #[arg(long = "cdn-registry", value_name = "HOST[:PORT]", value_parser = parse_cdn_registry)]
    pub(crate) cdn_registries: Vec<String>,

    /// Accept vsock peers on this port (Linux).
    #[arg(long, value_name = "PORT")]
    pub(crate) vsock_listen_port: Option<u32>,

    /// Run the DNS forwarder on UDP and TCP [::]:53.
    #[arg(long)]
    pub(crate) enable_dns: bool,

    /// Let any host use the SOCKS5 forwarder on [::]:1080, not just this one. Off by
    /// default: upstream serves everyone who can reach the port, the whole overlay
    /// included.
    #[arg(long)]
    pub(crate) proxy_allow_remote: bool,

    /// Inbound peers kept at once (TCP, TLS, QUIC and vsock together). Default: 1024.
    #[arg(long, value_name = "N", value_parser = ranged(limits::INBOUND_PEERS))]
    pub(crate) max_inbound_peers: Option<u64>,

    /// Inbound connection attempts accepted a second, after a burst of twice as
    /// many; 0 for no limit. Default: 64.
    #[arg(long, value_name = "N", value_parser = ranged(limits::CONNECTIONS_PER_SECOND))]
    pub(crate) max_connections_per_second: Option<u64>,

    /// Data packets queued for sending on one link; more are dropped. Default: 2048.
    #[arg(long, value_name = "N", value_parser = ranged(limits::LINK_DATA_QUEUE))]
    pub(crate) link_data_queue: Option<u64>,

    /// Control TLVs read from one link a second, after a burst of ten seconds'
    /// worth; a faster peer is read more slowly. 0 for no limit. Default: 20000.
    #[arg(long, value_name = "N", value_parser = ranged(limits::LINK_CONTROL_RATE))]
    pub(crate) link_control_rate: Option<u64>,

    /// Subnets in the routing table; updates for more are dropped. Default: 250000.
    #[arg(long, value_name = "N", value_parser = ranged(limits::ROUTES))]
    pub(crate) max_routes: Option<u64>,

    /// Routes learned from one neighbour; more are dropped. Default: 100000.
    #[arg(long, value_name = "N", value_parser = ranged(limits::ROUTES_PER_PEER))]
    pub(crate) max_routes_per_peer: Option<u64>,

    /// Leaf mode, for small devices: keep routes only for the addresses in use
    /// (asked for on demand, so the first packet to a new address waits one route
    /// request), announce only this node's own subnet, and carry no traffic for
    /// others.
    #[arg(long)]
    pub(crate) leaf: bool,

    /// Subnets a leaf keeps routes for; the least recently used one makes room.
    /// Default: 1024.
    #[arg(long, value_name = "N", value_parser = ranged(limits::LEAF_ROUTES))]
    pub(crate) leaf_routes: Option<u64>,

    /// Upstream's routing timers exactly: Hellos every 20 s, a silent neighbour
    /// noticed after 43 s, no table request on connect. For tests.
    #[arg(long, hide = true)]
    pub(crate) upstream_timers: bool,

    /// Upstream's QUIC data sending exactly: every data packet as a datagram, and
    /// the whole connection dropped when one does not fit. For tests that need a
    /// neighbour that behaves like upstream.
    #[arg(long, hide = true)]
    pub(crate) upstream_quic_datagrams: bool,

    /// Keep dialling QUIC to a neighbour recognised as dropping its QUIC link
    /// whenever it has a large packet for us (it is still logged and counted).
    /// For measuring what the pause saves.
    #[arg(long, hide = true)]
    pub(crate) no_quic_pause: bool,

    #[command(flatten)]
    pub(crate) dns: DnsArgs,

    #[command(flatten)]
    pub(crate) cdn: CdnArgs,

    #[cfg(feature = "private")]
    #[command(flatten)]
    pub(crate) private: PrivateArgs,
}

/// The DNS forwarder's hidden settings, for tests: each defaults to upstream's
/// behaviour.
#[derive(Debug, Clone, Args)]
pub(crate) struct DnsArgs {
    /// Where the DNS forwarder listens, on UDP and TCP. Default: [::]:53.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub(crate) dns_listen: Option<SocketAddr>,

    /// An overlay resolver to prefer, in order; given once or more, replaces the
    /// built-in list.
    #[arg(long = "dns-candidate", value_name = "IPV6", hide = true)]
    pub(crate) dns_candidates: Vec<Ipv6Addr>,

    /// No overlay resolver at all: always the fall-back.
    #[arg(long, hide = true, conflicts_with = "dns_candidates")]
    pub(crate) dns_no_candidates: bool,

    /// The port queries go to on an overlay resolver. Default: 53.
    #[arg(long, value_name = "PORT", hide = true)]
    pub(crate) dns_candidate_port: Option<u16>,

    /// The resolver used while no overlay resolver has a route. Default: 1.1.1.1:53.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub(crate) dns_fallback: Option<SocketAddr>,

    /// Milliseconds between evaluations of the overlay resolvers. Default: 30000.
    #[arg(long, value_name = "MS", hide = true, value_parser = RangedU64ValueParser::<u64>::new().range(1..=86_400_000))]
    pub(crate) dns_period_ms: Option<u64>,

    /// Milliseconds a query waits for its answer. Default: 5000.
    #[arg(long, value_name = "MS", hide = true, value_parser = RangedU64ValueParser::<u64>::new().range(1..=600_000))]
    pub(crate) dns_timeout_ms: Option<u64>,

    /// Client queries answered at once; more are dropped. Default: 512.
    #[arg(long, value_name = "N", hide = true, value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub(crate) dns_max_in_flight: Option<usize>,
}

/// The CDN helper's hidden settings, for tests: each defaults to upstream's
/// behaviour (or, for the timeouts upstream lacks, to ours).
#[derive(Debug, Clone, Args)]
pub(crate) struct CdnArgs {
    /// Where the CDN helper listens. Default: localhost:80, the first resolved
    /// address that binds.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub(crate) cdn_listen: Option<SocketAddr>,

    /// Milliseconds one registry exchange may take. Default: 10000.
    #[arg(long, value_name = "MS", hide = true, value_parser = RangedU64ValueParser::<u64>::new().range(1..=600_000))]
    pub(crate) cdn_fetch_timeout_ms: Option<u64>,

    /// Milliseconds to wait for a shard server's connection and each read from
    /// it. Default: 1000.
    #[arg(long, value_name = "MS", hide = true, value_parser = RangedU64ValueParser::<u64>::new().range(1..=600_000))]
    pub(crate) cdn_redis_timeout_ms: Option<u64>,
}

/// A CDN registry allow-list entry: HOST or HOST:PORT.
pub(crate) fn parse_cdn_registry(s: &str) -> Result<String, String> {
    mycelium_cdn::parse_registry(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// The private-network options: on the command line each requires the
/// other.
#[cfg(feature = "private")]
#[derive(Debug, Clone, Args)]
pub(crate) struct PrivateArgs {
    /// Name of the private network (its TLS-PSK identity, public), 2 to 64 bytes.
    #[arg(
        long,
        value_name = "NAME",
        requires = "network_key_file",
        value_parser = crate::options::parse_network_name,
    )]
    pub(crate) network_name: Option<String>,

    /// File holding the private network's 32-byte pre-shared key.
    #[arg(long, value_name = "PATH", requires = "network_name")]
    pub(crate) network_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the public key and overlay address of a key (default: the node's own key file).
    Inspect {
        /// A public key as 64 hex characters.
        #[arg(value_name = "KEY")]
        key: Option<PublicKey>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a fresh private key to the key file.
    GenerateKeys {
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// The subcommands that call a running node's API (`message`, `peers`, …).
    #[command(flatten)]
    Client(crate::client::ClientCommand),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test whose command line does not parse should fail

    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mycelium").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn node_options_carry_their_defaults() {
        let cli = parse(&[]).unwrap();
        let n = cli.node;
        assert!(n.peers.is_empty());
        assert_eq!(n.tcp_listen_port, 9651);
        assert_eq!(n.quic_listen_port, 9651);
        assert_eq!(n.peer_discovery_port, 9650);
        assert_eq!(n.api_addr, "127.0.0.1:8989".parse().unwrap());
        assert_eq!(n.jsonrpc_addr, "127.0.0.1:8990".parse().unwrap());
        assert_eq!(n.update_workers, 1);
        assert_eq!(n.tun_name, None);
        assert!(!n.disable_quic && !n.no_tun && !n.enable_dns && !n.disable_peer_discovery);
    }

    #[test]
    fn peers_take_every_following_word() {
        let cli = parse(&[
            "--peers",
            "tcp://1.2.3.4:9651",
            "quic://[2001:db8::1]:9651",
            "--no-tun",
            "--peers",
            "vsock://2:1",
        ])
        .unwrap();
        let peers: Vec<String> = cli.node.peers.iter().map(ToString::to_string).collect();
        assert_eq!(
            peers,
            [
                "tcp://1.2.3.4:9651",
                "quic://[2001:db8::1]:9651",
                "vsock://2:1"
            ]
        );
        assert!(cli.node.no_tun);
        assert_eq!(
            parse(&["--peers"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_value() {
        for args in [
            &["--peers", "foo"][..],
            &["--peers", "tcp://1.2.3.4:1", "udp://1.2.3.4:1"],
            &["--tcp-listen-port", "70000"],
            &["-q", "-1"],
            &["--api-addr", "nonsense"],
            &["--jsonrpc-addr", "localhost:8990"],
            &["--metrics-api-address", "1.2.3.4"],
            &["--update-workers", "0"],
            &["--update-workers", "255"],
            &["--update-workers", "300"],
            &["--firewall-mark", "-3"],
            &["--vsock-listen-port", "4294967296"],
            &["--log-format", "xml"],
            &["--max-inbound-peers", "65537"],
            &["--max-connections-per-second", "-1"],
            &["--link-data-queue", "15"],
            &["--link-control-rate", "lots"],
            &["--max-routes", "0"],
            &["--max-routes-per-peer", "100000001"],
            &["--cdn-registry", "a/b"],
            &["--cdn-registry", "host:port"],
            &["--cdn-listen", "localhost"],
            &["--cdn-fetch-timeout-ms", "0"],
            &["--cdn-redis-timeout-ms", "never"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let bad = args.last().unwrap();
            assert!(err.to_string().contains(bad), "{args:?}: {err}");
        }
    }

    #[test]
    fn update_workers_accept_one_to_254() {
        for n in ["1", "254"] {
            assert_eq!(
                parse(&["--update-workers", n]).unwrap().node.update_workers,
                n.parse::<usize>().unwrap()
            );
        }
    }

    #[test]
    fn node_options_are_not_global() {
        let err = parse(&["inspect", "--no-tun"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        // The global ones are.
        let cli = parse(&["inspect", "-k", "x", "-c", "y"]).unwrap();
        assert_eq!(cli.key_file, Some(PathBuf::from("x")));
        assert_eq!(cli.config_file, Some(PathBuf::from("y")));
    }

    #[test]
    fn print_settings_is_hidden_from_help() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("print-settings"), "{help}");
        assert!(parse(&["--print-settings"]).unwrap().print_settings);
    }

    #[cfg(not(feature = "private"))]
    #[test]
    fn public_build_has_no_private_network_options() {
        let err = parse(&["--network-name", "abc"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }

    #[cfg(feature = "private")]
    #[test]
    fn private_network_options_require_each_other() {
        for args in [&["--network-name", "net"][..], &["--network-key-file", "k"]] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{args:?}");
            assert_eq!(err.exit_code(), 2);
        }
        let cli = parse(&["--network-name", "net", "--network-key-file", "k"]).unwrap();
        assert_eq!(cli.node.private.network_name.as_deref(), Some("net"));
        assert_eq!(cli.node.private.network_key_file, Some(PathBuf::from("k")));
    }

    #[cfg(feature = "private")]
    #[test]
    fn network_name_must_be_2_to_64_bytes() {
        let long = "n".repeat(65);
        for bad in ["x", "", long.as_str(), "ééééééééééééééééééééééééééééééééé"]
        {
            let err = parse(&["--network-name", bad, "--network-key-file", "k"]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(
                err.to_string()
                    .contains("network name must be between 2 and 64 characters"),
                "{err}"
            );
        }
        let ok = "n".repeat(64);
        assert!(parse(&["--network-name", &ok, "--network-key-file", "k"]).is_ok());
    }
}
