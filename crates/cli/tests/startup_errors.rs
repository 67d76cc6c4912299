//! Start-up refusals of the daemon for settings this project added: an API beyond
//! loopback without a token, an unusable token file, a topic configuration that
//! does not parse. Each stops the node before it opens any socket, with one line
//! that names the bad value, and exit status 1.
#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

use std::process::Output;

fn node(args: &[&str], dir: &std::path::Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(["--no-tun", "--disable-peer-discovery", "--key-file"])
        .arg(dir.join("key"))
        .args(args)
        .env("HOME", dir)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap()
}

fn refused(out: &Output, names: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for name in names {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
}

#[test]
fn an_api_beyond_loopback_needs_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = node(&["--api-addr", "0.0.0.0:18989"], dir.path());
    refused(&out, &["0.0.0.0:18989", "--api-token-file"]);
    let out = node(&["--jsonrpc-addr", "[::]:18990"], dir.path());
    refused(&out, &["[::]:18990", "--api-token-file"]);
}

#[test]
fn an_unusable_token_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let out = node(&["--api-token-file", missing.to_str().unwrap()], dir.path());
    refused(&out, &["no-such-token"]);
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let out = node(&["--api-token-file", empty.to_str().unwrap()], dir.path());
    refused(&out, &["empty-token", "printable"]);
}

#[test]
fn a_topic_configuration_that_does_not_parse_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topics.toml");
    std::fs::write(&file, "default = \"Accept\"\n[\"chat\"\nbroken").unwrap();
    let out = node(&["--topic-config", file.to_str().unwrap()], dir.path());
    refused(&out, &["topics.toml", "line"]);
}

#[test]
fn a_dns_port_that_is_taken_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // QUIC off: its port is bound before the forwarder's and could be taken too.
    let out = node(
        &["--enable-dns", "--dns-listen", &addr, "--disable-quic"],
        dir.path(),
    );
    refused(&out, &["DNS", &addr]);
}

/// Each `(option, value)` alone stops the node with exit status 2 and a message
/// naming the value.
fn usage_errors(cases: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (option, value) in cases {
        let out = node(&[option, value], dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {value}: {err}");
        assert!(err.contains(value), "{value} missing from: {err}");
    }
}

#[test]
fn a_bad_dns_option_value_is_a_usage_error_naming_it() {
    usage_errors(&[
        ("--dns-listen", "nowhere"),
        ("--dns-candidate", "1.2.3.4"),
        ("--dns-timeout-ms", "0"),
        ("--dns-max-in-flight", "none"),
    ]);
}

#[test]
fn a_bad_leaf_cache_size_is_a_usage_error_naming_it() {
    usage_errors(&[
        ("--leaf-routes", "0"),
        ("--leaf-routes", "1000001"),
        ("--leaf-routes", "many"),
    ]);
}

#[test]
fn a_cdn_port_that_is_taken_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cache = dir.path().join("cache");
    let out = node(
        &[
            "--cdn-cache",
            cache.to_str().unwrap(),
            "--cdn-listen",
            &addr,
            "--disable-quic",
            "--tcp-listen-port",
            "0",
        ],
        dir.path(),
    );
    refused(&out, &["CDN", &addr]);
}

#[test]
fn a_cdn_cache_that_is_a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache-file");
    std::fs::write(&file, "x").unwrap();
    let with_cache = |cache: &std::path::Path| {
        node(
            &[
                "--cdn-cache",
                cache.to_str().unwrap(),
                "--cdn-listen",
                "127.0.0.1:0",
                "--disable-quic",
                "--tcp-listen-port",
                "0",
            ],
            dir.path(),
        )
    };
    refused(&with_cache(&file), &["cache-file", "not a directory"]);
    // A missing parent is named too (only one level is created).
    let out = with_cache(&dir.path().join("no-parent").join("cache"));
    refused(&out, &["no-parent"]);
}

#[test]
fn a_bad_cdn_option_value_is_a_usage_error_naming_it() {
    usage_errors(&[
        ("--cdn-registry", "bad/host"),
        ("--cdn-listen", "nowhere"),
        ("--cdn-fetch-timeout-ms", "0"),
        ("--cdn-redis-timeout-ms", "soon"),
    ]);
}
