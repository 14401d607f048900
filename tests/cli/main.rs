//! Black-box tests of the `policy-mesh` command line: the real binary, a clean
//! environment, temporary policy folders.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `policy-mesh ARGS` in `cwd` with only `PATH` and `vars` set, feeding `stdin`.
fn run_in(cwd: &Path, args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_policy-mesh"));
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("the binary ends");
    Run {
        status: output.status.code().expect("an exit status, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs `policy-mesh ARGS` in an empty folder, so no `.env` is read.
fn run(args: &[&str], vars: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let cwd = tempfile::tempdir().expect("tempdir");
    run_in(cwd.path(), args, vars, stdin)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn shipped() -> String {
    repo("policies").display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A temporary copy of the shipped policy folder, test cases included.
fn shipped_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_shipped(dir.path());
    dir
}

/// Copies the shipped policy folder, test cases included, into `dir`.
fn copy_shipped(dir: &Path) {
    for sub in ["", "tests"] {
        let from = repo("policies").join(sub);
        let to = dir.join(sub);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("read policies") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().expect("a name"))).expect("copy");
            }
        }
    }
}

/// The 1-based line and column (in characters) of the only occurrence of `needle`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(text.matches(needle).count(), 1, "{needle:?} once in {text}");
    let offset = text.find(needle).expect("found");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// `path:line:column: ` of `needle` in the file `name` of `dir`.
fn at(dir: &Path, name: &str, needle: &str) -> String {
    let path = dir.join(name);
    let (line, column) = position(&read(&path), needle);
    format!("{}:{line}:{column}: ", path.display())
}

/// The stderr line that starts with `prefix`.
fn line_starting<'a>(stderr: &'a str, prefix: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no error line starts with {prefix:?} in:\n{stderr}"))
}

fn is_version(v: &str) -> bool {
    v.len() == 64
        && v.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The version from `check`'s summary line.
fn checked_version(run: &Run) -> String {
    let version = run
        .stdout
        .trim_end()
        .rsplit_once(", version ")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no version in {run:?}"));
    assert!(is_version(&version), "{version:?}");
    version
}

#[test]
fn check_summarizes_the_shipped_policy() {
    let run = run(&["check", &shipped()], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let version = checked_version(&run);
    assert_eq!(
        run.stdout,
        format!("ok: 3 files, 3 rules (2 sensitive), 3 keywords, version {version}\n")
    );
}

#[test]
fn check_counts_a_single_file_in_the_singular() {
    let file = repo("policies/10-sensitive.yaml").display().to_string();
    let run = run(&["check", &file], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("ok: 1 file, 2 rules (2 sensitive), 3 keywords, version "),
        "{}",
        run.stdout
    );
    let file = repo("policies/00-defaults.yaml").display().to_string();
    let run = self::run(&["check", &file], &[], None);
    assert!(
        run.stdout.starts_with("ok: 1 file, 0 rules, 0 keywords, "),
        "{run:?}"
    );
}

#[test]
fn check_reads_the_policy_location_from_the_environment_and_dotenv() {
    let from_arg = checked_version(&run(&["check", &shipped()], &[], None));

    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        cwd.path().join(".env"),
        format!("POLICY_DIR={}\n", shipped()),
    )
    .expect("write .env");
    let from_dotenv = run_in(cwd.path(), &["check"], &[], None);
    assert_eq!(from_dotenv.status, 0, "{from_dotenv:?}");
    assert_eq!(checked_version(&from_dotenv), from_arg);

    // The environment wins over `.env`, and POLICY_FILE over POLICY_DIR.
    let file = repo("policies/20-cost.yaml").display().to_string();
    let from_env = run_in(cwd.path(), &["check"], &[("POLICY_FILE", &file)], None);
    assert!(
        from_env
            .stdout
            .starts_with("ok: 1 file, 1 rule, 0 keywords"),
        "{from_env:?}"
    );

    // With nothing set, `policies/` in the working folder is the policy; the
    // version depends on file names and bytes, not on the folder.
    let cwd = tempfile::tempdir().expect("tempdir");
    copy_shipped(&cwd.path().join("policies"));
    let run = run_in(cwd.path(), &["check"], &[], None);
    assert_eq!(checked_version(&run), from_arg);
}

#[test]
fn the_overlay_changes_the_version() {
    let plain = checked_version(&run(&["check", &shipped()], &[], None));
    let public = run(
        &["check", &shipped()],
        &[("POLICY_DEFAULT_PROVIDER", "public")],
        None,
    );
    assert_eq!(public.status, 0, "{public:?}");
    assert_ne!(checked_version(&public), plain);
}

#[test]
fn check_reports_every_error_of_a_broken_policy_at_its_position() {
    let dir = shipped_copy();
    let d = dir.path();
    let cost = read(&d.join("20-cost.yaml"));
    assert!(cost.contains("\n    route: local\n"));
    std::fs::write(
        d.join("20-cost.yaml"),
        cost.replace("\n    route: local\n", "\n    rout: local\n"),
    )
    .expect("write");
    let files = [
        (
            "30-duplicate.yaml",
            "version: 1\nrules:\n  - id: sensitive\n    route: public\n",
        ),
        (
            "40-regex.yaml",
            "version: 1\nrules:\n  - id: card\n    when:\n      patterns: ['\\d{4}', '(unclosed']\n    route: local\n",
        ),
        (
            "50-bounds.yaml",
            "version: 1\nrules:\n  - id: medium\n    when:\n      input_chars: { min: 10, max: 5 }\n    route: local\n",
        ),
        (
            "60-usd.yaml",
            "version: 1\nrules:\n  - id: cheap\n    when:\n      estimated_usd: { max: 0.01 }\n    route: public\n",
        ),
        (
            "70-defaults.yaml",
            "version: 1\ndefaults:\n  provider: public\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(d.join(name), text).expect("write");
    }

    let run = run(&["check", &d.display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(run.stdout, "");
    let err = &run.stderr;

    let typo = line_starting(err, &at(d, "20-cost.yaml", "rout:"));
    assert!(typo.contains("unknown key"), "{typo}");
    assert!(typo.contains("`route`"), "no suggestion in {typo}");

    let (first_line, _) = position(&read(&d.join("10-sensitive.yaml")), "id: sensitive");
    let duplicate = line_starting(err, &at(d, "30-duplicate.yaml", "sensitive"));
    assert!(duplicate.contains("sensitive"), "{duplicate}");
    let first = format!("{}:{first_line}", d.join("10-sensitive.yaml").display());
    assert!(
        duplicate.contains(&first),
        "{duplicate} does not name {first}"
    );

    let regex = line_starting(err, &at(d, "40-regex.yaml", "'(unclosed'"));
    assert!(regex.contains("(unclosed"), "{regex}");
    line_starting(err, &at(d, "50-bounds.yaml", "{ min: 10, max: 5 }"));
    let usd = line_starting(err, &at(d, "60-usd.yaml", "estimated_usd:"));
    assert!(usd.contains("estimated_usd"), "{usd}");
    let defaults = line_starting(err, &at(d, "70-defaults.yaml", "defaults:"));
    assert!(defaults.contains("defaults"), "{defaults}");

    // Every line is `path:line:column: message`, one error each.
    for line in err.lines() {
        let rest = line
            .strip_prefix(&format!("{}/", d.display()))
            .unwrap_or_else(|| panic!("{line:?} does not start with the folder"));
        let parts: Vec<&str> = rest.splitn(4, ':').collect();
        assert!(
            parts.len() == 4
                && parts[1].parse::<usize>().is_ok_and(|n| n > 0)
                && parts[2].parse::<usize>().is_ok_and(|n| n > 0)
                && parts[3].starts_with(' '),
            "{line:?} is not path:line:column: message"
        );
    }
}

#[test]
fn invalid_variables_are_named_and_exit_1() {
    let run = run(
        &["check", &shipped()],
        &[
            ("POLICY_DEFAULT_PROVIDER", "remote"),
            ("PUBLIC_LLM_PROVIDER", "azure"),
        ],
        None,
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(run.stdout, "");
    line_starting(&run.stderr, "POLICY_DEFAULT_PROVIDER: ");
    line_starting(&run.stderr, "PUBLIC_LLM_PROVIDER: ");

    // From `.env` too, and for every command that loads the policy.
    let cwd = tempfile::tempdir().expect("tempdir");
    std::fs::write(cwd.path().join(".env"), "POLICY_CHARS_PER_TOKEN=0\n").expect("write");
    for args in [
        &["check", &shipped()][..],
        &["test", &shipped()],
        &["decide", "--policies", &shipped(), "--message", "hi"],
    ] {
        let run = run_in(cwd.path(), args, &[], None);
        assert_eq!(run.status, 1, "{args:?}: {run:?}");
        line_starting(&run.stderr, "POLICY_CHARS_PER_TOKEN: ");
    }
}

#[test]
fn check_validates_every_variable_serve_reads() {
    // Each of these stops `serve`; `check` must say so too, one line for
    // each part (server, logging, providers, audit) in one run.
    let run = run(
        &["check", &shipped()],
        &[
            ("PROVIDER_TIMEOUT_SECONDS", "abc"),
            ("BIND_ADDR", "nowhere"),
            ("AUDIT_ENABLED", "maybe"),
            ("LOG_FORMAT", "xml"),
        ],
        None,
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(run.stdout, "");
    line_starting(
        &run.stderr,
        "PROVIDER_TIMEOUT_SECONDS: invalid value \"abc\"",
    );
    line_starting(&run.stderr, "BIND_ADDR: invalid value \"nowhere\"");
    line_starting(
        &run.stderr,
        "AUDIT_ENABLED: invalid value \"maybe\": expected true, false, 1 or 0",
    );
    line_starting(&run.stderr, "LOG_FORMAT: invalid value \"xml\"");
    assert_eq!(run.stderr.lines().count(), 4, "{}", run.stderr);

    // The public provider's URL is the policy's and the providers': named once.
    let run = self::run(
        &["check", &shipped()],
        &[("PUBLIC_LLM_URL", "ftp://example.com")],
        None,
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(
        run.stderr.matches("PUBLIC_LLM_URL: ").count(),
        1,
        "{}",
        run.stderr
    );

    // `serve` refuses the same variables with the same lines (an invalid
    // BIND_ADDR among them, so that it can never start listening here).
    let cwd = tempfile::tempdir().expect("tempdir");
    let served = run_in(
        cwd.path(),
        &["serve"],
        &[
            ("POLICY_DIR", &shipped()),
            ("PROVIDER_TIMEOUT_SECONDS", "abc"),
            ("BIND_ADDR", "nowhere"),
            ("AUDIT_ENABLED", "false"),
        ],
        None,
    );
    assert_eq!(served.status, 1, "{served:?}");
    line_starting(
        &served.stderr,
        "PROVIDER_TIMEOUT_SECONDS: invalid value \"abc\"",
    );
    line_starting(&served.stderr, "BIND_ADDR: invalid value \"nowhere\"");
}

#[test]
fn test_passes_on_the_shipped_policy() {
    let run = run(&["test", &shipped()], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let cases: usize = ["10-sensitive.yaml", "20-cost.yaml"]
        .iter()
        .map(|f| {
            read(&repo("policies/tests").join(f))
                .matches("- name: ")
                .count()
        })
        .sum();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), cases + 1, "{}", run.stdout);
    assert!(lines[..cases].iter().all(|l| l.starts_with("ok ")));
    assert_eq!(lines[0], "ok confidential stays local");
    assert_eq!(lines[cases], format!("{cases} passed, 0 failed"));
}

/// A folder holding the shipped policy and, in `tests/`, only `cases`.
fn with_cases(cases: &str) -> tempfile::TempDir {
    let dir = shipped_copy();
    let tests = dir.path().join("tests");
    std::fs::remove_dir_all(&tests).expect("rm tests");
    std::fs::create_dir(&tests).expect("mkdir tests");
    std::fs::write(tests.join("cases.yaml"), cases).expect("write cases");
    dir
}

#[test]
fn test_reports_a_wrong_expectation() {
    let dir = with_cases(
        "cases:\n\
         \x20 - name: confidential stays local\n\
         \x20   messages: [{ role: user, content: \"Summarize this CONFIDENTIAL memo\" }]\n\
         \x20   expect: { route: local, rule: sensitive, reason: sensitive_keyword_match }\n\
         \x20 - name: short note goes public\n\
         \x20   messages: [{ role: user, content: \"hello\" }]\n\
         \x20   expect: { route: public }\n\
         \x20 - name: short note is a default\n\
         \x20   messages: [{ role: user, content: \"hello\" }]\n\
         \x20   expect: { provider: local, rule: null }\n",
    );
    let run = run(&["test", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        "ok confidential stays local\n\
         FAIL short note goes public: expected route=public; decided route=local provider=local rule=cost reason=cost_prefer_local\n\
         FAIL short note is a default: expected provider=local rule=null; decided route=local provider=local rule=cost reason=cost_prefer_local\n\
         1 passed, 2 failed\n"
    );
}

#[test]
fn a_case_failing_under_an_overlay_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("00.yaml"),
        "version: 1\nrules:\n  - {id: secret, route: local, when: {keywords: [secret]}}\n",
    )
    .expect("write policy");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir tests");
    std::fs::write(
        dir.path().join("tests/cases.yaml"),
        "cases:\n  - name: hello stays here\n    messages: [{ role: user, content: hello }]\n    expect: { route: local }\n",
    )
    .expect("write cases");
    let path = dir.path().display().to_string();
    let plain = run(&["test", &path], &[], None);
    assert_eq!(plain.status, 0, "{plain:?}");
    let overlaid = run(
        &["test", &path],
        &[("POLICY_DEFAULT_PROVIDER", "public")],
        None,
    );
    assert_eq!(overlaid.status, 1, "{overlaid:?}");
    assert_eq!(
        overlaid.stdout,
        "FAIL hello stays here: expected route=local; decided route=public provider=openai \
         rule=null reason=default; default provider public from env:POLICY_DEFAULT_PROVIDER\n\
         0 passed, 1 failed\n"
    );
}

#[test]
fn a_sensitive_rule_is_tried_first_wherever_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The cost rule comes first in load order and would send a short
    // confidential prompt public; the sensitive rule is tried before it.
    std::fs::write(
        dir.path().join("00-cost.yaml"),
        "version: 1\nrules:\n  - {id: cheap, route: public, when: {input_chars: {max: 1000}}}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("10-guard.yaml"),
        "version: 1\nrules:\n  - {id: guard, sensitive: true, route: local, when: {keywords: [confidential]}}\n",
    )
    .expect("write");
    let path = dir.path().display().to_string();
    let check = run(&["check", &path], &[], None);
    assert_eq!(check.status, 0, "{check:?}");
    assert!(
        check
            .stdout
            .starts_with("ok: 2 files, 2 rules (1 sensitive), 1 keyword, version "),
        "{}",
        check.stdout
    );
    let sensitive = decision(&run(
        &[
            "decide",
            "--policies",
            &path,
            "--message",
            "a confidential note",
        ],
        &[],
        None,
    ));
    assert_eq!(sensitive["rule"], "guard", "{sensitive}");
    assert_eq!(sensitive["sensitive"], true, "{sensitive}");
    assert_eq!(sensitive["provider"], "local", "{sensitive}");
    assert_eq!(
        sensitive["trace"],
        json!([{"rule": "guard", "held": true, "failed_condition": null}])
    );
    let other = decision(&run(
        &["decide", "--policies", &path, "--message", "a note"],
        &[],
        None,
    ));
    assert_eq!(other["rule"], "cheap", "{other}");
    assert_eq!(other["sensitive"], false, "{other}");
    assert_eq!(
        other["trace"],
        json!([
            {"rule": "guard", "held": false, "failed_condition": "keywords"},
            {"rule": "cheap", "held": true, "failed_condition": null}
        ])
    );

    std::fs::create_dir(dir.path().join("tests")).expect("mkdir tests");
    std::fs::write(
        dir.path().join("tests/cases.yaml"),
        "cases:\n  - name: guarded\n    messages: [{ role: user, content: confidential }]\n    expect: { sensitive: true }\n\
         \x20 - name: not guarded\n    messages: [{ role: user, content: hello }]\n    expect: { sensitive: true }\n",
    )
    .expect("write cases");
    let tested = run(&["test", &path], &[], None);
    assert_eq!(tested.status, 1, "{tested:?}");
    assert_eq!(
        tested.stdout,
        "ok guarded\n\
         FAIL not guarded: expected sensitive=true; decided route=public provider=openai rule=cheap \
         reason=cheap sensitive=false\n\
         1 passed, 1 failed\n"
    );
}

#[test]
fn a_sensitive_rule_that_routes_public_is_a_load_error_at_its_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("00.yaml");
    std::fs::write(
        &file,
        "version: 1\nrules:\n  - id: guard\n    sensitive: true\n    route: public\n",
    )
    .expect("write");
    let run = run(&["check", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "{}:5:12: rule `guard` is sensitive: route `public` is a public provider; a \
             sensitive rule may list only `trust: local` providers\n",
            file.display()
        )
    );
}

#[test]
fn check_refuses_a_public_provider_in_a_sensitive_rules_fallback_at_that_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("00.yaml");
    std::fs::write(
        &file,
        "version: 1\nproviders:\n  - id: claude\n    api: anthropic\n    url: https://api.anthropic.com\n    trust: public\n    model: claude-sonnet-4-5\n    api_key_env: ANTHROPIC_API_KEY\nrules:\n  - id: guard\n    sensitive: true\n    when: { keywords: [confidential] }\n    route: local\n    fallback:\n      - local\n      - claude\n",
    )
    .expect("write");
    let run = run(&["check", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "{}:16:9: rule `guard` is sensitive: fallback `claude` is a public provider; a \
             sensitive rule may list only `trust: local` providers\n",
            file.display()
        )
    );
    // A chain of local providers checks.
    std::fs::write(
        &file,
        "version: 1\nproviders:\n  - { id: gpu-box, api: ollama, url: 'http://10.0.0.7:11434', trust: local, model: llama3.1 }\nrules:\n  - id: guard\n    sensitive: true\n    when: { keywords: [confidential] }\n    route: gpu-box\n    fallback: [local]\n",
    )
    .expect("write");
    let run = self::run(&["check", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
}

#[test]
fn an_unknown_detector_is_a_load_error_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("00.yaml");
    std::fs::write(
        &file,
        "version: 1\nrules:\n  - id: guard\n    when:\n      detect: [pii, credit_crad]\n    route: local\n",
    )
    .expect("write");
    let run = run(&["check", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    let line = run.stderr.lines().next().unwrap_or_default().to_owned();
    assert!(
        line.starts_with(&format!("{}:5:21: ", file.display())),
        "{line}"
    );
    assert!(line.ends_with("did you mean `credit_card`?"), "{line}");
}

#[test]
fn test_reports_an_invalid_case_file_at_its_position() {
    let text = "cases:\n  - name: typo\n    messages: [{ role: user, content: hi }]\n    expext: { route: local }\n";
    let dir = with_cases(text);
    let run = run(&["test", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 1, "{run:?}");
    let error = line_starting(
        &run.stderr,
        &at(&dir.path().join("tests"), "cases.yaml", "expext"),
    );
    assert!(error.contains("unknown key"), "{error}");
    assert_eq!(run.stdout, "0 passed, 0 failed\n");
}

#[test]
fn test_without_cases_passes_and_says_so() {
    let dir = shipped_copy();
    std::fs::remove_dir_all(dir.path().join("tests")).expect("rm tests");
    let run = run(&["test", &dir.path().display().to_string()], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stdout, "0 passed, 0 failed\n");
}

#[test]
fn test_on_a_single_file_reads_the_tests_folder_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: 1\nrules:\n  - id: greeting\n    when: { keywords: [hello] }\n    route: public\n",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/greeting.yml"),
        "cases:\n  - name: hello goes out\n    messages: [{ role: user, content: Hello }]\n    expect: { route: public, provider: anthropic, rule: greeting, reason: greeting }\n",
    )
    .expect("write");
    let file = dir.path().join("policy.yaml").display().to_string();
    let run = run(
        &["test", &file],
        &[("PUBLIC_LLM_URL", "https://api.anthropic.com")],
        None,
    );
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stdout, "ok hello goes out\n1 passed, 0 failed\n");
}

#[test]
fn schema_prints_the_committed_schemas_and_nothing_else() {
    let run = run(&["schema"], &[], None);
    assert_eq!(run.status, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout, read(&repo("schema/policy.schema.json")));
    let tests = self::run(&["schema", "--tests"], &[], None);
    assert_eq!(tests.stdout, read(&repo("schema/policy-tests.schema.json")));
}

fn decision(run: &Run) -> Value {
    assert_eq!(run.status, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn decide_a_message() {
    let version = checked_version(&run(&["check", &shipped()], &[], None));
    let run = run(
        &[
            "decide",
            "--policies",
            &shipped(),
            "--message",
            "Summarize this ＣＯＮＦＩＤＥＮＴＩＡＬ memo",
        ],
        &[],
        None,
    );
    assert_eq!(
        decision(&run),
        json!({
            "provider": "local", "route": "local", "fallback": [], "rule": "sensitive",
            "client": "anonymous", "sensitive": true, "detections": [],
            "reason_codes": ["sensitive_keyword_match"], "policy_version": version,
            "trace": [{"rule": "sensitive", "held": true, "failed_condition": null}]
        })
    );
}

#[test]
fn decide_a_request_from_stdin() {
    let version = checked_version(&run(&["check", &shipped()], &[], None));
    let short = json!({
        "model": null, "stream": false,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    });
    let run = run(
        &["decide", "--policies", &shipped()],
        &[],
        Some(&short.to_string()),
    );
    assert_eq!(
        decision(&run),
        json!({
            "provider": "local", "route": "local", "fallback": [], "rule": "cost",
            "client": "anonymous", "sensitive": false, "detections": [],
            "reason_codes": ["cost_prefer_local"], "policy_version": version,
            "trace": [
                {"rule": "sensitive", "held": false, "failed_condition": "keywords"},
                {"rule": "detected", "held": false, "failed_condition": "detect"},
                {"rule": "cost", "held": true, "failed_condition": null}
            ]
        })
    );

    // The default, with the public provider guessed from the URL, from POLICY_DIR.
    let long = json!({"messages": [{"role": "user", "content": "x".repeat(1001)}]});
    let run = self::run(
        &["decide"],
        &[
            ("POLICY_DIR", &shipped()),
            ("POLICY_DEFAULT_PROVIDER", "public"),
            ("PUBLIC_LLM_URL", "https://api.anthropic.com/"),
        ],
        Some(&long.to_string()),
    );
    let decided = decision(&run);
    assert_eq!(decided["provider"], "anthropic");
    assert_eq!(decided["route"], "public");
    assert_eq!(decided["rule"], Value::Null);
    assert_eq!(decided["reason_codes"], json!(["default"]));
    assert_ne!(decided["policy_version"], json!(version));
    assert_eq!(
        decided["trace"],
        json!([
            {"rule": "sensitive", "held": false, "failed_condition": "keywords"},
            {"rule": "detected", "held": false, "failed_condition": "detect"},
            {"rule": "cost", "held": false, "failed_condition": "input_chars"}
        ])
    );
}

#[test]
fn decide_names_the_field_of_a_bad_request() {
    for (input, field) in [
        (
            r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
            "messages[0].role",
        ),
        (r#"{"messages": []}"#, "messages"),
        (
            r#"{"messages": [{"role": "user", "content": 1}]}"#,
            "messages[0].content",
        ),
        ("not json", "not valid JSON"),
    ] {
        let run = run(&["decide", "--policies", &shipped()], &[], Some(input));
        assert_eq!(run.status, 1, "{input}: {run:?}");
        assert_eq!(run.stdout, "");
        assert!(run.stderr.contains(field), "{input}: {}", run.stderr);
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["check", "a", "b"],
        &["decide", "--bogus"],
        &["schema", "extra"],
    ] {
        let run = run(args, &[], None);
        assert_eq!(run.status, 2, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "");
        assert!(run.stderr.contains("Usage:"), "{}", run.stderr);
    }
    let help = run(&["--help"], &[], None);
    assert_eq!(help.status, 0);
    for command in ["serve", "check", "test", "schema", "decide"] {
        assert!(help.stdout.contains(command), "{}", help.stdout);
    }
}

#[test]
fn decide_reads_the_model_from_stdin_or_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: 1\nrules:\n  - id: cloud\n    when:\n      model: ['gpt-4o*']\n    route: public\n",
    )
    .expect("write policy");
    let policies = dir.path().display().to_string();
    let rule_of = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["decide", "--policies", &policies];
        all.extend_from_slice(args);
        let decided = decision(&run(&all, &[], stdin));
        (
            decided["rule"].clone(),
            decided["trace"][0]["failed_condition"].clone(),
        )
    };
    let held = (json!("cloud"), Value::Null);
    let failed = (Value::Null, json!("model"));
    assert_eq!(rule_of(&["--message", "hi"], None), failed);
    assert_eq!(
        rule_of(&["--message", "hi", "--model", "GPT-4o-mini"], None),
        held
    );
    assert_eq!(
        rule_of(&["--message", "hi", "--model", "llama3"], None),
        failed
    );

    let request = |model: Value| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    assert_eq!(rule_of(&[], Some(&request(json!("gpt-4o")))), held);
    assert_eq!(rule_of(&[], Some(&request(Value::Null))), failed);
    // `--model` replaces the model of the request.
    assert_eq!(
        rule_of(&["--model", "gpt-4o"], Some(&request(json!("llama3")))),
        held
    );
    assert_eq!(
        rule_of(&["--model", "llama3"], Some(&request(json!("gpt-4o")))),
        failed
    );
}

#[test]
fn keys_new_prints_a_key_once_and_the_entry_that_admits_it() {
    let made = run(
        &["keys", "new", "--id", "ops", "--scope", "admin"],
        &[],
        None,
    );
    assert_eq!(made.status, 0, "{made:?}");
    let key = made.stdout.trim_end().to_owned();
    assert!(key.starts_with("pm_") && key.len() == 46, "{key:?}");
    assert_eq!(made.stdout, format!("{key}\n"), "the key alone on stdout");
    assert!(
        !made.stderr.contains(&key),
        "the key is shown once: {}",
        made.stderr
    );
    let hashed = run(&["keys", "hash"], &[], Some(&format!("{key}\n")));
    assert_eq!(hashed.status, 0, "{hashed:?}");
    let digest = hashed.stdout.trim_end();
    assert_eq!(digest.len(), 64);
    assert!(
        made.stderr.contains(&format!(
            "- {{ id: ops, key_sha256: {digest}, scopes: [admin] }}"
        )),
        "{}",
        made.stderr
    );
    // Two keys are never the same.
    let other = run(&["keys", "new", "--id", "ops"], &[], None);
    assert_ne!(other.stdout, made.stdout);
    assert!(
        !other.stderr.contains("scopes"),
        "chat is the default: {}",
        other.stderr
    );
    // The entry is a valid clients file, and `check` reads it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clients.yaml");
    let entry = made.stderr.lines().last().expect("the entry");
    std::fs::write(&file, format!("clients:\n{entry}\n")).expect("write");
    let shown = file.display().to_string();
    let checked = run(&["check", &shipped()], &[("CLIENTS_FILE", &shown)], None);
    assert_eq!(checked.status, 0, "{checked:?}");
    for bad in [&["keys", "new", "--id", "Bad Id"][..], &["keys", "hash"]] {
        let run = run(bad, &[], Some(""));
        assert_eq!(run.status, 2, "{bad:?}: {run:?}");
    }
}

#[test]
fn check_reports_a_broken_clients_file_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clients.yaml");
    std::fs::write(
        &file,
        "clients:\n  - id: team\n    key_sha256: not-hex\n    scopes: [chat]\n",
    )
    .expect("write");
    let shown = file.display().to_string();
    let run = run(&["check", &shipped()], &[("CLIENTS_FILE", &shown)], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("{shown}:3:17: `clients[0].key_sha256` must match")),
        "{}",
        run.stderr
    );
    let missing = dir.path().join("nope.yaml").display().to_string();
    let run = self::run(&["check", &shipped()], &[("CLIENTS_FILE", &missing)], None);
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot read the clients file"),
        "{}",
        run.stderr
    );
}

#[test]
fn decide_takes_the_calling_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("00.yaml"),
        "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: team\n    when: { client: ['team-*'] }\n    route: local\n  - id: bad\n    when: { client: ['ops['] }\n    route: local\n",
    )
    .expect("write");
    let folder = dir.path().display().to_string();
    let run_for = |client: Option<&str>| {
        let mut args = vec!["decide", "--policies", &folder, "--message", "hi"];
        if let Some(client) = client {
            args.extend(["--client", client]);
        }
        run(&args, &[], None)
    };
    // The bad glob is refused at its position.
    let refused = run_for(None);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("00.yaml:9:22: invalid glob \"ops[\""),
        "{}",
        refused.stderr
    );
    std::fs::write(
        dir.path().join("00.yaml"),
        "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: team\n    when: { client: ['team-*'] }\n    route: local\n",
    )
    .expect("write");
    let anonymous = decision(&run_for(None));
    assert_eq!(anonymous["client"], "anonymous");
    assert_eq!(anonymous["rule"], Value::Null);
    assert_eq!(anonymous["trace"][0]["failed_condition"], "client");
    let team = decision(&run_for(Some("team-search")));
    assert_eq!(team["client"], "team-search");
    assert_eq!(team["rule"], "team");
    assert_eq!(team["provider"], "local");
}
