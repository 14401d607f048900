//! Policy test cases: `tests/*.yaml` beside a policy, each case a chat request and
//! the decision it must get.
//!
//! Cases let an operator pin down what a policy edit must keep deciding, and run
//! them before the edit is served (`policy-mesh test`). Case files are read with the
//! same YAML reader as policies, validated against the JSON Schema of [`CaseFile`],
//! so a typo in a case (`expext:`) is an error at its `path:line:column` rather than
//! a case that silently checks nothing.

use std::fmt;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::chat::ChatMessage;
use crate::compiler::CompiledPolicy;
use crate::detect::DetectorSet;
use crate::names::{Detector, ProviderId, Route};
use crate::policy::source::is_policy_file_name;
use crate::policy::{LoadError, Provenance, schema, yaml};

/// One file of policy test cases.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Policy Mesh policy test cases")]
pub struct CaseFile {
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One chat request and the decision it must get.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = no_defaults)]
pub struct Case {
    /// Shown in the report: `ok NAME` or `FAIL NAME: ...`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The chat messages, as a client would send them.
    #[schemars(length(min = 1))]
    pub messages: Vec<ChatMessage>,
    /// The model the request asks for (`model` in a chat request), which `model`
    /// conditions look at. Left out: the request names no model.
    #[serde(default)]
    #[schemars(with = "String")]
    pub model: Option<String>,
    /// What the decision must be; only the keys written are compared.
    pub expect: Expect,
}

/// The expected decision. Keys left out are not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1), transform = no_defaults)]
pub struct Expect {
    /// `local` or `public`.
    #[serde(default)]
    #[schemars(with = "Route")]
    pub route: Option<Route>,
    /// The first provider's id: `local`, `openai`, `anthropic` or one of the
    /// policy's `providers`.
    #[serde(default)]
    #[schemars(with = "String", regex(pattern = crate::policy::ID_PATTERN))]
    pub provider: Option<ProviderId>,
    /// The id of the rule that must decide; `null`: no rule holds (the default decision).
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    pub rule: Option<Option<String>>,
    /// The reason code (`default` for the default decision).
    #[serde(default)]
    #[schemars(with = "String")]
    pub reason: Option<String>,
    /// Whether a sensitive rule must decide (`true`) or must not (`false`).
    #[serde(default)]
    #[schemars(with = "bool")]
    pub sensitive: Option<bool>,
    /// The detectors of the deciding rule that must find something, compared
    /// as a set (`[]`: none may).
    #[serde(default)]
    #[schemars(with = "Vec<Detector>")]
    pub detections: Option<Vec<Detector>>,
}

/// Drops the `"default": null` schemars derives from `#[serde(default)]`: an editor
/// would offer `null` as the value to write, and only `expect.rule` may be `null`.
fn no_defaults(schema: &mut schemars::Schema) {
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for property in properties.values_mut() {
            if let Some(property) = property.as_object_mut() {
                property.remove("default");
            }
        }
    }
}

/// Maps a key that is written to `Some`, so that `rule: null` (`Some(None)`) differs
/// from no `rule` key at all (`None`, through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Every case found in a tests folder, and every error in its files.
#[derive(Debug, Clone, Default)]
pub struct LoadedCases {
    /// The cases of the valid files, files in byte order of name, then in file order.
    pub cases: Vec<Case>,
    /// Errors of the invalid files, each `path:line:column: message` when it has a position.
    pub errors: Vec<LoadError>,
}

/// Reads every `*.yaml` and `*.yml` file directly in `dir`, in byte order of name,
/// skipping hidden files as the policy folder does. A missing folder holds no cases.
pub fn read_cases(dir: &Path) -> LoadedCases {
    let mut loaded = LoadedCases::default();
    let shown = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.errors.push(LoadError::whole(
                shown,
                format!("cannot read the tests folder: {e}"),
            ));
            return loaded;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                if is_policy_file_name(&name)
                    && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
                {
                    names.push(name);
                }
            }
            Err(e) => loaded.errors.push(LoadError::whole(
                &shown,
                format!("cannot read the tests folder: {e}"),
            )),
        }
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    if names.is_empty() {
        return loaded;
    }
    let schema = yaml::validator_for::<CaseFile>();
    for name in names {
        let path = dir.join(&name);
        let path_shown = path.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    loaded
                        .errors
                        .push(LoadError::whole(path_shown, "the file is not UTF-8"));
                    continue;
                }
            },
            Err(e) => {
                loaded.errors.push(LoadError::whole(
                    path_shown,
                    format!("cannot read the test file: {e}"),
                ));
                continue;
            }
        };
        match parse_cases(&path_shown, &text, &schema) {
            Ok(cases) => loaded.cases.extend(cases),
            Err(errors) => loaded.errors.extend(errors),
        }
    }
    loaded
}

/// Parses one case file read from `path`; `schema` is `yaml::validator_for::<CaseFile>()`.
pub fn parse_cases(
    path: &str,
    text: &str,
    schema: &yaml::DocumentSchema,
) -> Result<Vec<Case>, Vec<LoadError>> {
    yaml::parse_document::<CaseFile>(path, text, schema).map(|doc| doc.value.cases)
}

/// The schema of case files as committed in `schema/policy-tests.schema.json`
/// (pretty-printed, with a final newline).
pub fn cases_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema::schema_for::<CaseFile>())
        .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
    text.push('\n');
    text
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `None` when the case passed; else what was expected and what was decided,
    /// as `expected route=public; decided route=local provider=local rule=cost reason=cost`.
    pub failure: Option<String>,
}

impl CaseResult {
    /// Whether the decision matched every expected key.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            None => write!(f, "ok {}", self.name),
            Some(failure) => write!(f, "FAIL {}: {failure}", self.name),
        }
    }
}

/// How a rule shows in a report: its id, or `null` for the default decision.
fn rule_word(rule: Option<&str>) -> &str {
    rule.unwrap_or("null")
}

impl Case {
    /// Decides the case's messages and model on `policy` and compares the keys of
    /// `expect`.
    pub fn run(&self, policy: &CompiledPolicy) -> CaseResult {
        let decision = policy.decide(&self.messages, self.model.as_deref());
        let decided_route = decision.route.as_str();
        let decided_provider = &decision.provider;
        let decided_rule = decision.rule.as_deref();
        let decided_reason: &str = &decision.reason;

        let e = &self.expect;
        let matches = e.route.is_none_or(|r| r.as_str() == decided_route)
            && e.provider.as_ref().is_none_or(|p| p == decided_provider)
            && e.rule.as_ref().is_none_or(|r| r.as_deref() == decided_rule)
            && e.reason.as_deref().is_none_or(|r| r == decided_reason)
            && e.sensitive.is_none_or(|s| s == decision.sensitive)
            && e.detections
                .as_ref()
                .is_none_or(|d| d.iter().copied().collect::<DetectorSet>() == decision.detections);
        let failure = (!matches).then(|| {
            let mut expected = Vec::new();
            if let Some(r) = e.route {
                expected.push(format!("route={}", r.as_str()));
            }
            if let Some(p) = &e.provider {
                expected.push(format!("provider={p}"));
            }
            if let Some(r) = &e.rule {
                expected.push(format!("rule={}", rule_word(r.as_deref())));
            }
            if let Some(r) = &e.reason {
                expected.push(format!("reason={r}"));
            }
            if let Some(s) = e.sensitive {
                expected.push(format!("sensitive={s}"));
            }
            if let Some(d) = &e.detections {
                let set: DetectorSet = d.iter().copied().collect();
                expected.push(format!("detections=[{}]", set.names().join(",")));
            }
            let mut line = format!(
                "expected {}; decided route={decided_route} provider={} rule={} reason={decided_reason}",
                expected.join(" "),
                decided_provider.as_str(),
                rule_word(decided_rule),
            );
            if decision.sensitive || e.sensitive.is_some() {
                line.push_str(&format!(" sensitive={}", decision.sensitive));
            }
            if !decision.detections.is_empty() || e.detections.is_some() {
                line.push_str(&format!(
                    " detections=[{}]",
                    decision.detections.names().join(",")
                ));
            }
            for overlay in environment_overlays(policy, decision.is_default()) {
                line.push_str("; ");
                line.push_str(&overlay);
            }
            line
        });
        CaseResult {
            name: self.name.clone(),
            failure,
        }
    }
}

/// The defaults the environment set that could have changed this decision,
/// each as `default provider public from env:POLICY_DEFAULT_PROVIDER`, so a
/// case that fails only under some variables says which: the default
/// provider when no rule held, the price and characters per token when a
/// rule has an `estimated_usd` condition.
fn environment_overlays(policy: &CompiledPolicy, default_decision: bool) -> Vec<String> {
    let set = policy.policy();
    let d = &set.defaults;
    let from_env = |source: &Provenance| matches!(source, Provenance::Env(_));
    let mut overlays = Vec::new();
    if default_decision && from_env(&d.provider.source) {
        overlays.push(format!(
            "default provider {} from {}",
            d.provider.value, d.provider.source
        ));
    }
    if set.rules.iter().any(|r| r.estimated_usd.is_some()) {
        if let (Some(price), true) = (
            d.input_usd_per_1m_tokens.value,
            from_env(&d.input_usd_per_1m_tokens.source),
        ) {
            overlays.push(format!(
                "input_usd_per_1m_tokens {price} from {}",
                d.input_usd_per_1m_tokens.source
            ));
        }
        if from_env(&d.chars_per_token.source) {
            overlays.push(format!(
                "chars_per_token {} from {}",
                d.chars_per_token.value, d.chars_per_token.source
            ));
        }
    }
    overlays
}

/// The last line of a test run: `N passed, M failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

impl Summary {
    /// Counts one result.
    pub fn add(&mut self, result: &CaseResult) {
        if result.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(json: serde_json::Value) -> Expect {
        serde_json::from_value(json).expect("valid expect")
    }

    #[test]
    fn a_null_rule_differs_from_no_rule() {
        assert_eq!(expect(serde_json::json!({"route": "local"})).rule, None);
        assert_eq!(
            expect(serde_json::json!({"rule": null})).rule,
            Some(None::<String>)
        );
        assert_eq!(
            expect(serde_json::json!({"rule": "cost"})).rule,
            Some(Some("cost".to_owned()))
        );
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        assert!(serde_json::from_value::<Expect>(serde_json::json!({"rout": "local"})).is_err());
        assert!(serde_json::from_value::<Expect>(serde_json::json!({"provider": 3})).is_err());
    }

    #[test]
    fn the_schema_refuses_what_serde_refuses_and_an_empty_expect() {
        let schema = schema::schema_for::<CaseFile>();
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let case = |expect: serde_json::Value| {
            serde_json::json!({"cases": [{
                "name": "n",
                "messages": [{"role": "user", "content": "hi"}],
                "expect": expect,
            }]})
        };
        assert!(validator.is_valid(&case(serde_json::json!({"rule": null}))));
        assert!(validator.is_valid(&case(serde_json::json!({
            "route": "public", "provider": "anthropic", "rule": "r", "reason": "why"
        }))));
        assert!(!validator.is_valid(&case(serde_json::json!({}))));
        assert!(!validator.is_valid(&case(serde_json::json!({"rout": "local"}))));
        assert!(!validator.is_valid(&case(serde_json::json!({"route": "remote"}))));
        assert!(!validator.is_valid(&serde_json::json!({"cases": [{
            "name": "n", "messages": [], "expect": {"route": "local"}
        }]})));
    }

    #[test]
    fn a_case_may_name_the_model_it_asks_for() {
        let schema = schema::schema_for::<CaseFile>();
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let case = |model: serde_json::Value| {
            serde_json::json!({"cases": [{
                "name": "n",
                "messages": [{"role": "user", "content": "hi"}],
                "model": model,
                "expect": {"rule": "cloud"},
            }]})
        };
        assert!(validator.is_valid(&case(serde_json::json!("gpt-4o"))));
        assert!(!validator.is_valid(&case(serde_json::json!(["gpt-4o"]))));
        assert!(!validator.is_valid(&case(serde_json::json!(null))));

        let text = "cases:\n  - name: cloud\n    model: GPT-4o-mini\n    messages: [{ role: user, content: hi }]\n    expect: { rule: cloud }\n  - name: none\n    messages: [{ role: user, content: hi }]\n    expect: { rule: null }\n";
        let cases = parse_cases("t.yaml", text, &yaml::validator_for::<CaseFile>()).expect("valid");
        assert_eq!(cases[0].model.as_deref(), Some("GPT-4o-mini"));
        assert_eq!(cases[1].model, None);

        let files = [crate::policy::SourceFile {
            path: "p.yaml".into(),
            name: "p.yaml".into(),
            bytes: b"version: 1\nrules:\n  - id: cloud\n    when: {model: ['gpt-4o*']}\n    route: public\n".to_vec(),
        }];
        let set = crate::policy::parse_policy(
            &files,
            &crate::env::Env::from_pairs(Vec::<(&str, &str)>::new()),
        )
        .expect("valid policy");
        let policy = CompiledPolicy::compile(set, &crate::providers::Builtins::defaults())
            .expect("compiles");
        assert!(cases[0].run(&policy).passed(), "{}", cases[0].run(&policy));
        assert!(cases[1].run(&policy).passed(), "{}", cases[1].run(&policy));
        let mut wrong = cases[0].clone();
        wrong.model = Some("llama3".into());
        assert!(!wrong.run(&policy).passed());
    }

    #[test]
    fn report_lines() {
        let pass = CaseResult {
            name: "short note".into(),
            failure: None,
        };
        let fail = CaseResult {
            name: "long note".into(),
            failure: Some("expected route=public; decided route=local".into()),
        };
        assert_eq!(pass.to_string(), "ok short note");
        assert_eq!(
            fail.to_string(),
            "FAIL long note: expected route=public; decided route=local"
        );
        let mut summary = Summary::default();
        summary.add(&pass);
        summary.add(&fail);
        summary.add(&fail);
        assert_eq!(summary.to_string(), "1 passed, 2 failed");
    }

    #[test]
    fn case_files_are_read_in_name_order_and_bad_ones_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let case = |name: &str| {
            format!(
                "cases:\n  - name: {name}\n    messages: [{{ role: user, content: hi }}]\n    expect: {{ rule: null }}\n"
            )
        };
        std::fs::write(dir.path().join("b.yml"), case("second")).expect("write");
        std::fs::write(dir.path().join("a.yaml"), case("first")).expect("write");
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not: [valid").expect("write");
        std::fs::write(
            dir.path().join("c.yaml"),
            "cases:\n  - name: x\n    messages: []\n    expect: { route: local }\n",
        )
        .expect("write");
        let loaded = read_cases(dir.path());
        let names: Vec<_> = loaded.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(loaded.cases[0].expect.rule, Some(None));
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let error = loaded.errors[0].to_string();
        let prefix = format!("{}:3:15: ", dir.path().join("c.yaml").display());
        assert!(error.starts_with(&prefix), "{error}");
    }

    #[test]
    fn a_missing_tests_folder_holds_no_cases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = read_cases(&dir.path().join("tests"));
        assert!(loaded.cases.is_empty());
        assert!(loaded.errors.is_empty());
    }
}
