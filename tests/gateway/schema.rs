//! The committed JSON Schemas: in step with the Rust types, accepted by every
//! shipped file, and strict enough to catch what an editor should underline.

use std::path::{Path, PathBuf};

use policy_mesh::cli::cases;
use policy_mesh::policy::{schema, yaml};
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `*.yaml` and `*.yml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("folder entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn validator(schema_text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema_text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// Validates every YAML file of `dir` against `validator`; returns how many.
fn validate_folder(dir: &Path, validator: &jsonschema::Validator) -> usize {
    let files = yaml_files(dir);
    for file in &files {
        let shown = file.display().to_string();
        let (value, _) = yaml::parse_value(&shown, &read(file)).unwrap_or_else(|errors| {
            panic!("{shown} does not parse: {errors:?}");
        });
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{shown} is invalid: {errors:#?}");
    }
    files.len()
}

#[test]
fn the_committed_policy_schema_is_what_the_binary_prints() {
    let committed = read(&repo("schema/policy.schema.json"));
    assert!(
        committed == schema::policy_schema_json(),
        "schema/policy.schema.json is out of date with the policy types; regenerate it with\n    \
         cargo run -- schema > schema/policy.schema.json"
    );
}

#[test]
fn the_committed_test_case_schema_is_what_the_binary_prints() {
    let committed = read(&repo("schema/policy-tests.schema.json"));
    assert!(
        committed == cases::cases_schema_json(),
        "schema/policy-tests.schema.json is out of date with the test case types; regenerate it with\n    \
         cargo run -- schema --tests > schema/policy-tests.schema.json"
    );
}

#[test]
fn the_committed_clients_schema_is_what_the_binary_prints() {
    let committed = read(&repo("schema/clients.schema.json"));
    assert!(
        committed == policy_mesh::clients::schema_json(),
        "schema/clients.schema.json is out of date with the clients file types; regenerate it with\n    \
         cargo run -- schema --clients > schema/clients.schema.json"
    );
    // It refuses what the loader refuses.
    let validator = validator(&committed);
    let digest = "ab".repeat(32);
    assert!(validator.is_valid(&json!({"clients": []})));
    assert!(validator.is_valid(&json!({"clients": [
        {"id": "ops", "key_sha256": digest, "scopes": ["admin"],
         "rate_limit": {"requests_per_minute": 60, "burst": 5}}]})));
    for bad in [
        json!({}),
        json!({"clients": [{"id": "ops"}]}),
        json!({"clients": [{"id": "Ops", "key_sha256": digest}]}),
        json!({"clients": [{"id": "ops", "key_sha256": "abc"}]}),
        json!({"clients": [{"id": "ops", "key_sha256": digest, "scopes": []}]}),
        json!({"clients": [{"id": "ops", "key_sha256": digest, "scopes": ["root"]}]}),
        json!({"clients": [{"id": "ops", "key_sha256": digest, "key": "pm_x"}]}),
        json!({"clients": [{"id": "ops", "key_sha256": digest,
            "rate_limit": {"requests_per_minute": 0}}]}),
    ] {
        assert!(!validator.is_valid(&bad), "accepted {bad}");
    }
}

#[test]
fn every_shipped_policy_file_is_valid_and_names_the_schema() {
    let validator = validator(&read(&repo("schema/policy.schema.json")));
    let count = validate_folder(&repo("policies"), &validator);
    assert!(
        count >= 3,
        "expected the shipped policy files, found {count}"
    );
    for file in yaml_files(&repo("policies")) {
        let first = read(&file).lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            first,
            "# yaml-language-server: $schema=../schema/policy.schema.json",
            "{}",
            file.display()
        );
    }
}

#[test]
fn every_shipped_test_case_file_is_valid_and_names_the_schema() {
    let validator = validator(&read(&repo("schema/policy-tests.schema.json")));
    let count = validate_folder(&repo("policies/tests"), &validator);
    assert!(
        count >= 1,
        "expected shipped test case files, found {count}"
    );
    for file in yaml_files(&repo("policies/tests")) {
        let first = read(&file).lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            first,
            "# yaml-language-server: $schema=../../schema/policy-tests.schema.json",
            "{}",
            file.display()
        );
    }
}

/// A valid policy with one rule, for the rejection tests to break one thing at a time.
fn valid_policy() -> Value {
    json!({
        "version": 1,
        "defaults": {"provider": "local", "pricing": {"input_usd_per_1m_tokens": 0.15, "chars_per_token": 3.5}},
        "rules": [{
            "id": "sensitive",
            "description": "stays here",
            "when": {
                "keywords": ["secret"],
                "keyword_match": "word",
                "patterns": ["\\d+"],
                "scope": "last_user",
                "input_chars": {"min": 0, "max": 1000},
                "estimated_usd": {"max": 0.09},
                "model": ["gpt-4o*", "*/llama*"]
            },
            "route": "local",
            "reason": "sensitive_keyword_match"
        }]
    })
}

/// The policy with the JSON pointer `pointer` set to `value` (created when absent).
fn with(pointer: &str, value: Value) -> Value {
    let mut policy = valid_policy();
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let parent = policy
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().expect("an index")] = value,
        _ => panic!("{pointer} is not in a container"),
    }
    policy
}

#[test]
fn the_schema_accepts_a_full_policy_and_a_minimal_one() {
    let validator = validator(&schema::policy_schema_json());
    assert!(validator.is_valid(&valid_policy()));
    assert!(validator.is_valid(&json!({"version": 1})));
    assert!(validator.is_valid(&json!({"version": 1, "rules": [{"id": "a", "route": "public"}]})));
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let validator = validator(&schema::policy_schema_json());
    let rejected = [
        ("an unknown key", with("/rules/0/rout", json!("local"))),
        ("an unknown top-level key", with("/rule", json!([]))),
        (
            "an unknown key in when",
            with("/rules/0/when/keyword", json!(["x"])),
        ),
        (
            "a wrong type",
            with("/rules/0/when/keywords", json!("secret")),
        ),
        (
            "a string for a number",
            with("/rules/0/when/input_chars/max", json!("1000")),
        ),
        (
            "route: Remote Box",
            with("/rules/0/route", json!("Remote Box")),
        ),
        (
            "an unknown api",
            with(
                "/providers",
                json!([{"id": "box", "api": "vllm", "url": "http://a:1", "trust": "local", "model": "m"}]),
            ),
        ),
        (
            "a provider without trust",
            with(
                "/providers",
                json!([{"id": "box", "api": "ollama", "url": "http://a:1", "model": "m"}]),
            ),
        ),
        ("version: 3", with("/version", json!(3))),
        ("a bad id", with("/rules/0/id", json!("Sensitive Rule"))),
        ("a bad reason", with("/rules/0/reason", json!("Why?"))),
        (
            "an empty keyword list",
            with("/rules/0/when/keywords", json!([])),
        ),
        (
            "an empty model list",
            with("/rules/0/when/model", json!([])),
        ),
        (
            "a model glob that is not a list",
            with("/rules/0/when/model", json!("gpt-4o*")),
        ),
        (
            "an empty model glob",
            with("/rules/0/when/model", json!([""])),
        ),
        (
            "a model glob that is not a string",
            with("/rules/0/when/model", json!([4])),
        ),
        (
            "a misspelt model key",
            with("/rules/0/when/modle", json!(["gpt-4o"])),
        ),
        (
            "a negative bound",
            with("/rules/0/when/estimated_usd/min", json!(-1)),
        ),
        (
            "zero chars per token",
            with("/defaults/pricing/chars_per_token", json!(0)),
        ),
        ("a missing route", {
            let mut p = valid_policy();
            p["rules"][0]
                .as_object_mut()
                .expect("a rule")
                .remove("route");
            p
        }),
        ("a missing version", {
            let mut p = valid_policy();
            p.as_object_mut().expect("a policy").remove("version");
            p
        }),
    ];
    for (what, policy) in rejected {
        assert!(!validator.is_valid(&policy), "the schema accepts {what}");
    }
}
