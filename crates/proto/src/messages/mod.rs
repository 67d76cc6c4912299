//! The reliable message bus (MESSAGES.md), sans-IO.
