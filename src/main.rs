//! The `policy-mesh` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    policy_mesh::cli::main()
}
