//! Daemon-mode command line, config file and logging, run as a user runs them: the
//! real binary, its output and its exit status. Resolved settings are read through
//! the hidden `--print-settings` flag.
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch home with no config file and no key.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `name` in the home and returns its path as a string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mycelium"));
        cmd.args(args)
            .env("HOME", self.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    /// Runs with `--print-settings` and returns the settings.
    fn settings(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--print-settings");
        let o = self.run(&all);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        json_after_logs(&stdout(&o))
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The pretty-printed JSON document at the end of `out`, after any log lines.
fn json_after_logs(out: &str) -> serde_json::Value {
    let start = out
        .find("{\n")
        .unwrap_or_else(|| panic!("no JSON in {out}"));
    serde_json::from_str(&out[start..]).unwrap()
}

#[test]
fn bad_values_are_usage_errors_naming_the_value() {
    let home = Home::new();
    for args in [
        &["--peers", "foo"][..],
        &["--peers", "tcp://example.com:9651"],
        &["--tcp-listen-port", "70000"],
        &["--quic-listen-port", "x"],
        &["--api-addr", "nonsense"],
        &["--update-workers", "0"],
        &["--update-workers", "300"],
        &["--log-format", "xml"],
    ] {
        let o = home.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let bad = args.last().unwrap();
        assert!(
            stderr(&o).contains(&format!("'{bad}'")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn print_settings_is_not_in_the_help() {
    let home = Home::new();
    let o = home.run(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("--peers") && help.contains("--update-workers"));
    assert!(!help.contains("print-settings"), "{help}");
}

#[test]
fn defaults_without_any_config() {
    let home = Home::new();
    let s = home.settings(&[]);
    assert_eq!(s["peers"], serde_json::json!([]));
    assert_eq!(s["tcp_listen_port"], 9651);
    assert_eq!(s["quic_listen_port"], 9651);
    assert_eq!(s["peer_discovery_port"], 9650);
    assert_eq!(s["api_addr"], "127.0.0.1:8989");
    assert_eq!(s["jsonrpc_addr"], "127.0.0.1:8990");
    assert_eq!(s["update_workers"], 1);
    assert_eq!(s["tun_name"], "mycelium");
    assert_eq!(s["no_tun"], false);
    assert_eq!(s["metrics_api_address"], serde_json::Value::Null);
}

#[test]
fn missing_explicit_config_file_fails_with_status_1_naming_it() {
    let home = Home::new();
    let missing = home.path().join("nope.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        &["-c", missing][..],
        &["--config-file", missing, "--print-settings"],
        // Subcommands read the config file too.
        &["inspect", "-c", missing],
    ] {
        let o = home.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(missing), "{}", stderr(&o));
        assert!(stderr(&o).starts_with("Error: "), "{}", stderr(&o));
    }
}

#[test]
fn unparsable_config_file_fails_with_status_1_naming_file_and_line() {
    let home = Home::new();
    let path = home.file(
        "bad.toml",
        "tcp_listen_port = 9651\napi_addr = 127.0.0.1:8989\n",
    );
    let o = home.run(&["-c", &path, "--print-settings"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&path) && err.contains("line 2"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_value_in_config_file_fails_with_status_1_naming_key_and_value() {
    let home = Home::new();
    for (text, key, value) in [
        ("peers = [\"tcp://1.2.3.4:1\", \"bogus\"]", "peers", "bogus"),
        ("api_addr = \"nonsense\"", "api_addr", "nonsense"),
        ("tcp_listen_port = 70000", "tcp_listen_port", "70000"),
        ("update_workers = 255", "update_workers", "255"),
    ] {
        let path = home.file("bad-value.toml", text);
        let o = home.run(&["-c", &path, "--print-settings"]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        let err = stderr(&o);
        assert!(err.contains(key) && err.contains(value), "{text}: {err}");
    }
}

#[test]
fn default_config_file_is_used_when_it_exists() {
    let home = Home::new();
    // No file: defaults, no error.
    assert_eq!(home.settings(&[])["tcp_listen_port"], 9651);
    // $HOME/.config/mycelium/mycelium.toml
    home.file(".config/mycelium/mycelium.toml", "tcp_listen_port = 1111\n");
    assert_eq!(home.settings(&[])["tcp_listen_port"], 1111);
    // $XDG_CONFIG_HOME takes over from $HOME/.config.
    let xdg: PathBuf = home.path().join("xdg");
    home.file("xdg/mycelium/mycelium.toml", "tcp_listen_port = 2222\n");
    let o = home
        .command(&["--print-settings"])
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert_eq!(json_after_logs(&stdout(&o))["tcp_listen_port"], 2222);
    // An explicit file replaces the default one.
    let other = home.file("other.toml", "tcp_listen_port = 3333\n");
    assert_eq!(home.settings(&["-c", &other])["tcp_listen_port"], 3333);
}

#[test]
fn precedence_between_command_line_and_config_file() {
    let home = Home::new();
    let config = home.file(
        "c.toml",
        r#"
peers = "quic://[2a01:4f8:212:fa6::2]:9651"
tcp_listen_port = 1000
quic_listen_port = 1001
api_addr = "[::1]:1002"
update_workers = 3
no_tun = true
disable_quic = false
tun_name = "from-config"
firewall_mark = 30
"#,
    );
    // Only the config file.
    let s = home.settings(&["-c", &config]);
    assert_eq!(
        s["peers"],
        serde_json::json!(["quic://[2a01:4f8:212:fa6::2]:9651"])
    );
    assert_eq!(s["tcp_listen_port"], 1000);
    assert_eq!(s["quic_listen_port"], 1001);
    assert_eq!(s["api_addr"], "[::1]:1002");
    assert_eq!(s["update_workers"], 3);
    assert_eq!(s["no_tun"], true);
    assert_eq!(s["tun_name"], "from-config");
    assert_eq!(s["firewall_mark"], 30);

    // The command line, with values other than the defaults, wins; flags add up.
    let s = home.settings(&[
        "-c",
        &config,
        "--peers",
        "TCP://1.2.3.4:9651",
        "tls://5.6.7.8:9651",
        "-t",
        "2000",
        "--api-addr",
        "0.0.0.0:2002",
        "--update-workers",
        "9",
        "--disable-quic",
        "--tun-name",
        "cli",
        "--firewall-mark",
        "0",
    ]);
    assert_eq!(
        s["peers"],
        serde_json::json!(["tcp://1.2.3.4:9651", "tls://5.6.7.8:9651"])
    );
    assert_eq!(s["tcp_listen_port"], 2000);
    assert_eq!(s["quic_listen_port"], 1001);
    assert_eq!(s["api_addr"], "0.0.0.0:2002");
    assert_eq!(s["update_workers"], 9);
    assert_eq!(s["no_tun"], true);
    assert_eq!(s["disable_quic"], true);
    assert_eq!(s["tun_name"], "cli");
    assert_eq!(s["firewall_mark"], 0);

    // Upstream's quirk: a command-line value equal to the default loses.
    let s = home.settings(&[
        "-c",
        &config,
        "-t",
        "9651",
        "-q",
        "9651",
        "--api-addr",
        "127.0.0.1:8989",
        "--update-workers",
        "1",
    ]);
    assert_eq!(s["tcp_listen_port"], 1000);
    assert_eq!(s["quic_listen_port"], 1001);
    assert_eq!(s["api_addr"], "[::1]:1002");
    assert_eq!(s["update_workers"], 3);
}

#[test]
fn unknown_config_keys_are_warned_about_and_ignored() {
    let home = Home::new();
    let config = home.file("c.toml", "colour = \"blue\"\ntcp_listen_port = 4000\n");
    let o = home.run(&["-c", &config, "--log-format", "plain", "--print-settings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let warning = out.lines().next().unwrap();
    assert!(warning.starts_with("ts="), "{warning}");
    assert!(
        warning.contains(" level=warn ") && warning.contains(" key=colour"),
        "{warning}"
    );
    assert_eq!(json_after_logs(&out)["tcp_listen_port"], 4000);

    // --silent hides warnings.
    let o = home.run(&["-c", &config, "--silent", "--print-settings"]);
    assert!(stdout(&o).starts_with('{'), "{}", stdout(&o));
}

#[test]
fn log_formats_are_uncoloured_when_not_on_a_terminal() {
    let home = Home::new();
    let config = home.file("c.toml", "colour = \"blue\"\n");
    for format in ["compact", "logfmt", "plain"] {
        let o = home.run(&["-c", &config, "--log-format", format, "--print-settings"]);
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(!out.contains('\x1b'), "{format}: {out:?}");
        let line = out.lines().next().unwrap();
        if format == "compact" {
            assert!(line.contains(" WARN ") && line.contains("colour"), "{line}");
        } else {
            assert!(
                line.starts_with("ts=") && line.contains(" level=warn "),
                "{line}"
            );
        }
    }
}

#[test]
fn debug_level_shows_debug_lines_unless_silent() {
    let home = Home::new();
    let config = home.file("c.toml", "");
    let o = home.run(&["-c", &config, "-d", "--print-settings"]);
    assert!(stdout(&o).contains("DEBUG"), "{}", stdout(&o));
    let o = home.run(&["-c", &config, "-d", "--silent", "--print-settings"]);
    assert!(!stdout(&o).contains("DEBUG"), "{}", stdout(&o));
    // RUST_LOG adds directives on top of the chosen level.
    let o = home
        .command(&["-c", &config, "--print-settings"])
        .env("RUST_LOG", "mycelium=debug")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("DEBUG"), "{}", stdout(&o));
}

#[test]
fn invalid_rust_log_is_a_usage_error() {
    let home = Home::new();
    let o = home
        .command(&["--print-settings"])
        .env("RUST_LOG", "mycelium=loud")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("invalid RUST_LOG value") && err.contains("mycelium=loud"),
        "{err}"
    );
}

#[test]
fn a_node_starts_creates_its_key_and_stops_cleanly_on_sigterm() {
    let home = Home::new();
    let key = home.path().join("k.bin");
    // Router only, ephemeral ports, nothing outside this machine.
    let child = home
        .command(&[
            "-k",
            key.to_str().unwrap(),
            "--no-tun",
            "--disable-peer-discovery",
            "--tcp-listen-port",
            "0",
            "--quic-listen-port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The key is written before the node starts its links.
    let start = std::time::Instant::now();
    while !key.exists() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("generating a new key"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("node stopped"), "{}", stdout(&o));
    // A bad config value stops it before the key is touched.
    let key2 = home.path().join("k2.bin");
    let config = home.file("c.toml", "api_addr = \"x\"\n");
    let o = home.run(&["-k", key2.to_str().unwrap(), "-c", &config]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!key2.exists());
}

#[cfg(feature = "private")]
#[test]
fn private_network_options() {
    let home = Home::new();
    for args in [
        &["--network-name", "net"][..],
        &["--network-key-file", "k"],
        &["--network-name", "x", "--network-key-file", "k"],
    ] {
        let o = home.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let s = home.settings(&["--network-name", "my net", "--network-key-file", "/k"]);
    assert_eq!(s["network_name"], "my net");
    assert_eq!(s["network_key_file"], "/k");
    // From the config file, with the name checked there too.
    let config = home.file(
        "p.toml",
        "network_name = \"n\"\nnetwork_key_file = \"/k\"\n",
    );
    let o = home.run(&["-c", &config, "--print-settings"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("network name must be between 2 and 64 characters"),
        "{}",
        stderr(&o)
    );
}

#[cfg(not(feature = "private"))]
#[test]
fn public_build_ignores_private_network_keys_with_a_warning() {
    let home = Home::new();
    let config = home.file("p.toml", "network_name = \"n\"\n");
    let o = home.run(&["-c", &config, "--log-format", "plain", "--print-settings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("no private network support"), "{out}");
    assert!(json_after_logs(&out).get("network_name").is_none());
    let o = home.run(&["--network-name", "net"]);
    assert_eq!(o.status.code(), Some(2));
}
