//! Decisions must not depend on the normalization fast path, nor on what an earlier
//! decision left in the scratch space.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::names::Role;
use crate::policy::{
    EffectiveDefaults, KeywordMatch, Located, Location, PolicySet, Position, RuleSpec, Scope,
};

fn located(values: &[&str]) -> Vec<Located<String>> {
    values
        .iter()
        .map(|v| Located {
            value: (*v).to_owned(),
            at: Location {
                path: Arc::from("policies/p.yaml"),
                position: Position { line: 1, column: 1 },
            },
        })
        .collect()
}

fn rule(id: &str, keywords: &[&str], word: bool, patterns: &[&str], scope: Scope) -> RuleSpec {
    RuleSpec {
        id: id.to_owned(),
        description: None,
        route: Located::unplaced("local".to_owned()),
        fallback: Vec::new(),
        reason: id.to_owned(),
        sensitive: false,
        at: Location {
            path: Arc::from("policies/p.yaml"),
            position: Position { line: 1, column: 1 },
        },
        keywords: located(keywords),
        keyword_normalization: crate::policy::KeywordNormalization::Standard,
        keyword_match: if word {
            KeywordMatch::Word
        } else {
            KeywordMatch::Substring
        },
        patterns: located(patterns),
        detect: Vec::new(),
        detectors: crate::detect::DetectorSet::EMPTY,
        scope,
        input_chars: None,
        estimated_usd: None,
        model: Vec::new(),
        client: Vec::new(),
        has_images: None,
    }
}

/// `rules` as a policy of their own, with default defaults.
fn policy_of(rules: Vec<RuleSpec>) -> PolicySet {
    PolicySet {
        sources: Vec::new(),
        rules,
        defaults: EffectiveDefaults::default(),
        providers: Vec::new(),
        default_fallback: Vec::new(),
        version: "v".to_owned(),
    }
}

/// Keywords and patterns whose matching depends on every normalization step.
fn unicode_policy() -> &'static CompiledPolicy {
    static POLICY: std::sync::LazyLock<CompiledPolicy> =
        std::sync::LazyLock::new(build_unicode_policy);
    &POLICY
}

fn build_unicode_policy() -> CompiledPolicy {
    let rules = vec![
        rule("ligature", &["ﬁle"], true, &[], Scope::All),
        rule("sharp-s", &["STRAẞE"], false, &[], Scope::LastUser),
        rule("accent", &["café"], true, &[], Scope::All),
        rule("greek", &["ΣΟΦΙΑ"], false, &[], Scope::All),
        rule("secret", &["secret"], true, &[], Scope::All),
        rule("anchored", &[], false, &["^ab", "é$"], Scope::All),
        rule("word-re", &[], false, &[r"\bk\w+"], Scope::LastUser),
        rule("wide", &["ｘｙ"], false, &[], Scope::All),
        rule("sub", &["a"], false, &[], Scope::LastUser),
    ];
    let set = PolicySet {
        sources: Vec::new(),
        rules,
        defaults: EffectiveDefaults::default(),
        providers: Vec::new(),
        default_fallback: Vec::new(),
        version: "v".to_owned(),
    };
    CompiledPolicy::compile(set, &crate::providers::Builtins::defaults()).expect("compiles")
}

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[ -~]{0,20}",
        1 => prop_oneof![
            Just("file"), Just("FILE"), Just("ﬁle"), Just("Straße"), Just("STRASSE"),
            Just("cafe\u{301}"), Just("CAFÉ"), Just("café_"), Just("σοφια"), Just("ΣΟΦΙΑ"),
            Just("secret"), Just("SECRET"), Just("se\u{200b}cret"), Just("ñ"), Just("é"),
            Just("\u{301}"), Just("\u{200d}"), Just("\u{fe0f}"), Just("ｘ"), Just("ｙ"),
            Just("K"), Just("\u{212a}"), Just("AB"), Just("_"), Just("9"),
        ]
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

fn messages() -> impl Strategy<Value = Vec<ChatMessage>> {
    let role = prop_oneof![Just(Role::User), Just(Role::Assistant), Just(Role::System)];
    proptest::collection::vec(
        (role, text()).prop_map(|(role, content)| ChatMessage::new(role, content)),
        0..4,
    )
}

fn explain_with(policy: &CompiledPolicy, m: &[ChatMessage], n: Normalization) -> Explanation {
    let mut trace = Vec::new();
    let decision = policy.evaluate(
        m,
        &[],
        &[],
        None,
        &crate::clients::anonymous(),
        n,
        Some(&mut trace),
    );
    Explanation { decision, trace }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fast_and_general_normalization_decide_alike(m in messages()) {
        let policy = unicode_policy();
        let fast = explain_with(policy, &m, Normalization::Fast);
        let general = explain_with(policy, &m, Normalization::General);
        prop_assert_eq!(&fast, &general);
        prop_assert_eq!(&policy.decide(&m, None), &fast.decision);
    }

    #[test]
    fn fast_and_general_agree_on_arbitrary_unicode(
        contents in proptest::collection::vec(any::<String>(), 1..3)
    ) {
        let policy = unicode_policy();
        let m: Vec<_> = contents.into_iter().map(ChatMessage::user).collect();
        prop_assert_eq!(
            explain_with(policy, &m, Normalization::Fast),
            explain_with(policy, &m, Normalization::General)
        );
    }
}

#[test]
fn the_unicode_policy_matches_what_it_should() {
    let policy = unicode_policy();
    let rule_of = |text: &str| policy.decide(&[ChatMessage::user(text)], None).rule;
    assert_eq!(rule_of("a FILE!").as_deref(), Some("ligature"));
    assert_eq!(rule_of("Hauptstrasse").as_deref(), Some("sharp-s"));
    assert_eq!(rule_of("un CAFE\u{301}.").as_deref(), Some("accent"));
    assert_eq!(rule_of("σοφία"), None);
    assert_eq!(rule_of("ΣΟΦΙΑ").as_deref(), Some("greek"));
    assert_eq!(rule_of("AB").as_deref(), Some("anchored"));
    assert_eq!(rule_of("x \u{212a}ey").as_deref(), Some("word-re"));
    assert_eq!(rule_of("ＸＹ").as_deref(), Some("wide"));
    assert_eq!(rule_of("zzz"), None);
}

#[test]
fn bits_grow_and_clear() {
    let mut bits = RuleBits::default();
    bits.reset(130);
    assert!(!bits.get(129));
    bits.set(129);
    bits.set(0);
    assert!(bits.get(129) && bits.get(0) && !bits.get(64));
    bits.reset(3);
    assert!(!bits.get(0));
    // Out of range: ignored, never a panic.
    bits.set(500);
    assert!(!bits.get(500));
}

/// The semantics of the policy language written as plainly as possible, one rule
/// and one message at a time: the oracle for the compiled engine.
mod oracle {
    use super::*;
    use crate::normalize::normalize_general;

    fn occurs(text: &str, keyword: &str, word: bool) -> bool {
        let is_word = |c: char| c.is_alphanumeric() || c == '_';
        text.char_indices().any(|(i, _)| {
            text[i..].starts_with(keyword)
                && (!word
                    || (!text[..i].chars().next_back().is_some_and(is_word)
                        && !text[i + keyword.len()..]
                            .chars()
                            .next()
                            .is_some_and(is_word)))
        })
    }

    /// A glob of `*` (any run of characters), `?` (one character) and literal
    /// characters matches the whole of `name`, ignoring case.
    fn glob_matches(glob: &[char], name: &[char]) -> bool {
        match glob.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|i| glob_matches(rest, &name[i..])),
            Some(('?', rest)) => !name.is_empty() && glob_matches(rest, &name[1..]),
            Some((c, rest)) => name.first().is_some_and(|n| {
                n.to_lowercase().eq(c.to_lowercase()) && glob_matches(rest, &name[1..])
            }),
        }
    }

    /// The trace: each rule tried and its first failed condition.
    pub(super) fn trace(
        rules: &[RuleSpec],
        price: Option<f64>,
        messages: &[ChatMessage],
        model: Option<&str>,
    ) -> Vec<(String, Option<Condition>)> {
        let chars: u64 = messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let usd = price.map(|p| chars as f64 / 4.0 / 1_000_000.0 * p);
        let last_user = messages.iter().rposition(|m| m.role == Role::User);
        let mut out = Vec::new();
        for rule in rules {
            let texts: Vec<String> = messages
                .iter()
                .enumerate()
                .filter(|(i, _)| rule.scope == Scope::All || Some(*i) == last_user)
                .map(|(_, m)| normalize_general(&m.content))
                .collect();
            let word = rule.keyword_match == KeywordMatch::Word;
            let keywords = rule.keywords.is_empty()
                || rule.keywords.iter().any(|k| {
                    let k = normalize_general(&k.value);
                    texts.iter().any(|t| occurs(t, &k, word))
                });
            let patterns = rule.patterns.is_empty()
                || rule.patterns.iter().any(|p| {
                    let re = regex::RegexBuilder::new(&p.value)
                        .case_insensitive(true)
                        .build()
                        .expect("valid");
                    texts.iter().any(|t| re.is_match(t))
                });
            let model_holds = rule.model.is_empty()
                || model.is_some_and(|name| {
                    let name: Vec<char> = name.chars().collect();
                    rule.model.iter().any(|g| {
                        let glob: Vec<char> = g.value.chars().collect();
                        glob_matches(&glob, &name)
                    })
                });
            let within = |min: Option<f64>, max: Option<f64>, v: f64| {
                min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
            };
            let failed = if !keywords {
                Some(Condition::Keywords)
            } else if !patterns {
                Some(Condition::Patterns)
            } else if !rule.input_chars.is_none_or(|b| {
                within(
                    b.min.map(|m| m as f64),
                    b.max.map(|m| m as f64),
                    chars as f64,
                )
            }) {
                Some(Condition::InputChars)
            } else if !rule
                .estimated_usd
                .is_none_or(|b| usd.is_some_and(|u| within(b.min, b.max, u)))
            {
                Some(Condition::EstimatedUsd)
            } else if !model_holds {
                Some(Condition::Model)
            } else {
                None
            };
            out.push((rule.id.clone(), failed));
            if failed.is_none() {
                break;
            }
        }
        out
    }
}

fn random_rule() -> impl Strategy<Value = RuleSpec> {
    let keyword = prop_oneof![
        Just("ab"),
        Just("ba"),
        Just("secret"),
        Just("ß"),
        Just("ss"),
        Just("é"),
        Just("e\u{301}"),
        Just("Ａ"),
        Just("a"),
        Just("k"),
        Just("ｂ\u{200b}a"),
    ];
    let pattern = prop_oneof![
        Just("^a"),
        Just("b$"),
        Just("s+e"),
        Just(r"\bse"),
        Just("é")
    ];
    let glob = prop_oneof![
        Just("gpt-4o*"),
        Just("GPT-4O"),
        Just("*/gpt-*"),
        Just("?lama*"),
        Just("*mini"),
        Just("*"),
        Just("local"),
    ];
    (
        proptest::collection::vec(keyword, 0..3),
        any::<bool>(),
        proptest::collection::vec(pattern, 0..2),
        any::<bool>(),
        proptest::option::of((0u64..6, 0u64..30)),
        proptest::option::of((0.0f64..2e-6, 0.0f64..8e-6)),
        proptest::collection::vec(glob, 0..3),
    )
        .prop_map(|(keywords, word, patterns, last_user, chars, usd, globs)| {
            let scope = if last_user {
                Scope::LastUser
            } else {
                Scope::All
            };
            let mut r = rule("r", &keywords, word, &patterns, scope);
            r.input_chars = chars.map(|(min, extra)| crate::policy::CharBounds {
                min: Some(min),
                max: Some(min + extra),
            });
            r.estimated_usd = usd.map(|(min, extra)| crate::policy::UsdBounds {
                min: Some(min),
                max: Some(min + extra),
            });
            r.model = located(&globs);
            r
        })
}

/// Model names the globs of [`random_rule`] match, or nearly match.
fn model_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("gpt-4o"),
        Just("GPT-4o-mini"),
        Just("gpt-4"),
        Just("openai/gpt-4o"),
        Just("openai/GPT-3.5"),
        Just("llama3:8b"),
        Just("Llama-3"),
        Just("lama"),
        Just("LOCAL"),
        Just("local/x"),
        Just(""),
    ]
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random chains of up to 150 rules (several bitset words) decide as the
    /// oracle does, with the same trace, through `decide` and `explain` alike.
    #[test]
    fn the_engine_agrees_with_the_oracle(
        specs in proptest::collection::vec(random_rule(), 0..150),
        price in proptest::option::of(0.5f64..2.0),
        m in messages(),
        model in proptest::option::of(model_name()),
    ) {
        let specs: Vec<RuleSpec> = specs
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.id = format!("r{i}");
                r.reason = r.id.clone();
                r
            })
            .collect();
        let mut defaults = EffectiveDefaults::default();
        defaults.input_usd_per_1m_tokens.value = price;
        let set = PolicySet {
            sources: Vec::new(),
            rules: specs.clone(),
            defaults,
            providers: Vec::new(),
            default_fallback: Vec::new(),
            version: "v".to_owned(),
        };
        let policy = CompiledPolicy::compile(set, &crate::providers::Builtins::defaults()).expect("compiles");
        let expected = oracle::trace(&specs, price, &m, model.as_deref());
        let explained = policy.explain(&m, model.as_deref());
        let trace: Vec<_> = explained
            .trace
            .iter()
            .map(|t| (t.rule.to_string(), t.failed_condition))
            .collect();
        prop_assert_eq!(&trace, &expected);
        let winner = expected.last().filter(|(_, failed)| failed.is_none()).map(|(id, _)| id.clone());
        prop_assert_eq!(explained.decision.rule.as_deref(), winner.as_deref());
        prop_assert_eq!(policy.decide(&m, model.as_deref()), explained.decision);
    }
}

/// Words a strict policy typically lists, as one rule per keyword so that a
/// decision names the keyword that held: each as a word, and the longer ones
/// also as a substring. (A short substring keyword does match across a hard
/// line break under `strict`, as the joins intend: `and\nauthors` holds
/// `nda`. Short keywords belong in `word` rules.)
const COMMON_SENSITIVE_WORDS: [&str; 16] = [
    "confidential",
    "secret",
    "internal",
    "password",
    "salary",
    "private",
    "classified",
    "proprietary",
    "restricted",
    "credential",
    "passport",
    "diagnosis",
    "merger",
    "payroll",
    "do not distribute",
    "nda",
];

fn common_words_policy(normalization: crate::policy::KeywordNormalization) -> CompiledPolicy {
    let rules = COMMON_SENSITIVE_WORDS
        .iter()
        .enumerate()
        .flat_map(|(i, word)| {
            let modes: &[bool] = if word.len() >= 6 {
                &[true, false]
            } else {
                &[true]
            };
            modes.iter().map(move |&whole| {
                let mut r = rule(
                    &format!("{word}-{whole}"),
                    &[word],
                    whole,
                    &[],
                    if i % 2 == 0 {
                        Scope::All
                    } else {
                        Scope::LastUser
                    },
                );
                r.keyword_normalization = normalization;
                r
            })
        })
        .collect();
    CompiledPolicy::compile(policy_of(rules), &crate::providers::Builtins::defaults())
        .expect("compiles")
}

/// `strict` adds matches only for disguised text: long ordinary English
/// prose (the licenses every Debian system ships, some 48 000 words,
/// paragraph by paragraph, hard line breaks and all) decides exactly as it does under `standard`.
#[test]
fn strict_decides_ordinary_prose_as_standard_does() {
    use crate::policy::KeywordNormalization;
    let strict = common_words_policy(KeywordNormalization::Strict);
    let standard = common_words_policy(KeywordNormalization::Standard);
    let dir = std::path::Path::new("/usr/share/common-licenses");
    let mut paragraphs = 0;
    let mut matched = 0;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in &files {
        let name = path.display();
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
            let m = [ChatMessage::user(paragraph.to_owned())];
            let a = strict.explain(&m, None);
            let b = standard.explain(&m, None);
            assert_eq!(a, b, "{name}: {paragraph:?}");
            paragraphs += 1;
            matched += usize::from(a.decision.rule.is_some());
        }
    }
    // base-files ships these licenses; without them the test proves nothing.
    assert!(
        paragraphs > 800,
        "only {paragraphs} paragraphs read from {}",
        dir.display()
    );
    // The prose does hold some of the words ("private", "proprietary"):
    // both sides matched them alike.
    assert!(matched > 0, "no paragraph matched any keyword");
}

/// Plain prose: ASCII words of two or more letters, with ordinary
/// punctuation, no digits, symbols, single letters or line breaks.
fn plain_prose() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        4 => "[a-zA-Z]{2,12}",
        1 => prop_oneof![
            Just("secret"), Just("Secretary"), Just("internally"), Just("privately"),
            Just("salaryman"), Just("confidentially"), Just("passwords"), Just("do"),
            Just("not"), Just("distribute"), Just("mergers"), Just("agenda"),
        ]
        .prop_map(str::to_owned),
    ];
    let separator = prop_oneof![Just(" "), Just(", "), Just(". "), Just("; "), Just(" - ")];
    proptest::collection::vec((word, separator), 0..40).prop_map(|v| {
        v.into_iter()
            .map(|(w, s)| format!("{w}{s}"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn strict_decides_plain_prose_as_standard_does(
        contents in proptest::collection::vec(plain_prose(), 1..4)
    ) {
        use crate::policy::KeywordNormalization;
        static POLICIES: std::sync::LazyLock<(CompiledPolicy, CompiledPolicy)> =
            std::sync::LazyLock::new(|| {
                (
                    common_words_policy(KeywordNormalization::Strict),
                    common_words_policy(KeywordNormalization::Standard),
                )
            });
        let m: Vec<_> = contents.into_iter().map(ChatMessage::user).collect();
        prop_assert_eq!(POLICIES.0.explain(&m, None), POLICIES.1.explain(&m, None));
    }
}

#[test]
fn a_policy_over_its_bounds_is_refused_naming_the_count() {
    let patterns: Vec<String> = (0..=crate::compiler::MAX_PATTERNS)
        .map(|i| format!("p{i}x"))
        .collect();
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let set = policy_of(vec![rule("many", &[], false, &refs, Scope::All)]);
    let errors = CompiledPolicy::compile(set, &crate::providers::Builtins::defaults())
        .expect_err("over the bound");
    let text = errors.to_string();
    assert!(
        text.contains("the policy holds 10001 patterns, more than the 10000 allowed"),
        "{text}"
    );
    // The same count for keywords, at the first one past the bound.
    let mut keywords = located(&["a", "b", "c"]);
    keywords[2].at.position.line = 7;
    let error = crate::compiler::over_bound(keywords.iter(), 2, "keywords").expect("over");
    assert_eq!(error.position.map(|p| p.line), Some(7));
    assert!(
        error
            .message
            .contains("holds 3 keywords, more than the 2 allowed")
    );
    assert!(crate::compiler::over_bound(keywords.iter(), 3, "keywords").is_none());
}

#[test]
fn metadata_is_read_by_scope_all_keywords_and_patterns_only() {
    let mut detected = rule("detected", &[], false, &[], Scope::All);
    detected.detectors = [crate::names::Detector::Email].into_iter().collect();
    let rules = vec![
        detected,
        rule("last-user", &["alpha"], true, &[], Scope::LastUser),
        rule("pattern", &[], false, &["^beta-\\d+$"], Scope::All),
        rule("keyword", &["gamma"], true, &[], Scope::All),
    ];
    let policy = CompiledPolicy::compile(policy_of(rules), &crate::providers::Builtins::defaults())
        .expect("compiles");
    let m = [ChatMessage::user("hello")];
    let rule_of = |metadata: &[&str]| {
        let d = policy.decide_with_metadata(&m, &[], metadata, None, &crate::clients::anonymous());
        assert_eq!(d.input_chars, 5, "metadata is not input");
        d.rule.map(|r| r.to_string())
    };
    assert_eq!(rule_of(&[]), None);
    assert_eq!(rule_of(&["GAMMA-team"]), Some("keyword".to_owned()));
    assert_eq!(rule_of(&["beta-42"]), Some("pattern".to_owned()));
    // Not the last user message, and not read by detectors.
    assert_eq!(rule_of(&["alpha"]), None);
    assert_eq!(rule_of(&["ann@example.com"]), None);
    assert_eq!(
        policy.decide(&m, None),
        policy.decide_with_metadata(&m, &[], &[], None, &crate::clients::anonymous())
    );
}

#[test]
fn the_approximate_memory_grows_with_the_keywords_and_patterns() {
    let of = |keywords: usize, patterns: &[&str]| {
        let words: Vec<String> = (0..keywords).map(|i| format!("keyword{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let set = policy_of(vec![rule("r", &words, false, patterns, Scope::All)]);
        CompiledPolicy::compile(set, &crate::providers::Builtins::defaults())
            .expect("compiles")
            .approximate_memory_bytes()
    };
    let none = of(0, &[]);
    let few = of(10, &[]);
    let many = of(10_000, &[]);
    let with_pattern = of(10, &[r"\b\d{3}-\d{2}-\d{4}\b"]);
    assert!(none < few, "{none} {few}");
    // Ten thousand keywords of about 12 bytes: the automaton holds at least
    // their bytes.
    assert!(many > 120_000 && many > few * 100, "{few} {many}");
    assert!(with_pattern > few, "{few} {with_pattern}");
}

#[test]
fn has_images_looks_at_every_message_whatever_the_scope() {
    let mut images_local = rule("images-local", &[], false, &[], Scope::LastUser);
    images_local.has_images = Some(true);
    let mut text_only = rule("text-only", &[], false, &[], Scope::All);
    text_only.has_images = Some(false);
    let policy = CompiledPolicy::compile(
        policy_of(vec![images_local, text_only]),
        &crate::providers::Builtins::defaults(),
    )
    .expect("compiles");
    let picture = crate::chat::Image::Base64 {
        media_type: "image/png".into(),
        data: "iVBORw0KGgo=".into(),
    };
    // The image is in an earlier turn, outside `last_user`: it counts.
    let with_image = [
        ChatMessage {
            images: vec![picture],
            ..ChatMessage::user("what is this?")
        },
        ChatMessage::new(Role::Assistant, "a cat"),
        ChatMessage::user("thanks"),
    ];
    let d = policy.decide(&with_image, None);
    assert_eq!(d.rule_id(), Some("images-local"));
    let d = policy.decide(&[ChatMessage::user("no picture")], None);
    assert_eq!(d.rule_id(), Some("text-only"));
    let explained = policy.explain(&[ChatMessage::user("no picture")], None);
    assert_eq!(
        explained.trace[0].failed_condition,
        Some(Condition::HasImages)
    );
    // Images are not text: they count neither in input chars nor as text.
    assert_eq!(policy.decide(&with_image, None).input_chars, 24);
}
