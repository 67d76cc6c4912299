//! One precedence rule per test.
#![allow(clippy::unwrap_used)] // a fixture that does not parse should fail the test

use clap::Parser;

use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("mycelium").chain(args.iter().copied())).unwrap()
}

fn resolved(args: &[&str], config: Option<ConfigFile>) -> NodeSettings {
    resolve(&cli(args), config).unwrap()
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn nothing_given_means_the_built_in_defaults() {
    let s = resolved(&[], None);
    assert_eq!(s, resolved(&[], Some(ConfigFile::default())));
    assert!(s.peers.is_empty());
    assert_eq!(s.tcp_listen_port, 9651);
    assert_eq!(s.quic_listen_port, 9651);
    assert_eq!(s.peer_discovery_port, 9650);
    assert_eq!(s.api_addr, addr("127.0.0.1:8989"));
    assert_eq!(s.jsonrpc_addr, addr("127.0.0.1:8990"));
    assert_eq!(s.update_workers, 1);
    #[cfg(target_os = "linux")]
    assert_eq!(s.tun_name, "mycelium");
    assert!(!s.disable_quic && !s.disable_peer_discovery && !s.no_tun && !s.enable_dns);
    assert!(s.peer_discovery_interfaces.is_empty());
    assert_eq!(s.metrics_api_address, None);
    assert_eq!(s.firewall_mark, None);
    assert_eq!(s.topic_config, None);
    assert_eq!(s.cdn_cache, None);
    assert_eq!(s.vsock_listen_port, None);
}

#[test]
fn cli_peers_replace_config_peers() {
    let config = ConfigFile {
        peers: Some(vec![ep("tcp://1.1.1.1:1"), ep("quic://2.2.2.2:2")]),
        ..ConfigFile::default()
    };
    let s = resolved(&["--peers", "tls://3.3.3.3:3"], Some(config.clone()));
    assert_eq!(s.peers, [ep("tls://3.3.3.3:3")]);
    // Not merged, and not used when the command line has none.
    let s = resolved(&[], Some(config));
    assert_eq!(s.peers, [ep("tcp://1.1.1.1:1"), ep("quic://2.2.2.2:2")]);
}

#[test]
fn cli_value_other_than_the_default_beats_the_config() {
    let config = ConfigFile {
        tcp_listen_port: Some(1000),
        quic_listen_port: Some(1001),
        peer_discovery_port: Some(1002),
        api_addr: Some(addr("[::1]:1003")),
        jsonrpc_addr: Some(addr("[::1]:1004")),
        update_workers: Some(5),
        ..ConfigFile::default()
    };
    let s = resolved(
        &[
            "-t",
            "2000",
            "-q",
            "2001",
            "--peer-discovery-port",
            "2002",
            "--api-addr",
            "0.0.0.0:2003",
            "--jsonrpc-addr",
            "0.0.0.0:2004",
            "--update-workers",
            "7",
        ],
        Some(config),
    );
    assert_eq!(s.tcp_listen_port, 2000);
    assert_eq!(s.quic_listen_port, 2001);
    assert_eq!(s.peer_discovery_port, 2002);
    assert_eq!(s.api_addr, addr("0.0.0.0:2003"));
    assert_eq!(s.jsonrpc_addr, addr("0.0.0.0:2004"));
    assert_eq!(s.update_workers, 7);
}

#[test]
fn cli_value_equal_to_the_default_loses_to_the_config() {
    let config = ConfigFile {
        tcp_listen_port: Some(1000),
        quic_listen_port: Some(1001),
        peer_discovery_port: Some(1002),
        api_addr: Some(addr("[::1]:1003")),
        jsonrpc_addr: Some(addr("[::1]:1004")),
        update_workers: Some(5),
        ..ConfigFile::default()
    };
    // Upstream's quirk: the defaults given explicitly count as not given.
    let s = resolved(
        &[
            "-t",
            "9651",
            "--quic-listen-port",
            "9651",
            "--peer-discovery-port",
            "9650",
            "--api-addr",
            "127.0.0.1:8989",
            "--jsonrpc-addr",
            "127.0.0.1:8990",
            "--update-workers",
            "1",
        ],
        Some(config),
    );
    assert_eq!(s.tcp_listen_port, 1000);
    assert_eq!(s.quic_listen_port, 1001);
    assert_eq!(s.peer_discovery_port, 1002);
    assert_eq!(s.api_addr, addr("[::1]:1003"));
    assert_eq!(s.jsonrpc_addr, addr("[::1]:1004"));
    assert_eq!(s.update_workers, 5);
}

#[test]
fn flags_are_set_by_either_side() {
    let all_true = ConfigFile {
        disable_quic: Some(true),
        disable_peer_discovery: Some(true),
        no_tun: Some(true),
        enable_dns: Some(true),
        ..ConfigFile::default()
    };
    let s = resolved(&[], Some(all_true));
    assert!(s.disable_quic && s.disable_peer_discovery && s.no_tun && s.enable_dns);

    // A config `false` cannot switch off a command-line flag.
    let all_false = ConfigFile {
        disable_quic: Some(false),
        disable_peer_discovery: Some(false),
        no_tun: Some(false),
        enable_dns: Some(false),
        ..ConfigFile::default()
    };
    let s = resolved(
        &[
            "--disable-quic",
            "--disable-peer-discovery",
            "--no-tun",
            "--enable-dns",
        ],
        Some(all_false.clone()),
    );
    assert!(s.disable_quic && s.disable_peer_discovery && s.no_tun && s.enable_dns);

    let s = resolved(&[], Some(all_false));
    assert!(!s.disable_quic && !s.disable_peer_discovery && !s.no_tun && !s.enable_dns);
}

#[test]
fn other_options_take_the_cli_if_given_else_the_config() {
    let config = ConfigFile {
        tun_name: Some("from-config".into()),
        metrics_api_address: Some(addr("0.0.0.0:9999")),
        firewall_mark: Some(30),
        topic_config: Some("/config/topics.toml".into()),
        cdn_cache: Some("/config/cdn".into()),
        vsock_listen_port: Some(40),
        peer_discovery_interfaces: Some(vec!["eth0".into()]),
        ..ConfigFile::default()
    };
    let s = resolved(&[], Some(config.clone()));
    assert_eq!(s.tun_name, "from-config");
    assert_eq!(s.metrics_api_address, Some(addr("0.0.0.0:9999")));
    assert_eq!(s.firewall_mark, Some(30));
    assert_eq!(s.topic_config, Some("/config/topics.toml".into()));
    assert_eq!(s.cdn_cache, Some("/config/cdn".into()));
    assert_eq!(s.vsock_listen_port, Some(40));
    assert_eq!(s.peer_discovery_interfaces, ["eth0"]);

    // The command line wins even with the value the config would have given.
    let s = resolved(
        &[
            "--tun-name",
            "mycelium",
            "--metrics-api-address",
            "[::]:1",
            "--firewall-mark",
            "0",
            "--topic-config",
            "t",
            "--cdn-cache",
            "c",
            "--vsock-listen-port",
            "41",
            "--peer-discovery-interface",
            "wlan0",
            "--peer-discovery-interface",
            "eth1",
        ],
        Some(config),
    );
    assert_eq!(s.tun_name, "mycelium");
    assert_eq!(s.metrics_api_address, Some(addr("[::]:1")));
    assert_eq!(s.firewall_mark, Some(0));
    assert_eq!(s.topic_config, Some("t".into()));
    assert_eq!(s.cdn_cache, Some("c".into()));
    assert_eq!(s.vsock_listen_port, Some(41));
    assert_eq!(s.peer_discovery_interfaces, ["wlan0", "eth1"]);
}

#[test]
fn discovery_interfaces_are_dropped_when_discovery_is_disabled() {
    let s = resolved(
        &[
            "--disable-peer-discovery",
            "--peer-discovery-interface",
            "eth0",
        ],
        None,
    );
    assert!(s.disable_peer_discovery);
    assert!(s.peer_discovery_interfaces.is_empty());
}

#[test]
fn settings_print_as_json_with_uri_peers() {
    let s = resolved(&["--peers", "TCP://1.2.3.4:9651", "vsock://2:3"], None);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v["peers"],
        serde_json::json!(["tcp://1.2.3.4:9651", "vsock://2:3"])
    );
    assert_eq!(v["api_addr"], "127.0.0.1:8989");
    assert_eq!(v["metrics_api_address"], serde_json::Value::Null);
}

#[cfg(feature = "private")]
mod private {
    use super::*;

    #[test]
    fn network_options_take_the_cli_if_given_else_the_config() {
        let config = ConfigFile {
            network_name: Some("from config".into()),
            network_key_file: Some("/config/key".into()),
            ..ConfigFile::default()
        };
        let s = resolved(&[], Some(config.clone()));
        assert_eq!(s.network_name.as_deref(), Some("from config"));
        assert_eq!(
            s.private_network(),
            Some(("from config", std::path::Path::new("/config/key")))
        );
        let s = resolved(
            &["--network-name", "cli", "--network-key-file", "/cli/key"],
            Some(config),
        );
        assert_eq!(
            s.private_network(),
            Some(("cli", std::path::Path::new("/cli/key")))
        );
    }

    #[test]
    fn private_mode_needs_both_name_and_key_file() {
        let config = ConfigFile {
            network_name: Some("only a name".into()),
            ..ConfigFile::default()
        };
        let s = resolved(&[], Some(config));
        assert_eq!(s.private_network(), None);
    }

    #[test]
    fn a_config_network_name_of_the_wrong_length_is_refused() {
        for bad in ["x", &"n".repeat(65)] {
            let config = ConfigFile {
                network_name: Some(bad.to_owned()),
                ..ConfigFile::default()
            };
            let err = resolve(&cli(&[]), Some(config)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "network name must be between 2 and 64 characters"
            );
        }
    }
}

#[test]
fn limits_come_from_the_command_line_then_the_file_then_the_defaults() {
    let s = resolved(&[], None);
    assert_eq!(
        (
            s.max_inbound_peers,
            s.max_connections_per_second,
            s.link_data_queue
        ),
        (1_024, 64, 2_048)
    );
    assert_eq!(
        (s.link_control_rate, s.max_routes, s.max_routes_per_peer),
        (20_000, 250_000, 100_000)
    );
    let file = ConfigFile {
        max_inbound_peers: Some(10),
        max_routes: Some(500),
        ..ConfigFile::default()
    };
    let s = resolved(&["--max-inbound-peers", "20"], Some(file));
    assert_eq!((s.max_inbound_peers, s.max_routes), (20, 500));
}

#[test]
fn limit_defaults_are_the_node_and_router_defaults() {
    use crate::options::limits;
    let node = mycelium_node::Limits::default();
    let router = mycelium_proto::routing::Limits::default();
    let size = |v: usize| v as u64;
    assert_eq!(limits::INBOUND_PEERS.2, size(node.max_inbound_peers));
    assert_eq!(
        limits::CONNECTIONS_PER_SECOND.2,
        u64::from(node.connections_per_second)
    );
    assert_eq!(limits::LINK_DATA_QUEUE.2, size(node.link_data_queue));
    assert_eq!(
        limits::LINK_CONTROL_RATE.2,
        u64::from(node.link_control_rate)
    );
    assert_eq!(
        limits::LINK_CONTROL_RATE.2 * 10,
        u64::from(node.link_control_burst)
    );
    assert_eq!(limits::ROUTES.2, size(router.max_subnets));
    assert_eq!(
        limits::ROUTES_PER_PEER.2,
        size(router.max_routes_per_neighbour)
    );
    assert_eq!(
        limits::LEAF_ROUTES.2,
        size(mycelium_proto::routing::Leaf::default().routes)
    );
}

#[test]
fn leaf_mode_comes_from_the_command_line_or_the_file() {
    let s = resolved(&[], None);
    assert!(!s.leaf);
    assert_eq!(s.leaf_routes, 1_024);
    let file = ConfigFile {
        leaf: Some(true),
        leaf_routes: Some(64),
        ..ConfigFile::default()
    };
    let s = resolved(&[], Some(file.clone()));
    assert!(s.leaf);
    assert_eq!(s.leaf_routes, 64);
    let s = resolved(&["--leaf", "--leaf-routes", "9"], None);
    assert!(s.leaf);
    assert_eq!(s.leaf_routes, 9);
    let s = resolved(&["--leaf-routes", "9"], Some(file));
    assert_eq!(s.leaf_routes, 9);
}

#[test]
fn cdn_settings_default_to_upstream_and_the_cli_list_replaces_the_config_list() {
    let s = resolved(&[], None);
    assert_eq!(s.cdn.listen, "localhost:80");
    assert_eq!(s.cdn.registries, ["cdn.mycelium.grid.tf"]);
    assert_eq!(
        (s.cdn.fetch_timeout_ms, s.cdn.redis_timeout_ms),
        (10_000, 1_000)
    );

    let config = ConfigFile {
        cdn_registries: Some(vec!["reg.example:8080".into()]),
        ..ConfigFile::default()
    };
    let s = resolved(&[], Some(config.clone()));
    assert_eq!(s.cdn.registries, ["reg.example:8080"]);
    let s = resolved(
        &[
            "--cdn-registry",
            "127.0.0.1:8080",
            "--cdn-registry",
            "[::1]:8081",
            "--cdn-listen",
            "[::1]:8082",
            "--cdn-fetch-timeout-ms",
            "500",
            "--cdn-redis-timeout-ms",
            "200",
        ],
        Some(config),
    );
    assert_eq!(s.cdn.registries, ["127.0.0.1:8080", "[::1]:8081"]);
    assert_eq!(s.cdn.listen, "[::1]:8082");
    assert_eq!((s.cdn.fetch_timeout_ms, s.cdn.redis_timeout_ms), (500, 200));
}
