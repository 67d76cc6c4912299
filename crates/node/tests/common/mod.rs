//! Loopback helpers the node's integration tests share.
#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;

use tokio::net::TcpStream;

/// A loopback TCP port free at the time of asking.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("the bound address")
        .port()
}

/// Connects to a node's listener on `port`, once: `mycelium_node::start` returns
/// after binding it, so a refused connection is a failure, not a wait.
pub(crate) async fn connect(port: u16) -> TcpStream {
    match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => panic!("connecting to the node on port {port}: {e}"),
    }
}
