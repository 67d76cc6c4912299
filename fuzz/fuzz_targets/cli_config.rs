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

/// The CLI's `options` items `config.rs` uses: the update-worker bound (a copy; a
/// drift makes a value fail to parse here, never a crash) and the limit ranges, the
/// CLI's own file.
mod options {
    pub(crate) const MAX_UPDATE_WORKERS: usize = 254;
    pub(crate) use super::cli_limits as limits;
}

// At the top level: a `#[path]` inside an inline module resolves through a
// directory named after it, which does not exist.
#[path = "../../crates/cli/src/options/limits.rs"]
mod cli_limits;

#[allow(dead_code)]
#[path = "../../crates/cli/src/config.rs"]
mod config;

use config::ConfigFile;
use options::limits;

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
        .is_none_or(|n| (1..=options::MAX_UPDATE_WORKERS).contains(&n)));
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
