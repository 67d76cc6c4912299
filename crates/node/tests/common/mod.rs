//! Loopback helpers the node's integration tests share.
#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// A loopback TCP port free at the time of asking.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("the bound address")
        .port()
}

/// Connects once the listener is up (the node binds it in the background).
pub(crate) async fn connect(port: u16) -> TcpStream {
    let began = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(began.elapsed() < Duration::from_secs(10), "connect: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
