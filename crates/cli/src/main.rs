//! The `mycelium` binary: runs a node, or with a subcommand works on keys or talks
//! to a running node (CLI.md).
//!
//! Start-up follows CLI.md §10: parse the command line, load the config file, set up
//! logging, then either run the subcommand or resolve the node settings, load or
//! create the key and run the node.
//!
//! Exit status: 0 on success; 1 when a command fails, including a missing, unreadable
//! or invalid config file (`Error: …` on stderr); 2 for a command line that does not
//! parse (clap's usage error, naming the bad value) or an unusable `RUST_LOG`.

/// See Cargo.toml: packet arenas are freed far from where they were allocated.
/// Linux only; other systems use their own allocator.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api_backend;
mod args;
mod client;
mod config;
mod daemon;
mod inspect;
mod key_file;
mod logging;
mod metrics;
mod options;
mod paths;
#[cfg(windows)]
mod service;
mod settings;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use args::{Cli, Command};
use config::ConfigFile;

/// Exit status of a command that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status of bad input from the user before anything ran (clap uses it too).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    #[cfg(windows)]
    if let Some(code) = service::run_if_service(program) {
        return code;
    }
    program()
}

/// The program, whether started from a shell or (on Windows) as a service.
fn program() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(cli.config_file.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&e, EXIT_FAILURE),
    };
    if let Err(e) = logging::init(cli.debug, cli.silent, cli.log_format) {
        return fail(&e, EXIT_USAGE);
    }
    if let Some(config) = &config {
        tracing::debug!(config_file = %config.path.display(), "read config file");
        config.warn_unknown_keys();
    }
    match run(cli, config.map(|c| c.values)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, EXIT_FAILURE),
    }
}

fn fail(e: &anyhow::Error, status: u8) -> ExitCode {
    eprintln!("Error: {e:#}");
    ExitCode::from(status)
}

fn run(cli: Cli, config: Option<ConfigFile>) -> anyhow::Result<()> {
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
