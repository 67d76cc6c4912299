//! The config file: TOML, every key optional, keys named as the
//! config keys of upstream's.
//!
//! This module finds and reads the file and checks every value; it does not decide
//! which of the command line and the file wins (that is the `settings` module's).
//! Values are checked while deserialising, so a bad one is reported with its line
//! and column; unknown keys are kept by name so the caller can warn about them once
//! logging is up, as upstream ignores them.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use mycelium_proto::endpoint::Endpoint;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::options::{limits, MAX_UPDATE_WORKERS};
use crate::paths;

/// Every key the file may hold. Kept in step with [`ConfigFile`]'s fields by the
/// `every_known_key_is_a_field` test.
const KNOWN_KEYS: &[&str] = &[
    "peers",
    "tcp_listen_port",
    "quic_listen_port",
    "disable_quic",
    "peer_discovery_port",
    "disable_peer_discovery",
    "peer_discovery_interfaces",
    "api_addr",
    "jsonrpc_addr",
    "no_tun",
    "no_tun_offload",
    "tun_name",
    "metrics_api_address",
    "api_token_file",
    "firewall_mark",
    "update_workers",
    "topic_config",
    "cdn_cache",
    "cdn_registries",
    "vsock_listen_port",
    "enable_dns",
    "network_name",
    "network_key_file",
    "proxy_allow_remote",
    "max_inbound_peers",
    "max_connections_per_second",
    "link_data_queue",
    "link_control_rate",
    "max_routes",
    "max_routes_per_peer",
    "leaf",
    "leaf_routes",
];

/// The values of a config file; `None` where the key is absent. Each field holds the
/// key of its name, checked against its bounds while read.
///
/// `network_name` and `network_key_file` are read in every build, so that a public
/// build can say it ignores them instead of calling them unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfigFile {
    /// Static peers: an array of endpoint URIs, or a single one.
    #[serde(default, deserialize_with = "endpoints")]
    pub peers: Option<Vec<Endpoint>>,
    pub tcp_listen_port: Option<u16>,
    pub quic_listen_port: Option<u16>,
    pub disable_quic: Option<bool>,
    pub peer_discovery_port: Option<u16>,
    pub disable_peer_discovery: Option<bool>,
    pub peer_discovery_interfaces: Option<Vec<String>>,
    #[serde(default, deserialize_with = "parsed")]
    pub api_addr: Option<SocketAddr>,
    #[serde(default, deserialize_with = "parsed")]
    pub jsonrpc_addr: Option<SocketAddr>,
    pub no_tun: Option<bool>,
    pub no_tun_offload: Option<bool>,
    pub tun_name: Option<String>,
    #[serde(default, deserialize_with = "parsed")]
    pub metrics_api_address: Option<SocketAddr>,
    pub api_token_file: Option<PathBuf>,
    pub firewall_mark: Option<u32>,
    #[serde(default, deserialize_with = "update_workers")]
    pub update_workers: Option<usize>,
    pub topic_config: Option<PathBuf>,
    pub cdn_cache: Option<PathBuf>,
    /// The CDN helper's registry allow-list, each `host[:port]`.
    #[serde(default, deserialize_with = "cdn_registries")]
    pub cdn_registries: Option<Vec<String>>,
    pub vsock_listen_port: Option<u32>,
    pub enable_dns: Option<bool>,
    pub network_name: Option<String>,
    pub network_key_file: Option<PathBuf>,
    pub proxy_allow_remote: Option<bool>,
    #[serde(default, deserialize_with = "inbound_peers")]
    pub max_inbound_peers: Option<u64>,
    #[serde(default, deserialize_with = "connections_per_second")]
    pub max_connections_per_second: Option<u64>,
    #[serde(default, deserialize_with = "link_data_queue")]
    pub link_data_queue: Option<u64>,
    #[serde(default, deserialize_with = "link_control_rate")]
    pub link_control_rate: Option<u64>,
    #[serde(default, deserialize_with = "routes")]
    pub max_routes: Option<u64>,
    #[serde(default, deserialize_with = "routes_per_peer")]
    pub max_routes_per_peer: Option<u64>,
    pub leaf: Option<bool>,
    #[serde(default, deserialize_with = "leaf_routes")]
    pub leaf_routes: Option<u64>,
}

/// A config file that was found and read.
#[derive(Debug)]
pub(crate) struct LoadedConfig {
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// Its values.
    pub(crate) values: ConfigFile,
    /// Top-level keys it holds that mean nothing to us, in file order.
    pub(crate) unknown_keys: Vec<String>,
}

impl LoadedConfig {
    /// Logs one warning per unknown key. Call once logging is set up.
    pub(crate) fn warn_unknown_keys(&self) {
        for key in &self.unknown_keys {
            tracing::warn!(
                config_file = %self.path.display(),
                key = %key,
                "ignoring unknown key in config file"
            );
        }
    }
}

/// Reads the config file: `explicit` if given (it must exist), else the default
/// path if a file is there. `Ok(None)` when there is nothing to read.
pub(crate) fn load(explicit: Option<&Path>) -> anyhow::Result<Option<LoadedConfig>> {
    let (path, text) = match explicit {
        Some(path) => match fs::read_to_string(path) {
            Ok(text) => (path.to_path_buf(), text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("config file {} does not exist", path.display())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("reading config file {}", path.display()))
            }
        },
        None => {
            // Without $XDG_CONFIG_HOME and $HOME there is no default to look at.
            let Ok(path) = paths::default_config_file() else {
                return Ok(None);
            };
            match fs::read_to_string(&path) {
                Ok(text) => (path, text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading config file {}", path.display()))
                }
            }
        }
    };
    let (values, unknown_keys) =
        parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    Ok(Some(LoadedConfig {
        path,
        values,
        unknown_keys,
    }))
}

/// Parses the text of a config file into its values and its unknown keys.
///
/// The text is parsed twice: once as a plain table to list the keys (unknown ones
/// are ignored, not refused), once into [`ConfigFile`], whose errors point at the
/// offending value.
fn parse(text: &str) -> Result<(ConfigFile, Vec<String>), toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    let values: ConfigFile = toml::from_str(text)?;
    let unknown = table
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok((values, unknown))
}

/// An optional value written as a string and parsed with [`FromStr`]; the error
/// names the value.
fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|e| de::Error::custom(format!("invalid value {s:?}: {e}")))
}

fn cdn_registries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for r in &list {
        mycelium_cdn::parse_registry(r).map_err(|e| de::Error::custom(e.to_string()))?;
    }
    Ok(Some(list))
}

fn update_workers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n @ 1..=MAX_UPDATE_WORKERS) => Ok(Some(n)),
        _ => Err(de::Error::custom(format!(
            "invalid value {n} for update_workers: must be between 1 and {MAX_UPDATE_WORKERS}"
        ))),
    }
}

/// A resource limit: an integer in its range (README "Resource limits").
fn limit<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    (min, max, _default): (u64, u64, u64),
) -> Result<Option<u64>, D::Error> {
    let n = i64::deserialize(d)?;
    match u64::try_from(n) {
        Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(de::Error::custom(format!(
            "invalid value {n} for {key}: must be between {min} and {max}"
        ))),
    }
}

fn inbound_peers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "max_inbound_peers", limits::INBOUND_PEERS)
}

fn connections_per_second<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(
        d,
        "max_connections_per_second",
        limits::CONNECTIONS_PER_SECOND,
    )
}

fn link_data_queue<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "link_data_queue", limits::LINK_DATA_QUEUE)
}

fn link_control_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "link_control_rate", limits::LINK_CONTROL_RATE)
}

fn routes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "max_routes", limits::ROUTES)
}

fn routes_per_peer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "max_routes_per_peer", limits::ROUTES_PER_PEER)
}

fn leaf_routes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit(d, "leaf_routes", limits::LEAF_ROUTES)
}

/// `peers`: one endpoint URI or an array of them.
fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Endpoint>>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<Endpoint>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an endpoint URI or an array of them")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![peer(s)?])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut peers = Vec::new();
            // Each element is parsed as it is deserialised, so an error points at it.
            while let Some(Peer(ep)) = seq.next_element()? {
                peers.push(ep);
            }
            Ok(peers)
        }
    }

    d.deserialize_any(OneOrMany).map(Some)
}

/// One element of `peers`.
struct Peer(Endpoint);

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor, while the element is being deserialised, lets
        // the TOML error point at the element rather than at the whole array.
        struct Uri;

        impl Visitor<'_> for Uri {
            type Value = Peer;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an endpoint URI")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Peer, E> {
                peer(s).map(Peer)
            }
        }

        d.deserialize_str(Uri)
    }
}

fn peer<E: de::Error>(s: &str) -> Result<Endpoint, E> {
    s.parse()
        .map_err(|e| E::custom(format!("invalid endpoint {s:?} in peers: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a fixture that does not parse should fail the test

    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = "\
peers = [\"tcp://188.40.132.242:9651\", \"quic://[2a01:4f8:212:fa6::2]:9651\"]
api_addr = \"127.0.0.1:8989\"
jsonrpc_addr = \"127.0.0.1:8990\"
tcp_listen_port = 9651
quic_listen_port = 9651
tun_name = \"mycelium\"
disable_peer_discovery = false
no_tun = false
metrics_api_address = \"0.0.0.0:9999\"
firewall_mark = 30
network_name = \"my network\"
network_key_file = \"/etc/mycelium/net.key\"
";
        let (c, unknown) = parse(text).unwrap();
        assert!(unknown.is_empty());
        let peers: Vec<String> = c.peers.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(
            peers,
            [
                "tcp://188.40.132.242:9651",
                "quic://[2a01:4f8:212:fa6::2]:9651"
            ]
        );
        assert_eq!(c.api_addr, Some("127.0.0.1:8989".parse().unwrap()));
        assert_eq!(c.metrics_api_address, Some("0.0.0.0:9999".parse().unwrap()));
        assert_eq!(c.firewall_mark, Some(30));
        assert_eq!(c.disable_peer_discovery, Some(false));
        assert_eq!(c.network_name.as_deref(), Some("my network"));
        assert_eq!(c.update_workers, None);
    }

    #[test]
    fn upstreams_example_file_parses() {
        // Upstream's example config, trimmed: a multi-line array with a trailing
        // comma and commented-out keys.
        let text = "\
# REMOVE/ADD COMMENT TO ENABLE/DISABLE LINE

peers = [
  \"tcp://188.40.132.242:9651\",
  \"quic://[2a01:4f8:212:fa6::2]:9651\",
  \"quic://185.69.166.7:9651\",
]
api_addr = \"127.0.0.1:8989\"
tun_name = \"mycelium\"
#metrics_api_address = 0.0.0.0:9999
#firewall_mark = 30
";
        let (c, unknown) = parse(text).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.peers.unwrap().len(), 3);
        assert_eq!(c.tun_name.as_deref(), Some("mycelium"));
        assert_eq!(c.metrics_api_address, None);
    }

    #[test]
    fn empty_file_sets_nothing() {
        assert_eq!(parse("").unwrap(), (ConfigFile::default(), vec![]));
    }

    #[test]
    fn peers_may_be_a_single_string() {
        let (c, _) = parse("peers = \"vsock://3:9651\"").unwrap();
        assert_eq!(c.peers.unwrap()[0].to_string(), "vsock://3:9651");
        let (c, _) = parse("peers = []").unwrap();
        assert_eq!(c.peers, Some(vec![]));
    }

    #[test]
    fn every_known_key_is_a_field() {
        let text = "\
peers = []
tcp_listen_port = 1
quic_listen_port = 2
disable_quic = true
peer_discovery_port = 3
disable_peer_discovery = true
peer_discovery_interfaces = [\"eth0\"]
api_addr = \"[::1]:1\"
jsonrpc_addr = \"[::1]:2\"
no_tun = true
no_tun_offload = true
tun_name = \"t\"
metrics_api_address = \"[::1]:3\"
api_token_file = \"/tok\"
firewall_mark = 4
update_workers = 5
topic_config = \"/t\"
cdn_cache = \"/c\"
cdn_registries = [\"127.0.0.1:8080\"]
vsock_listen_port = 6
enable_dns = true
network_name = \"nn\"
network_key_file = \"/k\"
proxy_allow_remote = true
max_inbound_peers = 7
max_connections_per_second = 8
link_data_queue = 90
link_control_rate = 10
max_routes = 110
max_routes_per_peer = 120
leaf = true
leaf_routes = 130
";
        let table: toml::Table = toml::from_str(text).unwrap();
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut known = KNOWN_KEYS.to_vec();
        known.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, known);

        let (c, unknown) = parse(text).unwrap();
        assert!(unknown.is_empty());
        // Every field was filled, so no key is missing from the struct.
        let ConfigFile {
            peers,
            tcp_listen_port,
            quic_listen_port,
            disable_quic,
            peer_discovery_port,
            disable_peer_discovery,
            peer_discovery_interfaces,
            api_addr,
            jsonrpc_addr,
            no_tun,
            no_tun_offload,
            tun_name,
            metrics_api_address,
            api_token_file,
            firewall_mark,
            update_workers,
            topic_config,
            cdn_cache,
            cdn_registries,
            vsock_listen_port,
            enable_dns,
            network_name,
            network_key_file,
            proxy_allow_remote,
            max_inbound_peers,
            max_connections_per_second,
            link_data_queue,
            link_control_rate,
            max_routes,
            max_routes_per_peer,
            leaf,
            leaf_routes,
        } = c;
        assert!(peers.is_some() && tcp_listen_port.is_some() && quic_listen_port.is_some());
        assert!(disable_quic.is_some() && peer_discovery_port.is_some());
        assert!(disable_peer_discovery.is_some() && peer_discovery_interfaces.is_some());
        assert!(api_addr.is_some() && jsonrpc_addr.is_some() && no_tun.is_some());
        assert!(no_tun_offload.is_some());
        assert!(tun_name.is_some() && metrics_api_address.is_some() && firewall_mark.is_some());
        assert!(update_workers.is_some() && topic_config.is_some() && cdn_cache.is_some());
        assert!(cdn_registries.is_some());
        assert!(vsock_listen_port.is_some() && enable_dns.is_some());
        assert!(network_name.is_some() && network_key_file.is_some());
        assert!(api_token_file.is_some() && proxy_allow_remote.is_some());
        assert_eq!(
            [
                max_inbound_peers,
                max_connections_per_second,
                link_data_queue,
                link_control_rate,
                max_routes,
                max_routes_per_peer
            ],
            [7, 8, 90, 10, 110, 120].map(Some)
        );
        assert_eq!((leaf, leaf_routes), (Some(true), Some(130)));
    }

    #[test]
    fn unknown_keys_are_listed_not_refused() {
        let (c, unknown) =
            parse("colour = \"blue\"\ntcp_listen_port = 7\n[extra]\nx = 1\n").unwrap();
        assert_eq!(c.tcp_listen_port, Some(7));
        assert_eq!(unknown, ["colour", "extra"]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("tcp_listen_port = 9651\napi_addr = 127.0.0.1:8989\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for (text, key, value) in [
            ("peers = [\"tcp://1.2.3.4:1\",\n  \"foo\"]", "peers", "foo"),
            ("peers = \"udp://1.2.3.4:1\"", "peers", "udp://1.2.3.4:1"),
            ("api_addr = \"nonsense\"", "api_addr", "nonsense"),
            (
                "jsonrpc_addr = \"localhost:1\"",
                "jsonrpc_addr",
                "localhost:1",
            ),
            ("tcp_listen_port = 70000", "tcp_listen_port", "70000"),
            ("update_workers = 0", "update_workers", "0"),
            ("update_workers = 300", "update_workers", "300"),
            ("update_workers = -1", "update_workers", "-1"),
            ("no_tun = \"yes\"", "no_tun", "yes"),
            ("firewall_mark = -1", "firewall_mark", "-1"),
            ("max_inbound_peers = 70000", "max_inbound_peers", "70000"),
            ("link_data_queue = 1", "link_data_queue", "1"),
            ("max_routes = -5", "max_routes", "-5"),
            ("leaf_routes = 0", "leaf_routes", "0"),
            ("leaf = \"on\"", "leaf", "on"),
            ("link_control_rate = 1e9", "link_control_rate", "1e9"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(value), "{text}: {err}");
            assert!(err.contains("line "), "{text}: {err}");
        }
        // An element of a multi-line array is pointed at, not the array.
        let err = parse("peers = [\n  \"tcp://1.2.3.4:1\",\n  \"foo\",\n]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
