//! What the listeners and dialers share: the links they start, the peer registry,
//! the node-wide rate of inbound connection attempts, the socket mark, and where
//! their tasks are spawned.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::TokenBucket;
use crate::link::Links;
use crate::registry::Registry;
use crate::stats::NodeStats;

/// What every listener and dialer task shares.
pub(crate) struct Peering {
    pub(crate) links: Arc<Links>,
    /// Every peer the node knows.
    pub(crate) registry: Registry,
    /// Linux `SO_MARK` for peer sockets.
    pub(crate) mark: Option<u32>,
    pub(crate) shutdown: CancellationToken,
    /// Where connection tasks are spawned, so that shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Inbound connection attempts, across listeners.
    accepts: Mutex<TokenBucket>,
}

impl Peering {
    pub(crate) fn new(
        links: Arc<Links>,
        registry: Registry,
        mark: Option<u32>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let rate = links.limits.connections_per_second;
        Self {
            links,
            registry,
            mark,
            shutdown,
            tasks,
            accepts: Mutex::new(TokenBucket::new(
                rate,
                rate.saturating_mul(2),
                std::time::Instant::now(),
            )),
        }
    }

    pub(crate) fn stats(&self) -> &NodeStats {
        &self.links.path.stats
    }

    /// Whether an inbound connection attempt may go ahead (counted if not).
    pub(crate) fn admit_connection(&self) -> bool {
        let admitted = self
            .accepts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take(1, std::time::Instant::now());
        if !admitted {
            NodeStats::bump(&self.stats().connections_rate_limited);
        }
        admitted
    }
}
