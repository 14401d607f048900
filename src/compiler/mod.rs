//! The compiler: turns a validated [`PolicySet`] into a [`CompiledPolicy`].
//! STUB: owned by the engine work.

use crate::chat::ChatMessage;
use crate::decision::{Decision, Explanation, Provider};
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

    /// Decides a chat request. STUB: owned by the engine work.
    pub fn decide(&self, messages: &[ChatMessage]) -> Decision {
        unimplemented!("{}", messages.len())
    }

    /// Decides a chat request and traces every rule tried. STUB: owned by the engine work.
    pub fn explain(&self, messages: &[ChatMessage]) -> Explanation {
        unimplemented!("{}", messages.len())
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
