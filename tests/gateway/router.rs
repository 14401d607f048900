//! The error table and input validation against the router itself
//! (`server::app` driven with `tower::ServiceExt::oneshot`): no socket, no
//! process, the same answers the network gets. Providers are fakes on
//! `127.0.0.1`, so every case can also show that nothing reached them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use policy_mesh::audit::AuditConfig;
use policy_mesh::env::Env;
use policy_mesh::metrics::Metrics;
use policy_mesh::policy::{PolicySource, SourceFile};
use policy_mesh::providers::{Builtins, Pool};
use policy_mesh::reload::LivePolicy;
use policy_mesh::server::{self, AllowedHosts, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::fake_providers::{FakeProvider, Flavor};

/// A cost rule first that sends short prompts public, then a sensitive rule:
/// the sensitive rule is tried first all the same.
const POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: cheap\n    when:\n      input_chars: { max: 1000 }\n    route: public\n  - id: sensitive\n    sensitive: true\n    when:\n      keywords: [nightingale]\n    route: local\n    reason: sensitive_keyword_match\n  - id: detected\n    sensitive: true\n    when:\n      detect: [pii, secrets]\n    route: local\n";

/// The body limit of these tests, small enough to cross cheaply.
const LIMIT: usize = 4096;

/// The router over a compiled [`POLICY`], between a fake Ollama and a fake
/// OpenAI, audit off.
struct Router {
    app: axum::Router,
    metrics: Arc<Metrics>,
    local: FakeProvider,
    public: FakeProvider,
}

impl Router {
    async fn new() -> Self {
        Self::with_loader(|builtins| {
            Box::new(move || {
                let file = SourceFile {
                    path: Arc::from("policies/00-router.yaml"),
                    name: "00-router.yaml".to_owned(),
                    bytes: POLICY.as_bytes().to_vec(),
                };
                policy_mesh::compile_files(&[file], &Env::default(), &builtins)
            })
        })
        .await
    }

    /// The shipped `policies/` with `POLICY_DEFAULT_PROVIDER=public`, so that
    /// only the sensitive rules keep a request local.
    async fn shipped_with_public_default() -> Self {
        Self::with_loader(|builtins| {
            Box::new(move || {
                let source = PolicySource::Dir(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
                );
                let env = Env::from_pairs([("POLICY_DEFAULT_PROVIDER", "public")]);
                policy_mesh::load_compiled(&source, &env, &builtins)
            })
        })
        .await
    }

    /// The router over the policy `loader` makes, given the built-in
    /// providers pointed at the fakes.
    async fn with_loader(loader: impl FnOnce(Builtins) -> policy_mesh::reload::Loader) -> Self {
        let local = FakeProvider::start(Flavor::Ollama).await;
        let public = FakeProvider::start(Flavor::OpenAi).await;
        let env = Env::from_pairs([
            ("LOCAL_LLM_URL", local.url()),
            ("PUBLIC_LLM_URL", public.url()),
            ("PUBLIC_LLM_PROVIDER", "openai".to_owned()),
            ("PUBLIC_LLM_API_KEY", "sk-router-test".to_owned()),
        ]);
        let providers = std::sync::Arc::new(Pool::from_env(&env).unwrap());
        let loader = loader(providers.config().builtins());
        let metrics = Arc::new(Metrics::new());
        let live = LivePolicy::start(loader, Arc::clone(&metrics)).unwrap();
        let state = AppState {
            live: Arc::new(live),
            metrics: Arc::clone(&metrics),
            clients: None,
            providers,
            audit: None,
            audit_config: Arc::new(AuditConfig::disabled()),
            allowed_hosts: Arc::new(AllowedHosts::loopback()),
        };
        Router {
            app: server::app(
                state,
                policy_mesh::server::request::BodyLimits {
                    max_bytes: LIMIT,
                    read_timeout: std::time::Duration::from_secs(30),
                },
            ),
            metrics,
            local,
            public,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Body) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    /// `POST /v1/chat/completions` with `body`, its response as it comes
    /// (headers, and a stream not yet read).
    async fn completion(&self, body: &Value) -> axum::response::Response {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// `POST /v1/chat/completions` with `body`, read to its end (a stream
    /// included): its status and the rule its `x-policy-mesh-rule` names.
    async fn completion_rule(&self, body: &Value) -> (StatusCode, Option<String>) {
        let response = self.completion(body).await;
        let status = response.status();
        let rule = response
            .headers()
            .get("x-policy-mesh-rule")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, rule)
    }

    async fn post(&self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Value) {
        self.send(Method::POST, path, Body::from(body.into())).await
    }

    /// Nothing reached a provider, and no chat was counted.
    fn assert_untouched(&self) {
        assert_eq!(self.local.request_count(), 0, "the local fake was called");
        assert_eq!(self.public.request_count(), 0, "the public fake was called");
        let text = self.metrics.render();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("chat_requests_total{") && !l.ends_with(" 0")),
            "{text}"
        );
    }
}

/// Asserts the API's error shape: exactly `{"error": {"type", "message"}}`.
fn assert_error(status: StatusCode, body: &Value, expected: u16, kind: &str, what: &str) {
    assert_eq!(status.as_u16(), expected, "{what}: {body}");
    assert_eq!(body["error"]["type"], kind, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: {body}");
    assert_eq!(
        body["error"].as_object().map(|o| o.len()),
        Some(2),
        "{what}: {body}"
    );
}

/// `levels` levels of nesting in all, the top-level object included.
fn nested(levels: usize) -> String {
    let inner = levels - 1;
    format!(
        r#"{{"messages":[{{"role":"user","content":"hi"}}],"x":{}{}}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    )
}

#[tokio::test]
async fn malformed_json_is_400_on_both_chat_endpoints() {
    let r = Router::new().await;
    for path in ["/v1/chat", "/v1/decide"] {
        for body in [
            "".to_owned(),
            " \n".to_owned(),
            "{".to_owned(),
            r#"{"messages": [}"#.to_owned(),
            r#"{"messages":[{"role":"user","content":"\ud800"}]}"#.to_owned(),
            r#"{"a":1} trailing"#.to_owned(),
            nested(129),
        ] {
            let (status, json) = r.post(path, body.clone()).await;
            assert_error(
                status,
                &json,
                400,
                "invalid_json",
                &format!("{path} {body:.40}"),
            );
        }
        let (status, json) = r.post(path, b"{\"a\":\"\xff\"}".to_vec()).await;
        assert_error(status, &json, 400, "invalid_json", "invalid UTF-8");
    }
    // 128 levels are JSON the API accepts.
    let (status, json) = r.post("/v1/decide", nested(128)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    r.assert_untouched();
}

#[tokio::test]
async fn each_wrong_shape_is_422_naming_the_field() {
    let r = Router::new().await;
    for (body, message) in [
        (json!([1]), "request body: expected an object, got a list"),
        (json!({}), "messages: missing"),
        (
            json!({"messages": "hi"}),
            "messages: expected a list, got a string",
        ),
        (
            json!({"messages": []}),
            "messages: must hold at least one message",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, 3]}),
            "messages[1]: expected an object, got a number",
        ),
        (
            json!({"messages": [["user", "hi"]]}),
            "messages[0]: expected an object, got a list",
        ),
        (
            json!({"messages": [{"content": "a"}]}),
            "messages[0].role: missing",
        ),
        (
            json!({"messages": [{"role": "robot", "content": "a"}]}),
            r#"messages[0].role: expected "user", "assistant" or "system", got another string"#,
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content: missing",
        ),
        (
            json!({"messages": [{"role": "user", "content": ["a"]}]}),
            "messages[0].content: expected a string, got a list",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}], "model": 1}),
            "model: expected a string, got a number",
        ),
    ] {
        for path in ["/v1/chat", "/v1/decide"] {
            let (status, json) = r.post(path, body.to_string()).await;
            assert_error(
                status,
                &json,
                422,
                "invalid_request",
                &format!("{path} {body}"),
            );
            assert_eq!(json["error"]["message"], message, "{path} {body}");
        }
    }
    r.assert_untouched();
}

#[tokio::test]
async fn the_openai_endpoint_answers_the_same_mistakes_in_openais_shape() {
    let r = Router::new().await;
    for (body, status, param, message) in [
        (
            json!({"messages": [["user", "hi"]]}),
            400,
            json!("messages[0]"),
            "messages[0]: expected an object, got a list",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}], "model": 1}),
            400,
            json!("model"),
            "model: expected a string, got a number",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}], "stream_options": []}),
            400,
            json!("stream_options"),
            "stream_options: expected an object, got a list",
        ),
    ] {
        let (got, json) = r.post("/v1/chat/completions", body.to_string()).await;
        assert_eq!(got.as_u16(), status, "{body}: {json}");
        let e = &json["error"];
        assert_eq!(e["type"], "invalid_request_error", "{body}: {json}");
        assert_eq!(e["code"], "invalid_request", "{body}: {json}");
        assert_eq!(e["param"], param, "{body}: {json}");
        assert_eq!(e["message"], message, "{body}: {json}");
    }
    let (status, json) = r.post("/v1/chat/completions", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["code"], "invalid_json");
    r.assert_untouched();
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_its_length() {
    let r = Router::new().await;
    let big = json!({"messages": [{"role": "user", "content": "a".repeat(LIMIT)}]}).to_string();
    for path in ["/v1/chat", "/v1/decide", "/v1/chat/completions"] {
        let (status, json) = r.post(path, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {json}");
        // No length known in advance: the body is a stream of chunks.
        let chunks: Vec<Result<Bytes, std::io::Error>> = big
            .as_bytes()
            .chunks(512)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let (status, json) = r.send(Method::POST, path, body).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path} streamed: {json}"
        );
    }
    let (status, json) = r.post("/v1/chat", big).await;
    assert_error(status, &json, 413, "payload_too_large", "/v1/chat");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&LIMIT.to_string()),
        "{json}"
    );
    r.assert_untouched();
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let r = Router::new().await;
    for (method, path, status, kind) in [
        (Method::GET, "/v1/nope", 404, "not_found"),
        (Method::POST, "/v1/nope/deeper", 404, "not_found"),
        (Method::GET, "/v1/chat", 405, "method_not_allowed"),
        (Method::DELETE, "/v1/routes", 405, "method_not_allowed"),
        (Method::PUT, "/v1/decide", 405, "method_not_allowed"),
    ] {
        let (got, json) = r.send(method.clone(), path, Body::empty()).await;
        assert_error(got, &json, status, kind, &format!("{method} {path}"));
    }
    r.assert_untouched();
}

#[tokio::test]
async fn after_every_rejection_the_router_still_serves() {
    let r = Router::new().await;
    let (status, _) = r.post("/v1/chat", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, json) = r
        .post(
            "/v1/decide",
            json!({"messages": [{"role": "user", "content": "about nightingale"}]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["provider"], "local", "{json}");
    r.assert_untouched();
    // A chat decided sensitive goes to the local fake only.
    let (status, json) = r
        .post(
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": "about nightingale"}]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(r.local.request_count(), 1);
    assert_eq!(
        r.public.request_count(),
        0,
        "a sensitive prompt reached the public fake"
    );
}

#[tokio::test]
async fn a_sensitive_rule_keeps_the_prompt_local_on_every_api_wherever_it_is_written() {
    let r = Router::new().await;
    let sensitive = json!([{"role": "user", "content": "the nightingale file"}]);
    let (status, json) = r
        .post("/v1/decide", json!({"messages": sensitive}).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["rule"], "sensitive", "{json}");
    assert_eq!(json["sensitive"], true, "{json}");
    assert_eq!(json["trace"][0]["rule"], "sensitive", "tried first: {json}");

    let (status, json) = r
        .post("/v1/chat", json!({"messages": sensitive}).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["sensitive"], true, "{json}");
    assert_eq!(json["provider"], "local", "{json}");
    for stream in [false, true] {
        let body = json!({"model": "gpt-4o", "messages": sensitive, "stream": stream});
        let response = r.completion(&body).await;
        assert_eq!(response.status(), StatusCode::OK, "stream {stream}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("x-policy-mesh-sensitive").as_deref(), Some("true"));
        assert_eq!(header("x-policy-mesh-provider").as_deref(), Some("local"));
        // The whole answer, so that a stream has ended before the next request.
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
    }
    assert_eq!(r.local.request_count(), 3);
    assert_eq!(
        r.public.request_count(),
        0,
        "a sensitive prompt reached the public fake"
    );

    // Anything else goes by the other rules: the short prompt goes public.
    let (status, json) = r
        .post(
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": "hello"}]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (json["rule"].as_str(), json["sensitive"].as_bool()),
        (Some("cheap"), Some(false))
    );
    assert_eq!(r.public.request_count(), 1);
}

#[tokio::test]
async fn a_detected_card_or_key_stays_local_and_names_its_detector() {
    let r = Router::new().await;
    let card = json!([{"role": "user", "content": "charge 4111-1111-1111-1111 please"}]);
    let (status, json) = r
        .post("/v1/decide", json!({"messages": card}).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["rule"], "detected", "{json}");
    assert_eq!(json["detections"], json!(["credit_card"]), "{json}");
    assert_eq!(
        json["trace"][0],
        json!({"rule": "sensitive", "held": false, "failed_condition": "keywords"})
    );

    let (status, json) = r
        .post("/v1/chat", json!({"messages": card}).to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["provider"], "local", "{json}");
    assert_eq!(json["detections"], json!(["credit_card"]), "{json}");

    // A key in the system prompt, through the OpenAI-compatible API.
    let key = json!([
        {"role": "system", "content": "use AKIAIOSFODNN7EXAMPLE and jane@example.com"},
        {"role": "user", "content": "hi"}
    ]);
    let response = r
        .completion(&json!({"model": "gpt-4o", "messages": key}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("x-policy-mesh-detections")
            .and_then(|v| v.to_str().ok()),
        Some("aws_access_key_id,email")
    );
    assert_eq!(r.local.request_count(), 2);
    assert_eq!(
        r.public.request_count(),
        0,
        "detected data reached the public fake"
    );

    // A number that fails the card checksum is not a card: it goes by the
    // other rules.
    let (status, json) = r
        .post(
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": "order 1234 5678 9012 3456"}]})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        (json["rule"].as_str(), json["detections"].clone()),
        (Some("cheap"), json!([]))
    );

    let metrics = r.metrics.render();
    for (detector, count) in [
        ("credit_card", 1),
        ("aws_access_key_id", 1),
        ("email", 1),
        ("iban", 0),
    ] {
        let series = format!("policy_detections_total{{detector=\"{detector}\"}} {count}");
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in {metrics}"
        );
    }
}

/// One sample of each detector's format, as a user would paste it.
fn detector_samples() -> Vec<(&'static str, String)> {
    vec![
        ("email", "write to jane.doe@example.co.uk".to_owned()),
        ("credit_card", "card 4111 1111 1111 1111".to_owned()),
        ("iban", "pay DE89 3704 0044 0532 0130 00".to_owned()),
        ("us_ssn", "my ssn is 123-45-6789".to_owned()),
        (
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE".to_owned(),
        ),
        ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE".to_owned()),
        ("github_token", format!("ghp_{}", "a1".repeat(18))),
        ("gitlab_token", format!("glpat-{}", "x".repeat(20))),
        ("slack_token", "xoxb-1234567890-abcdefghij".to_owned()),
        ("stripe_key", format!("sk_live_{}", "9".repeat(24))),
        ("openai_api_key", "sk-proj-abcT3BlbkFJdef".to_owned()),
        (
            "anthropic_api_key",
            format!("sk-ant-api03-{}", "Q".repeat(80)),
        ),
        ("google_api_key", format!("AIza{}", "S".repeat(35))),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln".to_owned(),
        ),
    ]
}

#[tokio::test]
async fn with_the_shipped_policy_no_detected_format_in_any_role_reaches_the_public_provider() {
    let r = Router::shipped_with_public_default().await;
    // The control: an ordinary long prompt does go public.
    let long = "x".repeat(1200);
    let (status, json) = r
        .post(
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": long}]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["provider"], "openai", "{json}");
    assert_eq!(r.public.request_count(), 1);

    let samples = detector_samples();
    assert_eq!(samples.len(), policy_mesh::names::Detector::ALL.len());
    for (detector, sample) in &samples {
        for role in ["system", "user", "assistant"] {
            // Long enough that the cost rule does not keep it local anyway.
            let text = format!("{sample} {}", "and more ".repeat(150));
            let mut messages = vec![json!({"role": role, "content": text})];
            if role != "user" {
                messages.push(json!({"role": "user", "content": "go on"}));
            }
            let (status, json) = r
                .post("/v1/chat", json!({"messages": messages}).to_string())
                .await;
            assert_eq!(status, StatusCode::OK, "{detector} {role}: {json}");
            assert_eq!(json["rule"], "detected", "{detector} {role}: {json}");
            assert_eq!(json["sensitive"], true, "{detector} {role}: {json}");
            assert_eq!(
                json["detections"],
                json!([detector]),
                "{detector} {role}: {json}"
            );
            let body = json!({"model": "gpt-4o", "messages": messages, "stream": role == "system"});
            let response = r.completion(&body).await;
            assert_eq!(response.status(), StatusCode::OK, "{detector} {role}");
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        r.public.request_count(),
        1,
        "a prompt holding a detected format reached the public fake"
    );
    assert_eq!(r.local.request_count(), samples.len() * 3 * 2);
}

/// Every disguise the detection spec lists, of the shipped policy's
/// keywords: marks, controls and blanks, look-alikes, digits and symbols for
/// letters, joins, and mixes of them.
fn disguised_keywords() -> Vec<&'static str> {
    vec![
        // Case, width and invisible characters (the standard steps).
        "CONFIDENTIAL",
        "\u{ff43}\u{ff4f}\u{ff4e}\u{ff46}\u{ff49}\u{ff44}\u{ff45}\u{ff4e}\u{ff54}\u{ff49}\u{ff41}\u{ff4c}",
        "confi\u{200b}dential",
        "se\u{ad}cret",
        // Marks.
        "confidéntial",
        "c\u{303}onfidential",
        "s\u{336}e\u{336}c\u{336}r\u{336}e\u{336}t\u{336}",
        "i\u{20dd}nternal",
        // Controls and blanks.
        "confi\u{0}dential",
        "confi\u{2800}dential",
        "sec\u{7}ret",
        "inter\u{2060}nal",
        // Look-alikes: Cyrillic, Greek, small capitals, Turkish.
        "c\u{43e}nfidential",
        "\u{441}\u{43e}nfid\u{435}nti\u{430}l",
        "c\u{3bf}nfidential",
        "\u{455}\u{435}\u{441}r\u{435}t",
        // Only the small capitals the confusables data maps (a documented
        // limit): ᴄ ᴏ ɪ ꜱ ᴜ ᴠ ᴡ ᴢ ʏ.
        "\u{1d04}\u{1d0f}nf\u{26a}dent\u{26a}al",
        "\u{a731}ecret",
        "conf\u{131}dential",
        "CONF\u{130}DENTIAL",
        "\u{130}nternal",
        // Digits and symbols for letters.
        "c0nf1d3nt1al",
        "c0nf1dential",
        "$ecret",
        "s3cr3t",
        "1nternal",
        "!nternal",
        "|nt3rn4l",
        // Joins.
        "C O N F I D E N T I A L",
        "C.O.N.F.I.D.E.N.T.I.A.L",
        "c-o-n-f-i-d-e-n-t-i-a-l",
        "c_o_n_f_i_d_e_n_t_i_a_l",
        "(c)(o)(n)(f)(i)(d)(e)(n)(t)(i)(a)(l)",
        "S . E . C . R . E . T",
        "s\u{a0}e\u{a0}c\u{a0}r\u{a0}e\u{a0}t",
        "c 0 n f 1 d e n t 1 a l",
        "confi-\ndential",
        "confi\ndential",
        "confi-\n    dential",
        "confi-\r\n\tdential",
        "confi\u{2028}dential",
        "top\nsecret",
        // Mixes.
        "C\u{43e}NF1-\nD\u{435}NT\u{131}AL",
        "\u{455} 3 \u{441} r \u{435} t",
    ]
}

#[tokio::test]
async fn with_the_shipped_policy_no_disguised_keyword_in_any_role_reaches_the_public_provider() {
    let r = Router::shipped_with_public_default().await;
    // The control: an ordinary long prompt does go public.
    let padding = "and more ".repeat(150);
    let (status, json) = r
        .post(
            "/v1/chat",
            json!({"messages": [{"role": "user", "content": format!("plain words {padding}")}]})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["provider"], "openai", "{json}");
    assert_eq!(r.public.request_count(), 1);

    let disguises = disguised_keywords();
    for disguise in &disguises {
        for role in ["system", "user", "assistant"] {
            // Long enough that the cost rule does not keep it local anyway.
            let text = format!("Please look at this {disguise} memo {padding}");
            let mut messages = vec![json!({"role": role, "content": text})];
            if role != "user" {
                messages.push(json!({"role": "user", "content": "go on"}));
            }
            let what = format!("{disguise:?} as {role}");
            let (status, json) = r
                .post("/v1/decide", json!({"messages": messages}).to_string())
                .await;
            assert_eq!(status, StatusCode::OK, "{what}: {json}");
            assert_eq!(
                (&json["rule"], &json["route"], &json["sensitive"]),
                (&json!("sensitive"), &json!("local"), &json!(true)),
                "{what}: {json}"
            );
            let (status, json) = r
                .post("/v1/chat", json!({"messages": messages}).to_string())
                .await;
            assert_eq!(status, StatusCode::OK, "{what}: {json}");
            assert_eq!(json["provider"], "local", "{what}: {json}");
            let body = json!({"model": "gpt-4o", "messages": messages, "stream": role == "system"});
            let (status, rule) = r.completion_rule(&body).await;
            assert_eq!(status, StatusCode::OK, "{what}");
            assert_eq!(rule.as_deref(), Some("sensitive"), "{what}");
        }
    }
    assert_eq!(
        r.public.request_count(),
        1,
        "a disguised keyword reached the public fake"
    );
    assert_eq!(r.local.request_count(), disguises.len() * 3 * 2);
}

impl Router {
    /// `method path` with `body` and exactly the `content-type` given (none
    /// when `None`): status, `X-Content-Type-Options` and JSON body.
    async fn send_typed(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(kind) = content_type {
            request = request.header("content-type", kind);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let nosniff = response
            .headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            nosniff,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn a_body_not_declared_json_is_a_415_before_it_is_read_and_reaches_no_provider() {
    let r = Router::new().await;
    // Long, so that as JSON it would go public: what a cross-site form
    // would try to send.
    let chat = json!({"messages": [{"role": "user", "content": "x".repeat(2000)}]}).to_string();
    let completion =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(2000)}]})
            .to_string();
    for kind in [
        None,
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        for path in ["/v1/chat", "/v1/decide"] {
            let (status, nosniff, json) = r.send_typed(Method::POST, path, kind, &chat).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{kind:?} {path}"
            );
            assert_eq!(json["error"]["type"], "unsupported_media_type", "{json}");
            assert_eq!(nosniff.as_deref(), Some("nosniff"));
        }
        let (status, _, json) = r
            .send_typed(Method::POST, "/v1/chat/completions", kind, &completion)
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{kind:?}");
        assert_eq!(
            (&json["error"]["type"], &json["error"]["code"]),
            (
                &json!("invalid_request_error"),
                &json!("unsupported_media_type")
            ),
            "{json}"
        );
    }
    assert_eq!(
        r.public.request_count(),
        0,
        "a non-JSON body reached the cloud"
    );
    assert_eq!(r.local.request_count(), 0);

    // JSON with parameters, in any case, is JSON; a GET needs no header.
    for kind in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let (status, nosniff, json) = r
            .send_typed(Method::POST, "/v1/chat", Some(kind), &chat)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {json}");
        assert_eq!(nosniff.as_deref(), Some("nosniff"));
    }
    assert_eq!(r.public.request_count(), 3);
    let (status, nosniff, _) = r.send_typed(Method::GET, "/v1/routes", None, "").await;
    assert_eq!(
        (status, nosniff.as_deref()),
        (StatusCode::OK, Some("nosniff"))
    );
    let (status, nosniff, _) = r.send_typed(Method::GET, "/nowhere", None, "").await;
    assert_eq!(
        (status, nosniff.as_deref()),
        (StatusCode::NOT_FOUND, Some("nosniff"))
    );
}

#[tokio::test]
async fn a_host_not_allowed_is_a_421_and_reaches_no_provider_but_the_probes_answer() {
    let r = Router::new().await;
    let chat = json!({"messages": [{"role": "user", "content": "x".repeat(2000)}]}).to_string();
    let with_host = |method: Method, path: &str, host: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    // What a DNS-rebinding page sends: its own name, with or without a port.
    for host in [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "192.168.1.5:8000",
    ] {
        for (path, openai) in [
            ("/v1/chat", false),
            ("/v1/routes", false),
            ("/v1/chat/completions", true),
        ] {
            let method = if path == "/v1/routes" {
                Method::GET
            } else {
                Method::POST
            };
            let response = r
                .app
                .clone()
                .oneshot(with_host(method, path, host, &chat))
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::MISDIRECTED_REQUEST,
                "{host} {path}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            let kind = if openai {
                &json["error"]["code"]
            } else {
                &json["error"]["type"]
            };
            assert_eq!(kind, "misdirected_request", "{json}");
        }
        let response = r
            .app
            .clone()
            .oneshot(with_host(Method::GET, "/v1/health", host, ""))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the probe is exempt");
    }
    assert_eq!(
        r.public.request_count(),
        0,
        "a rebinding page reached the cloud"
    );
    assert_eq!(r.local.request_count(), 0);
    for host in ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"] {
        let response = r
            .app
            .clone()
            .oneshot(with_host(Method::POST, "/v1/chat", host, &chat))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    assert_eq!(r.public.request_count(), 4);
}

#[tokio::test]
async fn a_sensitive_word_in_model_user_or_stop_keeps_the_request_local() {
    let r = Router::shipped_with_public_default().await;
    // Long enough that the cost rule does not keep it local anyway.
    let messages =
        json!([{"role": "user", "content": format!("plain words {}", "and more ".repeat(150))}]);
    let control = r
        .completion(&json!({"model": "gpt-4o", "messages": messages}))
        .await;
    assert_eq!(
        control
            .headers()
            .get("x-policy-mesh-provider")
            .and_then(|v| v.to_str().ok()),
        Some("openai")
    );
    assert_eq!(r.public.request_count(), 1);
    for (field, value) in [
        ("model", json!("gpt-4o-confidential")),
        ("user", json!("internal-ops")),
        ("user", json!("S E C R E T")),
        ("stop", json!("top secret")),
        ("stop", json!(["END", "c0nfidential"])),
    ] {
        for stream in [false, true] {
            let mut body = json!({"model": "gpt-4o", "messages": messages, "stream": stream});
            body[field] = value.clone();
            let (status, rule) = r.completion_rule(&body).await;
            assert_eq!(status, StatusCode::OK, "{field}: {value}");
            assert_eq!(rule.as_deref(), Some("sensitive"), "{field}: {value}");
        }
    }
    assert_eq!(
        r.public.request_count(),
        1,
        "a field the policy did not read reached the cloud"
    );
    assert_eq!(r.local.request_count(), 10);
}
