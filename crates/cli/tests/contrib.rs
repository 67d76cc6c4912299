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
