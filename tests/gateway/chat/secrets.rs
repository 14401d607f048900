//! The real binary: secrets and prompts stay out of answers, logs and the
//! database files.

use super::*;

/// `policy-mesh serve` with its output collected.
struct Binary {
    child: Child,
    output: Arc<Mutex<String>>,
    base: String,
}

impl Binary {
    fn start(dir: &Path, env: &[(String, String)]) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_policy-mesh"));
        cmd.arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("POLICY_DIR", dir.join("policies"))
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "trace")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut binary = Binary {
            child,
            output,
            base: String::new(),
        };
        let start = Instant::now();
        let addr = loop {
            let found = binary.output.lock().unwrap().lines().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                v["fields"]["address"].as_str().map(str::to_owned)
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Some(status) = binary.child.try_wait().unwrap() {
                panic!(
                    "policy-mesh exited with {status}: {}",
                    binary.output.lock().unwrap()
                );
            }
            assert!(start.elapsed() < DEADLINE, "no start-up line");
            std::thread::sleep(Duration::from_millis(10));
        };
        binary.base = format!("http://{addr}");
        binary
    }

    /// Stops it with SIGTERM and returns everything it printed.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(start.elapsed() < DEADLINE, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The pipes close at exit; wait until the readers have drained them.
        let start = Instant::now();
        while Arc::strong_count(&self.output) > 1 && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything an endpoint answered: status line, headers and body.
async fn capture(response: reqwest::Response, seen: &mut String) -> Value {
    seen.push_str(&format!("{}\n", response.status()));
    for (name, value) in response.headers() {
        seen.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
    }
    let text = response.text().await.unwrap();
    seen.push_str(&text);
    seen.push('\n');
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Runs the binary with canary secrets, drives every endpoint (successes,
/// provider failures, API errors), and checks that no canary appears in any
/// answer or log line, and that neither the prompt nor the reply appears in
/// the logs or (for SQLite) the database files.
async fn check_secrets_and_prompts(postgres: Option<Db>) {
    let canaries = [
        "canary-public-7f3a9",
        "canary-local-2b8c4",
        "canary-hashkey-9d1e6",
        "canary-dbpass-4a7f2",
        "canary-extra-6c2d1",
    ];
    let prompt = "unique-prompt-5e2d71 about project-nightingale";
    let public_prompt = "unique-public-prompt-8c1f03";
    let reply = "unique-reply-3b9a40";
    let local = FakeProvider::ollama().await;
    let public = FakeProvider::openai().await;
    local.set_reply([reply]);
    public.set_reply([reply]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    // A provider of the policy, with its key in a variable it names and a
    // password in its URL: neither is logged.
    std::fs::write(
        dir.path().join("policies/q.yaml"),
        format!(
            "version: 1\nproviders:\n  - id: extra-box\n    api: openai\n    url: http://me:{}@127.0.0.1:9/v1\n    trust: public\n    model: extra-model\n    api_key_env: EXTRA_BOX_KEY\n",
            canaries[3]
        ),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = local.env_vars();
    env.extend(public.env_vars());
    env.push(("PUBLIC_LLM_API_KEY".into(), canaries[0].into()));
    env.push(("LOCAL_LLM_API_KEY".into(), canaries[1].into()));
    env.push(("AUDIT_HASH_KEY".into(), canaries[2].into()));
    env.push(("EXTRA_BOX_KEY".into(), canaries[4].into()));
    let database_url = match &postgres {
        Some(Db::Postgres { url, .. }) => {
            // Trust authentication: the password is sent but not needed.
            let mut with_password = url::Url::parse(url).unwrap();
            if with_password.username().is_empty() {
                with_password.set_username("postgres").unwrap();
            }
            with_password.set_password(Some(canaries[3])).unwrap();
            with_password.to_string()
        }
        _ => "sqlite://data/audit.db".to_owned(),
    };
    env.push(("DATABASE_URL".into(), database_url));
    let binary = Binary::start(dir.path(), &env);
    let client = reqwest::Client::new();
    let base = binary.base.clone();
    let mut seen = String::new();
    let mut ids = Vec::new();

    let chat = |text: &str| {
        client
            .post(format!("{base}/v1/chat"))
            .json(&json!({"messages": [{"role": "user", "content": text}]}))
            .send()
    };
    // Successes on both routes, then failures whose upstream bodies quote the key.
    for (fake, text, mode) in [
        (&local, prompt, Mode::Normal),
        (&public, public_prompt, Mode::Normal),
        (&local, prompt, Mode::Status(401)),
        (&public, public_prompt, Mode::Status(401)),
        (&public, public_prompt, Mode::Status(500)),
    ] {
        fake.set_mode(mode);
        let body = capture(chat(text).await.unwrap(), &mut seen).await;
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    // The canaries were live: the fakes received the keys.
    assert_eq!(
        local.requests()[0].header("authorization"),
        Some(format!("Bearer {}", canaries[1]).as_str())
    );
    assert_eq!(
        public.requests()[0].header("authorization"),
        Some(format!("Bearer {}", canaries[0]).as_str())
    );
    for id in &ids {
        let event = capture(
            client
                .get(format!("{base}/v1/audit/{id}"))
                .send()
                .await
                .unwrap(),
            &mut seen,
        )
        .await;
        assert_eq!(event["request_id"], id.as_str());
    }
    for path in [
        "/v1/routes",
        "/v1/metrics",
        "/v1/health",
        "/v1/nope",
        "/v1/audit/x",
    ] {
        capture(
            client.get(format!("{base}{path}")).send().await.unwrap(),
            &mut seen,
        )
        .await;
    }
    for body in [
        json!({"messages": [{"role": "user", "content": prompt}]}).to_string(),
        "{".to_owned(),
        r#"{"messages":[]}"#.to_owned(),
        format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "a".repeat(2_000_000)
        ),
    ] {
        for path in ["/v1/decide", "/v1/chat"] {
            let addr = base.trim_start_matches("http://");
            let (_, answer, text) = raw_post(addr, path, body.clone().into_bytes(), false).await;
            seen.push_str(&text);
            // The valid body is a chat too, with its own event.
            if let Some(id) = answer["request_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    capture(
        client.get(format!("{base}/v1/chat")).send().await.unwrap(),
        &mut seen,
    )
    .await;
    let logs = binary.stop();

    assert!(seen.contains("payload_too_large"), "the error paths ran");
    for canary in canaries {
        assert!(!seen.contains(canary), "{canary} in a response");
        assert!(!logs.contains(canary), "{canary} in the logs");
    }
    for text in [prompt, public_prompt, reply] {
        assert!(!logs.contains(text), "{text:?} in the logs");
    }
    // The logs were captured: one line per chat, with its request id.
    for id in &ids {
        assert!(logs.contains(id.as_str()), "no log line for {id}");
    }
    assert!(logs.contains("TRACE") || logs.contains("\"level\":\"TRACE\""));
    // The start-up lists every provider: id, api, trust, URL without user
    // info, model and whether a key is set.
    let listed: Vec<(String, String, String, bool)> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "provider")
        .map(|v| {
            let f = &v["fields"];
            (
                f["provider"].as_str().unwrap_or("").to_owned(),
                f["trust"].as_str().unwrap_or("").to_owned(),
                f["url"].as_str().unwrap_or("").to_owned(),
                f["key_set"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("local".to_owned(), "local".to_owned(), local.url(), true),
            ("openai".to_owned(), "public".to_owned(), public.url(), true),
            (
                "extra-box".to_owned(),
                "public".to_owned(),
                "http://127.0.0.1:9".to_owned(),
                true
            ),
        ],
        "{logs}"
    );

    if postgres.is_none() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("data/audit.db{suffix}"));
            if let Ok(b) = std::fs::read(&file) {
                bytes.extend(b);
            }
        }
        let haystack = String::from_utf8_lossy(&bytes);
        for id in &ids {
            assert!(
                haystack.contains(id.as_str()),
                "{id} is not in the database"
            );
        }
        for text in [prompt, public_prompt, reply].into_iter().chain(canaries) {
            assert!(!haystack.contains(text), "{text:?} in the database files");
        }
    }
    if let Some(db) = postgres {
        assert_eq!(db.count().await, ids.len() as i64);
        db.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_prompts_stay_out_of_answers_logs_and_the_sqlite_file() {
    check_secrets_and_prompts(None).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn secrets_stay_out_of_answers_and_logs_on_postgres() {
    let db = Db::postgres().await;
    check_secrets_and_prompts(Some(db)).await;
}
