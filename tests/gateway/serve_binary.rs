//! Black-box tests of `policy-mesh serve`: the real binary on a random port
//! with a temporary policy folder, driven by signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::fake_providers::FakeProvider;

const DEADLINE: Duration = Duration::from_secs(20);

fn policy(n: usize) -> String {
    format!(
        "version: 1\nrules:\n  - id: rule-{n}\n    when:\n      keywords: [needle-{n}]\n    route: local\n"
    )
}

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_policy-mesh"));
    cmd.arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("POLICY_DIR", dir.join("policies"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    cmd
}

/// A running `policy-mesh serve` and the JSON log lines it prints.
struct Running {
    child: Child,
    logs: mpsc::Receiver<Value>,
    /// The lines `wait_log` read past, in order.
    passed: Vec<Value>,
    addr: String,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn policy-mesh");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            logs,
            passed: Vec::new(),
            addr: String::new(),
        };
        let started = running.wait_log("the start-up line", |l| l["fields"]["address"].is_string());
        running.addr = started["fields"]["address"]
            .as_str()
            .expect("address")
            .to_owned();
        running
    }

    fn wait_log(&mut self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let left = DEADLINE.checked_sub(start.elapsed()).unwrap_or_default();
            match self.logs.recv_timeout(left) {
                Ok(line) if cond(&line) => return line,
                Ok(line) => self.passed.push(line),
                Err(_) => panic!("no log line for {what}"),
            }
        }
    }

    fn routes(&self) -> Value {
        let url = format!("http://{}/v1/routes", self.addr);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            reqwest::get(url)
                .await
                .expect("request")
                .json()
                .await
                .expect("JSON")
        })
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.path().join("policies").join(name), text).expect("write");
    }
    dir
}

#[test]
fn logs_start_up_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = folder_with(&[("a.yaml", &policy(1))]);
    let mut cmd = command(dir.path());
    // The watcher would see the edit within a second; polling once an hour
    // leaves SIGHUP as the only way the edit below can be noticed.
    cmd.env("POLICY_WATCH", "poll")
        .env("POLICY_POLL_INTERVAL_MS", "3600000");
    let mut server = Running::start(cmd);
    let first = server.routes();
    let version = first["version"].as_str().expect("version").to_owned();
    assert_eq!(first["reload"]["status"], "ok");

    std::fs::write(dir.path().join("policies/a.yaml"), policy(2)).expect("write");
    server.signal("HUP");
    let reloaded = server.wait_log("the reload", |l| {
        l["level"] == "INFO"
            && l["fields"]["version"].is_string()
            && l["fields"]["version"] != version.as_str()
    });
    let routes = server.routes();
    assert_eq!(routes["version"], reloaded["fields"]["version"]);
    assert_eq!(routes["rules"][0]["id"], "rule-2");
    assert_eq!(routes["reload"]["successes"], 1);

    // A broken edit: ERROR with the file's line, the old version still serving.
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        "version: 1\nrules:\n  - id: x\n    rout: local\n",
    )
    .expect("write");
    server.signal("HUP");
    let error = server.wait_log("the failed reload", |l| {
        l["level"] == "ERROR"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("a.yaml:"))
    });
    assert!(
        error["fields"]["message"]
            .as_str()
            .expect("message")
            .contains("rout"),
        "{error}"
    );

    server.signal("TERM");
    assert!(server.wait_exit().success());
}

#[test]
fn an_invalid_policy_at_start_up_prints_every_error_and_exits_1() {
    let dir = folder_with(&[
        (
            "a.yaml",
            "version: 1\nrules:\n  - id: Bad Id\n    route: local\n",
        ),
        (
            "b.yaml",
            "version: 1\nrules:\n  - id: ok\n    route: remote\n",
        ),
    ]);
    let output = command(dir.path()).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(stderr.lines().any(|l| l.contains("a.yaml:3:")), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains("b.yaml:4:")), "{stderr}");
}

#[test]
fn invalid_settings_exit_1_naming_the_variable() {
    let dir = folder_with(&[("a.yaml", &policy(1))]);
    for (name, value) in [("BIND_ADDR", "localhost"), ("MAX_BODY_BYTES", "lots")] {
        let output = command(dir.path()).env(name, value).output().expect("runs");
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

/// Where the proxy tests send their prompts: a keyword keeps one local,
/// everything else goes public.
const PROXY_POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: private\n    sensitive: true\n    when:\n      keywords: [nightingale]\n    route: local\n";

/// `POST /v1/chat` with one user message; the provider that answered.
async fn chat_provider(addr: &str, text: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"messages": [{"role": "user", "content": text}]}).to_string())
        .send()
        .await
        .expect("chat");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body["provider"].as_str().expect("provider").to_owned()
}

/// The gateway as a process, so that the proxy variables are in its real
/// environment, between fake providers and a fake proxy. The fake proxy is a
/// fake OpenAI: a request sent through it (in absolute form) is answered by
/// it, and so counted there instead of at the provider.
async fn serve_with_proxy_env(
    extra: &[(&str, String)],
) -> (
    Running,
    FakeProvider,
    FakeProvider,
    FakeProvider,
    tempfile::TempDir,
) {
    let local = FakeProvider::ollama().await;
    let public = FakeProvider::openai().await;
    let proxy = FakeProvider::openai().await;
    let dir = folder_with(&[("p.yaml", PROXY_POLICY)]);
    let mut cmd = command(dir.path());
    for (k, v) in local.env_vars().into_iter().chain(public.env_vars()) {
        cmd.env(k, v);
    }
    cmd.env("PUBLIC_LLM_API_KEY", "sk-proxy-test");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(name, proxy.url());
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let server = tokio::task::block_in_place(|| Running::start(cmd));
    (server, local, public, proxy, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_proxy_carries_nothing_and_a_local_prompt_never_a_proxy() {
    let (server, local, public, proxy, _dir) = serve_with_proxy_env(&[]).await;
    // Logged before the start-up line.
    let notice = server
        .passed
        .iter()
        .find(|l| l["fields"]["variables"].is_string())
        .expect("the ignored proxy notice");
    assert_eq!(notice["level"], "INFO", "{notice}");
    assert_eq!(
        notice["fields"]["variables"],
        "HTTP_PROXY,http_proxy,HTTPS_PROXY,ALL_PROXY,all_proxy"
    );
    // The values (which may hold a password) are not logged.
    assert!(!notice.to_string().contains(&proxy.url()), "{notice}");

    assert_eq!(
        chat_provider(&server.addr, "nightingale plans").await,
        "local"
    );
    assert_eq!(chat_provider(&server.addr, "hello").await, "openai");
    assert_eq!(local.request_count(), 1);
    assert_eq!(public.request_count(), 1);
    assert_eq!(proxy.request_count(), 0, "a request went through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_llm_proxy_carries_the_public_provider_only() {
    let named = FakeProvider::openai().await;
    let (server, local, public, env_proxy, _dir) =
        serve_with_proxy_env(&[("PUBLIC_LLM_PROXY", named.url())]).await;
    assert_eq!(chat_provider(&server.addr, "hello").await, "openai");
    assert_eq!(
        named.request_count(),
        1,
        "the public call skipped PUBLIC_LLM_PROXY"
    );
    assert_eq!(public.request_count(), 0);
    assert_eq!(
        chat_provider(&server.addr, "nightingale plans").await,
        "local"
    );
    assert_eq!(local.request_count(), 1);
    assert_eq!(
        named.request_count(),
        1,
        "the local call went through the proxy"
    );
    assert_eq!(env_proxy.request_count(), 0);
}

/// Whether `cond` holds within [`DEADLINE`], polling.
async fn eventually(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Sends one chat of `prompt` to the gateway at `addr`, without waiting for
/// or checking its answer.
fn send_chat(addr: &str, prompt: String) -> tokio::task::JoinHandle<reqwest::Result<u16>> {
    let url = format!("http://{addr}/v1/chat");
    tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"messages": [{"role": "user", "content": prompt}]}))
            .send()
            .await?;
        Ok(response.status().as_u16())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_under_load_every_prompt_a_provider_received_has_its_audit_row() {
    use sha2::{Digest, Sha256};
    use sqlx::Connection;
    let local = FakeProvider::ollama().await;
    let dir = folder_with(&[("p.yaml", &policy(1))]);
    let start = || {
        let mut cmd = command(dir.path());
        for (k, v) in local.env_vars() {
            cmd.env(k, v);
        }
        tokio::task::block_in_place(|| Running::start(cmd))
    };
    let mut server = start();
    // Load: answered chats, then chats the provider holds when the kill comes.
    let answered: Vec<_> = (0..30)
        .map(|i| send_chat(&server.addr, format!("needle-1 answered {i}")))
        .collect();
    for chat in answered {
        assert_eq!(chat.await.unwrap().unwrap(), 200);
    }
    local.set_mode(crate::support::fake_providers::Mode::Slow);
    let held: Vec<_> = (0..10)
        .map(|i| send_chat(&server.addr, format!("needle-1 in flight {i}")))
        .collect();
    assert!(eventually(|| local.request_count() == 40).await);
    server.signal("KILL");
    assert!(!tokio::task::block_in_place(|| server.wait_exit()).success());
    for chat in held {
        assert!(chat.await.unwrap().is_err(), "the killed gateway answered");
    }
    drop(server);

    // The dead process beat a moment ago; what 60 s of its silence would
    // do, done at once. Then a new process starts and sweeps.
    let db = format!(
        "sqlite://{}",
        dir.path().join("data/policy-mesh.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    sqlx::query("UPDATE audit_instances SET heartbeat_at = '2000-01-01T00:00:00.000Z'")
        .execute(&mut conn)
        .await
        .unwrap();
    let restarted = start();
    // The sweep runs while the audit store opens, before the start-up line.
    let line = restarted
        .passed
        .iter()
        .find(|l| l["fields"]["interrupted"].is_number())
        .expect("a log line on the interrupted events");
    assert_eq!(line["fields"]["interrupted"], 10, "{line}");

    // Every prompt the provider received is accounted for, by its hash.
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for request in local.requests() {
        let prompt = request.json()["messages"][0]["content"]
            .as_str()
            .expect("the prompt")
            .to_owned();
        let hash = hex::encode(Sha256::digest(prompt.as_bytes()));
        let (id, status): (String, String) =
            sqlx::query_as("SELECT request_id, status FROM audit_events WHERE prompt_hash = ?1")
                .bind(&hash)
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no audit row for {prompt:?}"));
        let expected = if prompt.contains("in flight") {
            "interrupted"
        } else {
            "success"
        };
        assert_eq!(status, expected, "{prompt:?}");
        // And the API shows it.
        let event: Value = reqwest::get(format!("http://{}/v1/audit/{id}", restarted.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(event["status"], expected, "{event}");
        *statuses.entry(status).or_default() += 1;
    }
    conn.close().await.unwrap();
    assert_eq!(
        statuses,
        [("interrupted".to_owned(), 10), ("success".to_owned(), 30)]
            .into_iter()
            .collect()
    );
}
