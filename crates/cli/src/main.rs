//! The `mycelium` binary: parses the command line, runs the program
//! ([`mycelium::run`]) and turns its outcome into the exit status (the library's
//! docs list them).

use std::process::ExitCode;

use clap::Parser;
use mycelium::args::Cli;

/// See Cargo.toml: packet arenas are freed far from where they were allocated.
/// Linux only; other systems use their own allocator.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(windows)]
    if let Some(code) = mycelium::service::run_if_service(program) {
        return code;
    }
    program()
}

/// The program, whether started from a shell or (on Windows) as a service.
fn program() -> ExitCode {
    match mycelium::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.status)
        }
    }
}
