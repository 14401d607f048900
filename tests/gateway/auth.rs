//! Client keys on the wire: every endpoint × {no key, unknown key, a key of
//! each scope}, in each API's error shape; what is open; that a refused
//! request reaches no provider; that a key never shows in an answer, a
//! metric or what a provider receives; that a key rotated in the file takes
//! effect without a restart; and that an open gateway will not listen
//! beyond loopback unless told to.

use std::time::Duration;

use policy_mesh::clients::{key_sha256, new_key};
use policy_mesh::env::Env;
use policy_mesh::server::{self, StartError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_providers::FakeProvider;
use crate::support::server::{DEADLINE, TestServer, metric};

const POLICY: &str = "version: 1\ndefaults:\n  provider: public\n";

struct Keys {
    chat: String,
    admin: String,
    metrics: String,
}

/// A gateway with a clients file of three clients, between two fakes.
struct Secured {
    server: TestServer,
    keys: Keys,
    clients: std::path::PathBuf,
    local: FakeProvider,
    public: FakeProvider,
    _folder: tempfile::TempDir,
}

fn clients_file(keys: &Keys) -> String {
    format!(
        "clients:\n  - id: team-search\n    key_sha256: {}\n  - id: ops\n    key_sha256: {}\n    scopes: [admin]\n  - id: prometheus\n    key_sha256: {}\n    scopes: [metrics]\n",
        key_sha256(&keys.chat),
        key_sha256(&keys.admin).to_uppercase(),
        key_sha256(&keys.metrics)
    )
}

impl Secured {
    async fn start() -> Secured {
        Self::start_with(POLICY).await
    }

    async fn start_with(policy: &str) -> Secured {
        let keys = Keys {
            chat: new_key().unwrap(),
            admin: new_key().unwrap(),
            metrics: new_key().unwrap(),
        };
        let folder = tempfile::tempdir().unwrap();
        let clients = folder.path().join("clients.yaml");
        std::fs::write(&clients, clients_file(&keys)).unwrap();
        let local = FakeProvider::ollama().await;
        let public = FakeProvider::openai().await;
        let mut vars = local.env_vars();
        vars.extend(public.env_vars());
        vars.push(("PUBLIC_LLM_API_KEY".into(), "sk-upstream-test".into()));
        vars.push(("CLIENTS_FILE".into(), clients.display().to_string()));
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = TestServer::start(&[("p.yaml", policy)], &pairs).await;
        Secured {
            server,
            keys,
            clients,
            local,
            public,
            _folder: folder,
        }
    }

    /// Sends `method path` with `body` and the key in `how` (`bearer`,
    /// `x-api-key`), or none.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut request = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        match key {
            Some(("bearer", key)) => request = request.bearer_auth(key),
            Some((_, key)) => request = request.header("x-api-key", key),
            None => {}
        }
        request.send().await.unwrap()
    }
}

fn chat_body() -> Value {
    json!({"messages": [{"role": "user", "content": "hello"}]})
}

fn completion_body() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
}

fn messages_body() -> Value {
    json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]})
}

/// Which error shape a path answers in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Ours,
    OpenAi,
    Anthropic,
}

/// The `type` of an error body in `shape`.
fn error_type(shape: Shape, body: &Value) -> Value {
    match shape {
        Shape::Ours | Shape::OpenAi => body["error"]["type"].clone(),
        Shape::Anthropic => {
            assert_eq!(body["type"], "error", "{body}");
            body["error"]["type"].clone()
        }
    }
}

#[tokio::test]
async fn every_endpoint_needs_a_key_with_its_scope_in_its_apis_shape() {
    let s = Secured::start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let audit_path = format!("/v1/audit/{id}");
    let endpoints: Vec<(Method, &str, Option<Value>, &str, Shape)> = vec![
        (
            Method::POST,
            "/v1/chat",
            Some(chat_body()),
            "chat",
            Shape::Ours,
        ),
        (
            Method::POST,
            "/v1/chat/completions",
            Some(completion_body()),
            "chat",
            Shape::OpenAi,
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(messages_body()),
            "chat",
            Shape::Anthropic,
        ),
        (Method::GET, "/v1/models", None, "chat", Shape::OpenAi),
        (
            Method::GET,
            "/v1/models/policy-mesh",
            None,
            "chat",
            Shape::OpenAi,
        ),
        (
            Method::POST,
            "/v1/decide",
            Some(chat_body()),
            "chat",
            Shape::Ours,
        ),
        (Method::GET, "/v1/routes", None, "admin", Shape::Ours),
        (Method::GET, &audit_path, None, "admin", Shape::Ours),
        (Method::GET, "/v1/metrics", None, "metrics", Shape::Ours),
    ];
    let mut seen = String::new();
    for (method, path, body, scope, shape) in &endpoints {
        // No key, an unknown key: 401 and no provider called.
        let unknown = new_key().unwrap();
        for key in [
            None,
            Some(("bearer", unknown.as_str())),
            Some(("x-api-key", unknown.as_str())),
        ] {
            let r = s.call(method.clone(), path, body.as_ref(), key).await;
            assert_eq!(r.status(), 401, "{method} {path} {key:?}");
            assert_eq!(
                r.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{path}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                error_type(*shape, &body),
                "authentication_error",
                "{path}: {body}"
            );
            seen.push_str(&body.to_string());
        }
        // Each key: its scope or a 403.
        for (client, key, scopes) in [
            ("team-search", &s.keys.chat, &["chat"][..]),
            ("ops", &s.keys.admin, &["chat", "admin", "metrics"][..]),
            ("prometheus", &s.keys.metrics, &["metrics"][..]),
        ] {
            let r = s
                .call(method.clone(), path, body.as_ref(), Some(("bearer", key)))
                .await;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            seen.push_str(&text);
            if scopes.contains(scope) {
                assert!(
                    status != 401 && status != 403,
                    "{client} on {path}: {status} {text}"
                );
            } else {
                assert_eq!(status, 403, "{client} on {path}: {text}");
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    error_type(*shape, &body),
                    "permission_error",
                    "{path}: {body}"
                );
                assert!(text.contains(client), "{text}");
            }
        }
    }
    // Only the admitted chats reached a provider: one per chat endpoint,
    // from the chat key and the admin key.
    assert_eq!(s.public.request_count(), 6);
    assert_eq!(s.local.request_count(), 0);
    // A provider gets the gateway's own key, never the client's.
    for request in s.public.requests() {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer sk-upstream-test")
        );
        assert_eq!(request.header("x-api-key"), None);
    }
    let metrics = s
        .call(
            Method::GET,
            "/v1/metrics",
            None,
            Some(("x-api-key", &s.keys.metrics)),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "auth_failures_total{reason=\"missing\"}"),
        Some(9.0)
    );
    assert_eq!(
        metric(&metrics, "auth_failures_total{reason=\"unknown\"}"),
        Some(18.0)
    );
    assert!(metric(&metrics, "auth_failures_total{reason=\"scope\"}").unwrap_or(0.0) >= 10.0);
    seen.push_str(&metrics);
    for key in [&s.keys.chat, &s.keys.admin, &s.keys.metrics] {
        assert!(!seen.contains(key.as_str()), "a key in an answer");
        assert!(!seen.contains(&key_sha256(key)), "a digest in an answer");
    }
}

#[tokio::test]
async fn open_paths_routing_errors_and_bodies_come_before_or_without_the_key() {
    let s = Secured::start().await;
    for path in [
        "/v1/health",
        "/v1/ready",
        "/",
        "/ui",
        "/ui/app.js",
        "/openapi.json",
    ] {
        let r = s.call(Method::GET, path, None, None).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(
        s.call(Method::GET, "/v1/nope", None, None).await.status(),
        404
    );
    assert_eq!(
        s.call(Method::DELETE, "/v1/chat", None, None)
            .await
            .status(),
        405
    );
    // A malformed body without a key: the key is checked first.
    let r = s
        .server
        .client
        .post(format!("{}/v1/chat", s.server.base))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // With the key, the body is read: 400.
    let r = s
        .server
        .client
        .post(format!("{}/v1/chat", s.server.base))
        .bearer_auth(&s.keys.chat)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let routes: Value = s
        .call(
            Method::GET,
            "/v1/routes",
            None,
            Some(("bearer", &s.keys.admin)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(routes["auth"], "on");
    assert_eq!(routes["clients"]["count"], 3);
    assert_eq!(routes["clients"]["reload"]["status"], "ok");
    assert!(!routes.to_string().contains(&key_sha256(&s.keys.chat)));
}

#[tokio::test]
async fn a_key_rotated_in_the_file_takes_effect_without_a_restart() {
    let s = Secured::start().await;
    let chat = |key: String| {
        let client = s.server.client.clone();
        let url = format!("{}/v1/chat", s.server.base);
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&chat_body())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(chat(s.keys.chat.clone()).await, 200);
    let rotated = new_key().unwrap();
    let keys = Keys {
        chat: rotated.clone(),
        admin: s.keys.admin.clone(),
        metrics: s.keys.metrics.clone(),
    };
    std::fs::write(&s.clients, clients_file(&keys)).unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while chat(rotated.clone()).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was never admitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        chat(s.keys.chat.clone()).await,
        401,
        "the old key still works"
    );
    // A broken file keeps the last good one, and says so.
    std::fs::write(&s.clients, "clients:\n  - id: Broken\n").unwrap();
    let admin = s.keys.admin.clone();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let routes: Value = s
            .call(Method::GET, "/v1/routes", None, Some(("bearer", &admin)))
            .await
            .json()
            .await
            .unwrap();
        if routes["clients"]["reload"]["status"] == "error" {
            let error = routes["clients"]["reload"]["last_error"].as_str().unwrap();
            assert!(error.contains("clients.yaml:2:"), "{error}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broken file was not reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat(rotated).await, 200, "the last good file keeps serving");
}

#[tokio::test]
async fn an_open_gateway_listens_beyond_loopback_only_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("a.db").display());
    let folder = dir.path().display().to_string();
    let env = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("BIND_ADDR", "0.0.0.0:0"),
            ("POLICY_DIR", folder.as_str()),
            ("DATABASE_URL", database.as_str()),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    };
    match server::start(&env(&[])).await {
        Err(e @ StartError::Unauthenticated { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("BIND_ADDR") && text.contains("CLIENTS_FILE"),
                "{text}"
            );
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("an open gateway listened on 0.0.0.0"),
    }
    let open = server::start(&env(&[("ALLOW_UNAUTHENTICATED", "true")]))
        .await
        .expect("starts when told to");
    open.shutdown().await.unwrap();
    let missing = data.path().join("nope.yaml").display().to_string();
    match server::start(&env(&[("CLIENTS_FILE", missing.as_str())])).await {
        Err(StartError::Clients(errors)) => {
            assert!(
                errors.to_string().contains("cannot read the clients file"),
                "{errors}"
            );
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("started without its clients file"),
    }
}

#[tokio::test]
async fn a_rule_may_route_by_the_calling_client() {
    let policy = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: team-stays-local\n    when: { client: ['team-*'] }\n    route: local\n";
    let s = Secured::start_with(policy).await;
    let r = s
        .call(
            Method::POST,
            "/v1/chat",
            Some(&chat_body()),
            Some(("bearer", &s.keys.chat)),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["provider"], "local");
    assert_eq!(body["rule"], "team-stays-local");
    let id = body["request_id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(&completion_body()),
            Some(("x-api-key", &s.keys.admin)),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-policy-mesh-client"], "ops");
    assert_eq!(r.headers()["x-policy-mesh-provider"], "openai");
    assert_eq!(s.local.request_count(), 1);
    assert_eq!(s.public.request_count(), 1);
    // The audit event and the metrics name the client.
    let event: Value = s
        .call(
            Method::GET,
            &format!("/v1/audit/{id}"),
            None,
            Some(("bearer", &s.keys.admin)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(event["client"], "team-search");
    let metrics = s
        .call(
            Method::GET,
            "/v1/metrics",
            None,
            Some(("bearer", &s.keys.metrics)),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &metrics,
            "chat_requests_total{client=\"team-search\",provider=\"local\",status=\"success\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "policy_decisions_total{client=\"ops\",reason=\"default\",rule=\"\"}"
        ),
        Some(1.0)
    );
    // A dry run: the caller's own decision, or an admin's for another client.
    let decide = |key: &str, client: Option<&str>| {
        let mut body = chat_body();
        if let Some(client) = client {
            body["client"] = json!(client);
        }
        let request = s
            .server
            .client
            .post(format!("{}/v1/decide", s.server.base))
            .bearer_auth(key)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, d) = decide(&s.keys.chat, Some("ops")).await;
    assert_eq!(status, 200);
    assert_eq!(d["client"], "team-search", "a chat key decides as itself");
    assert_eq!(d["provider"], "local");
    let (_, d) = decide(&s.keys.admin, None).await;
    assert_eq!(
        (d["client"].as_str(), d["provider"].as_str()),
        (Some("ops"), Some("openai"))
    );
    let (_, d) = decide(&s.keys.admin, Some("team-search")).await;
    assert_eq!(d["client"], "team-search");
    assert_eq!(d["rule"], "team-stays-local");
    assert_eq!(d["trace"][0]["held"], true);
    let (status, d) = decide(&s.keys.admin, Some("nobody")).await;
    assert_eq!(status, 422, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("client: "),
        "{d}"
    );
    let (_, d) = decide(&s.keys.admin, Some("prometheus")).await;
    assert_eq!(d["trace"][0]["failed_condition"], "client");
    // Dry runs call nothing.
    assert_eq!(s.local.request_count() + s.public.request_count(), 2);
}
