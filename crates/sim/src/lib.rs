//! A deterministic simulator of many Mycelium routers joined by virtual links.
//!
//! Every node runs the real [`mycelium_proto::routing::Router`]; links have latency,
//! loss and a physical state (up, cut, silent); the clock is virtual and jumps from
//! one scheduled event to the next; all randomness comes from one seeded generator.
//! The same seed and the same calls give the same run, event for event.
//!
//! What it does not model: bandwidth and queueing (every message takes its link's
//! latency), and the data plane (forwarding is checked by following next hops).
//! Tests and the soak play a node's data plane where the router needs it: a
//! packet without a route or a key ([`Sim::resolve`]) and uses of a route
//! ([`Sim::touch`]), which is how leaves (nodes that hold only the routes they
//! use, [`Sim::add_node_with`]) learn routes.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod check;
mod inflight;
mod network;
pub mod soak;
pub mod topology;

pub use network::{CrashKind, Delivery, LinkConfig, LinkIdx, NodeIdx, Sim, SimStats};
