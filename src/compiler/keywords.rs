//! The keywords of every rule in one Aho-Corasick automaton.
//!
//! Keywords are normalized and deduplicated before they go in, so each automaton
//! pattern id stands for one normalized keyword and maps to every rule using it.
//! The search reports every occurrence of every keyword, overlapping ones included
//! (standard match semantics, as an overlapping search does): a `word` rule whose
//! keyword first appears inside a longer word (`secretive`) still sees a later
//! whole-word occurrence, and a keyword that is a prefix of another is never hidden
//! by it.
//!
//! The search loop is our own, over the crate's low-level automaton interface.
//! Walking a DFA is one dependent table lookup per byte, so its speed is bound by
//! memory latency, not by the number of keywords. To hide that latency the input is
//! cut into [`LANES`] stretches walked in the same loop, each an independent chain
//! of lookups the processor overlaps. A stretch starts `max_keyword_len - 1` bytes
//! before the part it owns, so an occurrence crossing into it is still seen, and
//! each occurrence is reported only by the stretch owning its end, hence exactly
//! once. No prefilter is used: with many keywords it rarely applies, and without
//! one the cost of a decision does not depend on which keywords a policy holds.

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::{contiguous, noncontiguous};
use aho_corasick::{Anchored, MatchKind, StartKind, dfa};

use super::RuleBits;
use super::TargetTable;

/// Up to this many bytes of keywords, the automaton is a DFA: one table lookup per
/// input byte, the fastest search. Its memory grows with states × byte classes
/// (about 70 MB for 100 000 keywords of 6 to 12 letters), so beyond this a
/// contiguous NFA, whose search costs more per byte, is used instead.
const DFA_MAX_KEYWORD_BYTES: usize = 1_500_000;

/// Stretches of the input walked together; see the module documentation.
const LANES: usize = 4;

/// Below this many bytes per lane, one lane is as fast and simpler.
const MIN_LANE_BYTES: usize = 64;

/// The automaton, of the fastest kind that fits.
#[derive(Debug)]
enum Engine {
    Dfa(dfa::DFA),
    Contiguous(contiguous::NFA),
    Noncontiguous(noncontiguous::NFA),
}

/// The shared keyword automaton and the rules each keyword belongs to.
#[derive(Debug)]
pub(crate) struct KeywordMatcher {
    engine: Engine,
    pub(crate) targets: TargetTable,
}

impl KeywordMatcher {
    /// Builds the automaton over normalized, distinct, non-empty keywords. `Err`
    /// says in plain words why it could not be built.
    pub(crate) fn build(keywords: &[String], targets: TargetTable) -> Result<Self, String> {
        let too_many = |e: aho_corasick::BuildError| {
            format!(
                "the {} distinct keywords of this policy cannot be compiled: {e}",
                keywords.len()
            )
        };
        let nfa = noncontiguous::Builder::new()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(keywords)
            .map_err(too_many)?;
        let bytes: usize = keywords.iter().map(String::len).sum();
        let dfa = (bytes <= DFA_MAX_KEYWORD_BYTES)
            .then(|| {
                dfa::Builder::new()
                    .start_kind(StartKind::Unanchored)
                    .build_from_noncontiguous(&nfa)
                    .ok()
            })
            .flatten();
        let engine = match dfa {
            Some(dfa) => Engine::Dfa(dfa),
            None => match contiguous::Builder::new().build_from_noncontiguous(&nfa) {
                Ok(contiguous) => Engine::Contiguous(contiguous),
                Err(_) => Engine::Noncontiguous(nfa),
            },
        };
        Ok(KeywordMatcher { engine, targets })
    }

    /// The heap bytes of the automaton and its rule table.
    pub(crate) fn memory_usage(&self) -> usize {
        let automaton = match &self.engine {
            Engine::Dfa(a) => a.memory_usage(),
            Engine::Contiguous(a) => a.memory_usage(),
            Engine::Noncontiguous(a) => a.memory_usage(),
        };
        automaton + self.targets.memory_usage()
    }

    /// Number of distinct normalized keywords.
    pub(crate) fn len(&self) -> usize {
        match &self.engine {
            Engine::Dfa(a) => a.patterns_len(),
            Engine::Contiguous(a) => a.patterns_len(),
            Engine::Noncontiguous(a) => a.patterns_len(),
        }
    }

    /// Marks in `hits` every rule with a keyword occurring in `text` (normalized):
    /// anywhere for `substring` rules, between non-word characters for `word`
    /// rules. Rules limited to the last user message are skipped unless `text` is
    /// that message.
    pub(crate) fn scan(&self, text: &str, is_last_user: bool, hits: &mut RuleBits) {
        let mut on_match = |pattern: usize, start: usize, end: usize| {
            let mut bounded: Option<bool> = None;
            for t in self.targets.of(pattern) {
                if hits.get(t.rule) || (t.last_user_only && !is_last_user) {
                    continue;
                }
                if t.word && !*bounded.get_or_insert_with(|| is_whole_word(text, start, end)) {
                    continue;
                }
                hits.set(t.rule);
            }
        };
        match &self.engine {
            Engine::Dfa(a) => for_each_match(a, text.as_bytes(), &mut on_match),
            Engine::Contiguous(a) => for_each_match(a, text.as_bytes(), &mut on_match),
            Engine::Noncontiguous(a) => for_each_match(a, text.as_bytes(), &mut on_match),
        }
    }
}

/// Calls `f(pattern, start, end)` for every occurrence of every pattern of `aut` in
/// `haystack`, overlapping ones included, each exactly once (in no particular order).
fn for_each_match<A: Automaton>(aut: &A, haystack: &[u8], f: &mut impl FnMut(usize, usize, usize)) {
    // Every automaton here is built for unanchored searches, so this holds.
    let Ok(start) = aut.start_state(Anchored::No) else {
        return;
    };
    let n = haystack.len();
    let overlap = aut.max_pattern_len().saturating_sub(1);
    let chunk = n / LANES;
    if chunk < MIN_LANE_BYTES || overlap >= chunk {
        walk(aut, haystack, start, 0, 0, n, f);
        return;
    }
    // Lane `i` owns the occurrences ending in `(owned[i], end[i]]` and walks from
    // `pos[i]`, early enough to see any occurrence ending there.
    let mut owned = [0; LANES];
    let mut pos = [0; LANES];
    let mut end = [0; LANES];
    for i in 0..LANES {
        owned[i] = i * chunk;
        pos[i] = owned[i].saturating_sub(overlap);
        end[i] = if i + 1 == LANES { n } else { (i + 1) * chunk };
    }
    let common = (0..LANES).map(|i| end[i] - pos[i]).min().unwrap_or(0);
    let mut sid = [start; LANES];
    for k in 0..common {
        for i in 0..LANES {
            let at = pos[i] + k;
            sid[i] = aut.next_state(Anchored::No, sid[i], haystack[at]);
            if aut.is_special(sid[i]) {
                report(aut, sid[i], at + 1, owned[i], f);
            }
        }
    }
    for i in 0..LANES {
        walk(aut, haystack, sid[i], pos[i] + common, owned[i], end[i], f);
    }
}

/// Walks `haystack[from..to]` from state `sid`, reporting occurrences ending after
/// `owned`.
#[inline(always)]
fn walk<A: Automaton>(
    aut: &A,
    haystack: &[u8],
    mut sid: aho_corasick::automaton::StateID,
    from: usize,
    owned: usize,
    to: usize,
    f: &mut impl FnMut(usize, usize, usize),
) {
    for (at, &byte) in haystack.iter().enumerate().take(to).skip(from) {
        sid = aut.next_state(Anchored::No, sid, byte);
        if aut.is_special(sid) {
            report(aut, sid, at + 1, owned, f);
        }
    }
}

/// Reports the occurrences ending at `end` (after `owned`) that state `sid` holds.
#[inline(always)]
fn report<A: Automaton>(
    aut: &A,
    sid: aho_corasick::automaton::StateID,
    end: usize,
    owned: usize,
    f: &mut impl FnMut(usize, usize, usize),
) {
    if end > owned && aut.is_match(sid) {
        for index in 0..aut.match_len(sid) {
            let pattern = aut.match_pattern(sid, index);
            f(pattern.as_usize(), end - aut.pattern_len(pattern), end);
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
    use aho_corasick::AhoCorasick;
    use proptest::prelude::*;

    /// Every occurrence, sorted, as the crate's own overlapping search reports them.
    fn reference(keywords: &[String], text: &str) -> Vec<(usize, usize, usize)> {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(keywords)
            .expect("builds");
        let mut v: Vec<_> = ac
            .find_overlapping_iter(text)
            .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
            .collect();
        v.sort_unstable();
        v
    }

    fn ours<A: Automaton>(aut: &A, text: &str) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        for_each_match(aut, text.as_bytes(), &mut |p, s, e| v.push((p, s, e)));
        v.sort_unstable();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The lanes find exactly what a plain overlapping search finds, whatever the
        /// automaton kind, including occurrences across lane boundaries.
        #[test]
        fn lanes_find_every_occurrence_once(
            keywords in proptest::collection::hash_set("[abc]{1,6}|[a-c ]{7,40}", 1..20),
            text in "[abc ]{0,1200}",
        ) {
            let keywords: Vec<String> = keywords.into_iter().collect();
            let nfa = noncontiguous::Builder::new()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(&keywords)
                .expect("builds");
            let dfa = dfa::Builder::new().build_from_noncontiguous(&nfa).expect("builds");
            let contiguous = contiguous::Builder::new()
                .build_from_noncontiguous(&nfa)
                .expect("builds");
            let expected = reference(&keywords, &text);
            prop_assert_eq!(&ours(&dfa, &text), &expected);
            prop_assert_eq!(&ours(&contiguous, &text), &expected);
            prop_assert_eq!(&ours(&nfa, &text), &expected);
        }
    }

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
