//! The churn soak: a large random network under continuous failures and repairs,
//! with messages between random pairs, checked for routing loops after every event
//! and for lost messages.
//!
//! [`run`] runs one soak (its doc gives the phases) and returns a [`SoakReport`].
//!
//! # What is checked
//!
//! - **No routing loop, after every event**: after each simulator event (TLV
//!   delivered, timer fired, reconnection) and each failure or repair, the nodes
//!   whose tables changed are re-checked for every destination whose next hop
//!   changed (the `loops` file says why that is exact). Destinations that
//!   are down count too. A full check of every destination from every node runs
//!   every [`SoakConfig::full_check_every`] of simulated time as a cross-check.
//! - **Nobody routes through a leaf** (with [`SoakConfig::leaf_share`] set): a
//!   next hop that is a leaf must be the destination itself; checked by the same
//!   walk, after every event.
//! - **No message lost that had time to arrive**: a message *had time to arrive*
//!   when, for its whole window (from its push to its deadline), its sender and its
//!   receiver both stayed up and were joined by a path of working links (not cut,
//!   not silenced, both ends up) whose nodes between the two ends are all full
//!   nodes (a leaf carries nothing for others). Such a message must reach its
//!   receiver exactly once and intact, and its sender must hear it was delivered.
//!   Other messages are *excused* and counted by their first excuse (sender down,
//!   receiver down, no path); they must never arrive corrupted. Each message is
//!   judged [`GRACE`] after its deadline.
//!
//! # Files
//!
//! - `config`: [`SoakConfig`], what a soak is asked to do.
//! - `driver`: [`run`], the phases, the loop check after every event.
//! - `churn`: failure injection and the scheduled repairs.
//! - `judge`: the verdicts on messages and loops.
//! - `report`: [`SoakReport`] and its counts, and how it prints.
//! - `loops`: the incremental loop check.
//! - `world`: the message buses and the data packets between them.

mod churn;
mod config;
mod driver;
mod judge;
mod loops;
mod report;
mod world;

pub use config::SoakConfig;
pub use driver::run;
pub use judge::{GRACE, LOOPS_DESCRIBED};
pub use loops::LoopCheckStats;
pub use report::{ChurnCounts, LeafCounts, LoopCounts, MessageCounts, SoakReport, TableSizes};
pub use world::DataStats;
