//! The policy language: what operators write in `policies/`, read, validated and
//! overlaid with the environment into a [`PolicySet`] ready to compile.
//!
//! Loading is pure once the bytes are read: [`read_sources`] does the I/O and
//! [`parse_policy`] does everything else, so reloads, tests and benchmarks share
//! one path. Every problem found is reported, each as `path:line:column: message`.

mod error;
pub mod overlay;
pub mod schema;
pub(crate) mod source;
mod types;
mod validate;
pub mod yaml;

pub(crate) use validate::utf8_text;

use std::fmt;
use std::sync::Arc;

pub use error::{LoadError, LoadErrors, Located, Location, Position};
pub use overlay::{EffectiveDefaults, Provenance, Sourced};
pub use source::{PolicySource, SourceFile, read_sources};
pub use types::{
    CharBounds, CircuitEntry, Defaults, ID_PATTERN, KeywordMatch, KeywordNormalization, PolicyFile,
    Pricing, ProviderEntry, Rule, Scope, TimeoutsEntry, UsdBounds, When,
};

use crate::env::Env;

/// A validated policy: every file parsed and checked, the defaults overlaid.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// The files, in load order.
    pub sources: Vec<SourceInfo>,
    /// The rules, in evaluation order.
    pub rules: Vec<RuleSpec>,
    /// The effective defaults, with where each value came from.
    pub defaults: EffectiveDefaults,
    /// The providers of the policy's files, in load order, their URLs
    /// without a trailing `/` or API suffix.
    pub providers: Vec<ProviderDecl>,
    /// `defaults.fallback` as written (empty: none).
    pub default_fallback: Vec<Located<String>>,
    /// Lowercase hex SHA-256 over file names, bytes and effective defaults.
    pub version: String,
}

impl PolicySet {
    /// Keywords as written in the rules, duplicates included.
    pub fn keyword_count(&self) -> usize {
        self.rules.iter().map(|r| r.keywords.len()).sum()
    }
}

/// One file of a loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The file as read (`policies/10-sensitive.yaml`).
    pub path: Arc<str>,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// A validated rule, with the position of everything the compiler may need to
/// point at.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Unique id.
    pub id: String,
    /// Optional description.
    pub description: Option<String>,
    /// The provider the rule sends a request to, as written: `local`,
    /// `public` or a provider id.
    pub route: Located<String>,
    /// The providers tried after it, as written.
    pub fallback: Vec<Located<String>>,
    /// The reason code (the id when not written).
    pub reason: String,
    /// A guard: tried before the other rules, served by local providers only.
    pub sensitive: bool,
    /// Where the rule starts.
    pub at: Location,
    /// Keywords as written, each with its position (empty: no keyword condition).
    pub keywords: Vec<Located<String>>,
    /// How keywords match.
    pub keyword_match: KeywordMatch,
    /// How keywords and the text they are looked for in are normalized.
    pub keyword_normalization: KeywordNormalization,
    /// Patterns as written (empty: no pattern condition).
    pub patterns: Vec<Located<String>>,
    /// Detector names and groups as written (empty: no detect condition).
    pub detect: Vec<Located<String>>,
    /// The detectors those name, groups expanded.
    pub detectors: crate::detect::DetectorSet,
    /// Which messages keywords, patterns and detectors see.
    pub scope: Scope,
    /// Bounds on input characters.
    pub input_chars: Option<CharBounds>,
    /// Bounds on estimated USD.
    pub estimated_usd: Option<UsdBounds>,
    /// Globs on the requested model as written, each with its position (empty: no
    /// model condition).
    pub model: Vec<Located<String>>,
    /// Globs on the calling client's id, each with its position (empty: no
    /// client condition).
    pub client: Vec<Located<String>>,
    /// Whether the request must (`true`) or must not (`false`) have an image.
    pub has_images: Option<bool>,
}

/// A provider of the policy, with where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderDecl {
    /// The entry, its URL normalized.
    pub entry: ProviderEntry,
    /// Where it starts.
    pub at: Location,
    /// Each `models` glob's position, in order.
    pub models_at: Vec<Location>,
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule `{}` ({})", self.id, self.at)
    }
}

/// A policy the language refused: every error it found, in load order, and
/// the rules it could read all the same, so that the compiler can report
/// their keywords, patterns and globs in the same load.
#[derive(Debug)]
pub struct Refused {
    /// What is wrong, files in load order, then position; variables last.
    pub errors: LoadErrors,
    /// The rules that were read whole, in load order.
    pub rules: Vec<RuleSpec>,
}

/// Parses and validates policy files already read, in load order, with the
/// overlay from `env`: everything the language says, which leaves to the
/// compiler whether each keyword normalizes and each pattern or glob compiles
/// (`crate::load_compiled` does both).
pub fn parse_policy(files: &[SourceFile], env: &Env) -> Result<PolicySet, Refused> {
    validate::validate(files, env)
}
