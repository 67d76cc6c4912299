//! The command line of the client subcommands.
//!
//! Values the node would refuse anyway are checked here, so a bad endpoint,
//! destination, message id, topic or proxy address is clap's usage error naming
//! the value (exit 2) and no request is sent.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use mycelium_proto::endpoint::Endpoint;
use mycelium_proto::subnet::OVERLAY_RANGE;
use mycelium_proto::PublicKey;

/// How long `message receive` and `message send --wait` wait when no `--timeout`
/// is given: a year, upstream's "forever".
pub(crate) const FOREVER_SECS: u64 = 365 * 24 * 60 * 60;

/// The longest topic the node accepts, in bytes.
pub(crate) const MAX_TOPIC_LEN: usize = 255;

/// Shown under `--help` of every client subcommand.
const CLIENT_HELP: &str = "\
These commands call the REST API of a running node at http://<--api-addr>/api/v1 \
(default 127.0.0.1:8989); --api-addr goes before the subcommand: \
`mycelium --api-addr 127.0.0.1:9000 peers list`.

Environment:
  MYCELIUM_API_TOKEN  if set and not empty, sent as `Authorization: Bearer <token>` \
with every request";

/// The subcommands that talk to a running node.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Send and receive messages through a running node.
    #[command(after_help = CLIENT_HELP)]
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// List, add and remove a running node's peers.
    #[command(after_help = CLIENT_HELP)]
    Peers {
        #[command(subcommand)]
        command: PeersCommand,
    },
    /// Show a running node's routing table.
    #[command(after_help = CLIENT_HELP)]
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Manage a running node's SOCKS proxy client.
    #[command(after_help = CLIENT_HELP)]
    Proxy {
        #[command(subcommand)]
        command: ProxyCommand,
    },
    /// Show a running node's statistics.
    #[command(after_help = CLIENT_HELP)]
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
}

/// `message …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Send a message to another node, optionally waiting for its reply.
    Send(SendArgs),
    /// Wait for a message and print it.
    Receive(ReceiveArgs),
}

/// `message send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The receiver: its public key (64 hex characters) or its overlay IPv6 address.
    #[arg(value_name = "DESTINATION", value_parser = parse_destination)]
    pub(crate) destination: Destination,

    /// The message text. Required unless --msg-path is given.
    #[arg(value_name = "MESSAGE", required_unless_present = "msg_path")]
    pub(crate) message: Option<String>,

    /// Wait for a reply and print it.
    #[arg(short = 'w', long)]
    pub(crate) wait: bool,

    /// How long to wait for the reply, in seconds. Default: a year.
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub(crate) timeout: Option<u64>,

    /// The message's topic.
    #[arg(short = 't', long, value_name = "TOPIC", value_parser = parse_topic)]
    pub(crate) topic: Option<String>,

    /// Read the message from this file (wins over MESSAGE).
    #[arg(long, value_name = "FILE")]
    pub(crate) msg_path: Option<PathBuf>,

    /// Send the message as the reply to the message with this id (16 hex characters).
    #[arg(long, value_name = "ID", conflicts_with = "wait", value_parser = parse_message_id)]
    pub(crate) reply_to: Option<String>,
}

/// `message receive`.
#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    /// How long to wait for a message, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = FOREVER_SECS)]
    pub(crate) timeout: u64,

    /// Only take a message with exactly this topic (at most 255 bytes).
    #[arg(short = 't', long, value_name = "TOPIC", value_parser = parse_topic)]
    pub(crate) topic: Option<String>,

    /// Write the message's payload to this file instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub(crate) msg_path: Option<PathBuf>,

    /// Print only the payload, followed by a newline.
    #[arg(long)]
    pub(crate) raw: bool,
}

/// `peers …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PeersCommand {
    /// List the node's peers and their connection state.
    List {
        /// Print the node's JSON answer, pretty-printed.
        #[arg(long)]
        json: bool,
    },
    /// Add peers (stops at the first one the node refuses).
    Add {
        /// Endpoints such as tcp://1.2.3.4:9651 or quic://[2001:db8::1]:9651.
        #[arg(value_name = "ENDPOINT", required = true)]
        endpoints: Vec<Endpoint>,
    },
    /// Remove peers and close their connections (stops at the first failure).
    Remove {
        /// Endpoints as shown by `peers list --json` or given to `peers add`.
        #[arg(value_name = "ENDPOINT", required = true)]
        endpoints: Vec<Endpoint>,
    },
}

/// `routes …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RoutesCommand {
    /// The selected route of every reachable subnet.
    Selected {
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Every known route that is not selected, retracted ones included.
    Fallback {
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Subnets the node is looking for a route to.
    Queried {
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Subnets whose route query found nothing. The node's API does not offer this
    /// list (upstream dropped it), so the command says so and fails.
    NoRoute {
        /// Accepted for symmetry with the other listings.
        #[arg(long)]
        json: bool,
    },
}

/// `proxy …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxyCommand {
    /// Known proxies that answered the last probe.
    List {
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Connect the local SOCKS listener to a proxy (default: pick one).
    Connect {
        /// The proxy's socket address, such as [407::1]:1080.
        #[arg(long, value_name = "ADDR")]
        remote: Option<SocketAddr>,
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
    /// Disconnect from the current proxy.
    Disconnect,
    /// Start or stop probing for proxies.
    Probe {
        #[command(subcommand)]
        command: ProbeCommand,
    },
}

/// `proxy probe …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProbeCommand {
    /// Start probing known nodes for proxies in the background.
    Start,
    /// Stop probing.
    Stop,
}

/// `stats …`.
#[derive(Debug, Subcommand)]
pub(crate) enum StatsCommand {
    /// Packets and bytes forwarded, by source and by destination address.
    Packets {
        /// Print the node's JSON answer unchanged.
        #[arg(long)]
        json: bool,
    },
}

/// Where a message goes: the `dst` of the API's MessageSendInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A node's public key; the node derives the address.
    Key(PublicKey),
    /// An overlay address.
    Ip(IpAddr),
}

fn parse_destination(s: &str) -> Result<Destination, String> {
    if let Ok(key) = s.parse::<PublicKey>() {
        return Ok(Destination::Key(key));
    }
    match s.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(_)) if OVERLAY_RANGE.contains_ip(ip) => Ok(Destination::Ip(ip)),
        Ok(IpAddr::V6(_)) => Err("IPv6 address is not part of the mycelium subnet".into()),
        _ => Err("not a public key (64 hex characters) or an overlay IPv6 address".into()),
    }
}

fn parse_topic(s: &str) -> Result<String, String> {
    if s.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "a topic is at most {MAX_TOPIC_LEN} bytes, this one has {}",
            s.len()
        ));
    }
    Ok(s.to_owned())
}

fn parse_message_id(s: &str) -> Result<String, String> {
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("a message id is 16 hex characters".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn destinations_are_keys_or_overlay_addresses() {
        let pk = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
        assert_eq!(
            parse_destination(pk).unwrap(),
            Destination::Key(pk.parse().unwrap())
        );
        assert_eq!(
            parse_destination("5a6:f0c6::1").unwrap(),
            Destination::Ip("5a6:f0c6::1".parse().unwrap())
        );
        assert_eq!(
            parse_destination("2001:db8::1").unwrap_err(),
            "IPv6 address is not part of the mycelium subnet"
        );
        assert!(parse_destination("10.0.0.1").is_err());
        assert!(parse_destination(&pk[1..]).is_err());
    }

    #[test]
    fn message_ids_are_16_hex_characters() {
        assert_eq!(
            parse_message_id("7D1E4A7F94375302").unwrap(),
            "7d1e4a7f94375302"
        );
        for bad in ["7d1e", "7d1e4a7f9437530z", "7d1e4a7f9437530211"] {
            assert!(parse_message_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_are_at_most_255_bytes() {
        assert!(parse_topic(&"t".repeat(255)).is_ok());
        assert!(parse_topic(&"t".repeat(256)).is_err());
        // Bytes, not characters.
        assert!(parse_topic(&"é".repeat(128)).is_err());
    }
}
