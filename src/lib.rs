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
//! - [`cli`]: the `policy-mesh` command line.
//!
//! [`load_compiled`] (over [`compile_files`]) is the one path from files to a
//! policy ready to decide;
//! start-up, hot reload and every command use it, so they accept and refuse the
//! same policies with the same error lines.

pub mod audit;
pub mod chat;
pub mod cli;
pub mod compiler;
pub mod config;
pub mod decision;
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

/// Reads, validates and compiles the policy at `source`, with the overlay and the
/// public provider (`PUBLIC_LLM_PROVIDER`, `PUBLIC_LLM_URL`) from `env`.
///
/// Every error is reported at once: the policy's, then the public provider's.
pub fn load_compiled(source: &PolicySource, env: &Env) -> Result<CompiledPolicy, LoadErrors> {
    compile_files(&policy::read_sources(source)?, env)
}

/// Validates and compiles policy files already read, in load order, as
/// [`load_compiled`] does.
///
/// The language stage and the compiler each report what is theirs: when the
/// language refuses the policy, or the public provider is invalid, the
/// compiler still checks the keywords, patterns and globs of every rule that
/// was read, so one load names every problem.
pub fn compile_files(files: &[SourceFile], env: &Env) -> Result<CompiledPolicy, LoadErrors> {
    let (mut errors, rules) = match (
        policy::parse_policy(files, env),
        config::public_provider(env),
    ) {
        (Ok(set), Ok(provider)) => return CompiledPolicy::compile(set, provider),
        (Ok(set), Err(provider_error)) => (vec![provider_error.into()], set.rules),
        (Err(Refused { errors, rules }), provider) => {
            let mut errors = errors.0;
            errors.extend(provider.err().map(Into::into));
            (errors, rules)
        }
    };
    errors.extend(compiler::rule_errors(&rules));
    Err(LoadErrors::in_load_order(errors, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Provider;

    fn origins(source: &PolicySource, pairs: &[(&str, &str)]) -> Vec<String> {
        let env = Env::from_pairs(pairs.iter().copied());
        let errors = load_compiled(source, &env).expect_err("invalid");
        errors.0.into_iter().map(|e| e.origin).collect()
    }

    #[test]
    fn policy_and_provider_errors_are_reported_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "version: 3\n").expect("write");
        let source = PolicySource::File(file.clone());
        let shown = file.display().to_string();
        assert_eq!(
            origins(&source, &[("PUBLIC_LLM_PROVIDER", "azure")]),
            [shown.as_str(), "PUBLIC_LLM_PROVIDER"]
        );

        std::fs::write(&file, "version: 1\n").expect("write");
        assert_eq!(
            origins(&source, &[("PUBLIC_LLM_URL", "ftp://example.com")]),
            ["PUBLIC_LLM_URL"]
        );
        let compiled = load_compiled(&source, &Env::default()).expect("valid");
        assert_eq!(compiled.public_provider(), Provider::Openai);
    }
}
