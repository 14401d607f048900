//! The model globs of every rule in one glob set.
//!
//! A `model` condition matches the model the client asked for against globs such
//! as `gpt-4o*`. Every glob of every rule is compiled into one [`GlobSet`], so a
//! decision matches the model once whatever the number of rules. The globs use
//! `globset`'s defaults with one change:
//!
//! - case-insensitive: `gpt-4o*` matches `GPT-4o-mini`;
//! - `*` matches any run of characters, `/` included, so `gpt-4o*` and
//!   `*/gpt-4o` both match `openai/gpt-4o`; model names are not paths;
//! - `?` matches one character, `[abc]`, `[a-z]` and `[!a-z]` one character of
//!   (or not of) a class, `{a,b}` either alternative, and `\` escapes the next
//!   character (on every platform);
//! - a glob must match the whole name: `gpt-4o` does not match `gpt-4o-mini`.

use globset::{Candidate, Glob, GlobSet, GlobSetBuilder};

use super::RuleBits;
use super::TargetTable;
use crate::policy::{LoadError, RuleSpec};

/// The shared glob set and the rules each glob belongs to.
#[derive(Debug)]
pub(crate) struct ModelMatcher {
    set: GlobSet,
    pub(crate) targets: TargetTable,
}

/// One glob as every model condition compiles it: the syntax of a
/// provider's `models` too, so that one name matches both alike.
fn glob(pattern: &str) -> Result<Glob, String> {
    crate::providers::spec::model_glob(pattern)
}

/// Checks one model glob as the compiler will build it. `Err` carries what is
/// wrong in plain words on one line, without the glob itself (`unclosed
/// character class; missing ']'`), for the caller to place at the glob's position.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    glob(pattern).map(drop)
}

impl ModelMatcher {
    /// Builds the set over distinct globs. `Err`: what went wrong, in plain words.
    pub(crate) fn build(globs: &[String], targets: TargetTable) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in globs {
            builder.add(glob(pattern).map_err(|why| format!("invalid glob {pattern:?}: {why}"))?);
        }
        let set = builder
            .build()
            .map_err(|e| format!("the model globs cannot be compiled together: {e}"))?;
        Ok(ModelMatcher { set, targets })
    }

    /// Number of distinct globs.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Marks in `hits` every rule with a glob matching `model`. `ids` is a buffer
    /// for the matching glob ids, reused so that matching does not allocate.
    pub(crate) fn scan(&self, model: &str, ids: &mut Vec<usize>, hits: &mut RuleBits) {
        self.set
            .matches_candidate_into(&Candidate::from_bytes(model.as_bytes()), ids);
        for &id in ids.iter() {
            for t in self.targets.of(id) {
                hits.set(t.rule);
            }
        }
    }
}

/// Every model glob of `rules` that does not compile on its own, at its position.
pub(crate) fn invalid_globs(rules: &[RuleSpec]) -> Vec<LoadError> {
    rules
        .iter()
        .flat_map(|rule| &rule.model)
        .filter_map(|g| {
            check_glob(&g.value).err().map(|why| {
                LoadError::at_location(&g.at, format!("invalid glob {:?}: {why}", g.value))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, model: &str) -> bool {
        glob(pattern)
            .expect("valid glob")
            .compile_matcher()
            .is_match_candidate(&Candidate::from_bytes(model.as_bytes()))
    }

    #[test]
    fn globs_ignore_case_and_star_crosses_slashes() {
        assert!(matches("gpt-4o*", "gpt-4o"));
        assert!(matches("gpt-4o*", "GPT-4o-Mini"));
        assert!(matches("GPT-4O", "gpt-4o"));
        assert!(matches("*gpt-4o*", "openai/gpt-4o-2024-08-06"));
        assert!(matches("*/gpt-4o", "openai/gpt-4o"));
        assert!(matches("llama?:*", "llama3:8b"));
        assert!(matches("{llama,mistral}*", "mistral-small"));
        assert!(matches("gpt-[34]*", "gpt-3.5-turbo"));
        assert!(!matches("gpt-4o", "gpt-4o-mini"));
        assert!(!matches("gpt-4o*", "openai/gpt-4o"));
        assert!(!matches("llama?:*", "llama:8b"));
        assert!(matches(r"gpt\*", "gpt*"));
        assert!(!matches(r"gpt\*", "gpt-4"));
    }

    #[test]
    fn check_glob_reports_one_plain_line() {
        assert_eq!(check_glob("gpt-4o*"), Ok(()));
        assert_eq!(check_glob("**"), Ok(()));
        assert_eq!(
            check_glob("gpt-[4o").expect_err("unclosed class"),
            "unclosed character class; missing ']'"
        );
        let err = check_glob("{gpt,llama").expect_err("unclosed group");
        assert!(err.starts_with("unclosed alternate group"), "{err}");
        assert_eq!(
            check_glob("gpt-[z-a]").expect_err("bad range"),
            "invalid range; 'z' > 'a'"
        );
        assert_eq!(check_glob("gpt\\").expect_err("dangling"), "dangling '\\'");
        assert_eq!(check_glob("").expect_err("empty"), "a glob cannot be empty");
    }
}
