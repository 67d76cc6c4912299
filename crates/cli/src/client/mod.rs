//! The subcommands that act as a client of a running node's REST API:
//! `message`, `peers`, `routes`, `proxy` and `stats`.
//!
//! Each one sends its requests to `http://<--api-addr>/api/v1/…`, turns
//! the answer into the text upstream prints and writes it to stdout. A node that
//! cannot be reached, or that answers with an unexpected status, is an error naming
//! the address or the node's reason (exit 1, see `main`). What a request carries is
//! checked on the command line already ([`args`]).
//!
//! Not here: the API server (crate `mycelium-api`) and the key subcommands.

mod args;
mod http;
mod message;
mod peers;
mod proxy;
mod routes;
mod stats;
mod table;

use std::io::{self, Write};
use std::net::SocketAddr;

use anyhow::Context;

pub(crate) use args::ClientCommand;
use args::{MessageCommand, PeersCommand, StatsCommand};
use http::Api;

/// Runs `command` against the API at `api_addr` and prints its output.
pub(crate) fn run(api_addr: SocketAddr, command: ClientCommand) -> anyhow::Result<()> {
    let api = Api::new(api_addr)?;
    tracing::debug!(api = %api.addr(), "calling the node's API");
    let output = match command {
        ClientCommand::Message { command } => match command {
            MessageCommand::Send(a) => message::send(&api, a)?,
            MessageCommand::Receive(a) => message::receive(&api, a)?,
        },
        ClientCommand::Peers { command } => match command {
            PeersCommand::List { json } => peers::list(&api, json)?.into_bytes(),
            PeersCommand::Add { endpoints } => {
                peers::add(&api, &endpoints)?;
                Vec::new()
            }
            PeersCommand::Remove { endpoints } => {
                peers::remove(&api, &endpoints)?;
                Vec::new()
            }
        },
        ClientCommand::Routes { command } => routes::run(&api, command)?.into_bytes(),
        ClientCommand::Proxy { command } => proxy::run(&api, command)?.into_bytes(),
        ClientCommand::Stats {
            command: StatsCommand::Packets { json },
        } => stats::packets(&api, json)?.into_bytes(),
    };
    if output.is_empty() {
        return Ok(());
    }
    // Not print!, which panics when stdout is a closed pipe.
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(&output)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
