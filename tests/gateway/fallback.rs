//! Providers named in the policy, fallback chains, retries and circuits, on
//! the wire: a real server over fakes of the three provider kinds that fail
//! on demand in every category. Above all: a request decided sensitive never
//! reaches a public fake, whatever fails.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_providers::{FakeProvider, Mode, SLOW_DELAY, closed_port_url};
use crate::support::server::{DEADLINE, TestServer, metric};

const SENSITIVE: &str = "the project-nightingale figures";
/// A prompt over the shipped cost rule's 1000 characters.
const LONG: &str = concat!(
    "Please summarise the following meeting notes for the team newsletter. ",
    "The quarterly planning session covered hiring, the office move, the ",
    "new coffee machine, the summer party, the parking rules and the plan ",
    "for the next release of the public website, which goes live in June. ",
    "Everyone agreed that the agenda was too long and that the next session ",
    "should be shorter, with the coffee machine discussed first and at length. ",
    "The parking rules stay as they are until the office move is complete. ",
    "The summer party will be held in the park if the weather allows it, and ",
    "in the canteen otherwise; volunteers for the barbecue are welcome. The ",
    "website release needs two more reviewers and a final check of the ",
    "translations, which the team in Lisbon offered to do this week. Hiring ",
    "continues with two open positions for the support desk and one for the ",
    "design team; interviews are planned for the first two weeks of May. ",
    "Questions about any of this go to the office manager, as usual, by mail. ",
    "Thank you all for coming, and see you next quarter."
);

/// Every way a provider fails before its answer: the fake's mode and the
/// category the gateway sorts it into.
fn faults() -> Vec<(Mode, &'static str)> {
    vec![
        (Mode::Close, "connect_error"),
        (Mode::Slow, "timeout"),
        (Mode::RateLimited(None), "rate_limited"),
        (Mode::RateLimited(Some(0)), "rate_limited"),
        (Mode::Status(500), "server_error"),
        (Mode::Status(401), "auth_error"),
        (Mode::Garbage, "bad_response"),
    ]
}

/// Four fakes: the built-in `local` (Ollama) and `openai`, and the policy's
/// `gpu-box` (a second Ollama, local) and `claude` (Anthropic, public).
struct Mesh {
    server: TestServer,
    local: FakeProvider,
    openai: FakeProvider,
    gpu: FakeProvider,
    claude: FakeProvider,
}

/// The policy over the fakes: a sensitive rule served by `gpu-box` then
/// `local`; requests naming a `gpu*` model go to `gpu-box` then `local`,
/// `claude*` to `claude` then `openai`, the rest to `openai` then `claude`.
fn policy(gpu: &str, claude: &str, gpu_circuit: &str) -> String {
    format!(
        "version: 1
defaults:
  provider: public
  fallback: [claude]
providers:
  - id: gpu-box
    api: ollama
    url: {gpu}
    trust: local
    model: gpu-model
    models: ['gpu*']
    timeouts: {{ first_byte: 0.5, idle: 0.5, total: 2 }}
    circuit: {gpu_circuit}
  - id: claude
    api: anthropic
    url: {claude}/v1
    trust: public
    model: claude-model
    models: ['claude*']
    api_key_env: CLAUDE_TEST_KEY
    timeouts: {{ first_byte: 0.5, idle: 0.5, total: 2 }}
rules:
  - id: secret
    sensitive: true
    when: {{ keywords: [project-nightingale] }}
    route: gpu-box
    fallback: [local]
  - id: to-gpu
    when: {{ model: ['gpu*'] }}
    route: gpu-box
    fallback: [local]
  - id: to-claude
    when: {{ model: ['claude*'] }}
    route: claude
    fallback: [public]
  - id: to-local
    when: {{ model: ['local*'] }}
    route: local
"
    )
}

impl Mesh {
    async fn start() -> Mesh {
        Self::start_with("{ failures: 100, cooldown_seconds: 30 }", &[]).await
    }

    async fn start_with(gpu_circuit: &str, env: &[(&str, &str)]) -> Mesh {
        let local = FakeProvider::ollama().await;
        let openai = FakeProvider::openai().await;
        let gpu = FakeProvider::ollama().await;
        let claude = FakeProvider::anthropic().await;
        let text = policy(&gpu.url(), &claude.url(), gpu_circuit);
        let mut vars = vec![
            ("LOCAL_LLM_URL".to_owned(), local.url()),
            ("LOCAL_LLM_MODEL".to_owned(), "local-model".to_owned()),
            ("PUBLIC_LLM_URL".to_owned(), openai.url()),
            ("PUBLIC_LLM_PROVIDER".to_owned(), "openai".to_owned()),
            ("PUBLIC_LLM_API_KEY".to_owned(), "sk-openai-test".to_owned()),
            ("CLAUDE_TEST_KEY".to_owned(), "sk-claude-test".to_owned()),
            ("PROVIDER_TIMEOUT_SECONDS".to_owned(), "1".to_owned()),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = TestServer::start(&[("00-mesh.yaml", &text)], &pairs).await;
        Mesh {
            server,
            local,
            openai,
            gpu,
            claude,
        }
    }

    fn fake(&self, id: &str) -> &FakeProvider {
        match id {
            "local" => &self.local,
            "openai" => &self.openai,
            "gpu-box" => &self.gpu,
            "claude" => &self.claude,
            other => panic!("no fake {other}"),
        }
    }

    fn public_requests(&self) -> usize {
        self.openai.request_count() + self.claude.request_count()
    }

    /// `POST /v1/chat`: status and body.
    async fn chat(&self, prompt: &str, model: Option<&str>) -> (u16, Value) {
        let response = self
            .server
            .client
            .post(format!("{}/v1/chat", self.server.base))
            .json(&json!({"messages": [{"role": "user", "content": prompt}], "model": model}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// `POST /v1/chat/completions` with `stream: true`: status, the
    /// provider and attempts headers, and the body.
    async fn stream(&self, prompt: &str, model: &str) -> (u16, String, String, String) {
        let response = self
            .server
            .client
            .post(format!("{}/v1/chat/completions", self.server.base))
            .json(&json!({"model": model, "stream": true,
                "messages": [{"role": "user", "content": prompt}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (provider, attempts) = (
            header("x-policy-mesh-provider"),
            header("x-policy-mesh-attempts"),
        );
        (status, provider, attempts, response.text().await.unwrap())
    }

    async fn audit(&self, id: &str) -> Value {
        let response = self.server.get(&format!("/v1/audit/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every fake answers again, and one success on each resets its
    /// circuit's count of consecutive failures (the built-ins open theirs
    /// after 5).
    async fn reset(&self) {
        for fake in [&self.local, &self.openai, &self.gpu, &self.claude] {
            fake.set_mode(Mode::Normal);
        }
        for (model, provider) in [
            ("local-x", "local"),
            ("gpt-4o", "openai"),
            ("gpu-x", "gpu-box"),
            ("claude-x", "claude"),
        ] {
            let (status, body) = self.chat("hello", Some(model)).await;
            assert_eq!(
                (status, &body["provider"]),
                (200, &json!(provider)),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn a_failing_first_provider_falls_back_to_the_next_with_the_attempts_audited() {
    let m = Mesh::start().await;
    // The first provider of each kind, the model that routes to it, and its
    // fallback: Ollama, OpenAI and Anthropic.
    let chains = [
        ("gpu-box", "gpu-x", "local"),
        ("openai", "gpt-4o", "claude"),
        ("claude", "claude-x", "openai"),
    ];
    for (first, model, second) in chains {
        for (mode, category) in faults() {
            m.reset().await;
            m.fake(first).set_mode(mode.clone());
            let before = m.fake(second).request_count();
            let (status, body) = m.chat("hello", Some(model)).await;
            let case = format!("{first} {mode:?}");
            assert_eq!(status, 200, "{case}: {body}");
            assert_eq!(body["provider"], second, "{case}");
            assert_eq!(body["attempts"], 2, "{case}");
            assert_eq!(m.fake(second).request_count(), before + 1, "{case}");
            let event = m.audit(body["request_id"].as_str().unwrap()).await;
            assert_eq!(event["status"], "success", "{case}");
            assert_eq!(event["provider"], second, "{case}");
            assert_eq!(event["sensitive"], false, "{case}");
            let attempts: Vec<(Value, Value)> = event["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["provider"].clone(), a["outcome"].clone()))
                .collect();
            assert_eq!(
                attempts,
                [
                    (json!(first), json!(category)),
                    (json!(second), json!("success"))
                ],
                "{case}"
            );
            // The fallback got its own model, not the one meant for the first.
            let sent = m.fake(second).requests().last().unwrap().json();
            assert_ne!(sent["model"], model, "{case}");

            // Streamed, before the first byte: the same fallback.
            let (status, provider, calls, text) = m.stream("hello", model).await;
            assert_eq!(status, 200, "{case} streamed: {text}");
            assert_eq!(provider, second, "{case} streamed");
            assert_eq!(calls, "2", "{case} streamed");
            assert!(
                text.ends_with("data: [DONE]\n\n"),
                "{case} streamed: {text}"
            );
        }
    }
    let metrics = m.server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "chat_fallbacks_total{from=\"openai\",to=\"claude\"}"
        ),
        Some(14.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "provider_attempts_total{outcome=\"rate_limited\",provider=\"gpu-box\"}"
        ),
        Some(4.0)
    );
}

#[tokio::test]
async fn a_sensitive_request_never_reaches_a_public_provider_whatever_fails() {
    let m = Mesh::start().await;
    let mut local_faults = faults();
    local_faults.push((Mode::Normal, "success"));
    for (gpu_mode, _) in faults() {
        for (local_mode, local_outcome) in &local_faults {
            // The public fakes answer the reset calls only; count from here.
            m.reset().await;
            let public_before = m.public_requests();
            m.gpu.set_mode(gpu_mode.clone());
            m.local.set_mode(local_mode.clone());
            let case = format!("gpu-box {gpu_mode:?}, local {local_mode:?}");
            let (status, body) = m.chat(SENSITIVE, Some("gpt-4o")).await;
            assert_eq!(body["sensitive"], true, "{case}");
            if *local_outcome == "success" {
                assert_eq!(status, 200, "{case}: {body}");
                assert_eq!(body["provider"], "local", "{case}");
            } else {
                assert!(status >= 500, "{case}: {status} {body}");
                assert!(
                    body["error"].as_str().unwrap().starts_with(local_outcome),
                    "{case}: {body}"
                );
            }
            let (_, provider, _, _) = m.stream(SENSITIVE, "claude-x").await;
            assert!(
                provider == "local" || provider == "gpu-box",
                "{case}: {provider}"
            );
            assert_eq!(
                m.public_requests(),
                public_before,
                "{case}: a public fake was called"
            );
        }
    }
    // Nothing sensitive ever reached a public fake, resets included.
    for fake in [&m.openai, &m.claude] {
        assert!(
            fake.requests()
                .iter()
                .all(|r| !r.json().to_string().contains("project-nightingale"))
        );
    }
}

#[tokio::test]
async fn a_client_error_is_not_routed_around() {
    let m = Mesh::start().await;
    for status in [400, 404, 422] {
        m.openai.set_mode(Mode::Status(status));
        let (code, body) = m.chat("hello", Some("gpt-4o")).await;
        assert_eq!(code, 502, "{body}");
        assert_eq!(body["provider"], "openai");
        assert_eq!(body["attempts"], 1);
        let error = body["error"].as_str().unwrap();
        assert_eq!(
            error,
            format!(
                "client_error: openai answered HTTP {status} for model gpt-4o at /v1/chat/completions"
            )
        );
    }
    assert_eq!(m.claude.request_count(), 0, "the fallback was called");
}

#[tokio::test]
async fn retries_wait_and_follow_retry_after_on_the_same_provider() {
    let m = Mesh::start().await;
    // gpu-box gets one retry, through a reload that sets it.
    let text = policy(
        &m.gpu.url(),
        &m.claude.url(),
        "{ failures: 100, cooldown_seconds: 30 }",
    )
    .replace(
        "    model: gpu-model\n",
        "    model: gpu-model\n    retries: 1\n",
    );
    std::fs::write(m.server.path("00-mesh.yaml"), &text).unwrap();
    m.server
        .wait_routes("gpu-box with a retry", |r| {
            r["providers"][2]["retries"] == 1
        })
        .await;
    for first in [Mode::Status(503), Mode::RateLimited(Some(1)), Mode::Close] {
        m.gpu.set_script([first.clone()]);
        let before = m.gpu.request_count();
        let (status, body) = m.chat("hello", Some("gpu-x")).await;
        assert_eq!(status, 200, "{first:?}: {body}");
        assert_eq!(body["provider"], "gpu-box", "{first:?}");
        assert_eq!(body["attempts"], 2, "{first:?}");
        assert_eq!(m.gpu.request_count(), before + 2, "{first:?}");
    }
    // A Retry-After beyond 5 s is not waited for: straight to the fallback.
    m.gpu.set_script([Mode::RateLimited(Some(30))]);
    let (status, body) = m.chat("hello", Some("gpu-x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "local");
    // A 401 is not retried either.
    m.gpu.set_script([Mode::Status(401)]);
    let before = m.gpu.request_count();
    let (_, body) = m.chat("hello", Some("gpu-x")).await;
    assert_eq!(body["provider"], "local");
    assert_eq!(m.gpu.request_count(), before + 1);
}

#[tokio::test]
async fn a_circuit_opens_after_its_failures_skips_the_provider_and_closes_after_a_probe() {
    let m = Mesh::start_with("{ failures: 2, cooldown_seconds: 3 }", &[]).await;
    m.gpu.set_mode(Mode::Status(500));
    for _ in 0..2 {
        let (status, body) = m.chat("hello", Some("gpu-x")).await;
        assert_eq!(
            (status, &body["provider"]),
            (200, &json!("local")),
            "{body}"
        );
    }
    let calls = m.gpu.request_count();
    assert_eq!(calls, 2);
    let routes = m.server.routes().await;
    assert_eq!(routes["providers"][2]["id"], "gpu-box");
    assert_eq!(routes["providers"][2]["circuit"]["state"], "open");
    let metrics = m.server.metrics().await;
    assert_eq!(
        metric(&metrics, "provider_circuit_open{provider=\"gpu-box\"}"),
        Some(1.0)
    );
    // Skipped: no call, recorded as unavailable, served by local.
    let (status, body) = m.chat("hello", Some("gpu-x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "local");
    assert_eq!(body["attempts"], 1, "a skip is not a call");
    assert_eq!(m.gpu.request_count(), calls);
    let event = m.audit(body["request_id"].as_str().unwrap()).await;
    assert_eq!(event["attempts"][0]["outcome"], "unavailable");
    assert_eq!(event["attempts"][0]["provider"], "gpu-box");
    // With every provider of the chain skipped the answer is 503.
    m.local.set_mode(Mode::Status(500));
    // (local's own circuit has the default threshold: two failures do not open it)
    let (status, body) = m.chat(SENSITIVE, None).await;
    assert!(status >= 500, "{body}");
    assert_eq!(m.gpu.request_count(), calls);
    m.local.set_mode(Mode::Normal);
    // After the cooldown the next request probes it; a success closes it.
    m.gpu.set_mode(Mode::Normal);
    m.server
        .wait_routes("the cooldown to end", |r| {
            r["providers"][2]["circuit"]["state"] == "half_open"
        })
        .await;
    let (status, body) = m.chat("hello", Some("gpu-x")).await;
    assert_eq!(
        (status, &body["provider"]),
        (200, &json!("gpu-box")),
        "{body}"
    );
    assert_eq!(
        m.server.routes().await["providers"][2]["circuit"]["state"],
        "closed"
    );
    let metrics = m.server.metrics().await;
    assert_eq!(
        metric(&metrics, "provider_circuit_open{provider=\"gpu-box\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "provider_attempts_total{outcome=\"unavailable\",provider=\"gpu-box\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn every_circuit_open_answers_503_providers_unavailable() {
    let m = Mesh::start_with("{ failures: 1, cooldown_seconds: 30 }", &[]).await;
    m.gpu.set_mode(Mode::Status(500));
    m.local.set_mode(Mode::Status(500));
    // Opens gpu-box's circuit (one failure) and fails local too.
    let (status, _) = m.chat(SENSITIVE, None).await;
    assert_eq!(status, 502);
    let routes = m.server.routes().await;
    assert_eq!(routes["providers"][2]["circuit"]["state"], "open");
    // A chain of gpu-box alone: every provider skipped.
    let text = policy(
        &m.gpu.url(),
        &m.claude.url(),
        "{ failures: 1, cooldown_seconds: 30 }",
    )
    .replace(
        "    route: gpu-box\n    fallback: [local]\n  - id: to-gpu",
        "    route: gpu-box\n  - id: to-gpu",
    );
    std::fs::write(m.server.path("00-mesh.yaml"), &text).unwrap();
    m.server
        .wait_routes("the chain without local", |r| {
            r["rules"][0]["fallback"] == json!([])
        })
        .await;
    let (status, body) = m.chat(SENSITIVE, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("unavailable: "),
        "{body}"
    );
    let response = m
        .server
        .client
        .post(format!("{}/v1/chat/completions", m.server.base))
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": SENSITIVE}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "api_error");
    assert_eq!(error["error"]["code"], "providers_unavailable");
    let response = m
        .server
        .client
        .post(format!("{}/v1/messages", m.server.base))
        .json(&json!({"model": "claude-x", "max_tokens": 10,
            "messages": [{"role": "user", "content": SENSITIVE}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    // Every provider was skipped: no call was made.
    assert_eq!(
        response
            .headers()
            .get("x-policy-mesh-attempts")
            .map(|v| v.to_str().unwrap()),
        Some("0")
    );
    assert_eq!(
        response
            .headers()
            .get("x-policy-mesh-provider")
            .map(|v| v.to_str().unwrap()),
        Some("gpu-box")
    );
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error");
    assert_eq!(m.public_requests(), 0);
}

#[tokio::test]
async fn a_stream_that_began_is_not_retried_or_sent_elsewhere() {
    let m = Mesh::start().await;
    m.gpu.set_mode(Mode::StreamThenFail);
    let (status, provider, calls, text) = m.stream("hello", "gpu-x").await;
    assert_eq!(status, 200);
    assert_eq!(provider, "gpu-box");
    assert_eq!(calls, "1");
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(m.local.request_count(), 0, "a stream that began fell back");
    // A stream that stalls after its first chunk is cut by `idle`, in-band.
    m.gpu.set_mode(Mode::StreamThenStall);
    let started = std::time::Instant::now();
    let (status, _, _, text) = m.stream("hello", "gpu-x").await;
    assert_eq!(status, 200);
    assert!(text.contains("timeout"), "{text}");
    assert!(started.elapsed() < SLOW_DELAY, "the stall was not cut");
    assert_eq!(m.local.request_count(), 0);
}

#[tokio::test]
async fn with_the_local_provider_down_a_sensitive_prompt_fails_and_others_fall_back_to_public() {
    let public = FakeProvider::openai().await;
    let down = closed_port_url().await;
    // The shipped policy, with its commented fallback switched on.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let body = std::fs::read_to_string(&path).unwrap();
            let body = body.replace("  # fallback: [public]\n", "  fallback: [public]\n");
            std::fs::write(dir.path().join(path.file_name().unwrap()), body).unwrap();
        }
    }
    assert!(
        std::fs::read_to_string(dir.path().join("00-defaults.yaml"))
            .unwrap()
            .contains("\n  fallback: [public]\n")
    );
    let folder = dir.path().display().to_string();
    let server = TestServer::start_with(
        dir,
        &[("POLICY_DIR", folder.as_str())],
        &[
            ("LOCAL_LLM_URL", down.as_str()),
            ("PUBLIC_LLM_URL", public.url().as_str()),
            ("PUBLIC_LLM_PROVIDER", "openai"),
            ("PUBLIC_LLM_API_KEY", "sk-test"),
        ],
    )
    .await;
    let chat = |prompt: &'static str| {
        let client = server.client.clone();
        let url = format!("{}/v1/chat", server.base);
        async move {
            let response = client
                .post(url)
                .json(&json!({"messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = chat("Summarize this CONFIDENTIAL memo for me").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["sensitive"], true);
    assert!(
        body["error"].as_str().unwrap().starts_with("connect_error"),
        "{body}"
    );
    assert_eq!(public.request_count(), 0);
    // Longer than the shipped cost rule's 1000 characters: the default
    // decision, local with the public provider behind it.
    let (status, body) = chat(LONG).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rule"], Value::Null);
    assert_eq!(body["provider"], "openai");
    assert_eq!(body["attempts"], 2);
    assert_eq!(public.request_count(), 1);
}

#[tokio::test]
async fn decide_and_routes_show_the_chain_without_calling_anything() {
    let m = Mesh::start().await;
    let decision = m.server.decide("hello").await;
    assert_eq!(decision["provider"], "openai");
    assert_eq!(decision["fallback"], json!(["claude"]));
    let decision = m.server.decide(SENSITIVE).await;
    assert_eq!(decision["provider"], "gpu-box");
    assert_eq!(decision["route"], "local");
    assert_eq!(decision["fallback"], json!(["local"]));
    let routes = m.server.routes().await;
    let ids: Vec<&str> = routes["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local", "openai", "gpu-box", "claude"]);
    let claude = &routes["providers"][3];
    assert_eq!(claude["url"], m.claude.url(), "the /v1 suffix is stripped");
    assert_eq!(claude["trust"], "public");
    assert_eq!(claude["timeouts"]["first_byte"], 0.5);
    assert_eq!(claude["timeouts"]["connect"], 1.0);
    assert!(!routes.to_string().contains("sk-claude-test"));
    assert_eq!(routes["defaults"]["fallback"], json!(["claude"]));
    assert_eq!(routes["rules"][1]["fallback"], json!(["local"]));
    assert_eq!(routes["rules"][2]["fallback"], json!(["openai"]));
    assert_eq!(
        m.public_requests() + m.gpu.request_count() + m.local.request_count(),
        0
    );
}

#[tokio::test]
async fn a_reload_that_moves_a_provider_under_load_loses_no_request() {
    let m = Mesh::start().await;
    let moved = FakeProvider::ollama().await;
    let client = m.server.client.clone();
    let url = format!("{}/v1/chat", m.server.base);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let batch: Vec<_> = (0..8)
                .map(|_| {
                    let client = client.clone();
                    let url = url.clone();
                    tokio::spawn(async move {
                        client
                            .post(url)
                            .json(&json!({"model": "gpu-x",
                                "messages": [{"role": "user", "content": "hi"}]}))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                    })
                })
                .collect();
            for request in batch {
                statuses.push(request.await.unwrap().unwrap_or(0));
            }
        }
        statuses
    });
    // Wait until requests flow, then move gpu-box to the other fake.
    let flowing = tokio::time::timeout(DEADLINE, async {
        while m.gpu.request_count() < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(flowing.is_ok(), "no request reached gpu-box");
    let text = policy(
        &moved.url(),
        &m.claude.url(),
        "{ failures: 100, cooldown_seconds: 30 }",
    );
    std::fs::write(m.server.path("00-mesh.yaml"), &text).unwrap();
    let moved_url = moved.url();
    m.server
        .wait_routes("gpu-box moved", |r| r["providers"][2]["url"] == moved_url)
        .await;
    let served = tokio::time::timeout(DEADLINE, async {
        while moved.request_count() < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(served.is_ok(), "no request reached the moved provider");
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        m.gpu.request_count() + moved.request_count(),
        statuses.len(),
        "every request reached gpu-box exactly once, old or new"
    );
    assert_eq!(m.local.request_count(), 0);
}
