//! The engine end to end: policies built in Rust, compiled, and decided on chat
//! messages, checked against the semantics of the policy language.

use crate::support::policies::*;
use policy_mesh::compiler::{CompiledPolicy, check_glob, check_keyword, check_pattern};
use policy_mesh::decision::Condition;
use policy_mesh::names::{Api, Role, Route};
use policy_mesh::policy::EffectiveDefaults;
use policy_mesh::policy::KeywordNormalization;

/// The product's original routing, as the shipped policy expresses it.
fn seed_rules() -> Vec<policy_mesh::policy::RuleSpec> {
    vec![
        rule("sensitive", Route::Local)
            .keywords(&["internal", "confidential", "secret"])
            .reason("sensitive_keyword_match"),
        rule("cost", Route::Local)
            .chars(None, Some(1000))
            .reason("cost_prefer_local"),
    ]
}

#[test]
fn seed_routing_sensitive_then_cost_then_default() {
    let policy = compile(seed_rules());

    let d = policy.decide(&[user("Summarize this CONFIDENTIAL memo")], None);
    assert_eq!(d.rule.as_deref(), Some("sensitive"));
    assert_eq!(d.reason_codes(), ["sensitive_keyword_match"]);
    assert_eq!((d.route, d.provider.as_str()), (Route::Local, "local"));

    // A long sensitive prompt is still sensitive: sensitivity comes first.
    let long_secret = format!("{} Secret", "x".repeat(5000));
    assert_eq!(
        rule_for(&policy, &long_secret).as_deref(),
        Some("sensitive")
    );

    let d = policy.decide(&[user("hello there")], None);
    assert_eq!(d.rule.as_deref(), Some("cost"));
    assert_eq!(d.reason_codes(), ["cost_prefer_local"]);

    // The length bound is inclusive.
    assert_eq!(
        rule_for(&policy, &"a".repeat(1000)).as_deref(),
        Some("cost")
    );
    let d = policy.decide(&[user(&"a".repeat(1001))], None);
    assert_eq!(d.rule, None);
    assert_eq!(d.reason_codes(), ["default"]);
    assert_eq!((d.route, d.provider.as_str()), (Route::Local, "local"));
    assert_eq!(d.policy_version.as_ref(), policy.version());
}

#[test]
fn length_counts_every_message_and_min_bound_is_inclusive() {
    let policy = compile(vec![rule("mid", Route::Public).chars(Some(10), Some(20))]);
    let at = |parts: &[&str]| {
        let messages: Vec<_> = parts.iter().map(|p| msg(Role::System, p)).collect();
        policy.decide(&messages, None).rule.map(|r| r.to_string())
    };
    assert_eq!(at(&["12345", "6789"]), None);
    assert_eq!(at(&["12345", "67890"]).as_deref(), Some("mid"));
    assert_eq!(at(&["1234567890", "1234567890"]).as_deref(), Some("mid"));
    assert_eq!(at(&["1234567890", "1234567890", "1"]), None);
}

#[test]
fn input_chars_are_raw_scalar_values_over_all_messages() {
    let policy = compile(vec![
        rule("any", Route::Local).keywords(&["zzz"]).last_user(),
    ]);
    let d = policy.decide(&[user("a\u{308}")], None);
    assert_eq!(d.input_chars, 2);
    // Counted before normalization: the ligature is one character, fullwidth too,
    // a zero-width space counts; and every role counts whatever the scope.
    let d = policy.decide(
        &[
            msg(Role::System, "\u{fb01}"),
            msg(Role::Assistant, "ｓ\u{200b}"),
            user("ß"),
        ],
        None,
    );
    assert_eq!(d.input_chars, 4);
    assert_eq!(policy.decide(&[], None).input_chars, 0);
}

#[test]
fn usd_mode_bounds_are_inclusive_at_the_exact_boundary() {
    // 4 chars per token, 1 USD per 1M tokens: 4000 chars cost exactly 0.001.
    let policy = compile_with(
        vec![
            rule("cheap", Route::Local)
                .usd(None, Some(0.001))
                .reason("cost_prefer_local"),
            rule("pricey", Route::Public).usd(Some(0.002), None),
        ],
        defaults(Route::Local, Some(1.0), 4.0),
        Api::Openai,
    );
    let decide = |n: usize| policy.decide(&[user(&"a".repeat(n))], None);
    assert_eq!(decide(4000).rule.as_deref(), Some("cheap"));
    assert_eq!(decide(4000).estimated_usd, Some(0.001));
    assert_eq!(decide(4001).rule, None);
    assert_eq!(decide(7999).rule, None);
    let d = decide(8000);
    assert_eq!(d.rule.as_deref(), Some("pricey"));
    assert_eq!((d.route, d.provider.as_str()), (Route::Public, "openai"));
}

#[test]
fn estimated_usd_follows_the_formula_in_its_order() {
    let policy = compile_with(
        vec![rule("never", Route::Local).keywords(&["zzz"])],
        defaults(Route::Local, Some(0.15), 3.5),
        Api::Openai,
    );
    for n in [0_usize, 1, 7, 1000, 12345] {
        let d = policy.decide(&[user(&"é".repeat(n))], None);
        let expected = n as f64 / 3.5 / 1_000_000.0 * 0.15;
        assert_eq!(d.estimated_usd, Some(expected), "{n} chars");
    }
}

#[test]
fn estimated_usd_without_a_price_never_holds() {
    let policy = compile(vec![rule("cheap", Route::Local).usd(None, Some(1.0))]);
    let e = policy.explain(&[user("hi")], None);
    assert_eq!(e.decision.estimated_usd, None);
    assert_eq!(e.decision.rule, None);
    assert_eq!(e.trace[0].failed_condition, Some(Condition::EstimatedUsd));
}

#[test]
fn default_and_public_provider_resolution() {
    for (default_route, public, expected) in [
        (Route::Local, Api::Openai, "local"),
        (Route::Local, Api::Anthropic, "local"),
        (Route::Public, Api::Openai, "openai"),
        (Route::Public, Api::Anthropic, "anthropic"),
    ] {
        let policy = compile_with(seed_rules(), defaults(default_route, None, 4.0), public);
        let d = policy.decide(&[user(&"long ".repeat(300))], None);
        assert_eq!(d.rule, None);
        assert_eq!(d.route, default_route);
        assert_eq!(d.provider, expected);
        assert_eq!(policy.public_provider().api, public);
    }
    let policy = compile_with(
        vec![rule("out", Route::Public)],
        EffectiveDefaults::default(),
        Api::Anthropic,
    );
    let d = policy.decide(&[user("x")], None);
    assert_eq!((d.route, d.provider.as_str()), (Route::Public, "anthropic"));
}

#[test]
fn keywords_ignore_case_width_invisibles_and_ligatures() {
    let policy = compile(vec![rule("k", Route::Local).keywords(&["Confidential"])]);
    for text in [
        "CONFIDENTIAL",
        "confidential",
        "a ｃｏｎｆｉｄｅｎｔｉａｌ note",
        "confi\u{200b}dential",
        "con\u{fb01}dential",
        "con\u{ad}fi\u{feff}den\u{fe0f}tial",
        "NOTCONFIDENTIALLY",
    ] {
        assert_eq!(rule_for(&policy, text).as_deref(), Some("k"), "{text:?}");
    }
    assert_eq!(rule_for(&policy, "confidental"), None);
}

#[test]
fn keywords_are_normalized_like_the_input() {
    let policy = compile(vec![
        rule("street", Route::Local).keywords(&["STRAẞE"]),
        rule("cafe", Route::Local).keywords(&["ｃａｆé"]),
        rule("resume", Route::Local).keywords(&["resume"]),
    ]);
    assert_eq!(
        rule_for(&policy, "Hauptstrasse 1").as_deref(),
        Some("street")
    );
    assert_eq!(
        rule_for(&policy, "Hauptstraße 1").as_deref(),
        Some("street")
    );
    assert_eq!(rule_for(&policy, "un CAFE\u{301}").as_deref(), Some("cafe"));
    assert_eq!(rule_for(&policy, "un café").as_deref(), Some("cafe"));
    assert_eq!(rule_for(&policy, "un cafe"), None);
    // Accents stay.
    assert_eq!(rule_for(&policy, "my Résumé"), None);
    assert_eq!(rule_for(&policy, "my RESUME").as_deref(), Some("resume"));
}

#[test]
fn word_mode_must_match() {
    let policy = compile(vec![rule("w", Route::Local).keywords(&["secret"]).word()]);
    for text in [
        "secret",
        "secret:",
        "-secret-",
        "«secret»",
        "the SECRET.",
        "(ｓｅｃｒｅｔ)",
        "top secret\u{200b}",
        "日本 secret。",
    ] {
        assert_eq!(rule_for(&policy, text).as_deref(), Some("w"), "{text:?}");
    }
}

#[test]
fn word_mode_must_not_match() {
    let policy = compile(vec![rule("w", Route::Local).keywords(&["secret"]).word()]);
    for text in [
        "secretive",
        "secret_key",
        "secret9",
        "ñsecret",
        "Ñsecret",
        "日本secret日本",
        "secret\u{200b}s",
        "xsecret",
    ] {
        assert_eq!(rule_for(&policy, text), None, "{text:?}");
    }
}

#[test]
fn word_mode_checks_every_occurrence() {
    let policy = compile(vec![rule("w", Route::Local).keywords(&["secret"]).word()]);
    assert_eq!(
        rule_for(&policy, "secretive people keep a secret.").as_deref(),
        Some("w")
    );
    assert_eq!(rule_for(&policy, "secretsecret secret_").as_deref(), None);
}

#[test]
fn overlapping_keywords_are_all_seen() {
    let policy = compile(vec![
        rule("short", Route::Local).keywords(&["abc"]).word(),
        rule("long", Route::Local).keywords(&["abcdef", "cde"]),
        rule("inner", Route::Local).keywords(&["bcd"]),
    ]);
    // `abc` is a prefix of the longer keyword but not a whole word here.
    assert_eq!(rule_for(&policy, "xx abcdef").as_deref(), Some("long"));
    assert_eq!(rule_for(&policy, "xx abc def").as_deref(), Some("short"));
    let policy = compile(vec![
        rule("first", Route::Local).keywords(&["bcd"]),
        rule("second", Route::Local).keywords(&["abcde"]),
    ]);
    let e = policy.explain(&[user("abcde")], None);
    assert_eq!(e.decision.rule.as_deref(), Some("first"));
}

#[test]
fn one_keyword_in_several_rules_with_different_modes() {
    let policy = compile(vec![
        rule("word", Route::Local).keywords(&["secret"]).word(),
        rule("sub", Route::Public).keywords(&["SECRET", "secret"]),
    ]);
    assert_eq!(rule_for(&policy, "secretive").as_deref(), Some("sub"));
    assert_eq!(rule_for(&policy, "a secret").as_deref(), Some("word"));
    assert_eq!(rule_for(&policy, "nothing"), None);
    assert_eq!(policy.keyword_count(), 3);
    assert_eq!(policy.distinct_keyword_count(), 1);
}

#[test]
fn scope_all_sees_every_role_and_last_user_only_the_last_user_message() {
    let policy = compile(vec![
        rule("last", Route::Local).keywords(&["alpha"]).last_user(),
        rule("all", Route::Public).keywords(&["alpha"]),
    ]);
    let decide = |messages: &[policy_mesh::chat::ChatMessage]| {
        policy.decide(messages, None).rule.map(|r| r.to_string())
    };
    assert_eq!(decide(&[user("ALPHA")]).as_deref(), Some("last"));
    assert_eq!(
        decide(&[msg(Role::System, "alpha"), user("hi")]).as_deref(),
        Some("all")
    );
    assert_eq!(
        decide(&[user("alpha"), msg(Role::Assistant, "ok"), user("and?")]).as_deref(),
        Some("all")
    );
    // The last user message, even when an assistant message follows it.
    assert_eq!(
        decide(&[user("hi"), user("alpha"), msg(Role::Assistant, "noted")]).as_deref(),
        Some("last")
    );
    assert_eq!(
        decide(&[msg(Role::Assistant, "alpha")]).as_deref(),
        Some("all")
    );
    assert_eq!(decide(&[user("nothing")]), None);
}

#[test]
fn last_user_without_a_user_message_matches_nothing() {
    let policy = compile(vec![
        rule("kw", Route::Local).keywords(&["alpha"]).last_user(),
        rule("re", Route::Local).patterns(&["alpha"]).last_user(),
    ]);
    let e = policy.explain(
        &[msg(Role::System, "alpha"), msg(Role::Assistant, "alpha")],
        None,
    );
    assert_eq!(e.decision.rule, None);
    let failed: Vec<_> = e.trace.iter().map(|t| t.failed_condition).collect();
    assert_eq!(
        failed,
        [Some(Condition::Keywords), Some(Condition::Patterns)]
    );
}

#[test]
fn patterns_anchor_to_each_message_and_ignore_case() {
    let policy = compile(vec![
        rule("exact", Route::Local).patterns(&["^hello$"]),
        rule("ssn", Route::Local).patterns(&[r"\b\d{3}-\d{2}-\d{4}\b"]),
        rule("upper", Route::Local)
            .patterns(&["SECRET"])
            .last_user(),
    ]);
    let decide = |messages: &[policy_mesh::chat::ChatMessage]| {
        policy.decide(messages, None).rule.map(|r| r.to_string())
    };
    assert_eq!(
        decide(&[msg(Role::System, "be nice"), user("HELLO")]).as_deref(),
        Some("exact")
    );
    assert_eq!(decide(&[user("say hello")]), None);
    assert_eq!(decide(&[user("hello\nworld")]), None);
    assert_eq!(decide(&[user("id 123-45-6789 ok")]).as_deref(), Some("ssn"));
    assert_eq!(decide(&[user("ｓｅｃｒｅｔ")]).as_deref(), Some("upper"));
    assert_eq!(decide(&[user("secret"), user("x")]), None);
}

#[test]
fn matches_never_span_two_messages() {
    let policy = compile(vec![
        rule("kw", Route::Local).keywords(&["foobar"]),
        rule("re", Route::Local).patterns(&[r"foo\s*bar"]),
    ]);
    assert_eq!(policy.decide(&[user("foo"), user("bar")], None).rule, None);
    assert_eq!(policy.decide(&[user("foo"), user(" bar")], None).rule, None);
    let policy = compile(vec![rule("w", Route::Local).keywords(&["foo"]).word()]);
    // Word boundaries are checked within the message: the end of one message and
    // the start of the next are boundaries.
    assert_eq!(
        policy
            .decide(&[user("xx"), user("foo")], None)
            .rule
            .as_deref(),
        Some("w")
    );
}

#[test]
fn trace_reports_the_first_failed_condition_in_order() {
    let policy = compile_with(
        vec![
            // Keywords and length both fail: keywords is reported.
            rule("kw-first", Route::Local)
                .keywords(&["zzz"])
                .chars(Some(1000), None),
            // Keyword holds, pattern fails.
            rule("pattern", Route::Local)
                .keywords(&["hello"])
                .patterns(&["^bye"]),
            // Keyword and pattern hold, length fails.
            rule("chars", Route::Local)
                .keywords(&["hello"])
                .patterns(&["^hello"])
                .chars(None, Some(3)),
            // Length holds, cost fails.
            rule("usd", Route::Local)
                .chars(None, Some(100))
                .usd(Some(1.0), None),
            rule("held", Route::Public).patterns(&["world$"]),
            rule("never-tried", Route::Local),
        ],
        defaults(Route::Local, Some(0.15), 4.0),
        Api::Anthropic,
    );
    let e = policy.explain(&[user("hello world")], None);
    let trace: Vec<_> = e
        .trace
        .iter()
        .map(|t| (t.rule.to_string(), t.held, t.failed_condition))
        .collect();
    assert_eq!(
        trace,
        [
            ("kw-first".to_owned(), false, Some(Condition::Keywords)),
            ("pattern".to_owned(), false, Some(Condition::Patterns)),
            ("chars".to_owned(), false, Some(Condition::InputChars)),
            ("usd".to_owned(), false, Some(Condition::EstimatedUsd)),
            ("held".to_owned(), true, None),
        ]
    );
    assert_eq!(e.decision, policy.decide(&[user("hello world")], None));
    assert_eq!(e.decision.provider, "anthropic");

    // No rule holds: every rule is in the trace.
    let policy = compile(vec![
        rule("a", Route::Local).keywords(&["zzz"]),
        rule("b", Route::Local).chars(Some(100), None),
    ]);
    let e = policy.explain(&[user("short")], None);
    assert_eq!(e.trace.len(), 2);
    assert!(e.trace.iter().all(|t| !t.held));
    assert_eq!(e.decision.rule, None);
}

#[test]
fn decision_and_explanation_json() {
    let policy = compile(seed_rules());
    let e = policy.explain(&[user("hi")], None);
    let json = serde_json::to_value(&e).expect("serializes");
    let version = policy.version();
    assert_eq!(
        json,
        serde_json::json!({
            "provider": "local", "route": "local", "fallback": [], "rule": "cost",
            "client": "anonymous", "sensitive": false, "detections": [],
            "reason_codes": ["cost_prefer_local"], "policy_version": version,
            "trace": [
                {"rule": "sensitive", "held": false, "failed_condition": "keywords"},
                {"rule": "cost", "held": true, "failed_condition": null}
            ]
        })
    );
    // The fields come in the documented order (docs/policy-guide.md).
    let text = serde_json::to_string(&e).expect("serializes");
    let order: Vec<_> = [
        "provider",
        "route",
        "fallback",
        "rule",
        "client",
        "sensitive",
        "detections",
        "reason_codes",
        "policy_version",
        "trace",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\":")).expect("key present"))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");

    let d = policy.decide(&[user(&"z".repeat(2000))], None);
    assert_eq!(
        serde_json::to_value(&d).expect("serializes"),
        serde_json::json!({
            "provider": "local", "route": "local", "fallback": [], "rule": null,
            "client": "anonymous", "sensitive": false,
            "detections": [],
            "reason_codes": ["default"], "policy_version": version
        })
    );
    let conditions = serde_json::to_value([
        Condition::Keywords,
        Condition::Patterns,
        Condition::InputChars,
        Condition::EstimatedUsd,
    ])
    .expect("serializes");
    assert_eq!(
        conditions,
        serde_json::json!(["keywords", "patterns", "input_chars", "estimated_usd"])
    );
}

#[test]
fn a_rule_without_conditions_always_holds_and_no_messages_is_fine() {
    let policy = compile(vec![
        rule("kw", Route::Local).keywords(&["x"]),
        rule("always", Route::Public).reason("catch_all"),
    ]);
    let d = policy.decide(&[], None);
    assert_eq!(d.rule.as_deref(), Some("always"));
    assert_eq!(d.reason_codes(), ["catch_all"]);
    let policy = compile(Vec::new());
    let e = policy.explain(&[user("anything")], None);
    assert!(e.trace.is_empty());
    assert!(e.decision.is_default());
}

#[test]
fn many_rules_each_keep_their_own_bit() {
    let rules: Vec<_> = (0..200)
        .map(|i| rule(&format!("r{i}"), Route::Local).keywords(&[&format!("kw{i}x")]))
        .collect();
    let policy = compile(rules);
    for i in [0, 63, 64, 65, 127, 128, 199] {
        let text = format!("prefix kw{i}x suffix");
        assert_eq!(rule_for(&policy, &text), Some(format!("r{i}")));
    }
    assert_eq!(rule_for(&policy, "kw200x"), None);
    let e = policy.explain(&[user("KW150X")], None);
    assert_eq!(e.trace.len(), 151);
}

#[test]
fn decisions_are_deterministic_and_independent_of_earlier_ones() {
    let big = compile(
        (0..100)
            .map(|i| rule(&format!("r{i}"), Route::Local).keywords(&[&format!("w{i}q")]))
            .collect(),
    );
    let small = compile(seed_rules());
    let messages = [msg(Role::System, "internal"), user("w99q")];
    let first_big = big.explain(&messages, None);
    let first_small = small.explain(&messages, None);
    for _ in 0..5 {
        // Interleave policies of different sizes on the same thread.
        assert_eq!(big.explain(&messages, None), first_big);
        assert_eq!(small.decide(&messages, None), first_small.decision);
        assert_eq!(
            small.decide(&[user("plain")], None).rule.as_deref(),
            Some("cost")
        );
    }
    assert_eq!(first_big.decision.rule.as_deref(), Some("r99"));
    assert_eq!(first_small.decision.rule.as_deref(), Some("sensitive"));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| big.decide(&messages, None)))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("thread ran"), first_big.decision);
        }
    });
}

#[test]
fn compile_reports_every_bad_keyword_and_pattern_at_its_position() {
    let result = CompiledPolicy::compile(
        set_with(
            vec![
                rule("a", Route::Local)
                    .line(3)
                    .keywords(&["ok", "\u{200b}\u{feff}"]),
                rule("b", Route::Local).line(9).patterns(&["fine", "(open"]),
                rule("c", Route::Local).line(20).patterns(&["[z-a]"]),
            ],
            EffectiveDefaults::default(),
        ),
        &builtins(Api::Openai),
    );
    let errors = result.expect_err("invalid").to_string();
    let lines: Vec<_> = errors.lines().collect();
    assert_eq!(lines.len(), 3, "{errors}");
    assert!(
        lines[0].starts_with("policies/10-test.yaml:6:11: keyword ")
            && lines[0].contains("is empty once case, width and invisible characters are ignored"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "policies/10-test.yaml:13:11: invalid regex \"(open\": unclosed group"
    );
    assert!(
        lines[2].starts_with("policies/10-test.yaml:24:10: invalid regex \"[z-a]\": "),
        "{}",
        lines[2]
    );
}

#[test]
fn check_keyword_and_check_pattern() {
    assert_eq!(
        check_keyword("secret", KeywordNormalization::Strict),
        Ok(())
    );
    assert_eq!(check_keyword("ß", KeywordNormalization::Standard), Ok(()));
    assert!(check_keyword("", KeywordNormalization::Standard).is_err());
    assert!(check_keyword("\u{200b}\u{ad}\u{fe0f}", KeywordNormalization::Strict).is_err());
    assert_eq!(check_pattern("^a.*b$"), Ok(()));
    let err = check_pattern("(").expect_err("invalid");
    assert!(!err.is_empty() && !err.contains('\n'), "{err}");
}

#[test]
fn version_is_shared_by_every_decision() {
    let policy = compile(seed_rules());
    let d = policy.decide(&[user("x")], None);
    assert!(std::sync::Arc::ptr_eq(
        &d.policy_version,
        policy.version_arc()
    ));
    assert_eq!(policy.rule_count(), 2);
    assert_eq!(policy.keyword_count(), 3);
}

#[test]
fn keywords_are_found_anywhere_in_long_messages() {
    let policy = compile(vec![
        rule("word", Route::Local)
            .keywords(&["confidential"])
            .word(),
        rule("sub", Route::Local).keywords(&["zq"]),
    ]);
    let filler = "lorem ipsum dolor sit amet, ".repeat(80);
    for at in (0..filler.len()).step_by(5) {
        let mut text = filler.clone();
        text.insert_str(at, " CONFIDENTIAL ");
        assert_eq!(rule_for(&policy, &text).as_deref(), Some("word"), "at {at}");
        let mut text = filler.clone();
        text.insert_str(at, "zQ");
        assert_eq!(rule_for(&policy, &text).as_deref(), Some("sub"), "at {at}");
    }
    assert_eq!(rule_for(&policy, &filler), None);
}

/// The rule that decides one user message asking for `model`.
fn rule_for_model(policy: &CompiledPolicy, model: Option<&str>) -> Option<String> {
    policy
        .decide(&[user("hello")], model)
        .rule
        .map(|r| r.to_string())
}

#[test]
fn all_model_globs_compile_into_one_set() {
    let policy = compile(vec![
        rule("cloud", Route::Public).model(&["gpt-4o*", "*/gpt-4o*"]),
        rule("mini", Route::Local).model(&["*mini", "gpt-4o*"]),
        rule("plain", Route::Local).chars(Some(1), None),
        rule("local", Route::Local).model(&["llama*", "*mini"]),
    ]);
    // Five globs as written, three shared: four distinct ones in one set.
    assert_eq!(policy.distinct_model_glob_count(), 4);
    assert_eq!(compile(seed_rules()).distinct_model_glob_count(), 0);
    assert_eq!(
        rule_for_model(&policy, Some("gpt-4o-mini")).as_deref(),
        Some("cloud")
    );
    assert_eq!(
        rule_for_model(&policy, Some("o4-mini")).as_deref(),
        Some("mini")
    );
    let explained = policy.explain(&[user("")], Some("llama3"));
    assert_eq!(explained.decision.rule.as_deref(), Some("local"));
    let failed: Vec<_> = explained.trace.iter().map(|t| t.failed_condition).collect();
    assert_eq!(
        failed,
        [
            Some(Condition::Model),
            Some(Condition::Model),
            Some(Condition::InputChars),
            None
        ]
    );
}

#[test]
fn model_globs_ignore_case_and_star_crosses_slashes() {
    let policy = compile(vec![
        rule("cloud", Route::Public).model(&["gpt-4o*"]),
        rule("routed", Route::Public).model(&["*/claude-*"]),
        rule("local", Route::Local).model(&["llama?:*", "{mistral,qwen}*"]),
    ]);
    for (model, expected) in [
        ("gpt-4o", Some("cloud")),
        ("GPT-4o-Mini", Some("cloud")),
        ("gpt-4o/2024-08-06", Some("cloud")),
        ("openrouter/anthropic/Claude-Sonnet-4", Some("routed")),
        ("llama3:8b", Some("local")),
        ("Qwen3", Some("local")),
        // A glob matches the whole name.
        ("openai/gpt-4o", None),
        ("gpt-4", None),
        ("claude-sonnet-4", None),
        ("llama:8b", None),
        ("", None),
    ] {
        assert_eq!(
            rule_for_model(&policy, Some(model)).as_deref(),
            expected,
            "{model:?}"
        );
    }
}

#[test]
fn a_request_without_a_model_holds_no_model_condition() {
    let policy = compile(vec![
        rule("any", Route::Public).model(&["*"]),
        rule("rest", Route::Local),
    ]);
    assert_eq!(rule_for_model(&policy, Some("x")).as_deref(), Some("any"));
    assert_eq!(rule_for_model(&policy, Some("")).as_deref(), Some("any"));
    let explained = policy.explain(&[user("hello")], None);
    assert_eq!(explained.decision.rule.as_deref(), Some("rest"));
    assert_eq!(explained.trace[0].failed_condition, Some(Condition::Model));
}

#[test]
fn the_model_is_checked_after_every_other_condition() {
    let policy = compile(vec![
        rule("kw", Route::Local)
            .keywords(&["secret"])
            .model(&["nope"]),
        rule("re", Route::Local)
            .patterns(&["^zzz"])
            .model(&["nope"]),
        rule("chars", Route::Local)
            .chars(Some(100), None)
            .model(&["nope"]),
        rule("model", Route::Local)
            .keywords(&["hello"])
            .chars(None, Some(10))
            .model(&["nope"]),
        rule("all", Route::Public)
            .keywords(&["hello"])
            .chars(None, Some(10))
            .model(&["GPT-*"]),
    ]);
    let explained = policy.explain(&[user("hello")], Some("gpt-5"));
    let failed: Vec<_> = explained
        .trace
        .iter()
        .map(|t| (t.rule.to_string(), t.failed_condition))
        .collect();
    assert_eq!(
        failed,
        [
            ("kw".to_owned(), Some(Condition::Keywords)),
            ("re".to_owned(), Some(Condition::Patterns)),
            ("chars".to_owned(), Some(Condition::InputChars)),
            ("model".to_owned(), Some(Condition::Model)),
            ("all".to_owned(), None),
        ]
    );
    assert_eq!(
        explained.decision,
        policy.decide(&[user("hello")], Some("gpt-5"))
    );
    assert_eq!(
        serde_json::to_value(Condition::Model).expect("serializes"),
        "model"
    );
}

#[test]
fn a_model_condition_before_the_scan_and_in_a_long_chain() {
    // A model rule first: decided without the keyword scan; then many keyword
    // rules over several bitset words, the model rule far down the chain.
    let mut rules = vec![rule("first", Route::Public).model(&["first-*"])];
    for i in 0..150 {
        rules.push(rule(&format!("kw{i}"), Route::Local).keywords(&[&format!("kw{i}x")]));
    }
    rules.push(
        rule("late", Route::Public)
            .keywords(&["hello"])
            .model(&["late-*"]),
    );
    let policy = compile(rules);
    assert_eq!(
        rule_for_model(&policy, Some("first-1")).as_deref(),
        Some("first")
    );
    assert_eq!(
        rule_for_model(&policy, Some("late-1")).as_deref(),
        Some("late")
    );
    assert_eq!(rule_for_model(&policy, Some("other")), None);
    assert_eq!(
        policy.explain(&[user("hello")], Some("late-1")).decision,
        policy.decide(&[user("hello")], Some("late-1"))
    );
}

#[test]
fn an_invalid_glob_does_not_compile_and_is_placed() {
    let result = CompiledPolicy::compile(
        set_with(
            vec![rule("bad", Route::Local).model(&["ok*", "gpt-[4"])],
            EffectiveDefaults::default(),
        ),
        &builtins(Api::Openai),
    );
    let errors = result.expect_err("invalid").to_string();
    assert!(
        errors.starts_with(
            "policies/10-test.yaml:8:11: invalid glob \"gpt-[4\": unclosed character class"
        ),
        "{errors}"
    );
    assert_eq!(check_glob("gpt-4o*"), Ok(()));
    assert!(check_glob("{a,b").is_err());
}

#[test]
fn sensitive_rules_are_tried_first_in_load_order_and_their_decisions_say_so() {
    let mut guard = rule("guard", Route::Local).keywords(&["confidential"]);
    guard.sensitive = true;
    let mut second_guard = rule("second-guard", Route::Local).keywords(&["memo"]);
    second_guard.sensitive = true;
    let policy = compile(vec![
        rule("cheap", Route::Public).chars(None, Some(1000)),
        guard,
        rule("other", Route::Local),
        second_guard,
    ]);
    let order: Vec<&str> = policy
        .policy()
        .rules
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(order, ["guard", "second-guard", "cheap", "other"]);

    let d = policy.decide(&[user("a confidential memo")], None);
    assert_eq!(d.rule.as_deref(), Some("guard"));
    assert!(d.sensitive);
    assert_eq!(d.provider, "local");
    let d = policy.decide(&[user("a memo")], None);
    assert_eq!(
        (d.rule.as_deref(), d.sensitive),
        (Some("second-guard"), true)
    );
    let e = policy.explain(&[user("hello")], None);
    assert_eq!(
        (e.decision.rule.as_deref(), e.decision.sensitive),
        (Some("cheap"), false)
    );
    let tried: Vec<&str> = e.trace.iter().map(|t| &*t.rule).collect();
    assert_eq!(tried, ["guard", "second-guard", "cheap"]);
    assert!(!policy.decide(&[user(&"z".repeat(2000))], None).sensitive);
}

#[test]
fn a_sensitive_rule_built_with_a_public_route_does_not_compile() {
    let mut guard = rule("guard", Route::Public).keywords(&["confidential"]);
    guard.sensitive = true;
    let errors = CompiledPolicy::compile(
        set_with(vec![guard], EffectiveDefaults::default()),
        &builtins(Api::Openai),
    )
    .expect_err("refused");
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        errors.0[0]
            .to_string()
            .contains("rule `guard` is sensitive: `public` is a public provider"),
        "{errors}"
    );
}

#[test]
fn a_detect_condition_holds_on_what_its_detectors_find_in_scope() {
    use policy_mesh::names::Detector;
    let cards: policy_mesh::detect::DetectorSet = [Detector::CreditCard].into_iter().collect();
    let keys: policy_mesh::detect::DetectorSet = [Detector::AwsAccessKeyId, Detector::Email]
        .into_iter()
        .collect();
    let mut last_user_cards = rule("cards", Route::Local);
    last_user_cards.detectors = cards;
    last_user_cards.scope = policy_mesh::policy::Scope::LastUser;
    let mut any_keys = rule("keys", Route::Local);
    any_keys.detectors = keys;
    let policy = compile(vec![last_user_cards, any_keys]);

    let d = policy.decide(&[user("pay with 4111 1111 1111 1111")], None);
    assert_eq!(d.rule.as_deref(), Some("cards"));
    assert_eq!(d.detections.names(), ["credit_card"]);
    // A card in the system prompt is outside the `last_user` scope.
    let messages = [
        msg(Role::System, "card 4111 1111 1111 1111"),
        user("and key AKIAIOSFODNN7EXAMPLE, mail me at a@b.io"),
    ];
    let e = policy.explain(&messages, None);
    assert_eq!(e.decision.rule.as_deref(), Some("keys"));
    assert_eq!(
        e.decision.detections.names(),
        ["aws_access_key_id", "email"]
    );
    assert_eq!(e.trace[0].failed_condition, Some(Condition::Detect));
    let d = policy.decide(&[user("nothing to see")], None);
    assert_eq!((d.rule, d.detections.is_empty()), (None, true));
}
