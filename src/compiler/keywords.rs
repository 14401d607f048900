//! The keywords of every rule in one Aho-Corasick automaton.
//!
//! Keywords are normalized and deduplicated before they go in, so each automaton
//! pattern id stands for one normalized keyword and maps to every rule using it.
//! The search is overlapping with standard match semantics: it reports every
//! occurrence of every keyword, so a `word` rule whose keyword first appears inside
//! a longer word (`secretive`) still sees a later whole-word occurrence, and a
//! keyword that is a prefix of another is never hidden by it.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::TargetTable;
use crate::decision::RuleBits;

/// Up to this many bytes of keywords, the automaton is a DFA: one table lookup per
/// input byte, the fastest search. Beyond, its memory (states × byte classes) and
/// build time grow too much, and a contiguous NFA, whose search costs a little more
/// per byte, is used instead.
const DFA_MAX_KEYWORD_BYTES: usize = 2_000_000;

/// The shared keyword automaton and the rules each keyword belongs to.
#[derive(Debug)]
pub(crate) struct KeywordMatcher {
    automaton: AhoCorasick,
    pub(crate) targets: TargetTable,
}

impl KeywordMatcher {
    /// Builds the automaton over normalized, distinct keywords. `Err` says in plain
    /// words why it could not be built.
    pub(crate) fn build(keywords: &[String], targets: TargetTable) -> Result<Self, String> {
        let bytes: usize = keywords.iter().map(String::len).sum();
        let mut builder = AhoCorasick::builder();
        builder.match_kind(MatchKind::Standard);
        let dfa = if bytes <= DFA_MAX_KEYWORD_BYTES {
            builder
                .kind(Some(AhoCorasickKind::DFA))
                .build(keywords)
                .ok()
        } else {
            None
        };
        let automaton = match dfa {
            Some(dfa) => dfa,
            // Let the crate pick: a contiguous NFA, or a noncontiguous one when the
            // contiguous one cannot represent the keywords.
            None => builder.kind(None).build(keywords).map_err(|e| {
                format!(
                    "the {} distinct keywords of this policy cannot be compiled: {e}",
                    keywords.len()
                )
            })?,
        };
        Ok(KeywordMatcher { automaton, targets })
    }

    /// Number of distinct normalized keywords.
    pub(crate) fn len(&self) -> usize {
        self.automaton.patterns_len()
    }

    /// Marks in `hits` every rule with a keyword occurring in `text` (normalized):
    /// anywhere for `substring` rules, between non-word characters for `word`
    /// rules. Rules limited to the last user message are skipped unless `text` is
    /// that message.
    pub(crate) fn scan(&self, text: &str, is_last_user: bool, hits: &mut RuleBits) {
        // The automaton is built with `MatchKind::Standard` and unanchored starts,
        // the configuration overlapping search requires, so this cannot panic.
        for m in self.automaton.find_overlapping_iter(text) {
            let mut bounded: Option<bool> = None;
            for t in self.targets.of(m.pattern().as_usize()) {
                if hits.get(t.rule) || (t.last_user_only && !is_last_user) {
                    continue;
                }
                if t.word
                    && !*bounded.get_or_insert_with(|| is_whole_word(text, m.start(), m.end()))
                {
                    continue;
                }
                hits.set(t.rule);
            }
        }
    }
}

/// A word character, for `keyword_match: word`: a Unicode letter or digit, or `_`.
#[inline]
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `text[start..end]` is neither preceded nor followed by a word character.
/// Matches of a UTF-8 keyword in UTF-8 text always start and end on character
/// boundaries, so the slicing is sound.
#[inline]
fn is_whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(end..).and_then(|s| s.chars().next());
    !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_word_boundaries() {
        let at = |text: &str| {
            let start = text.find("secret").expect("contains secret");
            is_whole_word(text, start, start + "secret".len())
        };
        for yes in [
            "secret",
            "secret:",
            "-secret-",
            "«secret»",
            "a secret.",
            "(secret)",
        ] {
            assert!(at(yes), "{yes:?} should be a whole word");
        }
        for no in [
            "secretive",
            "secret_key",
            "secret9",
            "ñsecret",
            "_secret",
            "9secret",
        ] {
            assert!(!at(no), "{no:?} should not be a whole word");
        }
    }
}
