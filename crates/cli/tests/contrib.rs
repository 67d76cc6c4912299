//! The config files the repository ships for users parse as config files, without
//! starting a node (nothing here contacts the addresses they list).
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

use mycelium::config::ConfigFile;

#[test]
fn the_public_peers_file_lists_ten_public_nodes_over_tcp_and_quic() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/public-peers.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: ConfigFile = toml::from_str(&text).unwrap();
    let peers = cfg.peers.unwrap();
    assert_eq!(peers.len(), 10);
    let names: Vec<&str> = peers.iter().map(|p| p.proto().name()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "Tcp").count(),
        5,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "Quic").count(),
        5,
        "{names:?}"
    );
    // Nothing else is set: the file only adds peers to the defaults.
    assert_eq!(ConfigFile { peers: None, ..cfg }, ConfigFile::default());
}

/// The packaged service's settings file sets nothing: every key is commented out,
/// so the installed node dials no one until its user chooses peers. Uncommented,
/// each example is a valid key with a valid value, and its peers are the public
/// peers file's.
#[test]
fn the_packaged_settings_file_dials_no_one_until_edited() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib");
    let text = std::fs::read_to_string(format!("{dir}/mycelium.toml")).unwrap();
    let cfg: ConfigFile = toml::from_str(&text).unwrap();
    assert_eq!(cfg, ConfigFile::default());

    let examples: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            let key = l.split(" = ").next().unwrap_or("");
            l.contains(" = ")
                && !l.ends_with('[')
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    assert!(examples.len() >= 8, "{examples:?}");
    for example in &examples {
        let parsed: Result<ConfigFile, _> = toml::from_str(example);
        assert!(parsed.is_ok(), "{example}: {parsed:?}");
    }
    // The commented-out peer list, uncommented.
    let peers: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# peers = ["))
        .take_while(|l| !l.starts_with("# ]"))
        .chain(std::iter::once("# ]"))
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let cfg: ConfigFile = toml::from_str(&peers).unwrap();
    let public = std::fs::read_to_string(format!("{dir}/public-peers.toml")).unwrap();
    let public: ConfigFile = toml::from_str(&public).unwrap();
    assert_eq!(cfg.peers, public.peers);
}
