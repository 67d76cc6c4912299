//! `proxy list|connect|disconnect|probe start|probe stop` over
//! `/api/v1/admin/proxy`.

use std::net::SocketAddr;

use anyhow::bail;
use serde::Serialize;

use super::args::{ProbeCommand, ProxyCommand};
use super::http::Api;
use super::table::Table;

/// Runs one `proxy` subcommand and returns what to print.
pub(crate) fn run(api: &Api, command: ProxyCommand) -> anyhow::Result<String> {
    match command {
        ProxyCommand::List { json } => list(api, json),
        ProxyCommand::Connect { remote, json } => connect(api, remote, json),
        ProxyCommand::Disconnect => {
            api.delete("admin/proxy")?
                .expect(&[200, 204], "disconnecting from the proxy")?;
            Ok(String::new())
        }
        ProxyCommand::Probe {
            command: ProbeCommand::Start,
        } => {
            // A GET with a side effect: that is the API's choice.
            api.get("admin/proxy/probe")?
                .expect(&[200, 204], "starting the proxy probe")?;
            Ok(String::new())
        }
        ProxyCommand::Probe {
            command: ProbeCommand::Stop,
        } => {
            api.delete("admin/proxy/probe")?
                .expect(&[200, 204], "stopping the proxy probe")?;
            Ok(String::new())
        }
    }
}

fn list(api: &Api, json: bool) -> anyhow::Result<String> {
    const WHAT: &str = "listing proxies";
    let answer = api.get("admin/proxy")?.expect(&[200], WHAT)?;
    if json {
        return Ok(answer.text() + "\n");
    }
    let proxies: Vec<String> = answer.json(WHAT)?;
    let mut table = Table::new(&["IPv6 Address"]);
    for p in proxies {
        table.row(vec![p]);
    }
    Ok(table.render())
}

fn connect(api: &Api, remote: Option<SocketAddr>, json: bool) -> anyhow::Result<String> {
    const WHAT: &str = "connecting to a proxy";
    #[derive(Serialize)]
    struct Connect {
        remote: Option<String>,
    }
    let body = Connect {
        remote: remote.map(|r| r.to_string()),
    };
    let answer = api.post_json("admin/proxy", &body)?;
    if answer.status == 404 {
        bail!("No valid proxy available or connection failed");
    }
    let answer = answer.expect(&[200], WHAT)?;
    if json {
        return Ok(answer.text() + "\n");
    }
    let chosen: String = answer.json(WHAT)?;
    Ok(chosen + "\n")
}
