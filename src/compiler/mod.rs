//! The compiler: turns a validated [`PolicySet`] into a [`CompiledPolicy`].
//! STUB: owned by the engine work.

use crate::decision::Provider;
use crate::policy::{LoadErrors, PolicySet};

/// A policy ready to decide: one Aho-Corasick automaton, one regex set, the rule chain.
#[derive(Debug)]
pub struct CompiledPolicy {
    set: PolicySet,
    public_provider: Provider,
}

impl CompiledPolicy {
    /// Compiles a validated policy.
    pub fn compile(
        set: PolicySet,
        public_provider: Provider,
    ) -> Result<CompiledPolicy, LoadErrors> {
        Ok(CompiledPolicy {
            set,
            public_provider,
        })
    }

    /// The policy this was compiled from (sources, rules, defaults, version).
    pub fn policy(&self) -> &PolicySet {
        &self.set
    }

    /// The version hash.
    pub fn version(&self) -> &str {
        &self.set.version
    }

    /// What `route: public` resolves to.
    pub fn public_provider(&self) -> Provider {
        self.public_provider
    }
}

/// Checks one pattern as the compiler will build it; `Err` carries a plain-words message.
/// STUB: owned by the engine work.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl CompiledPolicy {
    /// The decision with its trace, as `POST /v1/decide` returns it.
    /// STUB: owned by the engine work.
    pub fn explain(&self, messages: &[crate::chat::ChatMessage]) -> crate::decision::Explanation {
        unimplemented!("{}", messages.len())
    }
}
