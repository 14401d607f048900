//! The compiler: turns a validated [`PolicySet`] into a [`CompiledPolicy`].
//!
//! A decision must cost one scan of the input whatever the number of rules and
//! keywords, so compiling gathers the matchers of every rule into shared ones:
//! all keywords, normalized and deduplicated, into one Aho-Corasick automaton per
//! keyword normalization in use ([`keywords`]), all patterns into one regex set ([`patterns`]), and all model
//! globs into one glob set ([`models`]). Each pattern or glob id maps back to the
//! rules that use it. The rule chain keeps only what a decision reads, with ids
//! and reasons shared (`Arc<str>`) so a decision never copies a string.
//!
//! Compiling never panics: every problem becomes a [`LoadError`] at the offending
//! keyword, pattern, glob or rule, and every problem is reported, not only the first.

mod bits;
mod keywords;
mod models;
mod patterns;

use std::sync::Arc;

use crate::detect::DetectorSet;
use crate::names::{ProviderId, Route};
use crate::normalize::{normalize, strict_keyword};
use crate::policy::{
    CharBounds, KeywordNormalization, LoadError, LoadErrors, Located, PolicySet, RuleSpec, Scope,
    UsdBounds,
};
use crate::providers::spec::{CircuitSettings, ModelGlobs, Timeouts};
use crate::providers::{Builtins, ProviderSpec};

pub(crate) use bits::RuleBits;
pub(crate) use keywords::KeywordMatcher;
pub(crate) use models::ModelMatcher;
pub use models::check_glob;
pub(crate) use patterns::PatternMatcher;
pub use patterns::check_pattern;

/// A policy ready to decide: one Aho-Corasick automaton per keyword
/// normalization in use, one regex set, one glob set, the rule chain in
/// evaluation order (sensitive rules first).
#[derive(Debug)]
pub struct CompiledPolicy {
    set: PolicySet,
    /// Every provider: `local`, the public one, then the policy's own.
    providers: Vec<Arc<ProviderSpec>>,
    /// Names that always mean the chosen provider's own model.
    model_aliases: Vec<String>,
    pub(crate) version: Arc<str>,
    pub(crate) rules: Vec<CompiledRule>,
    /// The keywords of `keyword_normalization: standard` rules.
    pub(crate) keywords: Option<KeywordMatcher>,
    /// The keywords of `keyword_normalization: strict` rules.
    pub(crate) strict_keywords: Option<KeywordMatcher>,
    pub(crate) patterns: Option<PatternMatcher>,
    pub(crate) models: Option<ModelMatcher>,
    /// The rules with a `keywords` condition.
    pub(crate) needs_keywords: RuleBits,
    /// The rules with a `patterns` condition.
    pub(crate) needs_patterns: RuleBits,
    /// The rules with a `model` condition.
    pub(crate) needs_model: RuleBits,
    /// Every detector some rule with `scope: all` uses.
    pub(crate) detect_all: DetectorSet,
    /// Every detector some rule with `scope: last_user` uses.
    pub(crate) detect_last_user: DetectorSet,
    pub(crate) default: Outcome,
    /// USD per 1M input tokens; `None`: no price, so no estimate.
    pub(crate) price: Option<f64>,
    pub(crate) chars_per_token: f64,
}

/// Where a decision sends a request and the reason code it reports.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) route: Route,
    pub(crate) provider: ProviderId,
    /// The providers tried in order: the first, then the fallbacks.
    pub(crate) chain: Arc<[Arc<ProviderSpec>]>,
    pub(crate) reason: Arc<str>,
    /// Made by a sensitive rule: the request must stay local.
    pub(crate) sensitive: bool,
}

impl Outcome {
    fn new(chain: Arc<[Arc<ProviderSpec>]>, reason: Arc<str>, sensitive: bool) -> Self {
        let first = &chain[0];
        Outcome {
            route: first.trust,
            provider: first.id.clone(),
            chain: Arc::clone(&chain),
            reason,
            sensitive,
        }
    }
}

/// The provider `name` names among `providers` (`local`, the public one,
/// then the policy's): `public` is the public one.
fn resolve<'a>(providers: &'a [Arc<ProviderSpec>], name: &str) -> Option<&'a Arc<ProviderSpec>> {
    if name == "public" {
        return providers.get(1);
    }
    providers.iter().find(|p| p.id == name)
}

/// The glob set of a rule's `client` condition; each bad glob is an error at
/// its position.
fn client_globs(spec: &RuleSpec, errors: &mut Vec<LoadError>) -> Option<globset::GlobSet> {
    if spec.client.is_empty() {
        return None;
    }
    let mut builder = globset::GlobSetBuilder::new();
    for glob in &spec.client {
        match crate::providers::spec::model_glob(&glob.value) {
            Ok(g) => {
                builder.add(g);
            }
            Err(why) => errors.push(LoadError::at_location(
                &glob.at,
                format!("invalid glob {:?}: {why}", glob.value),
            )),
        }
    }
    builder.build().ok()
}

/// The built-ins and the policy's providers, resolved: each unset timeout
/// is the built-ins' (`PROVIDER_TIMEOUT_SECONDS`).
fn provider_specs(
    set: &PolicySet,
    builtins: &Builtins,
    errors: &mut Vec<LoadError>,
) -> Vec<Arc<ProviderSpec>> {
    let mut out = vec![
        Arc::new(builtins.local.clone()),
        Arc::new(builtins.public.clone()),
    ];
    let seconds = |value: Option<f64>, default: std::time::Duration| {
        value
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    for decl in &set.providers {
        let entry = &decl.entry;
        let models = match ModelGlobs::new(entry.models.clone().unwrap_or_default()) {
            Ok(models) => models,
            Err(message) => {
                errors.push(LoadError::at_location(&decl.at, message));
                continue;
            }
        };
        let base = Timeouts::all(builtins.timeout);
        let t = entry.timeouts.unwrap_or_default();
        let c = entry.circuit.unwrap_or_default();
        let circuit = CircuitSettings::default();
        out.push(Arc::new(ProviderSpec {
            id: ProviderId::new(&entry.id),
            api: entry.api,
            url: entry.url.clone(),
            trust: entry.trust,
            model: entry.model.clone(),
            models,
            api_key_env: entry.api_key_env.clone(),
            proxy: entry.proxy.clone(),
            retries: entry.retries.unwrap_or(0),
            timeouts: Timeouts {
                connect: seconds(t.connect, base.connect),
                first_byte: seconds(t.first_byte, base.first_byte),
                idle: seconds(t.idle, base.idle),
                total: seconds(t.total, base.total),
            },
            circuit: CircuitSettings {
                failures: c.failures.unwrap_or(circuit.failures).max(1),
                cooldown: c
                    .cooldown_seconds
                    .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
                    .unwrap_or(circuit.cooldown),
            },
            builtin: false,
        }));
    }
    out
}

/// One rule of the chain, as a decision reads it.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: Arc<str>,
    pub(crate) outcome: Outcome,
    /// The rule has a `keywords` condition (its keywords are in the automaton).
    pub(crate) keywords: bool,
    /// The rule has a `patterns` condition (its patterns are in the regex set).
    pub(crate) patterns: bool,
    pub(crate) input_chars: Option<CharBounds>,
    pub(crate) estimated_usd: Option<UsdBounds>,
    /// The rule has a `model` condition (its globs are in the glob set).
    pub(crate) model: bool,
    /// The globs of its `client` condition (`None`: none).
    pub(crate) client: Option<globset::GlobSet>,
    /// Whether the request must (or must not) have an image.
    pub(crate) has_images: Option<bool>,
    /// The detectors of its `detect` condition (empty: none).
    pub(crate) detectors: DetectorSet,
    /// Its keywords, patterns and detectors look at the last user message only.
    pub(crate) last_user_only: bool,
}

/// A rule that a keyword, pattern or glob of the shared matchers belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// Index of the rule in the chain.
    pub(crate) rule: usize,
    /// Keywords only: the occurrence must not touch a word character.
    pub(crate) word: bool,
    /// The rule looks only at the last user message.
    pub(crate) last_user_only: bool,
}

/// For each pattern id of a shared matcher, the rules it belongs to, stored flat.
#[derive(Debug, Default)]
pub(crate) struct TargetTable {
    /// `targets[starts[id]..starts[id + 1]]` are the rules of pattern `id`.
    starts: Vec<usize>,
    targets: Vec<Target>,
    /// Some rule with `scope: all` uses this matcher.
    pub(crate) scope_all: bool,
    /// Some rule with `scope: last_user` uses this matcher.
    pub(crate) scope_last_user: bool,
}

impl TargetTable {
    /// Builds the table from the targets of each pattern id, in id order. A rule
    /// listing the same pattern twice gets one target.
    fn new(per_pattern: Vec<Vec<Target>>) -> Self {
        let mut table = TargetTable {
            starts: Vec::with_capacity(per_pattern.len() + 1),
            ..TargetTable::default()
        };
        table.starts.push(0);
        for mut targets in per_pattern {
            targets.dedup();
            for t in &targets {
                if t.last_user_only {
                    table.scope_last_user = true;
                } else {
                    table.scope_all = true;
                }
            }
            table.targets.extend(targets);
            table.starts.push(table.targets.len());
        }
        table
    }

    /// The heap bytes of the table.
    pub(crate) fn memory_usage(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<usize>()
            + self.targets.capacity() * std::mem::size_of::<Target>()
    }

    /// The rules pattern `id` belongs to.
    #[inline]
    pub(crate) fn of(&self, id: usize) -> &[Target] {
        match (self.starts.get(id), self.starts.get(id + 1)) {
            (Some(&a), Some(&b)) => &self.targets[a..b],
            _ => &[],
        }
    }

    /// Whether this matcher needs to see a message: every message when a rule
    /// with `scope: all` uses it, else only the last user message.
    #[inline]
    pub(crate) fn wants(&self, is_last_user: bool) -> bool {
        self.scope_all || (self.scope_last_user && is_last_user)
    }
}

/// Accumulates, for each deduplicated item (keyword or pattern), the rules that
/// use it.
struct Interner {
    ids: std::collections::HashMap<String, usize>,
    items: Vec<String>,
    targets: Vec<Vec<Target>>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            ids: std::collections::HashMap::new(),
            items: Vec::new(),
            targets: Vec::new(),
        }
    }

    fn add(&mut self, item: String, target: Target) {
        let id = match self.ids.get(&item) {
            Some(&id) => id,
            None => {
                let id = self.items.len();
                self.ids.insert(item.clone(), id);
                self.items.push(item);
                self.targets.push(Vec::new());
                id
            }
        };
        self.targets[id].push(target);
    }
}

/// The most keywords a policy may hold, in all its rules.
pub const MAX_KEYWORDS: usize = 1_000_000;
/// The most patterns a policy may hold, in all its rules.
pub const MAX_PATTERNS: usize = 10_000;

/// A load error at the first of `items` past `max`, naming the count.
pub(crate) fn over_bound<'a>(
    items: impl Iterator<Item = &'a Located<String>>,
    max: usize,
    what: &str,
) -> Option<LoadError> {
    let mut first_over = None;
    let mut count = 0usize;
    for item in items {
        count += 1;
        if count == max + 1 {
            first_over = Some(item.at.clone());
        }
    }
    first_over.map(|at| {
        LoadError::at_location(
            &at,
            format!("the policy holds {count} {what}, more than the {max} allowed"),
        )
    })
}

impl CompiledPolicy {
    /// Compiles a validated policy; `builtins` are the providers from the
    /// environment (`route: public` is the public one). Every problem is
    /// reported, each at the keyword, pattern, glob, provider or rule it
    /// comes from.
    pub fn compile(mut set: PolicySet, builtins: &Builtins) -> Result<CompiledPolicy, LoadErrors> {
        // The evaluation order: sensitive rules first, each group in load
        // order (the sort is stable). `set.rules` keeps it, so `/v1/routes`
        // and every trace list the rules as they are tried.
        set.rules.sort_by_key(|rule| !rule.sensitive);
        // Bounds first: a policy over them is refused before any work.
        let bounds: Vec<LoadError> = [
            over_bound(
                set.rules.iter().flat_map(|r| &r.keywords),
                MAX_KEYWORDS,
                "keywords",
            ),
            over_bound(
                set.rules.iter().flat_map(|r| &r.patterns),
                MAX_PATTERNS,
                "patterns",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !bounds.is_empty() {
            return Err(LoadErrors(bounds));
        }
        let mut errors = Vec::new();
        let providers = provider_specs(&set, builtins, &mut errors);
        let chain_of = |route: &Located<String>,
                        fallback: &[Located<String>],
                        sensitive: Option<&str>,
                        errors: &mut Vec<LoadError>|
         -> Option<Arc<[Arc<ProviderSpec>]>> {
            let mut chain: Vec<Arc<ProviderSpec>> = Vec::new();
            for name in std::iter::once(route).chain(fallback) {
                let Some(spec) = resolve(&providers, &name.value) else {
                    errors.push(LoadError::at_location(
                        &name.at,
                        format!("unknown provider `{}`", name.value),
                    ));
                    return None;
                };
                if let Some(rule) = sensitive
                    && spec.trust != Route::Local
                {
                    // The language refuses this at the value; a policy built
                    // in code is held to it here.
                    errors.push(LoadError::at_location(
                        &name.at,
                        format!(
                            "rule `{rule}` is sensitive: `{}` is a public provider; a sensitive \
                             rule may list only `trust: local` providers",
                            name.value
                        ),
                    ));
                }
                if !chain.iter().any(|c| c.id == spec.id) {
                    chain.push(Arc::clone(spec));
                }
            }
            Some(chain.into())
        };
        let mut keywords = Interner::new();
        let mut strict_keywords = Interner::new();
        let mut patterns = Interner::new();
        let mut models = Interner::new();
        let mut rules = Vec::with_capacity(set.rules.len());
        for (index, spec) in set.rules.iter().enumerate() {
            let chain = chain_of(
                &spec.route,
                &spec.fallback,
                spec.sensitive.then_some(spec.id.as_str()),
                &mut errors,
            );
            let last_user_only = spec.scope == Scope::LastUser;
            for keyword in &spec.keywords {
                let normalized =
                    match normalized_keyword(&keyword.value, spec.keyword_normalization) {
                        Ok(normalized) => normalized,
                        Err(message) => {
                            errors.push(LoadError::at_location(&keyword.at, message));
                            continue;
                        }
                    };
                let interner = match spec.keyword_normalization {
                    KeywordNormalization::Standard => &mut keywords,
                    KeywordNormalization::Strict => &mut strict_keywords,
                };
                interner.add(
                    normalized,
                    Target {
                        rule: index,
                        word: spec.keyword_match == crate::policy::KeywordMatch::Word,
                        last_user_only,
                    },
                );
            }
            for pattern in &spec.patterns {
                patterns.add(
                    pattern.value.clone(),
                    Target {
                        rule: index,
                        word: false,
                        last_user_only,
                    },
                );
            }
            for glob in &spec.model {
                models.add(
                    glob.value.clone(),
                    Target {
                        rule: index,
                        word: false,
                        last_user_only: false,
                    },
                );
            }
            // An unknown provider is already an error; the rule keeps its
            // place in the chain so that the matchers' rule indices hold.
            let chain = chain.unwrap_or_else(|| Arc::from([Arc::clone(&providers[0])]));
            rules.push(CompiledRule {
                id: Arc::from(spec.id.as_str()),
                outcome: Outcome::new(chain, Arc::from(spec.reason.as_str()), spec.sensitive),
                keywords: !spec.keywords.is_empty(),
                patterns: !spec.patterns.is_empty(),
                input_chars: spec.input_chars,
                estimated_usd: spec.estimated_usd,
                model: !spec.model.is_empty(),
                client: client_globs(spec, &mut errors),
                has_images: spec.has_images,
                detectors: spec.detectors,
                last_user_only,
            });
        }
        let keyword_matcher = build_keywords(keywords, &set.rules, KeywordNormalization::Standard)
            .unwrap_or_else(|e| {
                errors.push(e);
                None
            });
        let strict_matcher =
            build_keywords(strict_keywords, &set.rules, KeywordNormalization::Strict)
                .unwrap_or_else(|e| {
                    errors.push(e);
                    None
                });
        // Each pattern alone within its size bound, at its position; the set
        // is built only from patterns that all pass.
        let invalid = if patterns.items.is_empty() {
            Vec::new()
        } else {
            patterns::invalid_patterns(&set.rules)
        };
        let pattern_matcher = if patterns.items.is_empty() {
            None
        } else if !errors.is_empty() || !invalid.is_empty() {
            // The policy is already invalid: building the set is pointless.
            errors.extend(invalid);
            None
        } else {
            match PatternMatcher::build(&patterns.items, TargetTable::new(patterns.targets)) {
                Ok(m) => Some(m),
                Err(()) => {
                    errors.extend(patterns::explain_failure(&set.rules));
                    None
                }
            }
        };
        let model_matcher = if models.items.is_empty() {
            None
        } else {
            let invalid = models::invalid_globs(&set.rules);
            if invalid.is_empty() {
                match ModelMatcher::build(&models.items, TargetTable::new(models.targets)) {
                    Ok(m) => Some(m),
                    Err(message) => {
                        errors.push(at_first_rule_with(
                            &set.rules,
                            |r| !r.model.is_empty(),
                            message,
                        ));
                        None
                    }
                }
            } else {
                errors.extend(invalid);
                None
            }
        };
        let defaults = &set.defaults;
        let default_route = Located {
            value: defaults.provider.value.as_str().to_owned(),
            at: set.rules.first().map_or_else(
                || crate::policy::Location {
                    path: Arc::from("defaults"),
                    position: crate::policy::Position { line: 0, column: 0 },
                },
                |r| r.at.clone(),
            ),
        };
        let default_chain = chain_of(&default_route, &set.default_fallback, None, &mut errors);
        let (Some(default_chain), true) = (default_chain, errors.is_empty()) else {
            return Err(LoadErrors(errors));
        };
        let mut model_aliases: Vec<String> = Vec::new();
        for spec in &providers {
            if !model_aliases.contains(&spec.model) {
                model_aliases.push(spec.model.clone());
            }
        }
        Ok(CompiledPolicy {
            version: Arc::from(set.version.as_str()),
            needs_keywords: RuleBits::from_fn(rules.len(), |i| rules[i].keywords),
            needs_patterns: RuleBits::from_fn(rules.len(), |i| rules[i].patterns),
            needs_model: RuleBits::from_fn(rules.len(), |i| rules[i].model),
            detect_all: rules
                .iter()
                .filter(|r| !r.last_user_only)
                .fold(DetectorSet::EMPTY, |set, r| set.union(r.detectors)),
            detect_last_user: rules
                .iter()
                .filter(|r| r.last_user_only)
                .fold(DetectorSet::EMPTY, |set, r| set.union(r.detectors)),
            rules,
            keywords: keyword_matcher,
            strict_keywords: strict_matcher,
            patterns: pattern_matcher,
            models: model_matcher,
            default: Outcome::new(default_chain, Arc::from("default"), false),
            price: defaults.input_usd_per_1m_tokens.value,
            chars_per_token: defaults.chars_per_token.value,
            set,
            providers,
            model_aliases,
        })
    }

    /// The policy this was compiled from (sources, rules, defaults, version).
    pub fn policy(&self) -> &PolicySet {
        &self.set
    }

    /// The version hash.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// About how many bytes the compiled matchers hold: the keyword
    /// automata, the regex set (without the search caches each thread
    /// searching it grows, up to 32 MiB each) and their rule tables. The
    /// policy's own text and the model globs, small beside them, are not
    /// counted.
    pub fn approximate_memory_bytes(&self) -> usize {
        self.keywords
            .as_ref()
            .map_or(0, KeywordMatcher::memory_usage)
            + self
                .strict_keywords
                .as_ref()
                .map_or(0, KeywordMatcher::memory_usage)
            + self
                .patterns
                .as_ref()
                .map_or(0, PatternMatcher::memory_usage)
            + self.models.as_ref().map_or(0, |m| m.targets.memory_usage())
            + self.rules.capacity() * std::mem::size_of::<CompiledRule>()
    }

    /// The version hash, shared: what every decision carries.
    pub fn version_arc(&self) -> &Arc<str> {
        &self.version
    }

    /// What `route: public` resolves to.
    pub fn public_provider(&self) -> &Arc<ProviderSpec> {
        &self.providers[1]
    }

    /// Every provider: `local`, the public one, then the policy's own, in
    /// load order.
    pub fn providers(&self) -> &[Arc<ProviderSpec>] {
        &self.providers
    }

    /// The provider `id` (`public` names the public one).
    pub fn provider(&self, id: &str) -> Option<&Arc<ProviderSpec>> {
        resolve(&self.providers, id)
    }

    /// Names that always mean the chosen provider's own model:
    /// `policy-mesh` (implied) and every provider's own `model`.
    pub fn model_aliases(&self) -> &[String] {
        &self.model_aliases
    }

    /// Number of rules in the chain.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Keywords as written in the rules, duplicates included (what `check` reports).
    pub fn keyword_count(&self) -> usize {
        self.set.keyword_count()
    }

    /// Distinct normalized keywords in the automatons (one per normalization).
    pub fn distinct_keyword_count(&self) -> usize {
        [&self.keywords, &self.strict_keywords]
            .into_iter()
            .map(|k| k.as_ref().map_or(0, KeywordMatcher::len))
            .sum()
    }

    /// Distinct model globs in the glob set.
    pub fn distinct_model_glob_count(&self) -> usize {
        self.models.as_ref().map_or(0, ModelMatcher::len)
    }
}

/// Every keyword, pattern and glob of `rules` that the compiler would refuse,
/// each at its position, with the words [`CompiledPolicy::compile`] uses.
/// Checking them one by one is what a policy that failed elsewhere still
/// needs, so that one load reports every problem.
pub fn rule_errors(rules: &[RuleSpec]) -> Vec<LoadError> {
    let mut errors: Vec<LoadError> = rules
        .iter()
        .flat_map(|rule| {
            rule.keywords
                .iter()
                .map(|k| (k, rule.keyword_normalization))
        })
        .filter_map(|(k, normalization)| {
            check_keyword(&k.value, normalization)
                .err()
                .map(|why| LoadError::at_location(&k.at, why))
        })
        .collect();
    errors.extend(patterns::invalid_patterns(rules));
    errors.extend(models::invalid_globs(rules));
    for rule in rules {
        client_globs(rule, &mut errors);
    }
    errors
}

/// Checks one keyword as the compiler will normalize it under `normalization`;
/// `Err` carries a plain-words message when nothing is left of it once
/// normalized (only invisible characters, for example).
pub fn check_keyword(keyword: &str, normalization: KeywordNormalization) -> Result<(), String> {
    normalized_keyword(keyword, normalization).map(drop)
}

/// A keyword as the automaton of its normalization holds it.
fn normalized_keyword(
    keyword: &str,
    normalization: KeywordNormalization,
) -> Result<String, String> {
    let standard = normalize(keyword);
    let normalized = match normalization {
        KeywordNormalization::Standard => standard.into_owned(),
        KeywordNormalization::Strict => strict_keyword(&standard),
    };
    if !normalized.is_empty() {
        return Ok(normalized);
    }
    Err(match normalization {
        KeywordNormalization::Standard => format!(
            "keyword {keyword:?} is empty once case, width and invisible characters are ignored"
        ),
        KeywordNormalization::Strict => format!(
            "keyword {keyword:?} is empty once case, width, invisible characters, marks and blanks \
             are ignored (keyword_normalization: strict)"
        ),
    })
}

/// The automaton over the keywords of one normalization (`None`: there are
/// none), or the error placed at the first rule they come from.
fn build_keywords(
    keywords: Interner,
    rules: &[RuleSpec],
    normalization: KeywordNormalization,
) -> Result<Option<KeywordMatcher>, LoadError> {
    if keywords.items.is_empty() {
        return Ok(None);
    }
    KeywordMatcher::build(&keywords.items, TargetTable::new(keywords.targets))
        .map(Some)
        .map_err(|message| {
            at_first_rule_with(
                rules,
                |r| !r.keywords.is_empty() && r.keyword_normalization == normalization,
                message,
            )
        })
}

/// An error about the matchers as a whole, placed at the first rule they concern.
fn at_first_rule_with(
    rules: &[RuleSpec],
    concerns: impl Fn(&RuleSpec) -> bool,
    message: String,
) -> LoadError {
    match rules.iter().find(|r| concerns(r)) {
        Some(rule) => LoadError::at_location(&rule.at, message),
        None => LoadError::whole("policy", message),
    }
}
