//! Builds policies directly in Rust for the engine tests, without the loader.

use std::sync::Arc;

use policy_mesh::chat::ChatMessage;
use policy_mesh::compiler::CompiledPolicy;
use policy_mesh::env::Env;
use policy_mesh::names::{Api, Role, Route};
use policy_mesh::policy::{
    CharBounds, EffectiveDefaults, KeywordMatch, Located, Location, PolicySet, Position,
    Provenance, RuleSpec, Scope, Sourced, UsdBounds,
};
use policy_mesh::providers::{Builtins, ProviderConfig};

/// The path every test rule claims to come from.
pub const PATH: &str = "policies/10-test.yaml";

pub fn at(line: usize, column: usize) -> Location {
    Location {
        path: Arc::from(PATH),
        position: Position { line, column },
    }
}

fn located(values: &[&str], line: usize) -> Vec<Located<String>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Located {
            value: (*v).to_owned(),
            at: at(line, 10 + i),
        })
        .collect()
}

/// A rule that always holds, with its reason equal to its id.
pub fn rule(id: &str, route: Route) -> RuleSpec {
    RuleSpec {
        id: id.to_owned(),
        description: None,
        route: Located::unplaced(route.as_str().to_owned()),
        fallback: Vec::new(),
        reason: id.to_owned(),
        sensitive: false,
        at: at(1, 5),
        keywords: Vec::new(),
        keyword_match: KeywordMatch::Substring,
        keyword_normalization: policy_mesh::policy::KeywordNormalization::Standard,
        patterns: Vec::new(),
        detect: Vec::new(),
        detectors: policy_mesh::detect::DetectorSet::EMPTY,
        scope: Scope::All,
        input_chars: None,
        estimated_usd: None,
        model: Vec::new(),
        client: Vec::new(),
        has_images: None,
    }
}

/// Chainable setters for the conditions of a test rule.
pub trait RuleExt: Sized {
    fn keywords(self, keywords: &[&str]) -> Self;
    fn word(self) -> Self;
    fn patterns(self, patterns: &[&str]) -> Self;
    fn last_user(self) -> Self;
    fn chars(self, min: Option<u64>, max: Option<u64>) -> Self;
    fn usd(self, min: Option<f64>, max: Option<f64>) -> Self;
    fn model(self, globs: &[&str]) -> Self;
    fn reason(self, reason: &str) -> Self;
    fn line(self, line: usize) -> Self;
}

impl RuleExt for RuleSpec {
    fn keywords(mut self, keywords: &[&str]) -> Self {
        self.keywords = located(keywords, self.at.position.line + 3);
        self
    }
    fn word(mut self) -> Self {
        self.keyword_match = KeywordMatch::Word;
        self
    }
    fn patterns(mut self, patterns: &[&str]) -> Self {
        self.patterns = located(patterns, self.at.position.line + 4);
        self
    }
    fn last_user(mut self) -> Self {
        self.scope = Scope::LastUser;
        self
    }
    fn chars(mut self, min: Option<u64>, max: Option<u64>) -> Self {
        self.input_chars = Some(CharBounds { min, max });
        self
    }
    fn usd(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.estimated_usd = Some(UsdBounds { min, max });
        self
    }
    fn model(mut self, globs: &[&str]) -> Self {
        self.model = located(globs, self.at.position.line + 7);
        self
    }
    fn reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_owned();
        self
    }
    fn line(mut self, line: usize) -> Self {
        self.at = at(line, 5);
        self
    }
}

/// Effective defaults as if from the built-ins, overridden where given.
pub fn defaults(provider: Route, price: Option<f64>, chars_per_token: f64) -> EffectiveDefaults {
    EffectiveDefaults {
        provider: Sourced {
            value: provider,
            source: Provenance::Builtin,
        },
        input_usd_per_1m_tokens: Sourced {
            value: price,
            source: Provenance::Builtin,
        },
        chars_per_token: Sourced {
            value: chars_per_token,
            source: Provenance::Builtin,
        },
    }
}

pub fn set_with(rules: Vec<RuleSpec>, defaults: EffectiveDefaults) -> PolicySet {
    PolicySet {
        sources: Vec::new(),
        rules,
        defaults,
        providers: Vec::new(),
        default_fallback: Vec::new(),
        version: "0123abcd".repeat(8),
    }
}

/// Compiles `rules` with built-in defaults (local, no price, 4 chars per token).
pub fn compile(rules: Vec<RuleSpec>) -> CompiledPolicy {
    compile_with(rules, EffectiveDefaults::default(), Api::Openai)
}

/// The built-in providers with `public` as the public one.
pub fn builtins(public: Api) -> Builtins {
    ProviderConfig::from_env(&Env::from_pairs([("PUBLIC_LLM_PROVIDER", public.as_str())]))
        .expect("valid")
        .builtins()
}

pub fn compile_with(
    rules: Vec<RuleSpec>,
    defaults: EffectiveDefaults,
    public: Api,
) -> CompiledPolicy {
    CompiledPolicy::compile(set_with(rules, defaults), &builtins(public)).expect("policy compiles")
}

pub fn user(content: &str) -> ChatMessage {
    ChatMessage::user(content)
}

pub fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// The id of the rule that decides one user message (`None`: default).
pub fn rule_for(policy: &CompiledPolicy, text: &str) -> Option<String> {
    policy
        .decide(&[user(text)], None)
        .rule
        .map(|r| r.to_string())
}
