//! Policy Mesh: a local-first AI gateway that routes every chat request between a
//! local model and a cloud provider by a declarative YAML policy.
//!
//! The crate is layered so that each stage can be tested and benchmarked alone:
//!
//! - [`names`]: the shared words (routes, providers, roles, failure categories,
//!   audit statuses), a leaf every other module may use.
//! - [`env`]: the configuration snapshot, and the one error of a bad variable;
//!   a leaf too.
//! - [`policy`]: the policy language: types, loading files, validation with
//!   `path:line:column` errors, the environment overlay and the version hash.
//! - [`compiler`]: a validated policy compiled into one Aho-Corasick automaton,
//!   one regex set and the ordered rule chain.
//! - [`decision`]: deciding a chat request on a compiled policy, with a trace.
//! - [`normalize`]: the Unicode normalization both sides of matching share.
//! - [`reload`]: the live policy, swapped atomically on every valid change.
//! - [`server`]: the HTTP gateway over the live policy.
//! - [`metrics`]: the Prometheus metrics it exports.
//! - [`clients`]: who may call: the clients file, its key digests and scopes.
//! - [`cli`]: the `policy-mesh` command line.
//!
//! [`load_compiled`] (over [`compile_files`]) is the one path from files to a
//! policy ready to decide;
//! start-up, hot reload and every command use it, so they accept and refuse the
//! same policies with the same error lines.

pub mod audit;
pub mod chat;
pub mod cli;
pub mod clients;
pub mod compiler;
pub mod config;
pub mod decision;
pub mod detect;
pub mod env;
pub mod metrics;
pub mod names;
pub mod normalize;
pub mod policy;
pub mod providers;
pub mod reload;
pub mod server;

use compiler::CompiledPolicy;
use env::Env;
use policy::{LoadErrors, PolicySource, Refused, SourceFile};
use providers::Builtins;

/// Reads, validates and compiles the policy at `source`, with the overlay from
/// `env`; `builtins` are the providers from the environment.
pub fn load_compiled(
    source: &PolicySource,
    env: &Env,
    builtins: &Builtins,
) -> Result<CompiledPolicy, LoadErrors> {
    compile_files(&policy::read_sources(source)?, env, builtins)
}

/// Validates and compiles policy files already read, in load order, as
/// [`load_compiled`] does.
///
/// The language stage and the compiler each report what is theirs: when the
/// language refuses the policy, the compiler still checks the keywords,
/// patterns and globs of every rule that was read, so one load names every
/// problem.
pub fn compile_files(
    files: &[SourceFile],
    env: &Env,
    builtins: &Builtins,
) -> Result<CompiledPolicy, LoadErrors> {
    match policy::parse_policy(files, env) {
        Ok(set) => CompiledPolicy::compile(set, builtins),
        Err(Refused { errors, rules }) => {
            let mut errors = errors.0;
            errors.extend(compiler::rule_errors(&rules));
            Err(LoadErrors::in_load_order(errors, files))
        }
    }
}
