//! The HTTP API through the real server: response shapes, the error table, and
//! start-up failures.

use crate::support::server::{TestServer, metric, policy, version_of};
use policy_mesh::env::Env;
use policy_mesh::server::{self, StartError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SENSITIVE: &str = "# yaml-language-server: $schema=../schema/policy.schema.json
version: 1
defaults:
  provider: local
  pricing:
    input_usd_per_1m_tokens: 0.15
rules:
  - id: sensitive
    description: Confidential prompts never leave the machine
    when:
      keywords: [internal, confidential, secret]
      patterns: ['\\b\\d{3}-\\d{2}-\\d{4}\\b']
      scope: last_user
    route: local
    reason: sensitive_keyword_match
  - id: big
    when:
      input_chars: { min: 1001 }
      estimated_usd: { max: 0.5 }
    route: public
";

#[tokio::test(flavor = "multi_thread")]
async fn health_is_exactly_ok() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    let response = t.get("/v1/health").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_shows_the_live_policy_without_keyword_values() {
    let t = TestServer::start(
        &[("00-base.yaml", SENSITIVE)],
        &[
            ("POLICY_CHARS_PER_TOKEN", "3.5"),
            ("PUBLIC_LLM_URL", "https://api.anthropic.com"),
        ],
    )
    .await;
    let r = t.routes().await;
    let file = t.path("00-base.yaml").to_str().unwrap().to_owned();
    let overlaid = policy_mesh::load_compiled(
        &policy_mesh::policy::PolicySource::Dir(t.dir.path().to_path_buf()),
        &Env::from_pairs([("POLICY_CHARS_PER_TOKEN", "3.5")]),
        &policy_mesh::providers::ProviderConfig::from_env(&Env::from_pairs([(
            "PUBLIC_LLM_URL",
            "https://api.anthropic.com",
        )]))
        .unwrap()
        .builtins(),
    )
    .unwrap();
    let mut overlaid = overlaid.policy().clone();
    assert_eq!(r["version"], overlaid.version);
    overlaid.version.clear();
    let times = [
        &r["loaded_at"],
        &r["reload"]["last_attempt_at"],
        &r["reload"]["last_success_at"],
    ];
    for t in times {
        let t = t.as_str().unwrap();
        // RFC 3339 in UTC with milliseconds.
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        assert!(
            t.ends_with('Z') && t.len() == "2026-11-24T10:00:00.123Z".len(),
            "{t}"
        );
    }
    assert_eq!(r["loaded_at"], r["reload"]["last_success_at"]);
    assert_eq!(
        r["sources"],
        json!([{"path": file, "sha256": hex::encode(Sha256::digest(SENSITIVE.as_bytes()))}])
    );
    assert_eq!(
        r["defaults"],
        json!({"provider": {"value": "local", "source": format!("file:{file}")},
               "fallback": [],
               "pricing": {"input_usd_per_1m_tokens": {"value": 0.15, "source": format!("file:{file}")},
                           "chars_per_token": {"value": 3.5, "source": "env:POLICY_CHARS_PER_TOKEN"}}})
    );
    assert_eq!(
        r["rules"],
        json!([
            {"id": "sensitive", "description": "Confidential prompts never leave the machine",
             "route": "local", "provider": "local", "fallback": [],
             "reason": "sensitive_keyword_match",
             "sensitive": false, "file": file, "line": 8,
             "conditions": {"keywords": 3, "keyword_match": "substring",
                            "keyword_normalization": "strict", "patterns": 1,
                            "scope": "last_user"}},
            {"id": "big", "description": null, "route": "public", "provider": "anthropic",
             "fallback": [], "reason": "big", "sensitive": false, "file": file, "line": 16,
             "conditions": {"keywords": 0, "keyword_match": "substring", "patterns": 0,
                            "scope": "all", "input_chars": {"min": 1001},
                            "estimated_usd": {"max": 0.5}}}
        ])
    );
    assert_eq!(r["public_provider"], "anthropic");
    // Three keywords and a pattern: some kilobytes, far from a megabyte.
    let memory = r["approximate_memory_bytes"]
        .as_u64()
        .expect("a byte count");
    assert!((1_000..1_000_000).contains(&memory), "{memory}");
    assert_eq!(r["reload"]["status"], "ok");
    assert_eq!(r["reload"]["last_error"], Value::Null);
    assert_eq!(r["reload"]["successes"], 0);
    assert_eq!(r["reload"]["failures"], 0);
    let text = r.to_string();
    for secret in ["internal", "confidential", "secret\"", "\\\\d{3}"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn decide_explains_on_the_live_version() {
    let t = TestServer::start(&[("00-base.yaml", SENSITIVE)], &[]).await;
    let version = t.routes().await["version"].clone();
    let d = t.decide("this is CONFIDENTIAL: 123-45-6789").await;
    assert_eq!(d["route"], "local");
    assert_eq!(d["provider"], "local");
    assert_eq!(d["rule"], "sensitive");
    assert_eq!(d["reason_codes"], json!(["sensitive_keyword_match"]));
    assert_eq!(d["policy_version"], version);
    assert_eq!(
        d["trace"],
        json!([{"rule": "sensitive", "held": true, "failed_condition": null}])
    );

    let d = t.decide("hello").await;
    assert_eq!(d["rule"], Value::Null);
    assert_eq!(d["reason_codes"], json!(["default"]));
    assert_eq!(
        d["trace"],
        json!([{"rule": "sensitive", "held": false, "failed_condition": "keywords"},
               {"rule": "big", "held": false, "failed_condition": "input_chars"}])
    );
    // /v1/decide is not a chat decision: nothing is counted.
    assert!(!t.metrics().await.contains("policy_decisions_total{"));
}

async fn post_raw(t: &TestServer, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = t
        .client
        .post(format!("{}{path}", t.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["type"], want_type, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(body["error"].as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_answer_in_one_shape_and_the_server_keeps_serving() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[("MAX_BODY_BYTES", "4096")]).await;

    let response = t.get("/v1/nope").await;
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 404, "not_found");

    let response = t.get("/v1/decide").await;
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        405,
        "method_not_allowed",
    );
    let response = t
        .client
        .post(format!("{}/v1/health", t.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        405,
        "method_not_allowed",
    );

    let deep = format!(
        r#"{{"messages":[{{"role":"user","content":"x"}}],"x":{}{}}}"#,
        "[".repeat(128),
        "]".repeat(128)
    );
    for body in ["", "{", "{\"messages\": [", "\"\\ud800\"", &deep] {
        let (status, json) = post_raw(&t, "/v1/decide", body.to_owned()).await;
        assert_error(status, &json, 400, "invalid_json");
    }
    let (status, json) = post_raw(&t, "/v1/decide", b"{\"a\":\"\xff\"}".to_vec()).await;
    assert_error(status, &json, 400, "invalid_json");

    for (body, field) in [
        ("[1]", "request body"),
        (r#"{"messages":[]}"#, "messages"),
        (
            r#"{"messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}"#,
            "messages[1].role",
        ),
        (
            r#"{"messages":[{"role":"user","content":5}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"messages":[{"role":"user","content":"a"}],"model":[]}"#,
            "model",
        ),
    ] {
        let (status, json) = post_raw(&t, "/v1/decide", body.to_owned()).await;
        assert_error(status, &json, 422, "invalid_request");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }

    let big = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(5000)
    );
    let (status, json) = post_raw(&t, "/v1/decide", big.clone()).await;
    assert_error(status, &json, 413, "payload_too_large");

    // Without Content-Length: a chunked body over the limit.
    let mut stream = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    let mut request = String::from(
        "POST /v1/decide HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for chunk in big.as_bytes().chunks(1000) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""type":"payload_too_large""#), "{answer}");

    // Still serving, and a body just under the limit is fine.
    assert_eq!(t.get("/v1/health").await.status(), 200);
    let d = t.decide("needle-1").await;
    assert_eq!(d["rule"], "rule-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    let response = t.get("/v1/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let text = response.text().await.unwrap();
    let version = version_of(&[("a.yaml", &policy(1))]);
    assert_eq!(
        metric(&text, &format!("policy_info{{version=\"{version}\"}}")),
        Some(1.0)
    );
    assert_eq!(metric(&text, "policy_last_reload_success"), Some(1.0));
    assert_eq!(
        metric(&text, "policy_reloads_total{result=\"success\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "policy_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(0.0));
    let at = metric(&text, "policy_last_reload_success_timestamp_seconds").unwrap();
    let success_at = t.routes().await["reload"]["last_success_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let success_at = chrono::DateTime::parse_from_rfc3339(&success_at).unwrap();
    assert_eq!((at * 1000.0).round() as i64, success_at.timestamp_millis());
}

async fn start_error(pairs: &[(&str, &str)]) -> StartError {
    let mut all = vec![("BIND_ADDR", "127.0.0.1:0")];
    all.extend_from_slice(pairs);
    server::start(&Env::from_pairs(all.iter().copied()))
        .await
        .expect_err("start-up fails")
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_failures_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "version: 3\nrules:\n  - id: Bad Id\n    route: local\n",
    )
    .unwrap();
    let folder = dir.path().to_str().unwrap();
    match start_error(&[("POLICY_DIR", folder)]).await {
        StartError::Policy(errors) => {
            assert!(errors.0.len() >= 2, "{errors}");
            for line in errors.lines().lines() {
                assert!(line.contains("a.yaml:"), "{line}");
            }
        }
        other => panic!("{other}"),
    }

    let good = tempfile::tempdir().unwrap();
    std::fs::write(good.path().join("a.yaml"), policy(1)).unwrap();
    let folder = good.path().to_str().unwrap();
    let err = start_error(&[("POLICY_DIR", folder), ("BIND_ADDR", "nowhere")]).await;
    assert!(err.to_string().starts_with("BIND_ADDR"), "{err}");
    let err = start_error(&[("POLICY_DIR", folder), ("MAX_BODY_BYTES", "0")]).await;
    assert!(err.to_string().starts_with("MAX_BODY_BYTES"), "{err}");
    let err = start_error(&[
        ("POLICY_DIR", folder),
        ("POLICY_INPUT_USD_PER_1M_TOKENS", "x"),
    ])
    .await;
    assert!(
        err.to_string().contains("POLICY_INPUT_USD_PER_1M_TOKENS"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    match start_error(&[("POLICY_DIR", folder), ("BIND_ADDR", &addr)]).await {
        StartError::Bind { .. } => {}
        other => panic!("{other}"),
    }
}

const MODELS: &str = "version: 1
rules:
  - id: sensitive
    when:
      keywords: [secret]
      model: ['gpt-4o*']
    route: local
  - id: cloud-models
    description: Requests for a cloud model go public
    when:
      model: ['gpt-4o*', '*/gpt-*']
    route: public
";

#[tokio::test(flavor = "multi_thread")]
async fn decide_reads_the_model_and_routes_shows_the_globs() {
    let t = TestServer::start(&[("00-models.yaml", MODELS)], &[]).await;
    let rules = t.routes().await["rules"].clone();
    assert_eq!(
        rules[0]["conditions"],
        json!({"keywords": 1, "keyword_match": "substring", "keyword_normalization": "strict",
               "patterns": 0, "scope": "all",
               "model": ["gpt-4o*"]})
    );
    assert_eq!(
        rules[1]["conditions"]["model"],
        json!(["gpt-4o*", "*/gpt-*"])
    );

    let decide = |body: Value| {
        let t = &t;
        async move {
            let (status, d) = post_raw(t, "/v1/decide", body.to_string()).await;
            assert_eq!(status, 200, "{d}");
            d
        }
    };
    let hello = json!([{"role": "user", "content": "hello"}]);
    let d = decide(json!({"model": "GPT-4o-mini", "messages": hello})).await;
    assert_eq!(d["rule"], "cloud-models");
    assert_eq!(d["route"], "public");
    assert_eq!(
        d["trace"],
        json!([{"rule": "sensitive", "held": false, "failed_condition": "keywords"},
               {"rule": "cloud-models", "held": true, "failed_condition": null}])
    );
    let d = decide(json!({"model": "openrouter/gpt-5", "messages": hello})).await;
    assert_eq!(d["rule"], "cloud-models");

    let secret = json!([{"role": "user", "content": "a secret"}]);
    let d = decide(json!({"model": "gpt-4o", "messages": secret})).await;
    assert_eq!(d["rule"], "sensitive");
    for body in [
        json!({"model": "llama3", "messages": secret}),
        json!({"model": null, "messages": secret}),
        json!({"messages": secret}),
    ] {
        let d = decide(body.clone()).await;
        assert_eq!(d["rule"], Value::Null, "{body}");
        assert_eq!(
            d["trace"],
            json!([{"rule": "sensitive", "held": false, "failed_condition": "model"},
                   {"rule": "cloud-models", "held": false, "failed_condition": "model"}]),
            "{body}"
        );
    }
}

/// Reads from `stream` until the server closes it (or resets it), for at
/// most 20 s; `true` when it did.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    let t = TestServer::start(
        &[("a.yaml", &policy(1))],
        &[("HEADER_READ_TIMEOUT_SECONDS", "0.5")],
    )
    .await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // Half a request line, and nothing more.
        stream.write_all(b"GET /v1/health HT").await.unwrap();
        slow.push(stream);
    }
    for stream in &mut slow {
        assert!(closed_by_server(stream).await, "a slow client was held");
    }
    // The server goes on serving.
    assert_eq!(t.get("/v1/health").await.status(), 200);
}

#[tokio::test]
async fn connections_over_max_connections_wait_until_one_closes() {
    let t = TestServer::start(
        &[("a.yaml", &policy(1))],
        &[
            ("MAX_CONNECTIONS", "1"),
            ("HEADER_READ_TIMEOUT_SECONDS", "60"),
        ],
    )
    .await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    // One connection takes the only slot.
    let held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    let waiting = client.get(format!("{}/v1/health", t.base)).send().await;
    assert!(
        waiting.is_err_and(|e| e.is_timeout()),
        "a connection over the limit was served"
    );
    drop(held);
    // Once it is gone, the next connection is served.
    let answer = t.get("/v1/health").await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_ends() {
    let t = TestServer::start(
        &[("a.yaml", &policy(1))],
        &[("BODY_READ_TIMEOUT_SECONDS", "0.5")],
    )
    .await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    for path in ["/v1/chat", "/v1/chat/completions"] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // A body announced at 100 bytes, of which 10 come.
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"message"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "{path}: the slow body was held");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
    }
    assert_eq!(t.get("/v1/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pathological_pattern_never_serves_and_large_prompts_leave_health_answering() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    // The pattern that held the async workers for 20-37 s per prompt.
    let attack = "version: 1\nrules:\n  - id: slow\n    when:\n      patterns: ['(\\w{100}){30}']\n    route: public\n";
    std::fs::write(t.path("b.yaml"), attack).unwrap();
    let routes = t.wait_error().await;
    let error = routes["reload"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("b.yaml:5") && error.contains("too big"),
        "{error}"
    );
    assert_eq!(routes["version"], version_of(&[("a.yaml", &policy(1))]));

    // Three prompts of 900 KB decided at once, and the probe meanwhile.
    let text = "word ".repeat(180_000);
    let decisions: Vec<_> = (0..3)
        .map(|_| {
            let client = t.client.clone();
            let url = format!("{}/v1/decide", t.base);
            let body = json!({"messages": [{"role": "user", "content": text}]});
            tokio::spawn(async move { client.post(url).json(&body).send().await })
        })
        .collect();
    for _ in 0..5 {
        assert_eq!(t.get("/v1/health").await.status(), 200);
    }
    for decision in decisions {
        let response = decision.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["rule"], Value::Null, "{body}");
    }
}
