//! The provider layer against fake upstreams: what each provider receives
//! (path, headers, body), what reply is extracted, and how every failure is
//! categorized, without ever leaking a key or relaying an upstream body.

use std::time::Duration;

use crate::support::fake_providers::{FakeProvider, Flavor, Mode, closed_port_url};
use policy_mesh::chat::ChatMessage;
use policy_mesh::env::Env;
use policy_mesh::names::{FailureCategory, Role};
use policy_mesh::providers::{
    MAX_REPLY_BYTES, Pool, ProviderError, Reply, anthropic::ANTHROPIC_VERSION,
};
use serde_json::{Value, json};

const LOCAL_KEY: &str = "ollama-canary-key-5d1c";
const PUBLIC_KEY: &str = "sk-canary-key-8e2f";
/// Text the fakes put in their error bodies; it must never reach an error.
const FAKE_BODY_MARKER: &str = "credential received";

/// How long a fake may take to see a stream begin or a peer hang up.
const DEADLINE: Duration = Duration::from_secs(15);

const FLAVORS: [Flavor; 3] = [Flavor::Ollama, Flavor::OpenAi, Flavor::Anthropic];

fn provider_of(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Ollama => "local",
        Flavor::OpenAi => "openai",
        Flavor::Anthropic => "anthropic",
    }
}

fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        msg(Role::System, "You are terse."),
        msg(Role::User, "What is 2+2?"),
        msg(Role::Assistant, "4"),
        msg(Role::System, "Answer in French."),
        msg(Role::User, "And 3+3?"),
    ]
}

/// Providers pointed at `fake` with both keys set, plus `extra` variables.
fn providers_for(fake: &FakeProvider, extra: &[(&str, &str)]) -> Pool {
    let mut vars = fake.env_vars();
    vars.push(("LOCAL_LLM_API_KEY".into(), LOCAL_KEY.into()));
    vars.push(("PUBLIC_LLM_API_KEY".into(), PUBLIC_KEY.into()));
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Pool::from_env(&Env::from_pairs(vars)).expect("valid provider settings")
}

async fn call(providers: &Pool, flavor: Flavor) -> Result<Reply, ProviderError> {
    providers
        .call(provider_of(flavor), None, &[ChatMessage::user("hi")])
        .await
}

/// Checks the category, and that the message is the gateway's own: no key,
/// nothing of the upstream body.
fn assert_failure(result: Result<Reply, ProviderError>, expected: FailureCategory, case: &str) {
    let err = result.expect_err(case);
    assert_eq!(err.category(), expected, "{case}: {err}");
    let shown = format!("{err} {err:?}");
    for forbidden in [LOCAL_KEY, PUBLIC_KEY, FAKE_BODY_MARKER, "127.0.0.1"] {
        assert!(!shown.contains(forbidden), "{case}: {shown}");
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", expected.as_str())),
        "{case}: {err}"
    );
}

/// Runs one failure mode against a fresh fake of every flavor.
async fn assert_mode_fails(mode: Mode, expected: FailureCategory, extra: &[(&str, &str)]) {
    for flavor in FLAVORS {
        let fake = FakeProvider::start(flavor).await;
        fake.set_mode(mode.clone());
        let providers = providers_for(&fake, extra);
        let case = format!("{flavor:?} {mode:?}");
        assert_failure(call(&providers, flavor).await, expected, &case);
        // Exactly one call reached the provider: no retry, no fallback.
        assert_eq!(fake.request_count(), 1, "{case}");
    }
}

#[tokio::test]
async fn ollama_receives_the_messages_with_streaming_off_and_a_bearer_key() {
    let fake = FakeProvider::ollama().await;
    fake.set_reply(["Bonjour", ", six."]);
    let providers = providers_for(&fake, &[("LOCAL_LLM_MODEL", "qwen3:8b")]);
    let reply = providers
        .call("local", None, &conversation())
        .await
        .expect("a reply");
    assert_eq!(reply.content, "Bonjour, six.");

    let request = fake.single_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/chat");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {LOCAL_KEY}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({"model": "qwen3:8b", "stream": false, "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "And 3+3?"}]})
    );
}

#[tokio::test]
async fn ollama_without_a_key_sends_no_authorization() {
    let fake = FakeProvider::ollama().await;
    let vars = fake.env_vars();
    let providers = Pool::from_env(&Env::from_pairs(vars)).expect("valid settings");
    let reply = call(&providers, Flavor::Ollama).await.expect("a reply");
    assert_eq!(reply.content, fake.reply_text());
    let request = fake.single_request();
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.json()["model"], json!("llama3.2"));
}

#[tokio::test]
async fn openai_receives_the_messages_as_given_with_a_bearer_key() {
    let fake = FakeProvider::openai().await;
    fake.set_reply(["Six", "."]);
    let providers = providers_for(&fake, &[]);
    let reply = providers
        .call("openai", Some("gpt-4.1-nano"), &conversation())
        .await
        .expect("a reply");
    assert_eq!(reply.content, "Six.");

    let request = fake.single_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {PUBLIC_KEY}").as_str())
    );
    assert_eq!(request.header("x-api-key"), None);
    let body = request.json();
    assert_eq!(
        body,
        json!({"model": "gpt-4.1-nano", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "And 3+3?"}]})
    );
}

#[tokio::test]
async fn openai_uses_the_default_public_model() {
    let fake = FakeProvider::openai().await;
    let providers = providers_for(&fake, &[]);
    call(&providers, Flavor::OpenAi).await.expect("a reply");
    assert_eq!(fake.single_request().json()["model"], json!("gpt-4o-mini"));
    assert_eq!(providers.config().public_model, "gpt-4o-mini");
}

#[tokio::test]
async fn anthropic_receives_system_apart_with_its_key_and_version() {
    let fake = FakeProvider::anthropic().await;
    fake.set_reply(["Six", " (", "six", ")."]);
    let providers = providers_for(&fake, &[]);
    let reply = providers
        .call("anthropic", None, &conversation())
        .await
        .expect("a reply");
    // One text block per part, concatenated.
    assert_eq!(reply.content, "Six (six).");

    let request = fake.single_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some(PUBLIC_KEY));
    assert_eq!(request.header("anthropic-version"), Some(ANTHROPIC_VERSION));
    assert_eq!(ANTHROPIC_VERSION, "2023-06-01");
    assert_eq!(request.header("authorization"), None);
    let body = request.json();
    let max_tokens = body["max_tokens"].as_u64().expect("max_tokens is a number");
    assert!(max_tokens > 0);
    assert_eq!(
        body,
        json!({"model": "claude-3-5-haiku-latest", "max_tokens": max_tokens,
               "system": "You are terse.\nAnswer in French.",
               "messages": [
                   {"role": "user", "content": "What is 2+2?"},
                   {"role": "assistant", "content": "4"},
                   {"role": "user", "content": "And 3+3?"}]})
    );
}

#[tokio::test]
async fn anthropic_omits_system_when_there_is_none() {
    let fake = FakeProvider::anthropic().await;
    let providers = providers_for(&fake, &[("PUBLIC_LLM_MODEL", "claude-sonnet-4-5")]);
    let reply = call(&providers, Flavor::Anthropic).await.expect("a reply");
    assert_eq!(reply.content, fake.reply_text());
    let body = fake.single_request().json();
    assert_eq!(body.get("system"), None, "{body}");
    assert_eq!(body["model"], json!("claude-sonnet-4-5"));
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
}

#[tokio::test]
async fn a_trailing_slash_on_the_base_url_is_ignored() {
    for flavor in FLAVORS {
        let fake = FakeProvider::start(flavor).await;
        let url = format!("{}/", fake.url());
        let var = if flavor == Flavor::Ollama {
            "LOCAL_LLM_URL"
        } else {
            "PUBLIC_LLM_URL"
        };
        let providers = providers_for(&fake, &[(var, url.as_str())]);
        call(&providers, flavor).await.expect("a reply");
        assert_eq!(fake.single_request().path, flavor.chat_path(), "{flavor:?}");
    }
}

#[tokio::test]
async fn one_client_reuses_its_connection() {
    let fake = FakeProvider::ollama().await;
    let providers = std::sync::Arc::new(providers_for(&fake, &[]));
    let shared = std::sync::Arc::clone(&providers);
    call(&providers, Flavor::Ollama).await.expect("first reply");
    call(&shared, Flavor::Ollama).await.expect("second reply");
    assert_eq!(fake.request_count(), 2);
    assert_eq!(fake.connection_count(), 1);
}

#[tokio::test]
async fn timeout_when_the_provider_answers_too_late() {
    assert_mode_fails(
        Mode::Slow,
        FailureCategory::Timeout,
        &[("PROVIDER_TIMEOUT_SECONDS", "0.5")],
    )
    .await;
}

#[tokio::test]
async fn timeout_covers_the_body() {
    assert_mode_fails(
        Mode::StallBody,
        FailureCategory::Timeout,
        &[("PROVIDER_TIMEOUT_SECONDS", "0.5")],
    )
    .await;
}

#[tokio::test]
async fn connect_error_when_nothing_listens() {
    for flavor in FLAVORS {
        let url = closed_port_url().await;
        let vars = [
            ("LOCAL_LLM_URL", url.as_str()),
            ("PUBLIC_LLM_URL", url.as_str()),
            (
                "PUBLIC_LLM_PROVIDER",
                if flavor == Flavor::Anthropic {
                    "anthropic"
                } else {
                    "openai"
                },
            ),
            ("PUBLIC_LLM_API_KEY", PUBLIC_KEY),
            ("LOCAL_LLM_API_KEY", LOCAL_KEY),
        ];
        let providers = Pool::from_env(&Env::from_pairs(vars)).expect("valid settings");
        assert_failure(
            call(&providers, flavor).await,
            FailureCategory::ConnectError,
            &format!("{flavor:?} closed port"),
        );
    }
}

#[tokio::test]
async fn connect_error_when_tls_fails() {
    // An https URL on a plain-HTTP server: the TLS handshake fails.
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let fake = FakeProvider::start(flavor).await;
        let url = fake.url().replace("http://", "https://");
        let providers = providers_for(&fake, &[("PUBLIC_LLM_URL", url.as_str())]);
        assert_failure(
            call(&providers, flavor).await,
            FailureCategory::ConnectError,
            &format!("{flavor:?} TLS"),
        );
        assert_eq!(fake.request_count(), 0, "{flavor:?}");
    }
}

#[tokio::test]
async fn connect_error_when_the_connection_closes_before_a_status_line() {
    assert_mode_fails(Mode::Close, FailureCategory::ConnectError, &[]).await;
}

#[tokio::test]
async fn auth_error_for_401_and_403() {
    for status in [401, 403] {
        assert_mode_fails(Mode::Status(status), FailureCategory::AuthError, &[]).await;
    }
}

#[tokio::test]
async fn auth_error_without_a_public_key_and_no_request_made() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let fake = FakeProvider::start(flavor).await;
        let providers = Pool::from_env(&Env::from_pairs(fake.env_vars())).expect("valid settings");
        assert_failure(
            call(&providers, flavor).await,
            FailureCategory::AuthError,
            &format!("{flavor:?} without a key"),
        );
        assert_eq!(fake.request_count(), 0, "{flavor:?}");
        assert_eq!(fake.connection_count(), 0, "{flavor:?}");
    }
}

#[tokio::test]
async fn client_error_for_other_4xx() {
    for status in [400, 404, 422] {
        assert_mode_fails(Mode::Status(status), FailureCategory::ClientError, &[]).await;
    }
    assert_mode_fails(Mode::Status(429), FailureCategory::RateLimited, &[]).await;
}

#[tokio::test]
async fn server_error_for_5xx() {
    for status in [500, 502, 503, 529] {
        assert_mode_fails(Mode::Status(status), FailureCategory::ServerError, &[]).await;
    }
}

#[tokio::test]
async fn server_error_message_is_the_gateways_own() {
    let fake = FakeProvider::openai().await;
    fake.set_mode(Mode::Status(500));
    let providers = providers_for(&fake, &[]);
    let err = call(&providers, Flavor::OpenAi).await.expect_err("a 500");
    assert_eq!(
        err.to_string(),
        "server_error: openai answered HTTP 500 for model gpt-4o-mini at /v1/chat/completions"
    );
}

#[tokio::test]
async fn bad_response_for_unusable_2xx_bodies() {
    for mode in [
        Mode::Garbage,
        Mode::Empty,
        Mode::MissingReply,
        Mode::CutShort,
    ] {
        assert_mode_fails(mode, FailureCategory::BadResponse, &[]).await;
    }
}

#[tokio::test]
async fn bad_response_for_an_unexpected_status() {
    assert_mode_fails(Mode::Status(302), FailureCategory::BadResponse, &[]).await;
}

#[tokio::test]
async fn bad_response_for_a_reply_over_the_size_limit() {
    assert_mode_fails(
        Mode::LargeReply(MAX_REPLY_BYTES + 1),
        FailureCategory::BadResponse,
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    for flavor in FLAVORS {
        let elsewhere = FakeProvider::start(flavor).await;
        let fake = FakeProvider::start(flavor).await;
        fake.set_mode(Mode::Redirect(format!(
            "{}{}",
            elsewhere.url(),
            flavor.chat_path()
        )));
        let providers = providers_for(&fake, &[]);
        assert_failure(
            call(&providers, flavor).await,
            FailureCategory::BadResponse,
            &format!("{flavor:?} redirect"),
        );
        // Following it could have carried the key to another host.
        assert_eq!(elsewhere.request_count(), 0, "{flavor:?}");
    }
}

#[tokio::test]
async fn a_cut_short_body_says_so() {
    let fake = FakeProvider::anthropic().await;
    fake.set_mode(Mode::CutShort);
    let providers = providers_for(&fake, &[]);
    let err = call(&providers, Flavor::Anthropic)
        .await
        .expect_err("a cut-short body");
    assert_eq!(
        err.to_string(),
        "bad_response: provider's reply was cut short (anthropic, model claude-3-5-haiku-latest, at /v1/messages)"
    );
}

#[tokio::test]
async fn keys_never_appear_in_debug_output() {
    let fake = FakeProvider::anthropic().await;
    let providers = providers_for(&fake, &[]);
    let debug = format!("{providers:?} {:?}", providers.config());
    assert!(!debug.contains(LOCAL_KEY), "{debug}");
    assert!(!debug.contains(PUBLIC_KEY), "{debug}");
}

/// The fakes' streaming formats, for the streaming clients to come.
#[tokio::test]
async fn fakes_stream_their_reply_in_parts_when_asked() {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    for flavor in FLAVORS {
        let fake = FakeProvider::start(flavor).await;
        fake.set_reply(["al", "pha", "bet"]);
        let text = client
            .post(format!("{}{}", fake.url(), flavor.chat_path()))
            .json(&json!({"model": "m", "messages": [], "stream": true}))
            .send()
            .await
            .expect("a response")
            .text()
            .await
            .expect("a body");
        let parts: Vec<String> = match flavor {
            Flavor::Ollama => text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("an NDJSON line"))
                .filter_map(|v| v["message"]["content"].as_str().map(str::to_owned))
                .collect(),
            Flavor::OpenAi => text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).expect("an SSE data line"))
                .filter_map(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect(),
            Flavor::Anthropic => text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str::<Value>(d).expect("an SSE data line"))
                .filter(|v| v["type"] == "content_block_delta")
                .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
                .collect(),
        };
        assert_eq!(parts.concat(), "alphabet", "{flavor:?}: {text}");
        // Each format ends the way its clients expect.
        let last = text.trim_end().lines().last().unwrap_or_default();
        match flavor {
            Flavor::Ollama => {
                let line: Value = serde_json::from_str(last).expect("an NDJSON line");
                assert_eq!(line["done"], json!(true), "{text}");
            }
            Flavor::OpenAi => assert_eq!(last, "data: [DONE]", "{text}"),
            Flavor::Anthropic => assert_eq!(last, r#"data: {"type":"message_stop"}"#, "{text}"),
        }
    }
}

/// A client that talks to the fakes directly.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// A streaming request to `fake`, as its clients send one.
async fn stream_from(fake: &FakeProvider, extra: Value) -> reqwest::Response {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                          "stream": true});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let response = raw_client()
        .post(format!("{}{}", fake.url(), fake.flavor().chat_path()))
        .json(&body)
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200, "{:?}", fake.flavor());
    response
}

/// The JSON payloads of a streamed body: NDJSON lines, or SSE `data:` lines
/// but `[DONE]`.
fn payloads(flavor: Flavor, text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| match flavor {
            Flavor::Ollama => (!l.is_empty()).then_some(l),
            Flavor::OpenAi | Flavor::Anthropic => l.strip_prefix("data: "),
        })
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("a JSON payload"))
        .collect()
}

/// Reads `response` until `text` has arrived, returning all read so far.
async fn read_until(response: &mut reqwest::Response, text: &str) -> String {
    let mut read = String::new();
    while !read.contains(text) {
        let chunk = response
            .chunk()
            .await
            .expect("a chunk")
            .unwrap_or_else(|| panic!("the body ended before {text:?}: {read}"));
        read.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
    read
}

/// Each streaming format carries the usage where the real API puts it, the
/// same counts as the non-streaming body; OpenAI only when asked.
#[tokio::test]
async fn fakes_stream_the_usage_where_the_real_apis_do() {
    for flavor in FLAVORS {
        for include_usage in [false, true] {
            let case = format!("{flavor:?}, include_usage {include_usage}");
            let fake = FakeProvider::start(flavor).await;
            let usage = fake.usage();
            let extra = json!({"stream_options": {"include_usage": include_usage}});
            let text = stream_from(&fake, extra)
                .await
                .text()
                .await
                .expect("a body");
            let events = payloads(flavor, &text);
            let last = events.last().expect("events");
            match flavor {
                Flavor::Ollama => {
                    assert_eq!(last["done"], true, "{case}: {text}");
                    assert_eq!(last["prompt_eval_count"], usage.prompt_tokens, "{case}");
                    assert_eq!(last["eval_count"], usage.completion_tokens, "{case}");
                }
                Flavor::OpenAi if include_usage => {
                    assert_eq!(last["choices"], json!([]), "{case}: {text}");
                    assert_eq!(last["object"], "chat.completion.chunk", "{case}");
                    let u = &last["usage"];
                    assert_eq!(u["prompt_tokens"], usage.prompt_tokens, "{case}");
                    assert_eq!(u["completion_tokens"], usage.completion_tokens, "{case}");
                    assert_eq!(u["total_tokens"], usage.total_tokens(), "{case}");
                    let before = &events[..events.len() - 1];
                    assert!(
                        before.iter().all(|e| e["usage"].is_null()
                            && e.get("usage").is_some()
                            && e["choices"].as_array().is_some_and(|c| c.len() == 1)),
                        "{case}: the other chunks have one choice and usage null: {text}"
                    );
                    assert!(text.trim_end().ends_with("data: [DONE]"), "{case}");
                }
                Flavor::OpenAi => {
                    assert!(
                        events.iter().all(|e| e.get("usage").is_none()),
                        "{case}: {text}"
                    );
                    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{case}");
                }
                Flavor::Anthropic => {
                    let start = events.iter().find(|e| e["type"] == "message_start");
                    let start = start.expect("a message_start");
                    let delta = events.iter().find(|e| e["type"] == "message_delta");
                    let delta = delta.expect("a message_delta");
                    let start_usage = &start["message"]["usage"];
                    assert_eq!(start_usage["input_tokens"], usage.prompt_tokens, "{case}");
                    assert_eq!(
                        delta["usage"]["output_tokens"], usage.completion_tokens,
                        "{case}"
                    );
                }
            }
            assert_eq!(fake.streams_started(), 1, "{case}");
            assert_eq!(fake.disconnects(), 0, "{case}: read to the end");
        }
    }
}

/// `StreamThenFail` sends the first part, then breaks the chunked body.
#[tokio::test]
async fn stream_then_fail_breaks_the_body_after_the_first_part() {
    for flavor in FLAVORS {
        let fake = FakeProvider::start(flavor).await;
        fake.set_reply(["first-part", "second-part"]);
        fake.set_mode(Mode::StreamThenFail);
        let mut response = stream_from(&fake, json!({})).await;
        let mut read = String::new();
        let error = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => read.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                Ok(None) => panic!("{flavor:?}: the body ended cleanly: {read}"),
                Err(e) => break e,
            }
        };
        assert!(
            error.is_body() || error.is_decode(),
            "{flavor:?}: {error:?}"
        );
        assert!(read.contains("first-part"), "{flavor:?}: {read}");
        assert!(!read.contains("second-part"), "{flavor:?}: {read}");
        assert_eq!(fake.streams_started(), 1, "{flavor:?}");
        assert_eq!(fake.disconnects(), 0, "{flavor:?}: the fake hung up");

        // A request that does not stream is answered whole.
        let answer = raw_client()
            .post(format!("{}{}", fake.url(), flavor.chat_path()))
            .json(&json!({"model": "m", "messages": []}))
            .send()
            .await
            .expect("a response");
        assert_eq!(answer.status(), 200);
        let body = answer.text().await.expect("a whole body");
        assert!(body.contains("second-part"), "{flavor:?}: {body}");
    }
}

/// `StreamThenStall` holds the stream after the first part and sees the
/// client hang up.
#[tokio::test]
async fn stream_then_stall_counts_a_peer_that_hangs_up() {
    for flavor in FLAVORS {
        let fake = FakeProvider::start(flavor).await;
        fake.set_reply(["first-part", "second-part"]);
        fake.set_mode(Mode::StreamThenStall);
        let mut response = stream_from(&fake, json!({})).await;
        assert!(
            fake.wait_for_stream_started(DEADLINE).await,
            "{flavor:?}: the stream began"
        );
        let read = read_until(&mut response, "first-part").await;
        assert!(!read.contains("second-part"), "{flavor:?}: {read}");
        assert_eq!(fake.disconnects(), 0, "{flavor:?}: still connected");
        drop(response);
        assert!(
            fake.wait_for_disconnect(DEADLINE).await,
            "{flavor:?}: the fake saw the client hang up"
        );
        assert_eq!(fake.disconnects(), 1, "{flavor:?}");
    }
}
