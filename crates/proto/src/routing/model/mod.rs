//! The routing and source tables as plain maps, kept as the reference the compact
//! store (`table.rs`, `source_table.rs`) is tested against: every sequence of
//! operations must leave both holding the same routes, queries, selections,
//! deadlines and feasibility distances (`differential` below).

#![allow(dead_code)]

pub(crate) mod source_table;
pub(crate) mod table;

#[cfg(test)]
mod differential;
