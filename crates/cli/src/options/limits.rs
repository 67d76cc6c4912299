//! The resource limits (README "Resource limits"): for each, the range the flag and
//! the config key accept and the default, as `(min, max, default)`. The defaults are
//! [`mycelium_node::Limits`]' and the router's.

/// `--max-inbound-peers`: inbound peers kept at once.
pub const INBOUND_PEERS: (u64, u64, u64) = (0, 65_536, 1_024);
/// `--max-connections-per-second`: inbound connection attempts a second (0: off).
pub const CONNECTIONS_PER_SECOND: (u64, u64, u64) = (0, 1_000_000, 64);
/// `--link-data-queue`: data packets queued per link.
pub const LINK_DATA_QUEUE: (u64, u64, u64) = (16, 1_048_576, 2_048);
/// `--link-control-rate`: control TLVs read per link a second (0: off).
pub const LINK_CONTROL_RATE: (u64, u64, u64) = (0, 100_000_000, 20_000);
/// `--max-routes`: subnets in the routing table.
pub const ROUTES: (u64, u64, u64) = (16, 100_000_000, 250_000);
/// `--max-routes-per-peer`: routes learned from one neighbour.
pub const ROUTES_PER_PEER: (u64, u64, u64) = (16, 100_000_000, 100_000);
/// `--leaf-routes`: subnets a leaf keeps routes for.
pub const LEAF_ROUTES: (u64, u64, u64) = (1, 1_000_000, 1_024);
