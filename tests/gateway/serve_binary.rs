//! Black-box tests of `policy-mesh serve`: the real binary on a random port
//! with a temporary policy folder, driven by signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

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
                Ok(_) => {}
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
