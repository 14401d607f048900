//! The operator UI in a real browser: the gateway binary over a temporary
//! policy folder and fake providers, driven by `tests/ui/browser.mjs` in a
//! headless Chromium. It sends chats and sees which provider answered, runs a dry run,
//! edits the policy and sees the new version without a page reload, breaks it
//! and sees the error with its file and line; a page of another origin tries
//! to chat through it and a rebound name to read it, and both are refused.
//! Screenshots of each state are
//! kept under `target/tmp/ui-screenshots/`.
//!
//! `#[ignore]`d, since it needs Chromium, Node and `node_modules/playwright-core`
//! (`npm ci`); `.ci/run` installs all three and runs it with
//! `--include-ignored`, and a run without them fails naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::fake_providers::FakeProvider;

/// What the fake local model answers.
const LOCAL_REPLY: &str = "Bonjour from the fake local model";
/// What the fake cloud model answers.
const PUBLIC_REPLY: &str = "Paris, says the fake cloud";

const BASE: &str = "version: 1
defaults:
  provider: public
rules:
  - id: sensitive
    sensitive: true
    when:
      keywords: [confidential]
    route: local
    reason: sensitive_keyword_match
  - id: secrets
    sensitive: true
    when:
      detect: [secrets]
    route: local
";

const TEAM: &str = "version: 1
providers:
  - id: gpu-box
    api: ollama
    url: http://127.0.0.1:9
    trust: local
    model: llama3.1:70b
rules:
  - id: offline
    when:
      keywords: [offline]
    route: gpu-box
    fallback: [local]
    reason: team_offline
";

const TEAM_EDITED: &str = "version: 1
rules:
  - id: greeting
    when:
      keywords: [bonjour]
    route: local
  - id: offline
    when:
      keywords: [offline]
    route: local
    reason: team_offline
";

/// `rout` on line 5 is an unknown key: the reload fails there.
const TEAM_BROKEN: &str = "version: 1
rules:
  - id: offline
    when: { keywords: [offline] }
    rout: local
";

/// The Chromium to drive: `CHROMIUM` when set, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(root: &Path) -> Option<String> {
    let chromium = chromium();
    if !chromium.is_file() {
        return Some(format!(
            "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success());
    if !matches!(node, Ok(true)) {
        return Some("no `node` on PATH".to_owned());
    }
    if !root.join("node_modules/playwright-core").is_dir() {
        return Some("no node_modules/playwright-core (run `npm ci`)".to_owned());
    }
    None
}

/// The gateway binary, killed when dropped.
struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the binary on `127.0.0.1:0` with only the variables given (nothing
/// from this process's environment or a `.env` leaks in), and reads its address
/// from the start-up log line.
async fn gateway(dir: &Path, policies: &Path, providers: Vec<(String, String)>) -> Gateway {
    let database = format!("sqlite://{}", dir.join("audit.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_policy-mesh"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("POLICY_DIR", policies)
        .envs(providers)
        .env("PUBLIC_LLM_API_KEY", "test-key")
        .env("DATABASE_URL", database)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read the gateway's log") {
            if let Some(addr) = listening_address(&line) {
                return addr;
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .expect("the gateway logs its address within 60 s");
    // Keep draining the log so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Gateway {
        child,
        base: format!("http://{addr}"),
    }
}

/// The address in the start-up line `… listening on 127.0.0.1:PORT …`.
fn listening_address(line: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn the_start_up_line_gives_the_address() {
    let text = "2026-11-25T10:00:00Z  INFO policy_mesh::server: policy-mesh listening on 127.0.0.1:40123 address=127.0.0.1:40123";
    assert_eq!(
        listening_address(text),
        Some("127.0.0.1:40123".parse().expect("an address"))
    );
    let json =
        r#"{"fields":{"message":"policy-mesh listening on [::1]:8000","address":"[::1]:8000"}}"#;
    assert_eq!(
        listening_address(json),
        Some("[::1]:8000".parse().expect("an address"))
    );
    assert_eq!(listening_address("starting"), None);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and playwright-core (apt-get install chromium; npm ci)"]
async fn the_ui_shows_chats_dry_runs_reloads_and_broken_reloads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(why) = missing_tools(root) {
        panic!("the browser test needs Chromium and playwright-core: {why}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policy folder");
    std::fs::write(policies.join("00-base.yaml"), BASE).expect("write");
    let team = policies.join("30-team.yaml");
    std::fs::write(&team, TEAM).expect("write");

    let local = FakeProvider::ollama().await;
    local.set_reply([LOCAL_REPLY]);
    let public = FakeProvider::openai().await;
    public.set_reply([PUBLIC_REPLY]);
    let mut providers = local.env_vars();
    providers.extend(public.env_vars());
    let gateway = gateway(dir.path(), &policies, providers).await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("screenshot folder");
    let config = json!({
        "base": gateway.base,
        "chromium": chromium(),
        "screenshots": screenshots,
        "policyFile": team,
        "chats": [
            {"message": "Summarize this confidential memo", "provider": "local", "reply": LOCAL_REPLY},
            {"message": "What is the capital of France?", "provider": "openai", "reply": PUBLIC_REPLY},
        ],
        "marks": [
            {"rule": "sensitive", "texts": ["sensitive · tried first", "1 keyword (substring, strict, all messages)"]},
            {"rule": "secrets", "texts": ["sensitive · tried first", "detect secrets (all messages)"]},
            {"rule": "offline", "texts": ["1 keyword (substring, strict, all messages)", "local → gpu-box then local"], "absent": ["sensitive"]},
        ],
        "decide": {"message": "hello", "rules": ["sensitive", "secrets", "offline"]},
        "edit": {"text": TEAM_EDITED, "ruleId": "greeting"},
        "broken": {"text": TEAM_BROKEN, "line": 5},
    });
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new("node")
            .arg(root.join("tests/ui/browser.mjs"))
            .arg(config.to_string())
            .current_dir(root)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script finishes within 3 minutes")
    .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("every step held"), "{stdout}");
    assert_eq!(local.request_count(), 1, "one chat went to the local model");
    assert_eq!(public.request_count(), 1, "one chat went to the cloud");
    for name in [
        "1-chat-1",
        "2-audit-1",
        "1-chat-2",
        "2-audit-2",
        "3-decide",
        "4-reloaded",
        "5-broken",
        "6-phone",
    ] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(shot.is_file(), "no screenshot {}", shot.display());
    }
    drop(gateway);
}
