//! The key subcommands and `--version`, run as a user runs them: the real binary, its
//! output and its exit status.
#![allow(clippy::unwrap_used)] // a test that cannot read its fixtures should fail loudly

use std::path::Path;
use std::process::{Command, Output};

fn mycelium(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

const PK: &str = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";

#[test]
fn inspect_prints_a_given_keys_address() {
    let home = tempfile::tempdir().unwrap();
    let o = mycelium(&["inspect", PK], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("Public key: {PK}\nAddress: 5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e\n")
    );
    let o = mycelium(&["inspect", "--json", PK], home.path());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["address"], "5a6:f0c6:f365:177d:66be:4a2b:d9fd:b59e");
    assert!(stdout(&o).starts_with("{\n  \"publicKey\""));
}

#[test]
fn inspect_reads_the_key_file() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k.bin");
    let sk: Vec<u8> = (1..=32).collect();
    std::fs::write(&key, sk).unwrap();
    let o = mycelium(&["inspect", "-k", key.to_str().unwrap()], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(PK));
    // -k is global: it may follow the subcommand's own arguments too.
    let o = mycelium(
        &["inspect", "--json", "--key-file", key.to_str().unwrap()],
        home.path(),
    );
    assert!(stdout(&o).contains(PK));
}

#[test]
fn inspect_without_key_fails_with_status_1() {
    let home = tempfile::tempdir().unwrap();
    let o = mycelium(&["inspect"], home.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no key to inspect and key file not found"));
    // And it did not create one.
    assert!(!home
        .path()
        .join(".local/share/mycelium/priv_key.bin")
        .exists());
}

#[test]
fn bad_public_key_is_a_usage_error_naming_the_value() {
    let home = tempfile::tempdir().unwrap();
    for bad in ["abc", "zz", &PK[..63]] {
        let o = mycelium(&["inspect", bad], home.path());
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains(bad), "{}", stderr(&o));
    }
}

#[test]
fn key_file_of_wrong_length_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("short.bin");
    std::fs::write(&key, [7u8; 31]).unwrap();
    let o = mycelium(&["inspect", "-k", key.to_str().unwrap()], home.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds 31 bytes"), "{}", stderr(&o));
}

#[test]
fn generate_keys_writes_a_private_key_once() {
    let home = tempfile::tempdir().unwrap();
    let o = mycelium(&["generate-keys"], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let path = home.path().join(".local/share/mycelium/priv_key.bin");
    let first = std::fs::read(&path).unwrap();
    assert_eq!(first.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second run keeps the key and still succeeds.
    let o = mycelium(&["generate-keys"], home.path());
    assert!(o.status.success());
    assert_eq!(std::fs::read(&path).unwrap(), first);
    // --force replaces it.
    let o = mycelium(&["generate-keys", "--force"], home.path());
    assert!(o.status.success());
    assert_ne!(std::fs::read(&path).unwrap(), first);
}

#[test]
fn version_names_the_implementation_and_the_upstream_release() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mycelium"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(concat!("mycelium ", env!("CARGO_PKG_VERSION")))
            && text.contains("mycelium-rs")
            && text.contains("v0.7.10"),
        "{text}"
    );
}
