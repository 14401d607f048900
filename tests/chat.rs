//! The chat gateway end to end: `POST /v1/chat` through fake Ollama, OpenAI
//! and Anthropic servers, the audit event behind every answer (SQLite always,
//! PostgreSQL when `TEST_DATABASE_URL` is set), the metrics, bad input, and
//! the guarantees that secrets and prompts never leave where they belong.
//!
//! Servers run in process on `127.0.0.1:0`, except where the logs matter:
//! there the real binary runs with `RUST_LOG=trace` and its output is read.

#![allow(clippy::unwrap_used)]

#[path = "support/fake_providers.rs"]
mod fake_providers;
mod server_common;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_providers::{FakeProvider, Flavor, Mode, closed_port_url};
use policy_mesh::env::Env;
use policy_mesh::server::{self, StartError};
use serde_json::{Value, json};
use server_common::{DEADLINE, TestServer, metric};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Prompts naming the project stay local; everything else goes public.
const POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: sensitive\n    when:\n      keywords: [project-nightingale]\n    route: local\n    reason: sensitive_keyword_match\n";
const SENSITIVE: &str = "what is the status of project-nightingale?";
const PUBLIC_KEY: &str = "sk-test-public-key";
const LOCAL_MODEL: &str = "local-test-model";
const PUBLIC_MODEL: &str = "public-test-model";

/// Where a test's audit events go, with a side door that bypasses the server.
enum Db {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Db {
    /// A fresh database on the `TEST_DATABASE_URL` server; panics when that
    /// variable is unset (the test was asked for by `--ignored`).
    async fn postgres() -> Db {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "TEST_DATABASE_URL is not set \
                 (eval \"$(scripts/ci-postgres.sh)\" starts a throwaway server)"
            ),
        };
        let name = format!("pm_chat_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Db::Postgres {
            admin_url,
            name,
            url: url.to_string(),
        }
    }

    async fn count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM audit_events";
        match self {
            Db::Sqlite(path) => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Db::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    async fn ids(&self) -> HashSet<String> {
        let rows: Vec<String> = match self {
            Db::Sqlite(path) => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query_scalar("SELECT request_id FROM audit_events")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
            Db::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar("SELECT request_id::text FROM audit_events")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
        };
        rows.into_iter().collect()
    }

    async fn drop_database(self) {
        if let Db::Postgres {
            admin_url, name, ..
        } = self
        {
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

/// A gateway in process between a fake Ollama and a fake public provider.
struct Gateway {
    t: TestServer,
    local: FakeProvider,
    public: FakeProvider,
    db: Db,
}

struct Answer {
    status: u16,
    request_id_header: Option<String>,
    body: Value,
}

impl Gateway {
    async fn start(public: Flavor, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_on(public, None, env).await
    }

    /// `postgres`: the database to audit in instead of the default SQLite file.
    async fn start_on(public: Flavor, postgres: Option<Db>, env: &[(&str, &str)]) -> Gateway {
        let local = FakeProvider::ollama().await;
        let public = FakeProvider::start(public).await;
        let mut vars: Vec<(String, String)> = local.env_vars();
        vars.extend(public.env_vars());
        vars.push(("PUBLIC_LLM_API_KEY".into(), PUBLIC_KEY.into()));
        vars.push(("LOCAL_LLM_MODEL".into(), LOCAL_MODEL.into()));
        vars.push(("PUBLIC_LLM_MODEL".into(), PUBLIC_MODEL.into()));
        if let Some(Db::Postgres { url, .. }) = &postgres {
            vars.push(("DATABASE_URL".into(), url.clone()));
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let t = TestServer::start(&[("policy.yaml", POLICY)], &refs).await;
        let db = postgres.unwrap_or_else(|| Db::Sqlite(t.db_path()));
        Gateway {
            t,
            local,
            public,
            db,
        }
    }

    async fn chat_json(&self, body: &Value) -> Answer {
        let response = self
            .t
            .client
            .post(format!("{}/v1/chat", self.t.base))
            .header("X-Request-Id", "chosen-by-the-client")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let request_id_header = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap();
        Answer {
            status,
            request_id_header,
            body,
        }
    }

    async fn chat(&self, prompt: &str) -> Answer {
        self.chat_json(&json!({"messages": [{"role": "user", "content": prompt}]}))
            .await
    }

    async fn audit(&self, id: &str) -> (u16, Value) {
        let response = self.t.get(&format!("/v1/audit/{id}")).await;
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        self.t.metrics().await
    }

    async fn finish(self) {
        self.t.server.shutdown().await.unwrap();
        self.db.drop_database().await;
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn chat_series(text: &str, provider: &str, status: &str) -> f64 {
    metric(
        text,
        &format!("chat_requests_total{{provider=\"{provider}\",status=\"{status}\"}}"),
    )
    .unwrap_or_else(|| panic!("no chat_requests_total series for {provider}/{status}"))
}

fn latency_count(text: &str, provider: &str) -> f64 {
    metric(
        text,
        &format!("chat_request_latency_seconds_count{{provider=\"{provider}\"}}"),
    )
    .unwrap_or_else(|| panic!("no latency series for {provider}"))
}

/// The lines of the families a rejected request must not move.
fn chat_metric_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.starts_with("chat_requests_total")
                || l.starts_with("chat_request_latency_seconds")
                || l.starts_with("policy_decisions_total")
                || l.starts_with("audit_write_failures_total")
        })
        .map(str::to_owned)
        .collect()
}

/// Checks one successful chat through `public` (or the local fake for a
/// sensitive prompt): the answer, the provider's request, the audit event and
/// the metrics.
async fn check_success(public: Flavor, sensitive: bool) {
    let g = Gateway::start(public, &[]).await;
    let (fake, provider, rule, reason) = match (sensitive, public) {
        (true, _) => (
            &g.local,
            "local",
            json!("sensitive"),
            "sensitive_keyword_match",
        ),
        (false, Flavor::OpenAi) => (&g.public, "openai", Value::Null, "default"),
        (false, _) => (&g.public, "anthropic", Value::Null, "default"),
    };
    fake.set_reply(["The answer ", "is 42."]);
    let prompt = if sensitive {
        SENSITIVE
    } else {
        "what is the answer?"
    };
    let body = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt}
    ], "model": null});
    let answer = g.chat_json(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let b = &answer.body;
    let version = g.t.routes().await["version"].clone();
    let id = b["request_id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(answer.request_id_header.as_deref(), Some(id.as_str()));
    assert_eq!(
        *b,
        json!({"request_id": id, "provider": provider, "reason_codes": [reason], "rule": rule,
               "policy_version": version, "content": "The answer is 42.", "error": null})
    );

    let sent = fake.single_request().json();
    assert_eq!(
        sent["model"],
        if sensitive { LOCAL_MODEL } else { PUBLIC_MODEL }
    );
    let other = if sensitive { &g.public } else { &g.local };
    assert_eq!(other.request_count(), 0);

    let (status, event) = g.audit(&id).await;
    assert_eq!(status, 200, "{event}");
    assert!(event["latency_ms"].as_f64().unwrap() >= 0.0, "{event}");
    let created = event["created_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).unwrap();
    let joined = format!("Be brief.\n{prompt}");
    let mut expected = json!({
        "request_id": id, "decision": format!("provider={provider},reason_codes={reason}"),
        "provider": provider, "rule": rule, "reason_codes": [reason],
        "policy_version": version, "status": "success", "failure_category": null,
        "prompt_hash": sha256_hex(&joined),
        "prompt_length": joined.chars().count() - 1,
        "model": if sensitive { LOCAL_MODEL } else { PUBLIC_MODEL },
    });
    expected["latency_ms"] = event["latency_ms"].clone();
    expected["created_at"] = event["created_at"].clone();
    assert_eq!(event, expected);
    assert_eq!(g.db.count().await, 1);

    let text = g.metrics().await;
    assert_eq!(chat_series(&text, provider, "success"), 1.0);
    assert_eq!(chat_series(&text, provider, "failure"), 0.0);
    assert_eq!(latency_count(&text, provider), 1.0);
    let rule_label = rule.as_str().unwrap_or("");
    assert_eq!(
        metric(
            &text,
            &format!("policy_decisions_total{{reason=\"{reason}\",rule=\"{rule_label}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(0.0));

    // A model named in the request is the one sent and audited.
    let answer = g
        .chat_json(
            &json!({"messages": [{"role": "user", "content": prompt}], "model": "chosen-model"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(fake.requests()[1].json()["model"], "chosen-model");
    let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
    assert_eq!(event["model"], "chosen-model");
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_chat_is_answered_by_the_local_model() {
    check_success(Flavor::OpenAi, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_chat_is_answered_by_openai() {
    check_success(Flavor::OpenAi, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_chat_is_answered_by_anthropic() {
    check_success(Flavor::Anthropic, false).await;
}

/// Sends one chat whose provider fails as `mode` makes it, and checks the
/// answer, the audit event and that the failure was counted.
async fn check_failure(g: &Gateway, fake: &FakeProvider, mode: Mode, category: &str, http: u16) {
    let provider = if std::ptr::eq(fake, &g.local) {
        "local"
    } else {
        "openai"
    };
    let before = chat_series(&g.metrics().await, provider, "failure");
    fake.set_mode(mode.clone());
    let prompt = if provider == "local" {
        SENSITIVE
    } else {
        "hello"
    };
    let answer = g.chat(prompt).await;
    assert_eq!(answer.status, http, "{mode:?}: {}", answer.body);
    let b = &answer.body;
    assert_eq!(b["content"], Value::Null, "{mode:?}");
    assert_eq!(b["provider"], provider);
    let error = b["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{category}: ")),
        "{mode:?}: {error}"
    );
    // The fake's error bodies quote the key they received: never relayed.
    assert!(!b.to_string().contains(PUBLIC_KEY), "{b}");
    let id = b["request_id"].as_str().unwrap();
    assert_eq!(answer.request_id_header.as_deref(), Some(id));

    let (status, event) = g.audit(id).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "failure", "{mode:?}");
    assert_eq!(event["failure_category"], category, "{mode:?}");
    assert_eq!(event["provider"], provider);
    let text = g.metrics().await;
    assert_eq!(
        chat_series(&text, provider, "failure"),
        before + 1.0,
        "{mode:?}"
    );
    assert_eq!(chat_series(&text, provider, "success"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_failure_is_answered_audited_and_counted() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    for (mode, category) in [
        (Mode::Status(401), "auth_error"),
        (Mode::Status(403), "auth_error"),
        (Mode::Status(429), "client_error"),
        (Mode::Status(500), "server_error"),
        (Mode::Garbage, "bad_response"),
        (Mode::MissingReply, "bad_response"),
        (Mode::Close, "connect_error"),
    ] {
        check_failure(&g, &g.public, mode, category, 502).await;
    }
    let calls = g.public.request_count();
    assert_eq!(calls, 7, "one call per chat, no retry");
    assert_eq!(g.db.count().await, 7);
    assert_eq!(g.local.request_count(), 0, "never a fallback");
    g.finish().await;

    let g = Gateway::start(Flavor::OpenAi, &[("PROVIDER_TIMEOUT_SECONDS", "1")]).await;
    check_failure(&g, &g.public, Mode::Slow, "timeout", 504).await;
    check_failure(&g, &g.local, Mode::Status(500), "server_error", 502).await;
    g.finish().await;

    // No key: auth_error without a request.
    let g = Gateway::start(Flavor::OpenAi, &[("PUBLIC_LLM_API_KEY", "")]).await;
    let answer = g.chat("hello").await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .starts_with("auth_error: "),
        "{}",
        answer.body
    );
    assert_eq!(g.public.request_count(), 0);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_prompt_never_reaches_the_public_provider_when_local_is_down() {
    let down = closed_port_url().await;
    let g = Gateway::start(Flavor::OpenAi, &[("LOCAL_LLM_URL", down.as_str())]).await;
    for _ in 0..3 {
        let answer = g.chat(SENSITIVE).await;
        assert_eq!(answer.status, 502, "{}", answer.body);
        assert_eq!(answer.body["provider"], "local");
        assert_eq!(answer.body["rule"], "sensitive");
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .starts_with("connect_error: "),
            "{}",
            answer.body
        );
        let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
        assert_eq!(event["failure_category"], "connect_error");
    }
    assert_eq!(g.public.request_count(), 0);
    assert_eq!(g.public.connection_count(), 0);
    let text = g.metrics().await;
    assert_eq!(chat_series(&text, "local", "failure"), 3.0);
    assert_eq!(chat_series(&text, "openai", "success"), 0.0);
    assert_eq!(chat_series(&text, "openai", "failure"), 0.0);
    g.finish().await;
}

async fn post_raw(g: &Gateway, body: Vec<u8>) -> (u16, Value) {
    let response =
        g.t.client
            .post(format!("{}/v1/chat", g.t.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Posts `body` over a raw connection, with `Content-Length` or chunked, and
/// returns the status and the JSON body of the answer.
///
/// A server refusing a large body answers before reading it and closes the
/// connection; an HTTP client still writing the body may then see the reset
/// before the answer. Reading while a separate task writes gets the answer.
async fn raw_post(addr: &str, path: &str, body: Vec<u8>, chunked: bool) -> (u16, Value, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
    );
    let shown = format!("{path}, {} bytes, chunked: {chunked}", body.len());
    let writing = tokio::spawn(async move {
        let mut send = async || -> std::io::Result<()> {
            writer.write_all(head.as_bytes()).await?;
            if chunked {
                for chunk in body.chunks(1000) {
                    writer
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    writer.write_all(chunk).await?;
                    writer.write_all(b"\r\n").await?;
                }
                writer.write_all(b"0\r\n\r\n").await
            } else {
                writer.write_all(&body).await
            }
        };
        // The server may refuse the rest of the body: a write error is fine.
        let _ = send().await;
        // Dropping the write half would half-close the connection, which the
        // server may take for the client going away: keep it until the end.
        writer
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    // Until the server closes (or resets) the connection.
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                eprintln!("read error {e} after {} bytes ({shown})", answer.len());
                break;
            }
        }
    }
    drop(writing.await.unwrap());
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?} ({shown})"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json, text)
}

fn assert_error_shape(status: u16, body: &Value, expected: u16, kind: &str, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(body["error"]["type"], kind, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_rejected_before_any_provider_audit_or_metric() {
    let g = Gateway::start(Flavor::OpenAi, &[("MAX_BODY_BYTES", "4096")]).await;
    let metrics_before = chat_metric_lines(&g.metrics().await);
    assert!(!metrics_before.is_empty());

    let deep = format!(
        r#"{{"messages":[{{"role":"user","content":"x"}}],"x":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"messages\": [".to_vec(),
            400,
            "invalid_json",
        ),
        ("empty body", Vec::new(), 400, "invalid_json"),
        (
            "invalid UTF-8",
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "lone surrogate",
            br#"{"messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
            400,
            "invalid_json",
        ),
        ("deep nesting", deep.into_bytes(), 400, "invalid_json"),
        ("not an object", b"[1]".to_vec(), 422, "invalid_request"),
        (
            "messages not a list",
            br#"{"messages":"hi"}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "empty messages",
            br#"{"messages":[]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "unknown role",
            br#"{"messages":[{"role":"tool","content":"a"}]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "content not a string",
            br#"{"messages":[{"role":"user","content":5}]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "model not a string",
            br#"{"messages":[{"role":"user","content":"a"}],"model":3}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "over MAX_BODY_BYTES",
            format!(
                r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
                "a".repeat(5000)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "100 000 tiny messages",
            format!(
                r#"{{"messages":[{}]}}"#,
                vec![r#"{"role":"user","content":""}"#; 100_000].join(",")
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    let addr = g.t.server.addr().to_string();
    for (what, body, status, kind) in cases {
        // Each with Content-Length, then chunked (no Content-Length).
        for chunked in [false, true] {
            let (got, json, text) = raw_post(&addr, "/v1/chat", body.clone(), chunked).await;
            let what = format!("{what} (chunked: {chunked}): {text}");
            assert_error_shape(got, &json, status, kind, &what);
            assert_eq!(g.t.get("/v1/health").await.status(), 200, "after {what}");
        }
    }
    // The same through an HTTP client, for a body small enough to be sent whole.
    let (status, json) = post_raw(&g, br#"{"messages":[]}"#.to_vec()).await;
    assert_error_shape(status, &json, 422, "invalid_request", "reqwest");

    assert_eq!(g.public.request_count(), 0);
    assert_eq!(g.local.request_count(), 0);
    assert_eq!(g.db.count().await, 0);
    assert_eq!(chat_metric_lines(&g.metrics().await), metrics_before);
    assert_eq!(g.t.get("/v1/health").await.status(), 200);
    // And the gateway still chats.
    assert_eq!(g.chat("hello").await.status, 200);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_tiny_messages_within_the_limit_are_served() {
    let g = Gateway::start(Flavor::OpenAi, &[("MAX_BODY_BYTES", "8388608")]).await;
    let messages = vec![json!({"role": "user", "content": "x"}); 100_000];
    let answer = g.chat_json(&json!({ "messages": messages })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = g.public.single_request().json();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 100_000);
    let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
    assert_eq!(event["prompt_length"], 100_000);
    assert_eq!(g.t.get("/v1/health").await.status(), 200);
    g.finish().await;
}

async fn check_concurrent(g: &Gateway) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = g.t.client.clone();
        let url = format!("{}/v1/chat", g.t.base);
        let prompt = if i % 2 == 0 {
            format!("{SENSITIVE} {i}")
        } else {
            format!("question {i}")
        };
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["request_id"].as_str().unwrap().to_owned()
        });
    }
    let mut ids = HashSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(g.db.count().await, 200);
    assert_eq!(g.db.ids().await, ids);
    let text = g.metrics().await;
    assert_eq!(chat_series(&text, "local", "success"), 100.0);
    assert_eq!(chat_series(&text, "openai", "success"), 100.0);
    assert_eq!(g.local.request_count() + g.public.request_count(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_chats_make_two_hundred_audit_events() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    check_concurrent(&g).await;
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_audit_off_nothing_is_written_and_events_are_not_found() {
    let g = Gateway::start(Flavor::OpenAi, &[("AUDIT_ENABLED", "false")]).await;
    let answer = g.chat("hello").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap();
    let (status, body) = g.audit(id).await;
    assert_error_shape(status, &body, 404, "not_found", "audit off");
    assert!(!g.t.db_path().exists());
    assert_eq!(std::fs::read_dir(g.t.data.path()).unwrap().count(), 0);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_audit_ids_are_not_found() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    for id in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        "%FF".to_owned(),
    ] {
        let (status, body) = g.audit(&id).await;
        assert_error_shape(status, &body, 404, "not_found", &id);
    }
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_audit_write_leaves_the_answer_unchanged_and_is_counted() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    assert_eq!(
        metric(&g.metrics().await, "audit_write_failures_total"),
        Some(0.0)
    );
    assert_eq!(g.chat("first").await.status, 200);
    let Db::Sqlite(path) = &g.db else {
        unreachable!()
    };
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE audit_events")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    g.public.set_reply(["still here"]);
    let answer = g.chat("second").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["content"], "still here");
    assert_eq!(answer.body["error"], Value::Null);
    let text = g.metrics().await;
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(1.0));
    assert_eq!(chat_series(&text, "openai", "success"), 2.0);
    g.finish().await;
}

async fn start_error(env: &[(&str, &str)]) -> StartError {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let folder = dir.path().to_str().unwrap().to_owned();
    let mut pairs = vec![
        ("BIND_ADDR", "127.0.0.1:0"),
        ("POLICY_DIR", folder.as_str()),
    ];
    pairs.extend_from_slice(env);
    server::start(&Env::from_pairs(pairs))
        .await
        .expect_err("start-up fails")
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_fails_on_bad_provider_or_audit_settings() {
    for (name, value) in [
        ("PROVIDER_TIMEOUT_SECONDS", "soon"),
        ("LOCAL_LLM_URL", "not a url"),
        ("AUDIT_ENABLED", "maybe"),
        ("DATABASE_URL", "mysql://db/audit"),
    ] {
        let err = start_error(&[(name, value)]).await;
        assert!(err.to_string().starts_with(name), "{name}: {err}");
    }
    // A folder that cannot be made: its parent is a file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let url = format!("sqlite://{}/file/sub/audit.db", dir.path().display());
    let err = start_error(&[("DATABASE_URL", url.as_str())]).await;
    assert!(matches!(err, StartError::Audit(_)), "{err}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    // A database that does not answer: named without its password.
    let down = closed_port_url().await.replace("http://", "");
    let url = format!("postgres://audit:pw-canary-5150@{down}/audit");
    let err = start_error(&[("DATABASE_URL", url.as_str())]).await;
    let text = err.to_string();
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(!text.contains("pw-canary-5150"), "{text}");
    assert!(!format!("{err:?}").contains("pw-canary-5150"), "{err:?}");
}

// --- The real binary: logs, secrets and the database file ----------------

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
    let mut env: Vec<(String, String)> = local.env_vars();
    env.extend(public.env_vars());
    env.push(("PUBLIC_LLM_API_KEY".into(), canaries[0].into()));
    env.push(("LOCAL_LLM_API_KEY".into(), canaries[1].into()));
    env.push(("AUDIT_HASH_KEY".into(), canaries[2].into()));
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

#[test]
fn a_bad_database_url_exits_1_naming_the_variable_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    for url in [
        "sqlite://file/sub/audit.db".to_owned(),
        "postgres://u:pw-canary-8080@[::1/x".to_owned(),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_policy-mesh"))
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("POLICY_DIR", dir.path().join("policies"))
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("DATABASE_URL"), "{url}: {stderr}");
        assert!(!stderr.contains("pw-canary-8080"), "{stderr}");
    }
}

// --- PostgreSQL ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn on_postgres_successes_and_failures_are_audited() {
    let db = Db::postgres().await;
    let g = Gateway::start_on(Flavor::OpenAi, Some(db), &[]).await;
    let answer = g.chat(SENSITIVE).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap();
    let (status, event) = g.audit(id).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "success");
    assert_eq!(event["rule"], "sensitive");
    assert_eq!(event["prompt_hash"], sha256_hex(SENSITIVE));
    assert_eq!(event["model"], LOCAL_MODEL);
    check_failure(&g, &g.public, Mode::Status(503), "server_error", 502).await;
    assert_eq!(g.db.count().await, 2);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn on_postgres_two_hundred_concurrent_chats_make_two_hundred_events() {
    let db = Db::postgres().await;
    let g = Gateway::start_on(Flavor::OpenAi, Some(db), &[]).await;
    check_concurrent(&g).await;
    g.finish().await;
}
