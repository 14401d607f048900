//! The patterns of every rule in one regex set.
//!
//! Patterns are compiled case-insensitively with Unicode on, and run on the
//! normalized text of one message at a time, so `^` and `$` are the start and end of
//! a message (no multi-line mode). Identical patterns are compiled once. Each
//! pattern alone must fit [`PATTERN_SIZE_LIMIT`] (the crate's default, 10 MiB):
//! a pattern such as `(\w{100}){30}` that would take seconds on every long
//! prompt is a load error at the pattern. The whole set may grow to
//! [`SIZE_LIMIT`] so that large policies compile; a policy that still does not
//! fit is a load error, never a panic.
//!
//! The set is `regex-automata`'s meta regex built as `regex::RegexSet` builds
//! it (every match kind, no captures), used directly so that `/v1/routes` can
//! report the memory it takes.

use regex::RegexBuilder;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet, meta};

use super::RuleBits;
use super::TargetTable;
use crate::policy::{LoadError, RuleSpec};

/// Limit on the compiled size of one pattern.
pub const PATTERN_SIZE_LIMIT: usize = 10 << 20;
/// Limit on the compiled size of the whole set.
pub const SIZE_LIMIT: usize = 256 << 20;
/// Limit on the lazy DFA cache of the set (per thread searching it).
const DFA_SIZE_LIMIT: usize = 32 << 20;

/// The shared regex set and the rules each pattern belongs to.
#[derive(Debug)]
pub(crate) struct PatternMatcher {
    set: meta::Regex,
    pub(crate) targets: TargetTable,
}

/// The set of `patterns`, configured as `regex::RegexSetBuilder` configures
/// one with these options.
fn build_set<S: AsRef<str>>(patterns: &[S]) -> Result<meta::Regex, Box<meta::BuildError>> {
    let config = meta::Config::new()
        .match_kind(MatchKind::All)
        .utf8_empty(true)
        .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
        .nfa_size_limit(Some(SIZE_LIMIT))
        .hybrid_cache_capacity(DFA_SIZE_LIMIT);
    let syntax = syntax::Config::new()
        .case_insensitive(true)
        .unicode(true)
        .multi_line(false)
        .utf8(true);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax)
        .build_many(patterns)
        .map_err(Box::new)
}

/// Checks one pattern as the compiler will build it (case-insensitive,
/// Unicode), within [`PATTERN_SIZE_LIMIT`]. `Err` carries the regex error in plain words on one line,
/// without the pattern itself (`unclosed group`), for the caller to place at the
/// pattern's position.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(true)
        .multi_line(false)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map(drop)
        .map_err(|e| describe(&e))
}

/// One line of plain words from a regex error. Syntax errors come as a
/// multi-line drawing of the pattern with a caret, ending in `error: <what>`.
fn describe(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => syntax_line(text),
        regex::Error::CompiledTooBig(limit) => too_big(*limit),
        other => other.to_string().replace('\n', " "),
    }
}

/// [`describe`] for the set's own error.
fn describe_set(error: &meta::BuildError) -> String {
    if let Some(limit) = error.size_limit() {
        too_big(limit)
    } else if let Some(syntax) = error.syntax_error() {
        syntax_line(&syntax.to_string())
    } else {
        error.to_string().replace('\n', " ")
    }
}

fn syntax_line(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().next().unwrap_or("invalid regular expression"))
        .to_owned()
}

fn too_big(limit: usize) -> String {
    format!("too big: once compiled it exceeds the limit of {limit} bytes")
}

impl PatternMatcher {
    /// Builds the set over distinct patterns. `Err(())`: see [`explain_failure`].
    pub(crate) fn build(patterns: &[String], targets: TargetTable) -> Result<Self, ()> {
        let set = build_set(patterns).map_err(drop)?;
        Ok(PatternMatcher { set, targets })
    }

    /// The heap bytes of the set (not its per-thread search caches) and its
    /// rule table.
    pub(crate) fn memory_usage(&self) -> usize {
        self.set.memory_usage() + self.targets.memory_usage()
    }

    /// Marks in `hits` every rule with a pattern matching `text` (normalized).
    /// Rules limited to the last user message are skipped unless `text` is that
    /// message.
    pub(crate) fn scan(&self, text: &str, is_last_user: bool, hits: &mut RuleBits) {
        let mut matched = PatternSet::new(self.set.pattern_len());
        self.set
            .which_overlapping_matches(&Input::new(text), &mut matched);
        for id in matched.iter() {
            for t in self.targets.of(id.as_usize()) {
                if !t.last_user_only || is_last_user {
                    hits.set(t.rule);
                }
            }
        }
    }
}

/// Why the set of `rules`' patterns failed to build: each invalid pattern at its
/// position; when each pattern is fine alone but they are too big together, one
/// error at the rule whose patterns push the set over the limit.
pub(crate) fn explain_failure(rules: &[RuleSpec]) -> Vec<LoadError> {
    let mut errors = invalid_patterns(rules);
    if errors.is_empty() {
        // Adding patterns only grows the set, so the first failing prefix of the
        // rule chain ends at the culprit: find it by bisection.
        let build = |n: usize| {
            let patterns: Vec<&str> = rules[..n]
                .iter()
                .flat_map(|r| r.patterns.iter().map(|p| p.value.as_str()))
                .collect();
            build_set(&patterns)
        };
        let (mut ok, mut failing) = (0, rules.len());
        while failing - ok > 1 {
            let mid = ok + (failing - ok) / 2;
            if build(mid).is_ok() {
                ok = mid;
            } else {
                failing = mid;
            }
        }
        let why = match build(failing) {
            Err(e) => describe_set(&e),
            Ok(_) => "the regex set could not be built".to_owned(),
        };
        let message = format!(
            "the patterns of the rules up to this one are too big to compile together: {why}"
        );
        errors.push(match failing.checked_sub(1).and_then(|i| rules.get(i)) {
            Some(rule) => LoadError::at_location(&rule.at, message),
            None => LoadError::whole("policy", message),
        });
    }
    errors
}

/// Every pattern of `rules` that does not compile on its own, at its position.
pub(crate) fn invalid_patterns(rules: &[RuleSpec]) -> Vec<LoadError> {
    rules
        .iter()
        .flat_map(|rule| &rule.patterns)
        .filter_map(|p| {
            check_pattern(&p.value).err().map(|why| {
                LoadError::at_location(&p.at, format!("invalid regex {:?}: {why}", p.value))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_pattern_reports_one_plain_line() {
        assert_eq!(check_pattern(r"\b\d{3}-\d{2}-\d{4}\b"), Ok(()));
        let err = check_pattern("(abc").expect_err("unclosed group");
        assert_eq!(err, "unclosed group");
        let err = check_pattern("a{2,1}").expect_err("bad repetition");
        assert!(!err.contains('\n') && !err.is_empty(), "{err}");
        let err = check_pattern(r"\p{NoSuchClass}").expect_err("unknown class");
        assert!(!err.contains('\n') && err.contains("Unicode"), "{err}");
    }

    #[test]
    fn check_pattern_rejects_what_does_not_fit() {
        // A bounded repetition of a Unicode class compiles to far more than the limit.
        let err = check_pattern(r"(\w{1000}){1000}").expect_err("too big");
        assert!(err.contains("too big"), "{err}");
        // The pattern that held the async workers for 20-37 s per prompt.
        let err = check_pattern(r"(\w{100}){30}").expect_err("too big");
        assert!(err.contains("10485760"), "{err}");
        // Ordinary patterns, long classes included, fit.
        for fine in [
            r"\b\d{3}-\d{2}-\d{4}\b",
            r"[\p{L}\d]{50}",
            r"(?i)project[-_ ]?x\w*",
        ] {
            assert_eq!(check_pattern(fine), Ok(()), "{fine}");
        }
    }
}
