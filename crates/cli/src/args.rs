//! The command line (CLI.md §1–§4): global options, node options, subcommands.
//!
//! Only what exists is declared; node options and the API client subcommands arrive
//! with the node and the API.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use mycelium_proto::PublicKey;

/// A Mycelium-compatible overlay network node.
#[derive(Debug, Parser)]
#[command(name = "mycelium", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Private key file (32 raw bytes). Default: $XDG_DATA_HOME/mycelium/priv_key.bin.
    #[arg(short = 'k', long = "key-file", global = true, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,

    /// Configuration file (TOML). Default: $XDG_CONFIG_HOME/mycelium/mycelium.toml, if it exists.
    #[arg(short = 'c', long = "config-file", global = true, value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,

    /// Log at debug level.
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,

    /// Log errors only.
    #[arg(long)]
    pub(crate) silent: bool,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Compact)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// How log lines look (CLI.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Compact,
    /// `key=value` pairs.
    Logfmt,
    /// `key=value` pairs without colour.
    Plain,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the public key and overlay address of a key (default: the node's own key file).
    Inspect {
        /// A public key as 64 hex characters.
        #[arg(value_name = "KEY")]
        key: Option<PublicKey>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a fresh private key to the key file.
    GenerateKeys {
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
}
