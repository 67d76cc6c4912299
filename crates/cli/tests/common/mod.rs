//! What the integration tests that run this crate's `mycelium` binary share:
//! running commands and checking what they print, waiting for a condition, free
//! ports; nodes on loopback ([`node`]) and nodes in network namespaces ([`netns`]).
//!
//! A helper that cannot do its part fails the test, saying why: nothing here lets a
//! test return early as if it had passed.
#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

pub(crate) mod netns;
pub(crate) mod node;

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `mycelium` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mycelium");

/// Fails the test unless `cond`: an end-to-end test lacks `what` (a tool, root, a
/// device).
pub(crate) fn require(cond: bool, what: &str) {
    assert!(
        cond,
        "end-to-end tests need {what}; run ./scripts/setup.sh as root"
    );
}

/// Runs `cmd` (program and arguments) and returns its output; fails the test if it
/// cannot be started.
pub(crate) fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd` and returns its stdout; fails the test if it fails.
pub(crate) fn run_ok(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `cmd` starts and succeeds; its output is dropped. For checking that a
/// tool is installed.
pub(crate) fn runs(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A command's exit status, stdout and stderr, for a failure message.
pub(crate) fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Calls `probe` every 100 ms until it holds; whether it did within `limit`.
pub(crate) fn poll(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until `probe` holds; fails the test, naming `what`, once `limit` passes.
pub(crate) fn wait_for(what: &str, limit: Duration, probe: impl FnMut() -> bool) {
    assert!(poll(limit, probe), "{what}: not within {limit:?}");
}

/// A port free for both TCP and UDP on every address (QUIC takes the UDP port of
/// the same number as the TCP listener).
pub(crate) fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("[::]:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("::", port)).is_ok() {
            return port;
        }
    }
}
