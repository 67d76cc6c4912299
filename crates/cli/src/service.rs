//! Running as a Windows service.
//!
//! Upstream's installer registers a service named `mycelium` that starts
//! `mycelium.exe` with no arguments, but the program never talks to the service
//! manager, which gives up on it after its start timeout. Ours does: when the
//! service manager started the process, the node runs under its control (start,
//! stop, system shutdown) with the arguments the service was registered with;
//! started from a console, nothing changes.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;

/// The name upstream's installer registers the service under.
const SERVICE_NAME: &str = "mycelium";

/// Win32 `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`: the process was not started by
/// the service manager.
const NOT_A_SERVICE: i32 = 1063;

/// What the service ran, handed from [`run_if_service`] to the service thread.
static BODY: OnceLock<fn() -> ExitCode> = OnceLock::new();
/// How the service ended, handed back.
static OUTCOME: OnceLock<ExitCode> = OnceLock::new();

// The macro writes the `extern "system"` entry point the service manager calls,
// which turns its raw argument array into a `Vec<OsString>` in an unsafe block of
// the crate's own making.
#[allow(unsafe_code)]
mod entry {
    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// The entry point, for the dispatcher.
    pub(super) fn entry_point() -> extern "system" fn(u32, *mut *mut u16) {
        ffi_service_main
    }

    fn service_main(arguments: Vec<std::ffi::OsString>) {
        super::service_main(arguments);
    }
}

/// Runs `body` (the whole program) as a service if the service manager started
/// this process, and returns its exit code; `None` when started any other way, so
/// the caller runs `body` itself.
pub fn run_if_service(body: fn() -> ExitCode) -> Option<ExitCode> {
    // A program started at a console has a terminal; the service manager gives
    // none. Asking the dispatcher costs nothing on Windows but a long wait under
    // Wine, so the obvious case is settled first.
    let streams = [
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    if streams.contains(&true) {
        return None;
    }
    let _ = BODY.set(body);
    match service_dispatcher::start(SERVICE_NAME, entry::entry_point()) {
        Ok(()) => Some(OUTCOME.get().copied().unwrap_or(ExitCode::FAILURE)),
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(NOT_A_SERVICE) => None,
        Err(e) => {
            eprintln!("Error: connecting to the service manager: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// The service thread: reports to the service manager around the program's run,
/// and turns its stop and shutdown requests into the node's stop.
fn service_main(_start_arguments: Vec<OsString>) {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            crate::daemon::request_stop("service stop");
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else {
        let _ = OUTCOME.set(ExitCode::FAILURE);
        return;
    };
    let report = |state, accept, exit_code| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::from_secs(15),
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::NO_ERROR,
    );
    let code = BODY.get().map_or(ExitCode::FAILURE, |body| body());
    let exit = if code == ExitCode::SUCCESS {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(1)
    };
    report(ServiceState::Stopped, ServiceControlAccept::empty(), exit);
    let _ = OUTCOME.set(code);
}
