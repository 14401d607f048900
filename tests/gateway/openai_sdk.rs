//! The OpenAI-compatible API (`POST /v1/chat/completions`, `GET /v1/models`)
//! and the Messages API (`POST /v1/messages`) as real clients use them: the
//! official OpenAI and Anthropic Python SDKs, driven by
//! `tests/openai_sdk/client.py` and `tests/anthropic_sdk/client.py`, through
//! each provider (fake Ollama, OpenAI and Anthropic upstreams), and a raw
//! HTTP client that hangs up mid-stream.
//!
//! The SDK tests run the interpreter named by `OPENAI_SDK_PYTHON`, one with
//! the `openai` package installed; `eval "$(scripts/openai-sdk-venv.sh)"`
//! makes one and sets it, as `.ci/run` does. They are `#[ignore]`d, so that
//! a machine without the SDK shows them as ignored rather than passed;
//! `.ci/run` runs them with `--include-ignored`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::fake_providers::{FakeProvider, Flavor, Mode};
use crate::support::server::{DEADLINE, TestServer};
use serde_json::{Value, json};

/// Prompts naming the project stay local; prompts about the weather go public.
const POLICY: &str = "version: 1
defaults:
  provider: public
rules:
  - id: sensitive
    when:
      keywords: [project-nightingale]
    route: local
    reason: sensitive_keyword_match
  - id: weather
    when:
      keywords: [weather]
    route: public
    reason: general_question
";
const SENSITIVE: &str = "what is the status of project-nightingale?";
const GENERAL: &str = "what is the weather in Paris?";
const PUBLIC_KEY: &str = "sk-test-public-key";
const LOCAL_MODEL: &str = "local-test-model";
const PUBLIC_MODEL: &str = "public-test-model";
/// The model the SDK asks for; the gateway passes it on.
const CHOSEN_MODEL: &str = "chosen-model";
/// The key every SDK scenario passes as its `api_key`: the gateway asks for
/// client keys (a clients file of this chat key and an admin key).
const CHAT_KEY: &str = "pm_sdk-chat-key-for-the-sdk-scenarios-only-00000";
const ADMIN_KEY: &str = "pm_sdk-admin-key-for-the-sdk-scenarios-only-0000";
/// How long one run of the Python script may take.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// Where a request is routed, and what the gateway says about it.
#[derive(Debug, Clone, Copy)]
enum Route {
    Local,
    OpenAi,
    Anthropic,
}

impl Route {
    const ALL: [Route; 3] = [Route::Local, Route::OpenAi, Route::Anthropic];

    /// The public fake's flavor.
    fn public(self) -> Flavor {
        match self {
            Route::Anthropic => Flavor::Anthropic,
            Route::Local | Route::OpenAi => Flavor::OpenAi,
        }
    }

    fn prompt(self) -> &'static str {
        match self {
            Route::Local => SENSITIVE,
            Route::OpenAi | Route::Anthropic => GENERAL,
        }
    }

    /// `x-policy-mesh-provider`.
    fn provider(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::OpenAi => "openai",
            Route::Anthropic => "anthropic",
        }
    }

    /// `x-policy-mesh-rule` and `x-policy-mesh-reason`.
    fn rule_and_reason(self) -> (&'static str, &'static str) {
        match self {
            Route::Local => ("sensitive", "sensitive_keyword_match"),
            Route::OpenAi | Route::Anthropic => ("weather", "general_question"),
        }
    }
}

/// A gateway in process between a fake Ollama and a fake public provider.
struct Gateway {
    t: TestServer,
    local: FakeProvider,
    public: FakeProvider,
    _clients: tempfile::NamedTempFile,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // The client's key never reaches a provider.
        for fake in [&self.local, &self.public] {
            for request in fake.requests() {
                let headers = format!("{:?}", request.headers);
                assert!(
                    !headers.contains(CHAT_KEY),
                    "a provider received the client key"
                );
            }
        }
    }
}

impl Gateway {
    async fn start(public: Flavor) -> Gateway {
        Gateway::start_with(public, &[]).await
    }

    /// With `env` added to the gateway's variables.
    async fn start_with(public: Flavor, env: &[(&str, &str)]) -> Gateway {
        let local = FakeProvider::ollama().await;
        let public = FakeProvider::start(public).await;
        let mut vars = local.env_vars();
        vars.extend(public.env_vars());
        vars.push(("PUBLIC_LLM_API_KEY".into(), PUBLIC_KEY.into()));
        vars.push(("LOCAL_LLM_MODEL".into(), LOCAL_MODEL.into()));
        // The local server serves the model the scenarios ask for, so it is
        // sent as asked (a name it does not serve would get LOCAL_MODEL).
        vars.push((
            "LOCAL_LLM_MODELS".into(),
            format!("{LOCAL_MODEL},{CHOSEN_MODEL}"),
        ));
        vars.push(("PUBLIC_LLM_MODEL".into(), PUBLIC_MODEL.into()));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let clients = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            clients.path(),
            format!(
                "clients:\n  - {{ id: sdk, key_sha256: {} }}\n  - {{ id: ops, key_sha256: {}, scopes: [admin] }}\n",
                policy_mesh::clients::key_sha256(CHAT_KEY),
                policy_mesh::clients::key_sha256(ADMIN_KEY)
            ),
        )
        .unwrap();
        vars.push(("CLIENTS_FILE".into(), clients.path().display().to_string()));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut t = TestServer::start(&[("policy.yaml", POLICY)], &refs).await;
        t.admin_key = Some(ADMIN_KEY.to_owned());
        Gateway {
            t,
            local,
            public,
            _clients: clients,
        }
    }

    async fn for_route(route: Route) -> Gateway {
        Gateway::start(route.public()).await
    }

    /// The fake that `route` reaches, and the one it must not.
    fn fakes(&self, route: Route) -> (&FakeProvider, &FakeProvider) {
        match route {
            Route::Local => (&self.local, &self.public),
            Route::OpenAi | Route::Anthropic => (&self.public, &self.local),
        }
    }

    /// The base URL an OpenAI client takes.
    fn openai_base(&self) -> String {
        format!("{}/v1", self.t.base)
    }

    /// `POST /v1/chat/completions` from a plain HTTP client.
    async fn completions(&self, body: &Value) -> reqwest::Response {
        self.t
            .client
            .post(format!("{}/v1/chat/completions", self.t.base))
            .bearer_auth(CHAT_KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn version(&self) -> String {
        self.t.routes().await["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The interpreter with the SDK; panics when `OPENAI_SDK_PYTHON` is unset
/// (the test was asked for by `--ignored`).
fn sdk_python() -> String {
    match std::env::var("OPENAI_SDK_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "OPENAI_SDK_PYTHON is not set \
             (eval \"$(scripts/openai-sdk-venv.sh)\" installs the OpenAI SDK and sets it)"
        ),
    }
}

/// Runs one scenario of `client.py` and returns the JSON line it printed;
/// panics, with its output, unless it exits 0 with one.
async fn run_scenario(
    python: &str,
    scenario: &str,
    base: &str,
    model: &str,
    prompt: &str,
) -> Value {
    run_script(
        "tests/openai_sdk/client.py",
        python,
        scenario,
        base,
        model,
        prompt,
    )
    .await
}

/// Runs one scenario of the client script at `script` (relative to the
/// repository), as [`run_scenario`] does.
async fn run_script(
    script: &str,
    python: &str,
    scenario: &str,
    base: &str,
    model: &str,
    prompt: &str,
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut command = tokio::process::Command::new(python);
    command
        .arg(&script)
        .args([scenario, base, model, prompt])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env("POLICY_MESH_KEY", CHAT_KEY)
        // The gateway is on loopback: no proxy, whatever this machine uses.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        command.env_remove(var).env_remove(var.to_ascii_lowercase());
    }
    let output = tokio::time::timeout(SCRIPT_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{scenario}: client.py still running after {SCRIPT_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{scenario}: cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{scenario}: client.py failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{scenario}: client.py printed no JSON line ({e}):\nstdout: {stdout}\nstderr: {stderr}"
        )
    })
}

/// The usage an OpenAI client should see for a reply from `fake`.
fn usage_json(fake: &FakeProvider) -> (u64, u64, u64) {
    let u = fake.usage();
    (u.prompt_tokens, u.completion_tokens, u.total_tokens())
}

fn usage_of(value: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        value[k]
            .as_u64()
            .unwrap_or_else(|| panic!("usage.{k} is a count: {value}"))
    };
    (
        n("prompt_tokens"),
        n("completion_tokens"),
        n("total_tokens"),
    )
}

/// The policy headers of an answer routed by `route`.
async fn check_headers(g: &Gateway, route: Route, headers: &Value, case: &str) {
    let (rule, reason) = route.rule_and_reason();
    let version = g.version().await;
    assert_eq!(
        headers["x-policy-mesh-provider"],
        route.provider(),
        "{case}: {headers}"
    );
    assert_eq!(headers["x-policy-mesh-rule"], rule, "{case}: {headers}");
    assert_eq!(headers["x-policy-mesh-reason"], reason, "{case}: {headers}");
    assert_eq!(
        headers["x-policy-mesh-policy-version"],
        version.as_str(),
        "{case}: {headers}"
    );
    let id = headers["x-request-id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{case}: an x-request-id: {headers}");
}

/// `chat.completions.create`: the reply, the usage, the policy headers, and
/// the request the provider received.
async fn check_create(route: Route) {
    let case = format!("create via {route:?}");
    let python = sdk_python();
    let g = Gateway::for_route(route).await;
    let (fake, other) = g.fakes(route);
    fake.set_reply(["The answer ", "is 42."]);
    let r = run_scenario(
        &python,
        "create",
        &g.openai_base(),
        CHOSEN_MODEL,
        route.prompt(),
    )
    .await;
    assert_eq!(r["status"], 200, "{case}: {r}");
    assert_eq!(r["object"], "chat.completion", "{case}: {r}");
    assert_eq!(r["choices"], 1, "{case}: {r}");
    assert_eq!(r["role"], "assistant", "{case}: {r}");
    assert_eq!(r["content"], "The answer is 42.", "{case}: {r}");
    assert_eq!(r["finish_reason"], "stop", "{case}: {r}");
    assert_eq!(usage_of(&r["usage"]), usage_json(fake), "{case}: {r}");
    check_headers(&g, route, &r["headers"], &case).await;

    let sent = fake.single_request().json();
    assert_eq!(sent["model"], CHOSEN_MODEL, "{case}: {sent}");
    assert!(sent.to_string().contains(route.prompt()), "{case}: {sent}");
    assert_eq!(other.request_count(), 0, "{case}: the other provider");
}

/// `stream=True` with `include_usage`: the reply in several chunks, the
/// usage in a last chunk without choices, the policy headers.
async fn check_stream(route: Route) {
    let case = format!("stream via {route:?}");
    let python = sdk_python();
    let g = Gateway::for_route(route).await;
    let (fake, other) = g.fakes(route);
    fake.set_reply(["The answer ", "is ", "42."]);
    let r = run_scenario(
        &python,
        "stream",
        &g.openai_base(),
        CHOSEN_MODEL,
        route.prompt(),
    )
    .await;
    assert_eq!(r["status"], 200, "{case}: {r}");
    let content_type = r["headers"]["content-type"].as_str().unwrap_or_default();
    assert!(content_type.starts_with("text/event-stream"), "{case}: {r}");
    check_headers(&g, route, &r["headers"], &case).await;

    let chunks = r["chunks"].as_array().unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{case}: {r}"
    );
    let texts: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(texts.concat(), "The answer is 42.", "{case}: {r}");
    assert!(
        texts.len() > 1,
        "{case}: the reply arrives in several chunks: {r}"
    );
    assert!(
        chunks.iter().any(|c| c["finish_reason"] == "stop"),
        "{case}: a chunk says stop: {r}"
    );
    let (last, before) = chunks.split_last().expect("chunks");
    assert_eq!(
        last["choices"], 0,
        "{case}: the usage chunk has no choices: {r}"
    );
    assert_eq!(usage_of(&last["usage"]), usage_json(fake), "{case}: {r}");
    assert!(
        before.iter().all(|c| c["usage"].is_null()),
        "{case}: only the last chunk has usage: {r}"
    );

    let sent = fake.single_request().json();
    assert_eq!(sent["model"], CHOSEN_MODEL, "{case}: {sent}");
    assert_eq!(other.request_count(), 0, "{case}: the other provider");
}

/// User content as a list of text parts reaches the provider as its text.
async fn check_parts(route: Route) {
    let case = format!("parts via {route:?}");
    let python = sdk_python();
    let g = Gateway::for_route(route).await;
    let (fake, other) = g.fakes(route);
    let r = run_scenario(
        &python,
        "parts",
        &g.openai_base(),
        CHOSEN_MODEL,
        route.prompt(),
    )
    .await;
    assert_eq!(r["status"], 200, "{case}: {r}");
    assert_eq!(r["content"], fake.reply_text(), "{case}: {r}");
    check_headers(&g, route, &r["headers"], &case).await;
    let sent = fake.single_request().json().to_string();
    assert!(sent.contains("Please answer."), "{case}: {sent}");
    assert!(sent.contains(route.prompt()), "{case}: {sent}");
    assert_eq!(other.request_count(), 0, "{case}: the other provider");
}

/// A two-turn tool loop with the SDK (`scenario` `tools`, or `tools_stream`
/// for both turns streamed): two parallel calls, their results, and the
/// final answer, each turn through the route's provider.
async fn check_tools(route: Route, scenario: &str) {
    let case = format!("{scenario} via {route:?}");
    let python = sdk_python();
    let g = Gateway::for_route(route).await;
    let (fake, other) = g.fakes(route);
    fake.set_mode(Mode::ToolCalls(vec![
        ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
        ("get_weather".into(), r#"{"city":"Lyon"}"#.into()),
    ]));
    let r = run_scenario(
        &python,
        "tools",
        &g.openai_base(),
        CHOSEN_MODEL,
        route.prompt(),
    )
    .await;
    assert_eq!(r["first_finish_reason"], "tool_calls", "{case}: {r}");
    let calls = r["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2, "{case}: {r}");
    assert_eq!(calls[0]["name"], "get_weather", "{case}: {r}");
    assert_eq!(
        calls[0]["arguments"],
        json!({"city": "Paris"}),
        "{case}: {r}"
    );
    assert_eq!(
        calls[1]["arguments"],
        json!({"city": "Lyon"}),
        "{case}: {r}"
    );
    assert_ne!(calls[0]["id"], calls[1]["id"], "{case}: {r}");
    assert_eq!(r["finish_reason"], "stop", "{case}: {r}");
    assert_eq!(r["content"], fake.reply_text(), "{case}: {r}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{case}");
    let second = requests[1].json().to_string();
    assert!(second.contains("18 °C in Lyon"), "{case}: {second}");
    assert_eq!(other.request_count(), 0, "{case}: the other provider");
}

/// An upstream that breaks its stream after the first part: the SDK yields
/// that part, then raises `openai.APIError` from the gateway's in-band
/// `data: {"error": {...}}` event (it raises `APIConnectionError`, a
/// subclass, when the connection is merely cut, which does not pass).
async fn check_stream_fail(route: Route) {
    let case = format!("stream_fail via {route:?}");
    let python = sdk_python();
    let g = Gateway::for_route(route).await;
    let (fake, _) = g.fakes(route);
    fake.set_reply(["first-part ", "second-part"]);
    fake.set_mode(Mode::StreamThenFail);
    let r = run_scenario(
        &python,
        "stream_fail",
        &g.openai_base(),
        CHOSEN_MODEL,
        route.prompt(),
    )
    .await;
    assert_eq!(r["status"], 200, "{case}: {r}");
    check_headers(&g, route, &r["headers"], &case).await;
    let text: String = r["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["content"].as_str())
        .collect();
    assert_eq!(
        text, "first-part ",
        "{case}: the first part, then the error: {r}"
    );
    let error = &r["error"];
    assert_eq!(error["class"], "APIError", "{case}: {r}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{case}: {r}");
    let body = &error["body"];
    assert!(
        body["message"].is_string(),
        "{case}: the error event's body: {r}"
    );
    assert!(
        body["type"].is_string(),
        "{case}: the error event's body: {r}"
    );
    assert!(!r.to_string().contains(PUBLIC_KEY), "{case}: {r}");
    assert_eq!(fake.request_count(), 1, "{case}: no retry");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_create_through_the_local_model() {
    check_create(Route::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_create_through_openai() {
    check_create(Route::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_create_through_anthropic() {
    check_create(Route::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_stream_through_the_local_model() {
    check_stream(Route::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_stream_through_openai() {
    check_stream(Route::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_stream_through_anthropic() {
    check_stream(Route::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_content_parts_through_each_provider() {
    for route in Route::ALL {
        check_parts(route).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_tool_loop_through_each_provider() {
    for route in Route::ALL {
        check_tools(route, "tools").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_streamed_tool_loop_through_each_provider() {
    for route in Route::ALL {
        check_tools(route, "tools_stream").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_stream_broken_upstream_through_each_provider() {
    for route in Route::ALL {
        check_stream_fail(route).await;
    }
}

/// `messages=[]` is refused before any provider is called, as OpenAI
/// refuses it: a 4xx the SDK raises, with OpenAI's error body.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_bad_request_raises_with_openai_error_body() {
    let python = sdk_python();
    let g = Gateway::start(Flavor::OpenAi).await;
    let r = run_scenario(
        &python,
        "bad_request",
        &g.openai_base(),
        CHOSEN_MODEL,
        GENERAL,
    )
    .await;
    let error = &r["error"];
    let class = error["class"].as_str().unwrap_or_default();
    assert!(
        ["BadRequestError", "UnprocessableEntityError"].contains(&class),
        "{r}"
    );
    let status = error["status"].as_u64().unwrap_or_default();
    assert!((400..500).contains(&status), "{r}");
    let body = &error["response_body"]["error"];
    assert!(body["message"].is_string(), "{r}");
    assert!(body["type"].is_string(), "{r}");
    let keys = body.as_object().map(|o| o.len()).unwrap_or_default();
    assert!(
        body.get("param").is_some() && body.get("code").is_some() && keys == 4,
        "OpenAI's four fields: {r}"
    );
    assert_eq!(g.local.request_count() + g.public.request_count(), 0);
}

/// `models.list()` names both configured default models.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_lists_the_default_models() {
    let python = sdk_python();
    for public in [Flavor::OpenAi, Flavor::Anthropic] {
        let g = Gateway::start(public).await;
        let r = run_scenario(&python, "models", &g.openai_base(), CHOSEN_MODEL, GENERAL).await;
        let data = r["data"].as_array().unwrap();
        let ids: Vec<&str> = data.iter().filter_map(|m| m["id"].as_str()).collect();
        assert!(ids.contains(&LOCAL_MODEL), "{public:?}: {r}");
        assert!(ids.contains(&PUBLIC_MODEL), "{public:?}: {r}");
        for model in data {
            assert_eq!(model["object"], "model", "{public:?}: {r}");
            assert!(model["created"].is_u64(), "{public:?}: {r}");
            assert!(model["owned_by"].is_string(), "{public:?}: {r}");
        }
        assert_eq!(g.local.request_count() + g.public.request_count(), 0);
    }
}

/// A client that hangs up mid-stream makes the gateway hang up on the
/// provider too: the upstream connection is closed, not left streaming.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_stream_closes_the_upstream_connection() {
    for route in Route::ALL {
        let g = Gateway::for_route(route).await;
        let (fake, _) = g.fakes(route);
        fake.set_reply(["first-part ", "second-part"]);
        fake.set_mode(Mode::StreamThenStall);
        let mut response = g.completions(&stream_request(route)).await;
        assert_eq!(response.status(), 200, "{route:?}");
        assert!(
            fake.wait_for_stream_started(DEADLINE).await,
            "{route:?}: the provider began streaming"
        );
        let mut read = String::new();
        while !read.contains("first-part") {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{route:?}: the stream ended early: {read}"));
            read.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(!read.contains("second-part"), "{route:?}: {read}");
        assert_eq!(fake.disconnects(), 0, "{route:?}: still streaming");
        drop(response);
        assert!(
            fake.wait_for_disconnect(DEADLINE).await,
            "{route:?}: the gateway closed the upstream connection once the client left"
        );
    }
}

/// A streaming request routed by `route`.
fn stream_request(route: Route) -> Value {
    json!({"model": CHOSEN_MODEL, "stream": true,
           "messages": [{"role": "user", "content": route.prompt()}]})
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect()
}

/// An error body in OpenAI's shape: exactly `message`, `type`, `param`
/// and `code`, the first two strings.
fn assert_openai_error(error: &Value, case: &str) {
    let mut keys: Vec<&str> = error
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "message", "param", "type"],
        "{case}: {error}"
    );
    assert!(error["message"].is_string(), "{case}: {error}");
    assert!(error["type"].is_string(), "{case}: {error}");
}

/// On the wire: a stream ends with `data: [DONE]`; a stream the provider
/// breaks ends, cleanly, with one `data: {"error": {...}}` event and no
/// `[DONE]`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ends_with_done_or_with_an_in_band_error_event() {
    for route in Route::ALL {
        let g = Gateway::for_route(route).await;
        let (fake, _) = g.fakes(route);
        fake.set_reply(["first-part ", "second-part"]);

        let response = g.completions(&stream_request(route)).await;
        assert_eq!(response.status(), 200, "{route:?}");
        let text = response.text().await.unwrap();
        let data = sse_data(&text);
        let (last, chunks) = data.split_last().expect("events");
        assert_eq!(*last, "[DONE]", "{route:?}: {text}");
        for chunk in chunks {
            let chunk: Value = serde_json::from_str(chunk).unwrap();
            assert_eq!(
                chunk["object"], "chat.completion.chunk",
                "{route:?}: {text}"
            );
        }

        fake.set_mode(Mode::StreamThenFail);
        let response = g.completions(&stream_request(route)).await;
        assert_eq!(response.status(), 200, "{route:?}");
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{route:?}: the stream ends cleanly after the error: {e}"));
        assert!(text.contains("first-part"), "{route:?}: {text}");
        assert!(!text.contains("[DONE]"), "{route:?}: {text}");
        assert!(!text.contains(PUBLIC_KEY), "{route:?}: {text}");
        let data = sse_data(&text);
        let last: Value = serde_json::from_str(data.last().expect("events")).unwrap();
        assert_eq!(
            last.as_object().map(|o| o.len()),
            Some(1),
            "{route:?}: {{\"error\": ...}} alone: {text}"
        );
        assert_openai_error(&last["error"], &format!("{route:?} mid-stream"));
    }
}

/// A provider that fails before the stream begins gets a plain JSON error:
/// 502 for a failure, 504 for a timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_failure_before_streaming_is_a_json_error() {
    for route in Route::ALL {
        let g = Gateway::start_with(route.public(), &[("PROVIDER_TIMEOUT_SECONDS", "1")]).await;
        let (fake, _) = g.fakes(route);
        for (mode, status) in [
            (Mode::Status(500), 502),
            (Mode::Close, 502),
            (Mode::Slow, 504),
        ] {
            let case = format!("{route:?}, {mode:?}");
            fake.set_mode(mode);
            let response = g.completions(&stream_request(route)).await;
            assert_eq!(response.status(), status, "{case}");
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(
                content_type.starts_with("application/json"),
                "{case}: {content_type}"
            );
            let body: Value = response.json().await.unwrap();
            assert!(!body.to_string().contains(PUBLIC_KEY), "{case}: {body}");
            assert_openai_error(&body["error"], &case);
        }
    }
}

/// The interpreter with the Anthropic SDK; panics when
/// `ANTHROPIC_SDK_PYTHON` is unset (the test was asked for by `--ignored`).
fn anthropic_python() -> String {
    match std::env::var("ANTHROPIC_SDK_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "ANTHROPIC_SDK_PYTHON is not set \
             (eval \"$(scripts/openai-sdk-venv.sh)\" installs the Anthropic SDK and sets it)"
        ),
    }
}

/// Runs one scenario of the Anthropic SDK's client script against `g`.
async fn run_anthropic(g: &Gateway, scenario: &str, prompt: &str) -> Value {
    run_script(
        "tests/anthropic_sdk/client.py",
        &anthropic_python(),
        scenario,
        &g.t.base,
        CHOSEN_MODEL,
        prompt,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Anthropic SDK: ANTHROPIC_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn anthropic_sdk_create_and_stream_through_each_provider() {
    for route in Route::ALL {
        let case = format!("{route:?}");
        let g = Gateway::for_route(route).await;
        let (fake, other) = g.fakes(route);
        let r = run_anthropic(&g, "create", route.prompt()).await;
        assert_eq!(r["status"], 200, "{case}: {r}");
        assert_eq!(r["type"], "message", "{case}: {r}");
        assert_eq!(r["role"], "assistant", "{case}: {r}");
        assert_eq!(
            r["content"],
            json!([{"type": "text", "text": fake.reply_text()}]),
            "{case}: {r}"
        );
        assert_eq!(r["stop_reason"], "end_turn", "{case}: {r}");
        let (prompt_tokens, completion_tokens, _) = usage_json(fake);
        assert_eq!(r["usage"]["input_tokens"], prompt_tokens, "{case}: {r}");
        assert_eq!(
            r["usage"]["output_tokens"], completion_tokens,
            "{case}: {r}"
        );
        assert_eq!(
            r["headers"]["x-policy-mesh-provider"],
            route.provider(),
            "{case}: {r}"
        );
        assert_eq!(
            r["headers"]["request-id"], r["headers"]["x-request-id"],
            "{case}: {r}"
        );
        // The Claude model named goes to Anthropic; the others get their own.
        let sent = fake.single_request().json();
        let expected_model = match route {
            Route::Anthropic => CHOSEN_MODEL,
            Route::OpenAi => PUBLIC_MODEL,
            Route::Local => LOCAL_MODEL,
        };
        assert_eq!(sent["model"], expected_model, "{case}: {sent}");
        let id = r["headers"]["request-id"].as_str().unwrap();
        let event: Value =
            g.t.get(&format!("/v1/audit/{id}"))
                .await
                .json()
                .await
                .unwrap();
        assert_eq!(event["client_api"], "anthropic", "{case}: {event}");

        let r = run_anthropic(&g, "stream", route.prompt()).await;
        assert_eq!(r["text"], fake.reply_text(), "{case}: {r}");
        assert_eq!(
            r["content"],
            json!([{"type": "text", "text": fake.reply_text()}]),
            "{case}: {r}"
        );
        assert_eq!(r["stop_reason"], "end_turn", "{case}: {r}");
        assert_eq!(
            r["usage"]["output_tokens"], completion_tokens,
            "{case}: {r}"
        );
        assert_eq!(fake.request_count(), 2, "{case}");
        assert_eq!(other.request_count(), 0, "{case}: the other provider");
    }
}

/// A two-turn tool loop with the Anthropic SDK (`tools` or `tools_stream`).
async fn check_anthropic_tools(route: Route, scenario: &str) {
    let case = format!("{scenario} via {route:?}");
    let g = Gateway::for_route(route).await;
    let (fake, other) = g.fakes(route);
    fake.set_mode(Mode::ToolCalls(vec![
        ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
        ("get_weather".into(), r#"{"city":"Lyon"}"#.into()),
    ]));
    let r = run_anthropic(&g, scenario, route.prompt()).await;
    assert_eq!(r["first_stop_reason"], "tool_use", "{case}: {r}");
    let calls = r["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2, "{case}: {r}");
    assert_eq!(calls[0]["name"], "get_weather", "{case}: {r}");
    assert_eq!(calls[0]["input"], json!({"city": "Paris"}), "{case}: {r}");
    assert_eq!(calls[1]["input"], json!({"city": "Lyon"}), "{case}: {r}");
    assert_ne!(calls[0]["id"], calls[1]["id"], "{case}: {r}");
    assert_eq!(r["stop_reason"], "end_turn", "{case}: {r}");
    assert_eq!(r["content"], fake.reply_text(), "{case}: {r}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{case}");
    let second = requests[1].json().to_string();
    assert!(second.contains("18 °C in Lyon"), "{case}: {second}");
    assert_eq!(other.request_count(), 0, "{case}: the other provider");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Anthropic SDK: ANTHROPIC_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn anthropic_sdk_tool_loop_whole_and_streamed_through_each_provider() {
    for route in Route::ALL {
        check_anthropic_tools(route, "tools").await;
        check_anthropic_tools(route, "tools_stream").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Anthropic SDK: ANTHROPIC_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn anthropic_sdk_bad_request_raises_with_anthropics_error_body() {
    let g = Gateway::for_route(Route::Anthropic).await;
    let r = run_anthropic(&g, "bad_request", GENERAL).await;
    let e = &r["error"];
    assert_eq!(e["class"], "BadRequestError", "{r}");
    assert_eq!(e["status"], 400, "{r}");
    assert_eq!(e["body"]["type"], "error", "{r}");
    assert_eq!(e["body"]["error"]["type"], "invalid_request_error", "{r}");
    assert!(
        e["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages"),
        "{r}"
    );
    assert_eq!(g.local.request_count() + g.public.request_count(), 0);
}

/// What the provider behind `route` got as the image of the last message.
fn sent_image(fake: &FakeProvider, route: Route) -> Value {
    let sent = fake.requests().last().expect("a request").json();
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    match route {
        Route::Local => last["images"][0].clone(),
        Route::OpenAi => last["content"][1]["image_url"]["url"].clone(),
        Route::Anthropic => last["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "image")
            .map(|b| b["source"]["data"].clone())
            .unwrap_or(Value::Null),
    }
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the OpenAI SDK: OPENAI_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn sdk_image_and_json_schema_through_each_provider() {
    let python = sdk_python();
    for route in Route::ALL {
        let case = format!("{route:?}");
        let g = Gateway::for_route(route).await;
        let (fake, other) = g.fakes(route);
        let r = run_scenario(
            &python,
            "image",
            &g.openai_base(),
            CHOSEN_MODEL,
            route.prompt(),
        )
        .await;
        assert_eq!(r["status"], 200, "{case}: {r}");
        let expected = match route {
            Route::OpenAi => json!(format!("data:image/png;base64,{PNG}")),
            Route::Local | Route::Anthropic => json!(PNG),
        };
        assert_eq!(sent_image(fake, route), expected, "{case}");
        let r = run_scenario(
            &python,
            "json_schema",
            &g.openai_base(),
            CHOSEN_MODEL,
            route.prompt(),
        )
        .await;
        assert_eq!(r["content"], fake.reply_text(), "{case}: {r}");
        let sent = fake.requests().last().unwrap().json();
        match route {
            Route::OpenAi => assert_eq!(sent["response_format"]["type"], "json_schema", "{sent}"),
            Route::Local => assert_eq!(sent["format"]["type"], "object", "{sent}"),
            Route::Anthropic => assert!(
                sent["system"].as_str().unwrap().contains("JSON Schema"),
                "{sent}"
            ),
        }
        assert_eq!(other.request_count(), 0, "{case}: the other provider");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Anthropic SDK: ANTHROPIC_SDK_PYTHON (eval \"$(scripts/openai-sdk-venv.sh)\" installs it)"]
async fn anthropic_sdk_image_through_each_provider() {
    for route in Route::ALL {
        let case = format!("{route:?}");
        let g = Gateway::for_route(route).await;
        let (fake, other) = g.fakes(route);
        let r = run_anthropic(&g, "image", route.prompt()).await;
        assert_eq!(r["stop_reason"], "end_turn", "{case}: {r}");
        let expected = match route {
            Route::OpenAi => json!(format!("data:image/png;base64,{PNG}")),
            Route::Local | Route::Anthropic => json!(PNG),
        };
        assert_eq!(sent_image(fake, route), expected, "{case}");
        assert_eq!(other.request_count(), 0, "{case}: the other provider");
    }
}

/// The SDK scenarios above run against a gateway that asks for keys: the
/// one they pass as `api_key` is the one admitted.
#[tokio::test]
async fn the_sdk_gateway_admits_only_the_key_the_sdks_pass() {
    let g = Gateway::start(Flavor::OpenAi).await;
    let body = json!({"model": CHOSEN_MODEL, "messages": [{"role": "user", "content": GENERAL}]});
    let refused =
        g.t.client
            .post(format!("{}/v1/chat/completions", g.t.base))
            .bearer_auth("pm_not-the-sdk-key")
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(refused.status(), 401);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "authentication_error");
    assert_eq!(g.completions(&body).await.status(), 200);
    assert_eq!(g.public.request_count(), 1);
}
