//! What a soak is asked to do: the network's size and links, the pace of failures
//! and messages, and how long each phase lasts.

use std::time::Duration;

use mycelium_proto::routing::RouterConfig;

/// The shape and pace of a soak.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakConfig {
    /// Seeds the graph, the failures, the messages and every router.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Average degree of the random graph (of full nodes, when some are leaves).
    pub degree: usize,
    /// Share of the nodes that are leaves (0 to 1): they hang off the random
    /// graph of full nodes, one or two uplinks each (see
    /// [`crate::topology::with_leaves`]), and hold only the routes they use.
    pub leaf_share: f64,
    /// Subnets a leaf's cache holds.
    pub leaf_routes: usize,
    /// Length of the churn phase (simulated).
    pub churn: Duration,
    /// Link latencies are drawn log-uniformly from this range.
    pub latency: (Duration, Duration),
    /// Chance that a control TLV needs a retransmission (200 ms) on its link.
    pub control_loss: f64,
    /// Chance that a data packet is lost on a hop.
    pub data_loss: f64,
    /// Mean time between failures of one link.
    pub link_mtbf: Duration,
    /// Mean time between crashes of one node.
    pub node_mtbf: Duration,
    /// Share of link failures that are short flaps (0.2 to 3 s).
    pub flap_share: f64,
    /// Mean length of the other link outages (exponential, capped at 10 means).
    pub link_repair: Duration,
    /// Mean time a crashed node stays down, beyond 1 s (exponential, capped).
    pub node_repair: Duration,
    /// Messages pushed per simulated second, network-wide.
    pub messages_per_sec: f64,
    /// How long each message is tried.
    pub try_for: Duration,
    /// Simulated time between two full loop checks (the cross-check).
    pub full_check_every: Duration,
    /// Simulated time after the final repair: outstanding messages finish and the
    /// network heals.
    pub settle: Duration,
    /// Prints a line per simulated minute to stderr.
    pub progress: bool,
    /// Checks the loop check itself after every event (slow: for small networks):
    /// that no next hop changed without the incremental check seeing it, and a full
    /// check of every destination from every node.
    pub verify_incremental: bool,
    /// Ends the churn phase early once the run has taken this much wall-clock time
    /// (the settle phase still runs); the report says how much churn was done.
    pub wall_limit: Option<Duration>,
    /// The routers' configuration (the node's defaults unless an experiment
    /// changes them).
    pub router: RouterConfig,
    /// Records every control TLV, to show the updates behind a loop (memory grows
    /// with the run: for small networks).
    pub trace: bool,
}

impl SoakConfig {
    /// The default pace for `nodes` nodes over `minutes` of churn: degree 4; links
    /// of 2 to 80 ms with 1 % loss; each link failing every 400 s on average (30 %
    /// of failures short flaps, the rest 30 s outages on average), each node
    /// crashing every 30 min on average and staying down 21 s on average; one
    /// message per second per hundred nodes, tried for 60 s. No leaves (with
    /// [`SoakConfig::leaf_share`] set, caches of 16 subnets).
    ///
    /// For 500 nodes (about 1,000 links) that is 2.5 link failures and 0.28
    /// crashes per second, each followed by its repair: about 5.6 events per
    /// simulated second, with some 50 links and 6 nodes down at any time.
    pub fn new(seed: u64, nodes: usize, minutes: f64) -> Self {
        Self {
            seed,
            nodes,
            degree: 4,
            leaf_share: 0.0,
            leaf_routes: 16,
            churn: Duration::from_secs_f64(minutes * 60.0),
            latency: (Duration::from_millis(2), Duration::from_millis(80)),
            control_loss: 0.01,
            data_loss: 0.01,
            link_mtbf: Duration::from_secs(400),
            node_mtbf: Duration::from_secs(1800),
            flap_share: 0.3,
            link_repair: Duration::from_secs(30),
            node_repair: Duration::from_secs(20),
            messages_per_sec: nodes as f64 / 100.0,
            try_for: Duration::from_secs(60),
            full_check_every: Duration::from_secs(10),
            settle: Duration::from_secs(90),
            progress: false,
            verify_incremental: false,
            trace: false,
            router: RouterConfig::default(),
            wall_limit: None,
        }
    }

    /// How many of the nodes are leaves: the share of them, rounded, leaving at
    /// least one full node.
    pub fn leaf_count(&self) -> usize {
        let share = self.leaf_share.clamp(0.0, 1.0);
        ((self.nodes as f64 * share).round() as usize).min(self.nodes.saturating_sub(1))
    }
}
