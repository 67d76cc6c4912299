//! Daemon mode: run a node with resolved settings until SIGINT or SIGTERM
//! (CLI.md §9, §10 steps 3–6).
//!
//! By the time [`run_node`] is called the command line and config file are merged
//! ([`crate::settings`]), logging is up and the key is loaded or created. What is
//! left is the node itself: topic config, transports, TUN, APIs, and shutdown.

use mycelium_proto::SecretKey;

use crate::settings::NodeSettings;

/// Runs a node until it is asked to stop. Returns an error for the start-up
/// failures CLI.md §9 gives exit status 1.
pub(crate) fn run_node(settings: NodeSettings, key: SecretKey) -> anyhow::Result<()> {
    tracing::debug!(
        address = %key.public_key().address(),
        peers = settings.peers.len(),
        "node settings resolved"
    );
    anyhow::bail!("running a node is not implemented yet in this build")
}
