//! The HTTP gateway. STUB: owned by the server work.

use crate::config::Env;

/// Runs the gateway until SIGINT/SIGTERM; returns the process exit status
/// (1 when start-up fails: invalid policy or configuration, address in use).
pub fn run(env: Env) -> std::process::ExitCode {
    let _ = env;
    std::process::ExitCode::FAILURE
}
