//! vsock peering over the kernel's vsock loopback: two
//! router-only nodes, one listening on a vsock port, the other dialling
//! `vsock://1:PORT` (CID 1 is the local machine), see each other's subnet.
//!
//! Needs the `vsock_loopback` transport (`modprobe vsock_loopback`, tried here).
//! A kernel built without it cannot run this test: it then says so plainly and
//! passes without peering; that is the one case it does not fail. With the
//! transport present, failing to peer fails the test.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

use std::time::{Duration, Instant};

use mycelium_node::{Node, NodeConfig};
use mycelium_proto::endpoint::{Endpoint, VsockAddr};
use mycelium_proto::SecretKey;
use tokio_util::sync::CancellationToken;

/// `VMADDR_CID_LOCAL`: the local machine, served by the loopback transport.
const CID_LOCAL: u32 = 1;

/// Whether the kernel has the vsock loopback transport (after trying to load it);
/// `Err` says why not.
fn loopback_available() -> Result<(), String> {
    let modprobe = std::process::Command::new("modprobe")
        .arg("vsock_loopback")
        .output();
    let modprobe = match modprobe {
        Ok(out) if out.status.success() => "loaded".to_owned(),
        Ok(out) => format!(
            "modprobe vsock_loopback: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("modprobe: {e}"),
    };
    if std::path::Path::new("/sys/module/vsock_loopback").exists() {
        return Ok(());
    }
    // Built in, it has no /sys/module entry: the kernel's configuration tells.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let config = kernel_config(release.trim());
    match config {
        Some(c) if c.lines().any(|l| l == "CONFIG_VSOCKETS_LOOPBACK=y") => Ok(()),
        Some(_) => Err(format!(
            "the kernel {} is built without CONFIG_VSOCKETS_LOOPBACK and the module is not \
             loaded ({modprobe})",
            release.trim()
        )),
        None => Err(format!(
            "no vsock_loopback module loaded ({modprobe}) and no kernel configuration to \
             tell whether it is built in"
        )),
    }
}

/// The kernel's build configuration, from `/proc/config.gz` or `/boot`.
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(out) = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
    {
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

fn config(peers: Vec<Endpoint>, vsock_listen_port: Option<u32>) -> NodeConfig {
    NodeConfig {
        peers,
        vsock_listen_port,
        ..NodeConfig::router_only(SecretKey::generate(&mut rand::thread_rng()))
    }
}

/// The next hop `from` selected for `to`'s subnet, if any.
async fn next_hop(from: &Node, to: &Node) -> Option<String> {
    let subnet = to.subnet();
    from.routes()
        .await
        .selected
        .into_iter()
        .find(|r| r.subnet == subnet)
        .map(|r| r.next_hop)
}

/// Needs the vsock loopback transport, which the kernels of the machines this
/// suite runs on lack; so it is not counted there. Run it where the transport
/// exists with `cargo test -p mycelium-node --test vsock -- --ignored`: without the
/// transport it fails, saying why.
#[tokio::test]
#[ignore = "needs the vsock loopback transport (CONFIG_VSOCKETS_LOOPBACK or the vsock_loopback module)"]
async fn two_nodes_peer_over_vsock_loopback() {
    if let Err(why) = loopback_available() {
        panic!("vsock loopback unavailable on this kernel: {why}");
    }
    let port = 40_000 + std::process::id() % 20_000;
    let shutdown = CancellationToken::new();
    let (a, a_done) = mycelium_node::start(config(vec![], Some(port)), shutdown.clone())
        .await
        .unwrap();
    let peer = Endpoint::vsock(VsockAddr {
        cid: CID_LOCAL,
        port,
    });
    let (b, b_done) = mycelium_node::start(config(vec![peer], None), shutdown.clone())
        .await
        .unwrap();
    let start = Instant::now();
    let hops = loop {
        if let (Some(ab), Some(ba)) = (next_hop(&a, &b).await, next_hop(&b, &a).await) {
            break (ab, ba);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no route over vsock after 20 s; B's peers: {:?}",
            b.peers()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // `VSOCK <lcid>:<lport> <-> <pcid>:<pport>`; B dialled A's port.
    assert!(hops.0.starts_with("VSOCK "), "{}", hops.0);
    assert!(hops.1.ends_with(&format!(":{port}")), "{}", hops.1);
    shutdown.cancel();
    a_done.await;
    b_done.await;
}

/// The listener binds its port on any CID (this needs vsock, not the loopback).
#[tokio::test]
async fn the_vsock_listener_holds_its_port() {
    assert!(
        std::path::Path::new("/dev/vsock").exists(),
        "vsock unavailable on this kernel: no /dev/vsock"
    );
    let port = 40_000 + (std::process::id() + 1) % 20_000;
    let shutdown = CancellationToken::new();
    let (_node, done) = mycelium_node::start(config(vec![], Some(port)), shutdown.clone())
        .await
        .unwrap();
    let any = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
    let start = Instant::now();
    // The listener task binds soon after start.
    while tokio_vsock::VsockListener::bind(any).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "vsock port {port} still free 5 s after start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    done.await;
    // Stopped, the node lets the port go.
    tokio_vsock::VsockListener::bind(any).unwrap();
}
