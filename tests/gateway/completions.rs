//! The OpenAI-compatible API end to end, from the wire: `POST
//! /v1/chat/completions` whole and streamed through fake Ollama, OpenAI and
//! Anthropic servers that speak their real formats, the decision headers, the
//! audit event and metrics behind every answer, what is passed upstream,
//! errors in OpenAI's shape, and `GET /v1/models`.
//!
//! The official SDK's view of the same endpoint is in `tests/gateway/openai_sdk.rs`.

use crate::support::fake_providers::{FakeProvider, Flavor, Mode};
use crate::support::server::{TestServer, metric};
use serde_json::{Value, json};

/// Prompts naming the project stay local; everything else goes public.
const POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: sensitive\n    when:\n      keywords: [project-nightingale]\n    route: local\n    reason: sensitive_keyword_match\n";
const SENSITIVE: &str = "what is the status of project-nightingale?";
const LOCAL_MODEL: &str = "local-test-model";
const PUBLIC_MODEL: &str = "public-test-model";

struct Gateway {
    t: TestServer,
    local: FakeProvider,
    public: FakeProvider,
}

/// One answer: status, headers and body text.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `data:` payloads of a `text/event-stream` body, in order.
    fn events(&self) -> Vec<String> {
        assert!(
            self.header("content-type")
                .unwrap()
                .starts_with("text/event-stream"),
            "{:?}",
            self.headers
        );
        self.text
            .split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }
}

/// The chunks of a streamed answer (every event but `[DONE]`), and whether
/// it ended with `[DONE]`.
fn chunks(answer: &Answer) -> (Vec<Value>, bool) {
    let events = answer.events();
    let done = events.last().map(String::as_str) == Some("[DONE]");
    let chunks = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("chunk is not JSON: {e}")))
        .collect();
    (chunks, done)
}

/// The text of every chunk's delta, concatenated.
fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

impl Gateway {
    async fn start(public: Flavor, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with(POLICY, public, env).await
    }

    async fn start_with(policy: &str, public: Flavor, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_files(&[("policy.yaml", policy)], public, env).await
    }

    /// The gateway over the policy `files`, between a fake Ollama and a fake
    /// `public`.
    async fn start_files(files: &[(&str, &str)], public: Flavor, env: &[(&str, &str)]) -> Gateway {
        let local = FakeProvider::ollama().await;
        let public = FakeProvider::start(public).await;
        let mut vars: Vec<(String, String)> = local.env_vars();
        vars.extend(public.env_vars());
        vars.push(("PUBLIC_LLM_API_KEY".into(), "sk-test".into()));
        vars.push(("LOCAL_LLM_MODEL".into(), LOCAL_MODEL.into()));
        vars.push(("PUBLIC_LLM_MODEL".into(), PUBLIC_MODEL.into()));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let t = TestServer::start(files, &refs).await;
        local.set_reply(["Bon", "jour", " local"]);
        public.set_reply(["Hello", " from", " the cloud"]);
        Gateway { t, local, public }
    }

    async fn post(&self, body: &Value) -> Answer {
        self.post_raw(body.to_string()).await
    }

    async fn post_raw(&self, body: String) -> Answer {
        let response = self
            .t
            .client
            .post(format!("{}/v1/chat/completions", self.t.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// `POST /v1/messages` (Anthropic's API) with `body`.
    async fn messages(&self, body: &Value) -> Answer {
        let response = self
            .t
            .client
            .post(format!("{}/v1/messages", self.t.base))
            .json(body)
            .send()
            .await
            .unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn audit(&self, id: &str) -> Value {
        let response = self.t.get(&format!("/v1/audit/{id}")).await;
        assert_eq!(response.status(), 200, "audit event {id}");
        response.json().await.unwrap()
    }

    async fn finish(self) {
        self.t.server.shutdown().await.unwrap();
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn series(text: &str, name: &str, provider: &str) -> f64 {
    metric(text, &format!("{name}{{provider=\"{provider}\"}}")).unwrap_or(0.0)
}

#[tokio::test]
async fn a_whole_completion_from_each_provider_in_openai_shape_with_the_decision_in_headers() {
    for (flavor, provider) in [(Flavor::OpenAi, "openai"), (Flavor::Anthropic, "anthropic")] {
        let g = Gateway::start(flavor, &[]).await;
        for (prompt, expected, reply, rule, reason, model) in [
            (
                SENSITIVE,
                "local",
                "Bonjour local",
                "sensitive",
                "sensitive_keyword_match",
                LOCAL_MODEL,
            ),
            (
                "hello",
                provider,
                "Hello from the cloud",
                "",
                "default",
                PUBLIC_MODEL,
            ),
        ] {
            let a = g
                .post(&json!({"model": PUBLIC_MODEL, "messages": user(prompt)}))
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
            assert_eq!(a.header("x-policy-mesh-provider"), Some(expected));
            assert_eq!(a.header("x-policy-mesh-rule"), Some(rule));
            assert_eq!(a.header("x-policy-mesh-reason"), Some(reason));
            let version = g.t.routes().await["version"].clone();
            assert_eq!(
                a.header("x-policy-mesh-policy-version"),
                version.as_str(),
                "{:?}",
                a.headers
            );
            let body = a.json();
            let id = a.header("x-request-id").unwrap().to_owned();
            assert_eq!(body["id"], format!("chatcmpl-{}", id.replace('-', "")));
            assert_eq!(body["object"], "chat.completion");
            assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
            // The public default named by the client means "the chosen
            // provider's model": a sensitive prompt gets the local one.
            assert_eq!(body["model"], model);
            assert_eq!(body["choices"][0]["message"]["role"], "assistant");
            assert_eq!(body["choices"][0]["message"]["content"], reply);
            assert_eq!(body["choices"][0]["finish_reason"], "stop");
            let usage = &body["usage"];
            assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{body}");
            assert_eq!(
                usage["total_tokens"].as_u64().unwrap(),
                usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap()
            );
            let event = g.audit(&id).await;
            assert_eq!(event["status"], "success");
            assert_eq!(event["provider"], expected);
            assert_eq!(event["model"], model);
            assert_eq!(event["prompt_length"], prompt.chars().count());
        }
        assert_eq!(g.local.single_request().json()["stream"], json!(false));
        let sent = g.public.single_request().json();
        assert_eq!(sent["model"], PUBLIC_MODEL);
        assert!(sent.get("stream").is_none_or(|s| s == false), "{sent}");
        let metrics = g.t.metrics().await;
        for p in ["local", provider] {
            assert_eq!(
                metric(
                    &metrics,
                    &format!(
                        "chat_requests_total{{client=\"anonymous\",provider=\"{p}\",status=\"success\"}}"
                    )
                ),
                Some(1.0),
                "{p}"
            );
        }
        g.finish().await;
    }
}

#[tokio::test]
async fn a_streamed_completion_from_each_provider_arrives_in_chunks_and_ends_with_done() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let g = Gateway::start(flavor, &[]).await;
        let provider = match flavor {
            Flavor::OpenAi => "openai",
            _ => "anthropic",
        };
        for (prompt, expected, reply, parts) in [
            (SENSITIVE, "local", "Bonjour local", 3),
            ("hello", provider, "Hello from the cloud", 3),
        ] {
            let before = g.t.metrics().await;
            let a = g
                .post(
                    &json!({"model": "policy-mesh", "messages": user(prompt), "stream": true,
                              "stream_options": {"include_usage": true}}),
                )
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
            assert_eq!(a.header("x-policy-mesh-provider"), Some(expected));
            let (chunks, done) = chunks(&a);
            assert!(done, "no [DONE]: {}", a.text);
            assert_eq!(streamed_text(&chunks), reply);
            let id = a.header("x-request-id").unwrap().replace('-', "");
            for c in &chunks {
                assert_eq!(c["object"], "chat.completion.chunk");
                assert_eq!(c["id"], format!("chatcmpl-{id}"));
            }
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let text_chunks = chunks
                .iter()
                .filter(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty())
                })
                .count();
            assert_eq!(text_chunks, parts, "one chunk per upstream piece");
            let finish: Vec<_> = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
                .collect();
            assert_eq!(finish, ["stop"]);
            let last = chunks.last().unwrap();
            assert_eq!(last["choices"], json!([]), "usage chunk last: {last}");
            assert!(last["usage"]["completion_tokens"].as_u64().is_some());
            let event = g.audit(a.header("x-request-id").unwrap()).await;
            assert_eq!(event["status"], "success");
            assert_eq!(event["provider"], expected);
            let after = g.t.metrics().await;
            let ttft = "chat_time_to_first_token_seconds_count";
            assert_eq!(
                series(&after, ttft, expected),
                series(&before, ttft, expected) + 1.0
            );
        }
        // Each upstream was asked to stream.
        assert_eq!(g.local.single_request().json()["stream"], json!(true));
        let sent = g.public.single_request().json();
        assert_eq!(sent["stream"], json!(true));
        if flavor == Flavor::OpenAi {
            assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        }
        g.finish().await;
    }
}

#[tokio::test]
async fn without_include_usage_a_stream_has_no_usage_chunk() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    let a = g
        .post(&json!({"messages": user("hello"), "stream": true}))
        .await;
    let (chunks, done) = chunks(&a);
    assert!(done);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "{}",
        a.text
    );
    assert!(
        g.public
            .single_request()
            .json()
            .get("stream_options")
            .is_none()
    );
    g.finish().await;
}

#[tokio::test]
async fn text_parts_are_joined_and_the_policy_reads_them() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    let a = g
        .post(&json!({"messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "status of project-"},
                {"type": "text", "text": "nightingale?"}]}]}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-policy-mesh-provider"), Some("local"));
    let sent = g.local.single_request().json();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "be brief"},
               {"role": "user", "content": "status of project-nightingale?"}])
    );
    g.finish().await;
}

#[tokio::test]
async fn generation_settings_reach_the_provider_in_its_own_terms() {
    let body = json!({"model": "gpt-4o", "messages": user("hello"), "temperature": 0.25,
                      "top_p": 0.5, "max_tokens": 77, "stop": "END", "user": "u-1",
                      "frequency_penalty": 0.1, "presence_penalty": -0.2, "seed": 9,
                      "logit_bias": {"1734": -100}, "parallel_tool_calls": false,
                      "metadata": {"x": 1}});
    let openai_only = [
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "logit_bias",
    ];
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    assert_eq!(g.post(&body).await.status, 200);
    let sent = g.public.single_request().json();
    assert_eq!(sent["model"], "gpt-4o", "other names pass as they are");
    assert_eq!(sent["temperature"], json!(0.25));
    assert_eq!(sent["top_p"], json!(0.5));
    assert_eq!(sent["max_tokens"], json!(77));
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["user"], json!("u-1"));
    for field in openai_only {
        assert_eq!(sent[field], body[field], "{field}: {sent}");
    }
    // Not carried: neither forwarded nor refused, as it asks for nothing
    // (the tool settings without tools).
    assert!(sent.get("metadata").is_none(), "{sent}");
    assert!(sent.get("parallel_tool_calls").is_none(), "{sent}");
    g.finish().await;

    let g = Gateway::start(Flavor::Anthropic, &[]).await;
    assert_eq!(g.post(&body).await.status, 200);
    let sent = g.public.single_request().json();
    for field in openai_only {
        assert!(sent.get(field).is_none(), "{field}: {sent}");
    }
    assert_eq!(sent["max_tokens"], json!(77));
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["metadata"], json!({"user_id": "u-1"}));
    let mut local = body.clone();
    local["messages"] = user(SENSITIVE);
    assert_eq!(g.post(&local).await.status, 200);
    let sent = g.local.single_request().json();
    // The local provider does not serve `gpt-4o`: it gets its own model.
    assert_eq!(sent["model"], LOCAL_MODEL);
    assert_eq!(
        sent["options"],
        json!({"temperature": 0.25, "top_p": 0.5, "num_predict": 77, "stop": ["END"]})
    );
    g.finish().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_field_and_reach_no_provider() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    let before = g.t.metrics().await;
    for (body, status, param, code) in [
        ("{".to_owned(), 400, Value::Null, "invalid_json"),
        ("".to_owned(), 400, Value::Null, "invalid_json"),
        (
            json!({"messages": []}).to_string(),
            400,
            json!("messages"),
            "invalid_request",
        ),
        (
            json!({"messages": [{"role": "function", "content": "x", "name": "f"}]}).to_string(),
            400,
            json!("messages[0].role"),
            "invalid_request",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}).to_string(),
            400,
            json!("messages[0].tool_call_id"),
            "invalid_request",
        ),
        (
            json!({"messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]})
            .to_string(),
            400,
            json!("messages[0].content[0].type"),
            "invalid_request",
        ),
        (
            json!({"messages": user("hi"), "max_tokens": -1}).to_string(),
            400,
            json!("max_tokens"),
            "invalid_request",
        ),
        (
            json!({"messages": user("hi"), "n": 2}).to_string(),
            400,
            json!("n"),
            "invalid_request",
        ),
        (
            json!({"messages": user("hi"), "stream": "yes"}).to_string(),
            400,
            json!("stream"),
            "invalid_request",
        ),
        (
            json!({"messages": user("hi"), "stop": [1]}).to_string(),
            400,
            json!("stop[0]"),
            "invalid_request",
        ),
        // Never answered without what it asked for.
        (
            json!({"messages": user("hi"), "functions": [{"name": "get_weather",
                "parameters": {"type": "object"}}]})
            .to_string(),
            400,
            json!("functions"),
            "invalid_request",
        ),
        (
            json!({"messages": user("hi"), "audio": {"voice": "alloy", "format": "mp3"}})
                .to_string(),
            400,
            json!("audio"),
            "invalid_request",
        ),
    ] {
        let a = g.post_raw(body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        let e = &a.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{body}: {e}");
        assert_eq!(e["param"], param, "{body}: {e}");
        assert_eq!(e["code"], code, "{body}: {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let big = json!({"messages": user(&"a".repeat(2 * 1024 * 1024))}).to_string();
    let a = g.post_raw(big).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.json()["error"]["code"], "payload_too_large");
    assert_eq!(g.local.request_count() + g.public.request_count(), 0);
    let after = g.t.metrics().await;
    let counted = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("chat_requests_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(counted(&before), counted(&after));
    // The server goes on.
    assert_eq!(g.post(&json!({"messages": user("hi")})).await.status, 200);
    g.finish().await;
}

#[tokio::test]
async fn a_provider_failure_before_the_stream_is_a_502_or_504_in_openai_shape_audited() {
    let g = Gateway::start(Flavor::OpenAi, &[("PROVIDER_TIMEOUT_SECONDS", "0.5")]).await;
    for (mode, stream, status, code) in [
        (Mode::Status(500), false, 502, "server_error"),
        (Mode::Status(500), true, 502, "server_error"),
        (Mode::Status(401), true, 502, "auth_error"),
        (Mode::Slow, false, 504, "timeout"),
        (Mode::Slow, true, 504, "timeout"),
        (Mode::Garbage, false, 502, "bad_response"),
    ] {
        g.public.set_mode(mode.clone());
        let a = g
            .post(&json!({"messages": user("hello"), "stream": stream}))
            .await;
        assert_eq!(a.status, status, "{mode:?} stream={stream}: {}", a.text);
        assert!(
            a.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        let e = &a.json()["error"];
        assert_eq!(e["type"], "provider_error");
        assert_eq!(e["code"], code);
        // Never the upstream's body, which quotes the key.
        assert!(!a.text.contains("sk-test"), "{}", a.text);
        assert_eq!(a.header("x-policy-mesh-provider"), Some("openai"));
        let event = g.audit(a.header("x-request-id").unwrap()).await;
        assert_eq!(event["status"], "failure");
        assert_eq!(event["failure_category"], code);
    }
    let metrics = g.t.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "chat_requests_total{client=\"anonymous\",provider=\"openai\",status=\"failure\"}"
        ),
        Some(6.0)
    );
    g.finish().await;
}

#[tokio::test]
async fn the_model_list_names_the_configured_models() {
    let g = Gateway::start(Flavor::Anthropic, &[]).await;
    let response = g.t.get("/v1/models").await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_u64());
            (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("policy-mesh", "policy-mesh"),
            (LOCAL_MODEL, "local"),
            (PUBLIC_MODEL, "anthropic")
        ]
    );
    let one: Value =
        g.t.get(&format!("/v1/models/{LOCAL_MODEL}"))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(one["id"], LOCAL_MODEL);
    let missing = g.t.get("/v1/models/nope").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    g.finish().await;
}

impl Gateway {
    /// Polls `/v1/audit/{id}` until the event is there (a stream's event is
    /// written when it ends, which for a client that left is after it left).
    /// The audit event of `id` once its outcome is recorded (no longer
    /// `pending`).
    async fn wait_audit(&self, id: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let response = self.t.get(&format!("/v1/audit/{id}")).await;
            if response.status() == 200 {
                let event: Value = response.json().await.unwrap();
                if event["status"] != "pending" {
                    return event;
                }
            }
            assert!(
                start.elapsed() < crate::support::server::DEADLINE,
                "no audit event {id}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_stream_the_upstream_breaks_ends_with_an_error_event_audited_as_a_failure() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    g.public.set_mode(Mode::StreamThenFail);
    let a = g
        .post(&json!({"messages": user("hello"), "stream": true}))
        .await;
    assert_eq!(a.status, 200);
    let events = a.events();
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "provider_error", "{last}");
    assert_eq!(last["error"]["code"], "bad_response", "{last}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(streamed_text(&chunks), "Hello", "the part before the break");
    let event = g.audit(a.header("x-request-id").unwrap()).await;
    assert_eq!(event["status"], "failure");
    assert_eq!(event["failure_category"], "bad_response");
    let metrics = g.t.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "chat_requests_total{client=\"anonymous\",provider=\"openai\",status=\"failure\"}"
        ),
        Some(1.0)
    );
    g.finish().await;
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_is_audited_and_counted_as_cancelled() {
    let g = Gateway::start(Flavor::Anthropic, &[]).await;
    g.public.set_mode(Mode::StreamThenStall);
    let mut response =
        g.t.client
            .post(format!("{}/v1/chat/completions", g.t.base))
            .json(&json!({"messages": user("hello"), "stream": true}))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut read = String::new();
    while !read.contains("Hello") {
        let chunk = response.chunk().await.unwrap().expect("more of the stream");
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
    // In flight, the event is there already, pending, naming no call yet.
    let pending: Value =
        g.t.get(&format!("/v1/audit/{id}"))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["attempts"], json!([]), "{pending}");
    assert_eq!(pending["provider"], "anthropic", "{pending}");
    drop(response);
    assert!(
        g.public
            .wait_for_disconnect(crate::support::server::DEADLINE)
            .await
    );
    let event = g.wait_audit(&id).await;
    assert_eq!(event["status"], "failure");
    assert_eq!(event["failure_category"], "cancelled");
    assert_eq!(event["provider"], "anthropic");
    let metrics = g.t.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "chat_requests_total{client=\"anonymous\",provider=\"anthropic\",status=\"failure\"}"
        ),
        Some(1.0)
    );
    g.finish().await;
}

#[tokio::test]
async fn the_requested_model_routes_by_the_policy_model_condition() {
    let policy = "version: 1\ndefaults:\n  provider: local\nrules:\n  - id: cloud-models\n    when:\n      model: ['gpt-4o*']\n    route: public\n    reason: cloud_model_requested\n";
    let g = Gateway::start_with(policy, Flavor::OpenAi, &[("LOCAL_LLM_MODELS", "llama3*")]).await;
    for (model, provider, rule, sent) in [
        (
            json!("GPT-4o-mini"),
            "openai",
            "cloud-models",
            "GPT-4o-mini",
        ),
        (json!("llama3.2:1b"), "local", "", "llama3.2:1b"),
        // A name the local provider does not serve gets its own model, not
        // a 404 (LangChain's default, LiteLLM's prefixed names).
        (json!("gpt-3.5-turbo"), "local", "", LOCAL_MODEL),
        (json!("openai/x"), "local", "", LOCAL_MODEL),
        // The listed names mean the chosen provider's model; `policy-mesh`
        // matches no cloud glob, so it stays local.
        (json!("policy-mesh"), "local", "", LOCAL_MODEL),
        (Value::Null, "local", "", LOCAL_MODEL),
    ] {
        for stream in [false, true] {
            let a = g
                .post(&json!({"model": model, "messages": user("hi"), "stream": stream}))
                .await;
            assert_eq!(a.status, 200, "{model}: {}", a.text);
            assert_eq!(
                a.header("x-policy-mesh-provider"),
                Some(provider),
                "{model}"
            );
            assert_eq!(a.header("x-policy-mesh-rule"), Some(rule), "{model}");
            let answered = if stream {
                chunks(&a).0[0]["model"].clone()
            } else {
                a.json()["model"].clone()
            };
            assert_eq!(answered, sent, "{model}");
        }
    }
    let sent: Vec<Value> = g
        .local
        .requests()
        .iter()
        .map(|r| r.json()["model"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            "llama3.2:1b",
            "llama3.2:1b",
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL,
            LOCAL_MODEL
        ]
    );
    g.finish().await;
}

/// The shipped `policies/`, with the public provider as the default so that
/// only its sensitive rules keep a request local.
async fn shipped_gateway() -> Gateway {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files: Vec<(&str, String)> = ["00-defaults.yaml", "10-sensitive.yaml", "20-cost.yaml"]
        .into_iter()
        .map(|name| (name, std::fs::read_to_string(dir.join(name)).unwrap()))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Gateway::start_files(
        &files,
        Flavor::OpenAi,
        &[("POLICY_DEFAULT_PROVIDER", "public")],
    )
    .await
}

#[tokio::test]
async fn with_the_shipped_policy_a_card_or_a_github_token_stays_local_and_its_audit_event_names_the_detector()
 {
    let g = shipped_gateway().await;
    // Long enough that the cost rule would not keep it local anyway.
    let padding = " and more".repeat(150);
    for (prompt, detector) in [
        (
            format!("charge 4111 1111 1111 1111{padding}"),
            "credit_card",
        ),
        (
            format!("push with ghp_{} now{padding}", "a1".repeat(18)),
            "github_token",
        ),
    ] {
        let a = g
            .post(&json!({"model": "gpt-4o", "messages": user(&prompt)}))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header("x-policy-mesh-provider"), Some("local"));
        assert_eq!(a.header("x-policy-mesh-rule"), Some("detected"));
        assert_eq!(a.header("x-policy-mesh-detections"), Some(detector));
        let id = a.header("x-request-id").unwrap().to_owned();
        let event = g.audit(&id).await;
        assert_eq!(
            (&event["provider"], &event["rule"], &event["sensitive"]),
            (&json!("local"), &json!("detected"), &json!(true)),
            "{event}"
        );
        assert_eq!(event["detections"], json!([detector]), "{event}");
    }
    // The control: the same prose without them goes public.
    let a = g
        .post(&json!({"model": "gpt-4o", "messages": user(&format!("plain{padding}"))}))
        .await;
    assert_eq!(
        a.header("x-policy-mesh-provider"),
        Some("openai"),
        "{}",
        a.text
    );
    assert_eq!(g.local.request_count(), 2);
    assert_eq!(g.public.request_count(), 1);
    g.finish().await;
}

#[tokio::test]
async fn a_prompt_over_64_kib_is_decided_off_the_workers_as_any_other() {
    let g = shipped_gateway().await;
    // The keyword at the very end of ~120 KB, and a control without it.
    let long = "words ".repeat(20_000);
    let sensitive = format!("{long} c0nfidential");
    for stream in [false, true] {
        let a = g
            .post(&json!({"model": "gpt-4o", "messages": user(&sensitive), "stream": stream}))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header("x-policy-mesh-rule"), Some("sensitive"));
        assert_eq!(a.header("x-policy-mesh-provider"), Some("local"));
    }
    let decided = g.t.decide(&sensitive).await;
    assert_eq!(
        (&decided["rule"], &decided["route"]),
        (&json!("sensitive"), &json!("local")),
        "{decided}"
    );
    let a = g
        .post(&json!({"model": "gpt-4o", "messages": user(&long)}))
        .await;
    assert_eq!(
        a.header("x-policy-mesh-provider"),
        Some("openai"),
        "{}",
        a.text
    );
    assert_eq!(g.local.request_count(), 2);
    assert_eq!(g.public.request_count(), 1);
    g.finish().await;
}

/// The routes the tool tests go through: the local model, OpenAI and
/// Anthropic (the public fake's flavour).
const TOOL_ROUTES: [(&str, Flavor); 3] = [
    ("local", Flavor::OpenAi),
    ("public", Flavor::OpenAi),
    ("public", Flavor::Anthropic),
];

impl Gateway {
    /// The fake `route` (`local` or `public`) reaches, and the one it must not.
    fn fakes_for(&self, route: &str) -> (&FakeProvider, &FakeProvider) {
        if route == "local" {
            (&self.local, &self.public)
        } else {
            (&self.public, &self.local)
        }
    }
}

/// The weather tool of the tool-loop tests, in OpenAI's shape.
fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather",
        "description": "The weather now in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}})
}

#[tokio::test]
async fn a_two_turn_tool_loop_works_through_each_provider() {
    for (route, flavor) in TOOL_ROUTES {
        let g = Gateway::start(flavor, &[]).await;
        let question = if route == "local" {
            SENSITIVE
        } else {
            "weather in Paris?"
        };
        let (fake, other) = g.fakes_for(route);
        // Turn 1: the model calls two tools at once.
        fake.set_mode(Mode::ToolCalls(vec![
            ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
            ("get_weather".into(), r#"{"city":"Lyon"}"#.into()),
        ]));
        let first = g
            .post(&json!({"messages": user(question), "tools": [weather_tool()]}))
            .await;
        assert_eq!(first.status, 200, "{route} {flavor:?}: {}", first.text);
        let choice = &first.json()["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
        let calls = choice["message"]["tool_calls"].as_array().unwrap().clone();
        assert_eq!(calls.len(), 2, "{choice}");
        let mut ids = Vec::new();
        for (call, city) in calls.iter().zip(["Paris", "Lyon"]) {
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], "get_weather");
            let arguments: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(arguments, json!({"city": city}), "{call}");
            ids.push(call["id"].as_str().unwrap().to_owned());
        }
        assert_ne!(ids[0], ids[1], "each call has its own id");

        // Turn 2: the results go back and the model answers in text.
        fake.set_mode(Mode::Normal);
        fake.set_reply(["Sunny in both."]);
        let mut messages = user(question).as_array().unwrap().clone();
        messages.push(choice["message"].clone());
        for (id, result) in ids.iter().zip(["18 °C", "20 °C"]) {
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
        }
        let second = g
            .post(&json!({"messages": messages, "tools": [weather_tool()]}))
            .await;
        assert_eq!(second.status, 200, "{route} {flavor:?}: {}", second.text);
        let answer = &second.json()["choices"][0];
        assert_eq!(answer["message"]["content"], "Sunny in both.");
        assert_eq!(answer["finish_reason"], "stop");
        let event = g.wait_audit(second.header("x-request-id").unwrap()).await;
        assert_eq!(event["client_api"], "openai", "{event}");
        assert_eq!(event["status"], "success", "{event}");

        // What the provider got in turn 2, in its own terms.
        let sent = fake.requests()[1].json();
        match (route, flavor) {
            ("local", _) => {
                assert_eq!(
                    sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
                    json!({"city": "Paris"}),
                    "{sent}"
                );
                assert_eq!(sent["messages"][2]["role"], "tool");
                assert_eq!(sent["messages"][2]["tool_name"], "get_weather");
                assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
            }
            (_, Flavor::OpenAi) => {
                assert_eq!(sent["messages"][1]["tool_calls"][1]["id"], json!(ids[1]));
                assert_eq!(sent["messages"][3]["tool_call_id"], json!(ids[1]));
                assert_eq!(sent["tools"], json!([weather_tool()]));
            }
            _ => {
                let turns = sent["messages"].as_array().unwrap();
                assert_eq!(turns.len(), 3, "{sent}");
                assert_eq!(turns[1]["content"][1]["type"], "tool_use", "{sent}");
                assert_eq!(turns[1]["content"][1]["input"], json!({"city": "Paris"}));
                assert_eq!(turns[2]["content"][1]["tool_use_id"], json!(ids[1]));
                assert_eq!(
                    sent["tools"][0]["input_schema"]["required"],
                    json!(["city"])
                );
            }
        }
        assert_eq!(other.request_count(), 0, "{route} {flavor:?}");
        g.finish().await;
    }
}

#[tokio::test]
async fn a_sensitive_word_in_a_tool_call_result_or_definition_keeps_the_request_local() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    let call = |arguments: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "lookup", "arguments": arguments}}]})
    };
    let result =
        |content: &str| json!({"role": "tool", "tool_call_id": "call_1", "content": content});
    let plain_tool = json!({"type": "function", "function": {"name": "lookup"}});
    for (case, messages, tools) in [
        (
            "tool arguments",
            json!([{"role": "user", "content": "look it up"},
                call(r#"{"query":"project-nightingale budget"}"#), result("none")]),
            json!([plain_tool]),
        ),
        (
            "tool result",
            json!([{"role": "user", "content": "look it up"},
                call(r#"{"query":"budget"}"#), result("Project-Nightingale: 4 M€")]),
            json!([plain_tool]),
        ),
        (
            "tool description",
            json!([{"role": "user", "content": "look it up"}]),
            json!([{"type": "function", "function": {"name": "lookup",
                "description": "Searches the project-nightingale files"}}]),
        ),
        (
            "tool call name",
            json!([{"role": "user", "content": "look it up"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "project-nightingale",
                    "arguments": "{}"}}]}, result("ok")]),
            json!([plain_tool]),
        ),
    ] {
        let a = g.post(&json!({"messages": messages, "tools": tools})).await;
        assert_eq!(a.status, 200, "{case}: {}", a.text);
        assert_eq!(a.header("x-policy-mesh-provider"), Some("local"), "{case}");
        assert_eq!(a.header("x-policy-mesh-rule"), Some("sensitive"), "{case}");
    }
    assert_eq!(
        g.public.request_count(),
        0,
        "the public fake received a prompt"
    );
    assert_eq!(g.local.request_count(), 4);
    // The same without the word goes public, as the control.
    let a = g
        .post(
            &json!({"messages": [{"role": "user", "content": "look it up"}],
            "tools": [plain_tool]}),
        )
        .await;
    assert_eq!(
        a.header("x-policy-mesh-provider"),
        Some("openai"),
        "{}",
        a.text
    );
    g.finish().await;
}

#[tokio::test]
async fn a_demanded_tool_call_to_the_local_model_is_refused_before_anything_is_written() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    for choice in [
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let a = g
            .post(
                &json!({"messages": user(SENSITIVE), "tools": [weather_tool()],
                "tool_choice": choice}),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        let e = &a.json()["error"];
        assert_eq!(e["param"], "tool_choice", "{e}");
        assert_eq!(e["code"], "invalid_request", "{e}");
        assert_eq!(a.header("x-policy-mesh-provider"), Some("local"));
    }
    assert_eq!(g.local.request_count() + g.public.request_count(), 0);
    // Routed public, the same request is carried.
    g.public.set_mode(Mode::ToolCalls(vec![(
        "get_weather".into(),
        r#"{"city":"Oslo"}"#.into(),
    )]));
    let a = g
        .post(
            &json!({"messages": user("weather in Oslo?"), "tools": [weather_tool()],
            "tool_choice": "required"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(g.public.single_request().json()["tool_choice"], "required");
    g.finish().await;
}

#[tokio::test]
async fn streamed_tool_calls_take_openais_chunk_form_from_each_provider() {
    // Escapes, a quote and a character of two UTF-8 bytes, which the fakes
    // cut across events and across the body's chunks.
    let paris = r#"{"city":"Orléans \"centre\"","unit":"c"}"#;
    let lyon = r#"{"city":"Lyon"}"#;
    for (route, flavor) in TOOL_ROUTES {
        let case = format!("{route} {flavor:?}");
        let g = Gateway::start(flavor, &[]).await;
        let question = if route == "local" {
            SENSITIVE
        } else {
            "weather?"
        };
        let (fake, other) = g.fakes_for(route);
        fake.set_mode(Mode::ToolCalls(vec![
            ("get_weather".into(), paris.into()),
            ("get_weather".into(), lyon.into()),
        ]));
        let a = g
            .post(&json!({"messages": user(question), "tools": [weather_tool()], "stream": true}))
            .await;
        assert_eq!(a.status, 200, "{case}: {}", a.text);
        let events = a.events();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{case}");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        // Per call: its first delta names it, the later ones add arguments.
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish = None;
        for chunk in &chunks {
            let choice = &chunk["choices"][0];
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_owned());
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                if let Some(id) = call["id"].as_str() {
                    assert_eq!(index, calls.len(), "{case}: calls start in order: {chunk}");
                    assert_eq!(call["type"], "function", "{case}");
                    let name = call["function"]["name"].as_str().unwrap().to_owned();
                    calls.push((id.to_owned(), name, String::new()));
                } else {
                    assert!(
                        call.get("type").is_none() && call["function"].get("name").is_none(),
                        "{case}: a later delta carries only arguments: {chunk}"
                    );
                }
                calls[index].2 += call["function"]["arguments"].as_str().unwrap();
            }
        }
        assert_eq!(finish.as_deref(), Some("tool_calls"), "{case}");
        assert_eq!(calls.len(), 2, "{case}: {events:?}");
        assert_ne!(calls[0].0, calls[1].0, "{case}");
        for ((_, name, arguments), expected) in calls.iter().zip([paris, lyon]) {
            assert_eq!(name, "get_weather", "{case}");
            let got: Value = serde_json::from_str(arguments)
                .unwrap_or_else(|e| panic!("{case}: {arguments:?} is not JSON: {e}"));
            assert_eq!(
                got,
                serde_json::from_str::<Value>(expected).unwrap(),
                "{case}"
            );
        }
        let sent = fake.single_request().json();
        assert_eq!(sent["stream"], true, "{case}");
        assert_eq!(other.request_count(), 0, "{case}");
        g.finish().await;
    }
}

/// An Anthropic Messages request of one user turn.
fn anthropic_turn(content: Value) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn the_messages_api_keeps_a_confidential_tool_result_local_and_answers_in_anthropics_shapes()
{
    let g = Gateway::start(Flavor::Anthropic, &[]).await;
    // A confidential word in a tool result, a tool input and a tool's
    // description: each stays local; the public fake receives nothing.
    let tool_use = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
        "name": "lookup", "input": {"q": "budget"}}]});
    for (case, mut body) in [
        (
            "tool result",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
                {"role": "user", "content": "look it up"}, tool_use.clone(),
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "project-nightingale: 4 M€"}]}]}]}),
        ),
        (
            "tool input",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
                {"role": "user", "content": "look it up"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                    "name": "lookup", "input": {"q": "project-nightingale"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": "none"}]}]}),
        ),
        ("tool description", anthropic_turn(json!("look it up"))),
    ] {
        body["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"},
            "description": if case == "tool description" { "searches project-nightingale" }
                else { "searches" }}]);
        let a = g.messages(&body).await;
        assert_eq!(a.status, 200, "{case}: {}", a.text);
        assert_eq!(a.header("x-policy-mesh-provider"), Some("local"), "{case}");
        let m = a.json();
        assert_eq!(m["type"], "message", "{case}: {m}");
        assert_eq!(m["content"][0]["type"], "text", "{case}: {m}");
        assert_eq!(m["stop_reason"], "end_turn", "{case}: {m}");
    }
    assert_eq!(
        g.public.request_count(),
        0,
        "the public fake received a prompt"
    );
    let sent = g.local.requests()[0].json();
    assert_eq!(sent["messages"][2]["role"], "tool", "{sent}");
    assert_eq!(sent["messages"][2]["tool_name"], "lookup", "{sent}");

    // Streamed: Anthropic's event sequence, in order.
    let mut body = anthropic_turn(json!("hello"));
    body["stream"] = json!(true);
    let a = g.messages(&body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut names: Vec<String> = a
        .text
        .split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned)
        })
        .collect();
    // One delta per piece the provider sent.
    names.dedup();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{}",
        a.text
    );
    assert!(a.text.contains(r#""stop_reason":"end_turn""#), "{}", a.text);

    // Failures in Anthropic's shape: the provider's, a wrong shape, no JSON type.
    g.public.set_mode(Mode::Status(500));
    let a = g.messages(&anthropic_turn(json!("hello"))).await;
    assert_eq!(a.status, 502, "{}", a.text);
    let e = a.json();
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["type"], "api_error", "{e}");
    assert!(
        !a.text.contains("sk-"),
        "the upstream body or key leaked: {}",
        a.text
    );
    let a = g.messages(&json!({"model": "m", "messages": []})).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    let response =
        g.t.client
            .post(format!("{}/v1/messages", g.t.base))
            .header("content-type", "text/plain")
            .body(anthropic_turn(json!("hello")).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 415);
    let e: Value = response.json().await.unwrap();
    assert_eq!(
        (&e["type"], &e["error"]["type"]),
        (&json!("error"), &json!("invalid_request_error")),
        "{e}"
    );
    g.finish().await;
}

/// A 1×1 PNG, base64.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[tokio::test]
async fn an_image_reaches_each_provider_in_its_own_form() {
    let data_url = format!("data:image/png;base64,{PNG}");
    let with_image = |question: &str, url: &str| {
        json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]})
    };
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let g = Gateway::start(flavor, &[]).await;
        let a = g.post(&with_image("what is this?", &data_url)).await;
        assert_eq!(a.status, 200, "{flavor:?}: {}", a.text);
        let sent = g.public.single_request().json();
        match flavor {
            Flavor::OpenAi => assert_eq!(
                sent["messages"][0]["content"],
                json!([{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": data_url}}]),
                "{sent}"
            ),
            _ => assert_eq!(
                sent["messages"][0]["content"],
                json!([{"type": "text", "text": "what is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                        "data": PNG}}]),
                "{sent}"
            ),
        }
        // To the local model: base64 in `images`; a URL cannot go there.
        let a = g.post(&with_image(SENSITIVE, &data_url)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let sent = g.local.single_request().json();
        assert_eq!(sent["messages"][0]["images"], json!([PNG]), "{sent}");
        assert_eq!(sent["messages"][0]["content"], SENSITIVE);
        let a = g
            .post(&with_image(SENSITIVE, "https://example.com/cat.png"))
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert_eq!(
            a.json()["error"]["param"],
            "messages[0].content",
            "{}",
            a.text
        );
        assert_eq!(g.local.request_count(), 1, "nothing sent, nothing fetched");
        g.finish().await;
    }
}

#[tokio::test]
async fn has_images_keeps_pictures_local_and_the_public_fake_sees_none() {
    let policy = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: pictures\n    sensitive: true\n    when:\n      has_images: true\n    route: local\n";
    let g = Gateway::start_with(policy, Flavor::Anthropic, &[]).await;
    let picture = json!({"type": "image_url",
        "image_url": {"url": format!("data:image/png;base64,{PNG}")}});
    // The image is in an earlier turn; the last one is plain text.
    let a = g
        .post(&json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, picture]},
            {"role": "assistant", "content": "a cat"},
            {"role": "user", "content": "and now?"}]}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-policy-mesh-rule"), Some("pictures"));
    assert_eq!(a.header("x-policy-mesh-sensitive"), Some("true"));
    // Through the Messages API too.
    let a = g
        .messages(
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                "media_type": "image/png", "data": PNG}}, {"type": "text", "text": "what?"}]}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("x-policy-mesh-provider"), Some("local"));
    assert_eq!(
        g.local.requests()[1].json()["messages"][0]["images"],
        json!([PNG])
    );
    assert_eq!(
        g.public.request_count(),
        0,
        "the public fake received an image"
    );
    // Without an image the same conversation goes public.
    let a = g.post(&json!({"messages": user("and now?")})).await;
    assert_eq!(
        a.header("x-policy-mesh-provider"),
        Some("anthropic"),
        "{}",
        a.text
    );
    let routes = g.t.routes().await;
    assert_eq!(
        routes["rules"][0]["conditions"]["has_images"], true,
        "{routes}"
    );
    g.finish().await;
}

#[tokio::test]
async fn structured_output_reaches_each_provider_in_its_own_terms() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}},
        "required": ["answer"]});
    let format = |strict: bool| {
        json!({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema,
            "strict": strict}})
    };
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    // OpenAI: as it is.
    let a = g
        .post(&json!({"messages": user("hi"), "response_format": format(true)}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        g.public.single_request().json()["response_format"],
        format(true)
    );
    // Ollama: `format`, the schema or "json".
    let a = g
        .post(&json!({"messages": user(SENSITIVE), "response_format": format(true)}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(g.local.requests()[0].json()["format"], schema);
    let a = g
        .post(&json!({"messages": user(SENSITIVE), "response_format": {"type": "json_object"}}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(g.local.requests()[1].json()["format"], "json");
    // A confidential word in the schema keeps the request local.
    let secret_schema = json!({"type": "json_schema", "json_schema": {"name": "reply",
        "schema": {"type": "object", "description": "the project-nightingale budget"}}});
    let a = g
        .post(&json!({"messages": user("hi"), "response_format": secret_schema}))
        .await;
    assert_eq!(
        a.header("x-policy-mesh-provider"),
        Some("local"),
        "{}",
        a.text
    );
    assert_eq!(g.public.request_count(), 1);
    g.finish().await;

    let g = Gateway::start(Flavor::Anthropic, &[]).await;
    // Anthropic: the instruction in `system`; a strict schema cannot be kept.
    let a = g
        .post(&json!({"messages": user("hi"), "response_format": format(false)}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let sent = g.public.single_request().json();
    let system = sent["system"].as_str().unwrap();
    assert!(
        system.contains("JSON Schema") && system.contains("\"answer\""),
        "{sent}"
    );
    let a = g
        .post(&json!({"messages": user("hi"), "response_format": format(true)}))
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json()["error"]["param"], "response_format");
    assert_eq!(
        g.public.request_count(),
        1,
        "nothing sent for the strict schema"
    );
    g.finish().await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_tool_call_stream_stops_the_upstream_and_is_audited_cancelled() {
    for (api, flavor) in [("openai", Flavor::Anthropic), ("anthropic", Flavor::OpenAi)] {
        let g = Gateway::start(flavor, &[]).await;
        g.public.set_mode(Mode::ToolCallsThenStall(vec![(
            "get_weather".into(),
            r#"{"city":"a long name for the city, so that the stream stalls inside it"}"#.into(),
        )]));
        let (path, body) = if api == "openai" {
            (
                "/v1/chat/completions",
                json!({"messages": user("weather?"), "tools": [weather_tool()], "stream": true}),
            )
        } else {
            (
                "/v1/messages",
                json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                "stream": true, "messages": [{"role": "user", "content": "weather?"}],
                "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
            )
        };
        let mut response =
            g.t.client
                .post(format!("{}{path}", g.t.base))
                .json(&body)
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), 200, "{api}");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        // Read until the tool call has begun, then hang up.
        let mut read = String::new();
        while !read.contains("get_weather") {
            let chunk = response.chunk().await.unwrap().expect("more of the stream");
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(response);
        assert!(
            g.public
                .wait_for_disconnect(crate::support::server::DEADLINE)
                .await,
            "{api}: the upstream call went on"
        );
        let event = g.wait_audit(&id).await;
        assert_eq!(event["status"], "failure", "{api}: {event}");
        assert_eq!(event["failure_category"], "cancelled", "{api}: {event}");
        assert_eq!(event["client_api"], api, "{api}: {event}");
        g.finish().await;
    }
}
