//! The loader end to end on in-memory files: every load error names its file,
//! line and column in plain words, one load reports them all, and a valid policy
//! loads with its defaults, provenance and a stable version.

use std::sync::Arc;

use policy_mesh::env::Env;
use policy_mesh::names::Route;
use policy_mesh::policy::{KeywordMatch, LoadErrors, PolicySet, PolicySource, Scope, SourceFile};
use policy_mesh::providers::Builtins;

/// The policy as the gateway loads it: the language, then the compiler, which
/// alone says whether each keyword, pattern and glob is usable.
fn parse_policy(files: &[SourceFile], env: &Env) -> Result<PolicySet, LoadErrors> {
    policy_mesh::compile_files(files, env, &Builtins::defaults()).map(|c| c.policy().clone())
}

fn load(source: &PolicySource, env: &Env) -> Result<PolicySet, LoadErrors> {
    policy_mesh::load_compiled(source, env, &Builtins::defaults()).map(|c| c.policy().clone())
}

fn file(name: &str, text: &str) -> SourceFile {
    SourceFile {
        path: Arc::from(format!("policies/{name}")),
        name: name.to_owned(),
        bytes: text.as_bytes().to_vec(),
    }
}

fn load_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<PolicySet, LoadErrors> {
    let files: Vec<_> = files.iter().map(|(n, t)| file(n, t)).collect();
    parse_policy(&files, &Env::from_pairs(env.iter().copied()))
}

fn errors_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> Vec<String> {
    match load_env(files, env) {
        Ok(p) => panic!("expected load errors, loaded {} rules", p.rules.len()),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    errors_env(files, &[])
}

/// Asserts there is exactly one error, that it starts with `prefix` (path:line:col)
/// and that it mentions every word of `words`.
fn assert_one(errors: &[String], prefix: &str, words: &[&str]) {
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert_has(errors, prefix, words);
}

fn assert_has(errors: &[String], prefix: &str, words: &[&str]) {
    let found = errors
        .iter()
        .find(|e| e.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!("no error at {prefix} in {errors:#?}");
        });
    for w in words {
        assert!(found.contains(w), "{found:?} should mention {w:?}");
    }
}

#[test]
fn yaml_syntax_error_names_where_the_parser_stopped() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - id: x\n    route: [local\n",
    )]);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("policies/a.yaml:5:1: invalid YAML"),
        "{errs:?}"
    );
}

#[test]
fn unknown_keys_are_each_reported_at_the_key_with_a_suggestion() {
    let errs = errors(&[
        (
            "a.yaml",
            "version: 1\nrules:\n  - id: sensitive\n    rout: local\n    when:\n      keyword: [secret]\n",
        ),
        (
            "b.yaml",
            "version: 1\nrule: []\ndefaults:\n  pricing: {input_usd: 1}\n",
        ),
    ]);
    assert_has(
        &errs,
        "policies/a.yaml:4:5:",
        &["unknown key `rout`", "did you mean `route`?"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:6:7:",
        &["unknown key `keyword`", "did you mean `keywords`?"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:3:5:",
        &["missing the required key `route`"],
    );
    assert_has(
        &errs,
        "policies/b.yaml:2:1:",
        &["unknown key `rule`", "did you mean `rules`?"],
    );
    assert_has(&errs, "policies/b.yaml:4:13:", &["unknown key `input_usd`"]);
    assert_eq!(errs.len(), 5, "{errs:#?}");
}

#[test]
fn an_unknown_key_with_no_near_match_lists_the_valid_keys() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - {id: a, route: local, zzz: 1}\n",
    )]);
    assert_one(
        &errs,
        "policies/a.yaml:3:27:",
        &["unknown key `zzz`", "valid keys:", "`route`"],
    );
}

#[test]
fn an_unknown_provider_is_refused_at_its_value_with_a_suggestion() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nproviders:\n  - { id: gpu-box, api: ollama, url: 'http://10.0.0.7:11434/api/', trust: local, model: llama3.1 }\nrules:\n  - id: a\n    route: gpu-bx\n  - id: b\n    route: local\n    fallback: [gpu-box, remote]\n",
    )]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_has(
        &errs,
        "policies/a.yaml:6:12:",
        &["unknown provider `gpu-bx`", "did you mean `gpu-box`?"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:9:25:",
        &[
            "unknown provider `remote`",
            "`local`, `public`",
            "`gpu-box`",
        ],
    );
}

#[test]
fn a_sensitive_rule_that_lists_a_public_provider_is_refused_at_that_entry() {
    let policy = "version: 1\nproviders:\n  - id: claude\n    api: anthropic\n    url: https://api.anthropic.com/v1\n    trust: public\n    model: claude-sonnet-4-5\n    api_key_env: ANTHROPIC_API_KEY\n  - id: gpu-box\n    api: ollama\n    url: http://10.0.0.7:11434\n    trust: local\n    model: llama3.1\nrules:\n  - id: secrets\n    sensitive: true\n    when: { keywords: [confidential] }\n    route: gpu-box\n    fallback: [local, claude, public]\n  - id: leak\n    sensitive: true\n    when: { keywords: [secret] }\n    route: openai\n";
    let errs = errors(&[("a.yaml", policy)]);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_has(
        &errs,
        "policies/a.yaml:19:23:",
        &[
            "rule `secrets` is sensitive",
            "fallback `claude` is a public provider",
            "`trust: local`",
        ],
    );
    assert_has(
        &errs,
        "policies/a.yaml:19:31:",
        &[
            "rule `secrets` is sensitive",
            "fallback `public` is a public provider",
        ],
    );
    assert_has(
        &errs,
        "policies/a.yaml:23:12:",
        &[
            "rule `leak` is sensitive",
            "route `openai` is a public provider",
        ],
    );
    // Without the public entries it loads, URLs normalized.
    let fixed = policy
        .replace("[local, claude, public]", "[local]")
        .replace("route: openai", "route: local");
    let set = load_env(&[("a.yaml", &fixed)], &[]).expect("valid");
    assert_eq!(set.providers.len(), 2);
    assert_eq!(set.providers[0].entry.url, "https://api.anthropic.com");
    assert_eq!(set.rules[0].fallback[0].value, "local");
}

#[test]
fn provider_entries_are_checked() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nproviders:\n  - { id: local, api: ollama, url: 'http://a:1', trust: local, model: m }\n  - { id: box, api: ollama, url: 'http://a:1/api', trust: local, model: m }\n  - { id: box, api: ollama, url: 'http://a:1', trust: local, model: m, proxy: 'http://p:3128' }\n  - { id: web, api: openai, url: 'https://a', trust: public, model: m, models: ['gpt-[4'] }\n  - { id: ftp, api: openai, url: 'ftp://a', trust: public, model: m }\n",
    )]);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert_has(
        &errs,
        "policies/a.yaml:3:11:",
        &["provider id `local` is reserved"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:5:11:",
        &[
            "duplicate provider id `box`",
            "first defined at policies/a.yaml:4",
        ],
    );
    assert_has(
        &errs,
        "policies/a.yaml:5:79:",
        &["never reached through a proxy"],
    );
    assert_has(&errs, "policies/a.yaml:6:81:", &["invalid glob \"gpt-[4\""]);
    assert_has(
        &errs,
        "policies/a.yaml:7:34:",
        &["`providers[4].url` must match", "ftp://a"],
    );
}

#[test]
fn wrong_types_and_values_outside_their_set_point_at_the_value() {
    let errs = errors(&[(
        "a.yaml",
        "version: 3\nrules:\n  - id: Sensitive Rule\n    route: Remote Box\n  - id: ok\n    route: local\n    when:\n      keywords: secret\n      scope: everything\n",
    )]);
    assert_has(
        &errs,
        "policies/a.yaml:1:10:",
        &["`version` must be 1", "`3`"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:3:9:",
        &["`rules[0].id` must match", "\"Sensitive Rule\""],
    );
    assert_has(
        &errs,
        "policies/a.yaml:4:12:",
        &["`rules[0].route` must match", "\"Remote Box\""],
    );
    assert_has(
        &errs,
        "policies/a.yaml:8:17:",
        &["`rules[1].when.keywords` must be a list", "\"secret\""],
    );
    assert_has(
        &errs,
        "policies/a.yaml:9:14:",
        &["`rules[1].when.scope` must be one of `all`, `last_user`"],
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
}

#[test]
fn empty_keyword_lists_and_keywords_that_normalize_to_nothing() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - id: a\n    route: local\n    when: {keywords: []}\n  - id: b\n    route: local\n    when:\n      keywords: [fine, \"\\u200b\"]\n",
    )]);
    assert_has(
        &errs,
        "policies/a.yaml:5:22:",
        &["`rules[0].when.keywords` must list at least 1 item"],
    );
    assert_has(&errs, "policies/a.yaml:9:24:", &["keyword", "is empty"]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn a_bad_regex_is_reported_at_the_pattern_itself_on_one_line() {
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - id: ssn\n    route: local\n    when:\n      patterns:\n        - '\\d+'\n        - '(unclosed'\n",
    )]);
    assert_one(
        &errs,
        "policies/a.yaml:8:11:",
        &["invalid regex", "(unclosed"],
    );
    assert!(!errs[0].contains('\n'));
}

#[test]
fn a_pattern_too_big_to_run_quickly_is_a_load_error_at_the_pattern() {
    // It compiled before and then took 20-37 s per long prompt.
    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - id: slow\n    route: local\n    when:\n      patterns:\n        - '\\d+'\n        - '(\\w{100}){30}'\n",
    )]);
    assert_one(
        &errs,
        "policies/a.yaml:8:11:",
        &["invalid regex", "too big", "10485760"],
    );
}

#[test]
fn bounds_min_above_max_and_negative_bounds() {
    let errs = errors_env(
        &[(
            "a.yaml",
            "version: 1\nrules:\n  - id: a\n    route: local\n    when:\n      input_chars: {min: 10, max: 5}\n  - id: b\n    route: local\n    when:\n      estimated_usd:\n        min: 2\n        max: 1\n  - id: c\n    route: local\n    when:\n      input_chars: {min: -1}\n",
        )],
        &[("POLICY_INPUT_USD_PER_1M_TOKENS", "0.15")],
    );
    assert_has(
        &errs,
        "policies/a.yaml:6:20:",
        &["`input_chars` has min 10 greater than max 5"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:11:9:",
        &["`estimated_usd` has min 2 greater than max 1"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:16:26:",
        &["`rules[2].when.input_chars.min` must be at least 0", "`-1`"],
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn estimated_usd_needs_a_price_from_a_file_or_the_environment() {
    let rule = "version: 1\nrules:\n  - id: cheap\n    route: local\n    when:\n      estimated_usd: {max: 0.01}\n";
    let errs = errors(&[("a.yaml", rule)]);
    assert_one(
        &errs,
        "policies/a.yaml:6:7:",
        &[
            "`estimated_usd` needs a price",
            "POLICY_INPUT_USD_PER_1M_TOKENS",
        ],
    );

    let with_env = load_env(
        &[("a.yaml", rule)],
        &[("POLICY_INPUT_USD_PER_1M_TOKENS", "0.15")],
    )
    .expect("valid");
    assert_eq!(with_env.defaults.input_usd_per_1m_tokens.value, Some(0.15));

    let priced = "version: 1\ndefaults:\n  pricing: {input_usd_per_1m_tokens: 0.15}\n";
    let with_file = load_env(&[("00.yaml", priced), ("a.yaml", rule)], &[]).expect("valid");
    assert_eq!(
        with_file
            .defaults
            .input_usd_per_1m_tokens
            .source
            .to_string(),
        "file:policies/00.yaml"
    );
}

#[test]
fn duplicate_ids_point_at_the_later_one_and_name_the_first() {
    let errs = errors(&[
        (
            "10-a.yaml",
            "version: 1\nrules:\n  - id: first\n    route: local\n  - id: dup\n    route: local\n",
        ),
        (
            "20-b.yaml",
            "version: 1\n\nrules:\n  - route: public\n    id: dup\n",
        ),
    ]);
    assert_one(
        &errs,
        "policies/20-b.yaml:5:9:",
        &["duplicate rule id `dup`", "policies/10-a.yaml:5"],
    );
}

#[test]
fn defaults_in_two_files_point_at_the_later_defaults_key() {
    let errs = errors(&[
        ("00.yaml", "version: 1\ndefaults: {provider: local}\n"),
        (
            "01.yaml",
            "# comment\nversion: 1\ndefaults:\n  provider: public\n",
        ),
    ]);
    assert_one(
        &errs,
        "policies/01.yaml:3:1:",
        &["`defaults` is already set in policies/00.yaml:2"],
    );
}

#[test]
fn empty_comment_only_non_utf8_and_multi_document_files() {
    assert_eq!(
        errors(&[("a.yaml", "")]),
        ["policies/a.yaml: the file is empty"]
    );
    assert_eq!(
        errors(&[("a.yaml", "# only a comment\n")]),
        ["policies/a.yaml: the file is empty"]
    );
    let mut bad = b"version: 1\nrules:\n  - id: caf".to_vec();
    bad.extend_from_slice(&[0xff, b'\n']);
    let files = [SourceFile {
        path: Arc::from("policies/bin.yaml"),
        name: "bin.yaml".into(),
        bytes: bad,
    }];
    let errs = parse_policy(&files, &Env::default())
        .unwrap_err()
        .to_string();
    assert_eq!(errs, "policies/bin.yaml:3:12: the file is not valid UTF-8");
    let errs = errors(&[("a.yaml", "version: 1\n---\nversion: 1\n")]);
    assert_one(&errs, "policies/a.yaml:3:1:", &["one YAML document"]);
}

#[test]
fn duplicate_yaml_keys_are_an_error() {
    let errs = errors(&[("a.yaml", "version: 1\nrules: []\nrules: []\n")]);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("policies/a.yaml:3:"), "{errs:?}");
}

#[test]
fn every_file_is_checked_and_errors_come_in_load_order() {
    let errs = errors(&[
        (
            "a.yaml",
            "version: 1\nrules:\n  - {id: a, route: nowhere}\n",
        ),
        (
            "b.yaml",
            "version: 1\nrules:\n  - {id: b, route: local, when: {patterns: ['[']}}\n",
        ),
        ("c.yaml", "version: 2\n"),
    ]);
    let prefixes: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        prefixes,
        [
            "policies/a.yaml:3:20",
            "policies/b.yaml:3:45",
            "policies/c.yaml:1:10"
        ]
    );
}

#[test]
fn invalid_overlay_variables_are_named() {
    let errs = errors_env(
        &[("a.yaml", "version: 1\n")],
        &[
            ("POLICY_DEFAULT_PROVIDER", "cloud"),
            ("POLICY_CHARS_PER_TOKEN", "-2"),
        ],
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("POLICY_DEFAULT_PROVIDER: invalid value \"cloud\""),
        "{errs:?}"
    );
    assert!(errs[1].starts_with("POLICY_CHARS_PER_TOKEN: "), "{errs:?}");
}

#[test]
fn a_valid_policy_loads_rules_in_order_with_their_positions() {
    let p = load_env(
        &[
            ("00-defaults.yaml", "version: 1\ndefaults:\n  provider: public\n"),
            (
                "10-rules.yaml",
                "version: 1\nrules:\n  - id: sensitive\n    description: Keep secrets home\n    when:\n      keywords: [internal, secret]\n      keyword_match: word\n      scope: last_user\n    route: local\n    reason: sensitive_keyword_match\n  - id: short\n    when: {input_chars: {max: 1000}}\n    route: local\n",
            ),
        ],
        &[],
    )
    .expect("valid");
    assert_eq!(p.sources.len(), 2);
    assert_eq!(&*p.sources[1].path, "policies/10-rules.yaml");
    assert_eq!(p.sources[0].sha256.len(), 64);
    let ids: Vec<_> = p.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["sensitive", "short"]);
    let s = &p.rules[0];
    assert_eq!((s.at.position.line, s.at.position.column), (3, 5));
    assert_eq!(s.reason, "sensitive_keyword_match");
    assert_eq!(s.keyword_match, KeywordMatch::Word);
    assert_eq!(s.scope, Scope::LastUser);
    assert_eq!(s.keywords[1].value, "secret");
    assert_eq!(s.keywords[1].at.position.line, 6);
    assert_eq!(p.rules[1].reason, "short", "reason defaults to the id");
    assert_eq!(p.rules[1].input_chars.and_then(|b| b.max), Some(1000));
    assert_eq!(p.defaults.provider.value, Route::Public);
    assert_eq!(
        p.defaults.provider.source.to_string(),
        "file:policies/00-defaults.yaml"
    );
    assert_eq!(p.defaults.chars_per_token.source.to_string(), "builtin");
    assert_eq!(p.keyword_count(), 2);
}

#[test]
fn the_version_follows_names_bytes_and_effective_defaults_only() {
    let base = [
        ("a.yaml", "version: 1\n"),
        ("b.yaml", "version: 1\nrules: []\n"),
    ];
    let v =
        |files: &[(&str, &str)], env: &[(&str, &str)]| load_env(files, env).expect("valid").version;
    let v0 = v(&base, &[]);
    assert_eq!(v0.len(), 64);
    assert!(
        v0.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(v0, v(&base, &[]), "deterministic");
    // Another folder, same names and bytes: same version.
    let elsewhere: Vec<SourceFile> = base
        .iter()
        .map(|(n, t)| SourceFile {
            path: Arc::from(format!("/srv/other/{n}")),
            name: (*n).to_owned(),
            bytes: t.as_bytes().to_vec(),
        })
        .collect();
    assert_eq!(
        parse_policy(&elsewhere, &Env::default())
            .expect("valid")
            .version,
        v0
    );
    let mut seen = vec![v0.clone()];
    for other in [
        v(&[("a.yaml", "version: 1\n# comment\n"), base[1]], &[]),
        v(&[("a2.yaml", "version: 1\n"), base[1]], &[]),
        v(&base[..1], &[]),
        v(&base, &[("POLICY_DEFAULT_PROVIDER", "public")]),
        v(&base, &[("POLICY_CHARS_PER_TOKEN", "3.5")]),
        v(&base, &[("POLICY_INPUT_USD_PER_1M_TOKENS", "0")]),
        // Moving bytes between names must not collide.
        v(&[("a.yaml", "version: 1\nrules: []\n")], &[]),
    ] {
        assert!(!seen.contains(&other), "version collision");
        seen.push(other);
    }
    // An overlay equal to the built-in value is the same effective default.
    assert_eq!(v(&base, &[("POLICY_DEFAULT_PROVIDER", "local")]), v0);
}

#[test]
fn loads_from_a_folder_and_from_a_single_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("10-a.yaml"),
        "version: 1\nrules:\n  - {id: a, route: local}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("20-b.yml"),
        "version: 1\nrules:\n  - {id: b, route: public}\n",
    )
    .expect("write");
    let from_dir = load(
        &PolicySource::Dir(dir.path().to_path_buf()),
        &Env::default(),
    )
    .expect("valid");
    assert_eq!(from_dir.rules.len(), 2);
    let single = load(
        &PolicySource::File(dir.path().join("20-b.yml")),
        &Env::default(),
    )
    .expect("valid");
    assert_eq!(single.rules.len(), 1);
    assert_eq!(single.rules[0].id, "b");
    let env = Env::from_pairs([(
        "POLICY_FILE",
        dir.path().join("10-a.yaml").to_string_lossy().into_owned(),
    )]);
    assert_eq!(
        load(&PolicySource::from_env(&env), &env)
            .expect("valid")
            .rules[0]
            .id,
        "a"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_once() {
    let errs = errors(&[(
        "a.yaml",
        "version: \"1\"\nrules:\n  - {id: 7, route: local}\n",
    )]);
    assert_eq!(
        errs,
        [
            "policies/a.yaml:1:10: `version` must be an integer, found \"1\"",
            "policies/a.yaml:3:10: `rules[0].id` must be a string, found `7`",
        ]
    );
}

#[test]
fn byte_order_marks_crlf_anchors_and_core_tags_are_plain_yaml() {
    let text = "\u{feff}version: 1\r\nrules:\r\n  - id: a\r\n    route: local\r\n    when:\r\n      keywords: &kw [a, b]\r\n  - id: b\r\n    route: !!str public\r\n    when: {keywords: *kw}\r\n";
    let p = load_env(&[("a.yaml", text)], &[]).expect("valid");
    assert_eq!(p.rules[1].route.value, "public");
    let kws: Vec<_> = p.rules[1]
        .keywords
        .iter()
        .map(|k| k.value.as_str())
        .collect();
    assert_eq!(kws, ["a", "b"]);
}

#[test]
fn model_globs_load_with_their_positions_and_bad_ones_are_placed() {
    let policy = load_env(
        &[(
            "a.yaml",
            "version: 1\nrules:\n  - id: cloud\n    route: public\n    when:\n      model: ['gpt-4o*', '*/GPT-4o']\n",
        )],
        &[],
    )
    .expect("valid");
    let globs: Vec<_> = policy.rules[0]
        .model
        .iter()
        .map(|g| {
            let p = g.at.position;
            (
                g.value.as_str(),
                format!("{}:{}:{}", g.at.path, p.line, p.column),
            )
        })
        .collect();
    assert_eq!(
        globs,
        [
            ("gpt-4o*", "policies/a.yaml:6:15".to_owned()),
            ("*/GPT-4o", "policies/a.yaml:6:26".to_owned())
        ]
    );

    let errs = errors(&[(
        "a.yaml",
        "version: 1\nrules:\n  - id: a\n    route: local\n    when:\n      model:\n        - 'gpt-4o*'\n        - 'gpt-[4o'\n  - id: b\n    route: local\n    when: {model: []}\n  - id: c\n    route: local\n    when: {model: gpt-4o}\n  - id: d\n    route: local\n    when: {model: ['']}\n  - id: e\n    route: local\n    when: {modle: [gpt-4o]}\n",
    )]);
    assert_has(
        &errs,
        "policies/a.yaml:8:11:",
        &["invalid glob", "\"gpt-[4o\"", "unclosed character class"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:11:19:",
        &["`rules[1].when.model` must list at least 1 item"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:14:19:",
        &["`rules[2].when.model` must be a list, found \"gpt-4o\""],
    );
    assert_has(
        &errs,
        "policies/a.yaml:17:20:",
        &["`rules[3].when.model[0]` must not be empty"],
    );
    assert_has(
        &errs,
        "policies/a.yaml:20:12:",
        &["unknown key `modle`", "did you mean `model`?"],
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs.iter().all(|e| !e.contains('\n')), "{errs:#?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Over random providers and rules: a policy loads exactly when no
    /// sensitive rule names a public provider in its route or fallback, and
    /// every sensitive chain that loads is local throughout.
    #[test]
    fn a_loaded_policy_never_gives_a_sensitive_rule_a_public_provider(
        trusts in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..4),
        rules in proptest::collection::vec(
            (
                proptest::prelude::any::<bool>(),
                0usize..6,
                proptest::collection::vec(0usize..6, 0..3),
            ),
            1..5,
        ),
    ) {
        let mut names = vec!["local".to_owned(), "public".to_owned(), "openai".to_owned()];
        let mut public = vec![false, true, true];
        let mut text = "version: 1\n".to_owned();
        if !trusts.is_empty() {
            text.push_str("providers:\n");
        }
        for (i, is_public) in trusts.iter().enumerate() {
            let trust = if *is_public { "public" } else { "local" };
            text.push_str(&format!(
                "  - {{ id: p{i}, api: ollama, url: 'http://10.0.0.{i}:11434', trust: {trust}, model: m{i} }}\n"
            ));
            names.push(format!("p{i}"));
            public.push(*is_public);
        }
        text.push_str("rules:\n");
        let mut should_load = true;
        for (r, (sensitive, route, fallback)) in rules.iter().enumerate() {
            let pick = |i: usize| i % names.len();
            let chain: Vec<usize> = std::iter::once(*route).chain(fallback.iter().copied()).map(pick).collect();
            if *sensitive && chain.iter().any(|&i| public[i]) {
                should_load = false;
            }
            let listed: Vec<&str> = chain[1..].iter().map(|&i| names[i].as_str()).collect();
            text.push_str(&format!(
                "  - id: r{r}\n    sensitive: {sensitive}\n    when: {{ keywords: [word{r}] }}\n    route: {}\n    fallback: [{}]\n",
                names[chain[0]],
                listed.join(", ")
            ));
        }
        let loaded = policy_mesh::compile_files(&[file("a.yaml", &text)], &Env::default(), &Builtins::defaults());
        proptest::prop_assert_eq!(loaded.is_ok(), should_load, "{}\n{:?}", text, loaded.as_ref().err().map(ToString::to_string));
        if let Ok(policy) = loaded {
            for rule in policy.policy().rules.iter().filter(|r| r.sensitive) {
                for name in std::iter::once(&rule.route).chain(&rule.fallback) {
                    let spec = policy.provider(&name.value).expect("resolves");
                    proptest::prop_assert_eq!(spec.trust, Route::Local);
                }
                let decision = policy.decide(&[policy_mesh::chat::ChatMessage::user(format!("word{}", &rule.id[1..]))], None);
                proptest::prop_assert!(decision.sensitive);
                proptest::prop_assert!(decision.chain.iter().all(|p| p.trust == Route::Local));
            }
        }
    }
}
