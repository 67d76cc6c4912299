//! The `mycelium` config file: the TOML text parsed into the CLI library's
//! `ConfigFile`, with its custom readers (peer endpoint URIs, socket addresses, the
//! bounded integers).
//!
//! What parses must hold values within the bounds the readers promise; parsing must
//! never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium::config::ConfigFile;
use mycelium::options::{self, limits};

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
