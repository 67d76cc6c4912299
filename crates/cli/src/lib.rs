//! The `mycelium` program as a library: the command line, the config file,
//! the node settings resolved from both, logging, key files, daemon mode and the
//! subcommands that talk to a running node. The binary parses the command line and
//! hands it to [`run`]; the config file's fuzz target reads [`config::ConfigFile`]
//! and the bounds in [`options`].
//!
//! Start-up follows upstream's order: parse the command line, load the config file, set up
//! logging, then either run the subcommand or resolve the node settings, load or
//! create the key and run the node.
//!
//! Exit status: 0 on success; 1 when a command fails, including a missing, unreadable
//! or invalid config file (`Error: …` on stderr); 2 for a command line that does not
//! parse (clap's usage error, naming the bad value) or an unusable `RUST_LOG`.

mod api_backend;
pub mod args;
mod client;
pub mod config;
mod daemon;
mod inspect;
mod key_file;
mod logging;
mod metrics;
pub mod options;
mod paths;
#[cfg(windows)]
pub mod service;
mod settings;

use std::fmt;
use std::io::{self, Write};

use anyhow::Context;

use args::{Cli, Command};
use config::ConfigFile;

/// Exit status of a command that failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of bad input from the user before anything ran (clap uses it too).
pub const EXIT_USAGE: u8 = 2;

/// Why a run failed: the error and the exit status that reports it.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, with its context.
    pub error: anyhow::Error,
    /// [`EXIT_FAILURE`] or [`EXIT_USAGE`].
    pub status: u8,
}

impl Failure {
    fn new(error: anyhow::Error, status: u8) -> Self {
        Self { error, status }
    }
}

/// `Error: ` and the error with its context chain, as the program prints it.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {:#}", self.error)
    }
}

/// Runs the program for a parsed command line: loads the config file, sets up
/// logging, then runs the subcommand or the node (until it stops).
pub fn run(cli: Cli) -> Result<(), Failure> {
    let config =
        config::load(cli.config_file.as_deref()).map_err(|e| Failure::new(e, EXIT_FAILURE))?;
    logging::init(cli.debug, cli.silent, cli.log_format)
        .map_err(|e| Failure::new(e, EXIT_USAGE))?;
    if let Some(config) = &config {
        tracing::debug!(config_file = %config.path.display(), "read config file");
        config.warn_unknown_keys();
    }
    command(cli, config.map(|c| c.values)).map_err(|e| Failure::new(e, EXIT_FAILURE))
}

/// The subcommand, or daemon mode when there is none.
fn command(cli: Cli, config: Option<ConfigFile>) -> anyhow::Result<()> {
    let key_path = match &cli.key_file {
        Some(p) => p.clone(),
        None => paths::default_key_file()?,
    };
    match cli.command {
        Some(Command::Inspect { key, json }) => inspect::inspect(key, &key_path, json),
        Some(Command::GenerateKeys { force }) => inspect::generate_keys(&key_path, force),
        Some(Command::Client(command)) => client::run(cli.node.api_addr, command),
        None => {
            // The config file is read for subcommands too, but only used here.
            let settings = settings::resolve(&cli, config)?;
            if cli.print_settings {
                let json = serde_json::to_string_pretty(&settings)
                    .context("printing the settings as JSON")?;
                // Not println!, which panics when stdout is a closed pipe.
                return writeln!(io::stdout().lock(), "{json}").context("writing to stdout");
            }
            let key = key_file::load_or_create(&key_path)?;
            daemon::run_node(settings, key)
        }
    }
}
