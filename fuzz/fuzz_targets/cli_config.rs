//! The `mycelium` config file (CLI.md): the TOML text parsed into the CLI's own
//! `ConfigFile`, with its custom readers (peer endpoint URIs, socket addresses, the
//! bounded integers). The CLI is a binary crate, so its `config.rs` is compiled in
//! here as a module; the two crate items it uses are stood in for below.
//!
//! What parses must hold values within the bounds the readers promise; parsing must
//! never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Stand-ins for the CLI crate items `config.rs` uses.
mod paths {
    pub(crate) fn default_config_file() -> anyhow::Result<std::path::PathBuf> {
        anyhow::bail!("no default config file while fuzzing")
    }
}

/// Copies of `crates/cli/src/settings.rs`' bounds: only the limits checked below
/// depend on them, a drift makes a value fail to parse here, never a crash.
mod settings {
    pub(crate) const MAX_UPDATE_WORKERS: usize = 254;
    pub(crate) mod limits {
        pub(crate) const INBOUND_PEERS: (u64, u64, u64) = (0, 65_536, 1_024);
        pub(crate) const CONNECTIONS_PER_SECOND: (u64, u64, u64) = (0, 1_000_000, 64);
        pub(crate) const LINK_DATA_QUEUE: (u64, u64, u64) = (16, 1_048_576, 2_048);
        pub(crate) const LINK_CONTROL_RATE: (u64, u64, u64) = (0, 100_000_000, 20_000);
        pub(crate) const ROUTES: (u64, u64, u64) = (16, 100_000_000, 250_000);
        pub(crate) const ROUTES_PER_PEER: (u64, u64, u64) = (16, 100_000_000, 100_000);
    }
}

#[allow(dead_code)]
#[path = "../../crates/cli/src/config.rs"]
mod config;

use config::ConfigFile;
use settings::limits;

fn within(v: Option<u64>, (min, max, _): (u64, u64, u64)) -> bool {
    v.is_none_or(|v| (min..=max).contains(&v))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As the CLI reads it: once as a plain table (for the unknown keys), once into
    // the values; both must succeed. (The table is the stricter of the two: the
    // values skip unknown keys without checking, say, that an integer fits.)
    if toml::from_str::<toml::Table>(text).is_err() {
        return;
    }
    let Ok(values) = toml::from_str::<ConfigFile>(text) else {
        return;
    };
    assert!(values
        .update_workers
        .is_none_or(|n| (1..=settings::MAX_UPDATE_WORKERS).contains(&n)));
    assert!(within(values.max_inbound_peers, limits::INBOUND_PEERS));
    assert!(within(
        values.max_connections_per_second,
        limits::CONNECTIONS_PER_SECOND
    ));
    assert!(within(values.link_data_queue, limits::LINK_DATA_QUEUE));
    assert!(within(values.link_control_rate, limits::LINK_CONTROL_RATE));
    assert!(within(values.max_routes, limits::ROUTES));
    assert!(within(values.max_routes_per_peer, limits::ROUTES_PER_PEER));
    for ep in values.peers.iter().flatten() {
        let again: mycelium_proto::endpoint::Endpoint = ep
            .to_string()
            .parse()
            .expect("a parsed peer prints as a URI");
        assert_eq!(&again, ep);
    }
});
