//! Decisions must not depend on the normalization fast path, nor on what an earlier
//! decision left in the scratch space.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
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
        route: Route::Local,
        reason: id.to_owned(),
        at: Location {
            path: Arc::from("policies/p.yaml"),
            position: Position { line: 1, column: 1 },
        },
        keywords: located(keywords),
        keyword_match: if word {
            KeywordMatch::Word
        } else {
            KeywordMatch::Substring
        },
        patterns: located(patterns),
        scope,
        input_chars: None,
        estimated_usd: None,
    }
}

/// Keywords and patterns whose matching depends on every normalization step.
fn unicode_policy() -> CompiledPolicy {
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
        version: "v".to_owned(),
    };
    CompiledPolicy::compile(set, Provider::Openai).expect("compiles")
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
        (role, text()).prop_map(|(role, content)| ChatMessage { role, content }),
        0..4,
    )
}

fn explain_with(policy: &CompiledPolicy, m: &[ChatMessage], n: Normalization) -> Explanation {
    let mut trace = Vec::new();
    let decision = policy.evaluate(m, n, Some(&mut trace));
    Explanation { decision, trace }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fast_and_general_normalization_decide_alike(m in messages()) {
        let policy = unicode_policy();
        let fast = explain_with(&policy, &m, Normalization::Fast);
        let general = explain_with(&policy, &m, Normalization::General);
        prop_assert_eq!(&fast, &general);
        prop_assert_eq!(&policy.decide(&m), &fast.decision);
    }

    #[test]
    fn fast_and_general_agree_on_arbitrary_unicode(
        contents in proptest::collection::vec(any::<String>(), 1..3)
    ) {
        let policy = unicode_policy();
        let m: Vec<_> = contents.into_iter().map(ChatMessage::user).collect();
        prop_assert_eq!(
            explain_with(&policy, &m, Normalization::Fast),
            explain_with(&policy, &m, Normalization::General)
        );
    }
}

#[test]
fn the_unicode_policy_matches_what_it_should() {
    let policy = unicode_policy();
    let rule_of = |text: &str| policy.decide(&[ChatMessage::user(text)]).rule;
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
