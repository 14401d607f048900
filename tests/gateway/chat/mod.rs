//! The chat gateway end to end: `POST /v1/chat` through fake Ollama, OpenAI
//! and Anthropic servers, the audit event behind every answer (SQLite always,
//! PostgreSQL when `TEST_DATABASE_URL` is set), the metrics, bad input, and
//! the guarantees that secrets and prompts never leave where they belong.
//!
//! Servers run in process on `127.0.0.1:0`, except where the logs matter:
//! there the real binary runs with `RUST_LOG=trace` and its output is read.
//!
//! One module per concern: which provider answers ([`routing`]), how a
//! failing provider is answered ([`failures`]), bad input ([`input`]), the
//! audit trail ([`auditing`]), start-up errors ([`start_up`]) and secrets in
//! answers, logs and files ([`secrets`]). The gateway fixture is here.

mod auditing;
mod failures;
mod input;
mod routing;
mod secrets;
mod start_up;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fake_providers::{FakeProvider, Flavor, Mode, closed_port_url};
use crate::support::server::{DEADLINE, TestServer, metric};
use policy_mesh::env::Env;
use policy_mesh::server::{self, StartError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Prompts naming the project stay local; everything else goes public.
const POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: sensitive\n    sensitive: true\n    when:\n      keywords: [project-nightingale]\n    route: local\n    reason: sensitive_keyword_match\n";
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
        &format!("chat_requests_total{{client=\"anonymous\",provider=\"{provider}\",status=\"{status}\"}}"),
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
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
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
