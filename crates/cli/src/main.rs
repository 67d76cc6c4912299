//! The `mycelium` binary: runs a node, or with a subcommand works on keys or talks
//! to a running node (CLI.md).
//!
//! Exit status: 0 on success, 1 when a command fails (`Error: …` on stderr), 2 for a
//! command line that does not parse (clap's usage error, naming the bad value).

mod args;
mod inspect;
mod key_file;
mod paths;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let key_path = match &cli.key_file {
        Some(p) => p.clone(),
        None => paths::default_key_file()?,
    };
    match cli.command {
        Some(Command::Inspect { key, json }) => inspect::inspect(key, &key_path, json),
        Some(Command::GenerateKeys { force }) => inspect::generate_keys(&key_path, force),
        None => anyhow::bail!("running a node is not implemented yet in this build"),
    }
}
