//! Serves the REST API (with the web view at `/`) and the JSON-RPC API over an
//! in-memory `FakeBackend`, for developing the web view and API clients without a
//! node.
//!
//! ```text
//! cargo run -p mycelium-api --example fake_node -- \
//!     [--api-addr 127.0.0.1:8989] [--jsonrpc-addr 127.0.0.1:8990] [--token SECRET]
//! ```
//!
//! A message pushed to the fake node's own address comes back in its inbox. Stops on
//! Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use mycelium_api::{ApiConfig, Backend, FakeBackend};
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Args {
    api: SocketAddr,
    rpc: SocketAddr,
    token: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        api: SocketAddr::from(([127, 0, 0, 1], 8989)),
        rpc: SocketAddr::from(([127, 0, 0, 1], 8990)),
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--api-addr" => args.api = value()?.parse().map_err(|e| format!("--api-addr: {e}"))?,
            "--jsonrpc-addr" => {
                args.rpc = value()?
                    .parse()
                    .map_err(|e| format!("--jsonrpc-addr: {e}"))?
            }
            "--token" => args.token = Some(value()?),
            "-h" | "--help" => {
                return Err(
                    "usage: fake_node [--api-addr ADDR] [--jsonrpc-addr ADDR] [--token TOKEN]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let fake = Arc::new(FakeBackend::new());
    let backend: Arc<dyn Backend> = fake.clone();
    let cfg = ApiConfig {
        token: args.token,
        ..ApiConfig::default()
    };
    let api = TcpListener::bind(args.api).await?;
    let rpc = TcpListener::bind(args.rpc).await?;
    println!(
        "fake node {} ({}): REST and web view on http://{}, JSON-RPC on http://{}",
        fake.address(),
        fake.public_key(),
        api.local_addr()?,
        rpc.local_addr()?
    );
    let (stop, stopped) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = tokio::spawn(mycelium_api::serve_http(
        api,
        backend.clone(),
        cfg.clone(),
        signal(stopped.clone()),
    ));
    let rpc = tokio::spawn(mycelium_api::serve_rpc(rpc, backend, cfg, signal(stopped)));
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(true);
    for server in [http, rpc] {
        if let Ok(Err(e)) = server.await {
            eprintln!("server error: {e}");
        }
    }
    Ok(())
}
