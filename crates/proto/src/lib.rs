//! Sans-IO core of a node that speaks the Mycelium v0.7.10 overlay protocol.
//!
//! This crate owns everything that can be decided without a socket, a TUN device
//! or a clock: the node identity and its overlay address ([`identity`]), the end-to-end
//! encryption of data packets ([`crypto`]), and the byte layouts of everything that
//! crosses a peer link ([`wire`]). Callers hand it bytes and, where time matters, the
//! current instant; it hands back values and bytes to send.
//!
//! Nothing here reads the system clock, spawns a task or touches a file descriptor;
//! the key file, sockets and the TUN device belong to the crates above this one.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod crypto;
pub mod endpoint;
pub mod forward;
pub mod icmp;
pub mod identity;
pub mod messages;
pub mod routing;
pub mod subnet;
pub mod time;
pub mod wire;

pub use identity::{PublicKey, RouterId, SecretKey};
pub use subnet::Subnet;
