//! The `policy-mesh` command line. STUB: owned by the CLI work.

/// Runs the command line and returns the process exit status.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
