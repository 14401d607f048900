//! Streaming through the gateway: the time to first token it adds, and how
//! many chunks a second it relays, against a fake streaming upstream called
//! directly.
//!
//! `cargo bench --bench streaming` (filter with `-- ttft` or `-- throughput`).
//!
//! One Tokio runtime holds everything: a minimal streaming upstream on the
//! tests' raw HTTP server (`tests/support/http.rs`; OpenAI
//! SSE on `/v1/chat/completions`, Ollama NDJSON on `/api/chat`), two gateways
//! in process (`policy_mesh::server::start`) pointing at it, one with the
//! SQLite audit store on (as a user runs it), one with `AUDIT_ENABLED=false`,
//! and a reqwest client over loopback. The policy sends prompts naming
//! `nightingale` to the local provider (Ollama) and the rest to the public
//! one (OpenAI).
//!
//! - `streaming_ttft/<flavour>/<path>`: from sending a streaming request to
//!   receiving the first chunk that carries reply text ([`SHORT`] parts; the
//!   rest of the stream is read, untimed, before the next request).
//! - `streaming_throughput/<flavour>/<path>`: one reply of [`LONG`] parts,
//!   from sending the request to the end of the stream; criterion reports
//!   elements (text chunks) per second.
//! - The `openai_tools` flavour streams one tool call whose arguments come in
//!   that many pieces (OpenAI's chunk form), relayed through the OpenAI API;
//!   the first "token" is the chunk that starts the call.
//! - `gateway_messages_audit_off` is the same OpenAI stream through the
//!   Anthropic Messages API (`POST /v1/messages`), as Anthropic's events.
//!
//! The upstream renders every event once, at start-up, and writes each as
//! one chunk of a chunked body with its own `write` on a `TCP_NODELAY`
//! socket (as Ollama and hosted APIs send tokens), with nothing in between:
//! it is as fast as it can be, so the figures are the cost of relaying, not
//! of generating. The number of parts is asked for in the `model` name
//! (`parts-16`, `tools-16`), which the gateway passes on unchanged; the
//! Messages API sends OpenAI its configured model, so there the number is
//! asked for in `max_tokens`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use policy_mesh::env::Env;
use policy_mesh::server::Server;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// The raw HTTP/1.1 server the tests' fake upstreams are built on.
#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;

/// Parts of the reply when timing the first token.
const SHORT: usize = 16;
/// Parts of the reply when timing throughput.
const LONG: usize = 2000;

const POLICY: &str = "version: 1\ndefaults:\n  provider: public\nrules:\n  - id: sensitive\n    when:\n      keywords: [nightingale]\n    route: local\n    reason: sensitive_keyword_match\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Flavor {
    OpenAi,
    Ollama,
    /// OpenAI's stream of one tool call.
    OpenAiTools,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::OpenAi => "openai",
            Flavor::Ollama => "ollama",
            Flavor::OpenAiTools => "openai_tools",
        }
    }

    /// The `model` asking the upstream for `parts` parts of this flavour.
    fn model(self, parts: usize) -> String {
        match self {
            Flavor::OpenAiTools => format!("tools-{parts}"),
            Flavor::OpenAi | Flavor::Ollama => format!("parts-{parts}"),
        }
    }

    /// The upstream's own streaming endpoint.
    fn path(self) -> &'static str {
        match self {
            Flavor::OpenAi | Flavor::OpenAiTools => "/v1/chat/completions",
            Flavor::Ollama => "/api/chat",
        }
    }

    /// A prompt the policy routes to this flavour's provider.
    fn prompt(self) -> &'static str {
        match self {
            Flavor::OpenAi | Flavor::OpenAiTools => "Tell me a story about a cat.",
            Flavor::Ollama => "Tell me a story about nightingale.",
        }
    }
}

/// The wire events of a reply of `parts` parts, each framed as one chunk of
/// a chunked body.
fn events(flavor: Flavor, parts: usize) -> Vec<Vec<u8>> {
    let model = flavor.model(parts);
    let token = |i: usize| format!(" tok{}", i % 10);
    let events: Vec<String> = match flavor {
        Flavor::OpenAiTools => {
            let chunk = |delta: Value, finish: Value| {
                let data = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                    "created": 1_795_600_800_u64, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                format!("data: {data}\n\n")
            };
            let mut events = vec![chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": "call_bench", "type": "function",
                    "function": {"name": "search", "arguments": ""}}]}),
                Value::Null,
            )];
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":\""}}]}),
                Value::Null,
            ));
            events.extend((1..parts).map(|i| {
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": token(i)}}]}),
                    Value::Null,
                )
            }));
            events.push(chunk(json!({}), json!("tool_calls")));
            events.push("data: [DONE]\n\n".to_owned());
            events
        }
        Flavor::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                let data = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                    "created": 1_795_600_800_u64, "model": model,
                    "service_tier": "default", "system_fingerprint": "fp_bench",
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                format!("data: {data}\n\n")
            };
            let mut events = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            events.extend((0..parts).map(|i| chunk(json!({"content": token(i)}), Value::Null)));
            events.push(chunk(json!({}), json!("stop")));
            events.push("data: [DONE]\n\n".to_owned());
            events
        }
        Flavor::Ollama => {
            let line = |content: String, done: bool| {
                let mut line = json!({"model": model, "created_at": "2026-11-25T10:00:00.000000Z",
                    "message": {"role": "assistant", "content": content}, "done": done});
                if done {
                    line["done_reason"] = json!("stop");
                    line["prompt_eval_count"] = json!(26);
                    line["eval_count"] = json!(parts);
                }
                format!("{line}\n")
            };
            let mut events: Vec<String> = (0..parts).map(|i| line(token(i), false)).collect();
            events.push(line(String::new(), true));
            events
        }
    };
    let mut framed: Vec<Vec<u8>> = events
        .into_iter()
        .map(|e| format!("{:x}\r\n{e}\r\n", e.len()).into_bytes())
        .collect();
    framed.push(b"0\r\n\r\n".to_vec());
    framed
}

type Replies = Arc<HashMap<(Flavor, usize), Vec<Vec<u8>>>>;

/// Starts the upstream on `127.0.0.1:0`.
async fn start_upstream() -> SocketAddr {
    let mut replies = HashMap::new();
    for flavor in [Flavor::OpenAi, Flavor::Ollama, Flavor::OpenAiTools] {
        for parts in [SHORT, LONG] {
            replies.insert((flavor, parts), events(flavor, parts));
        }
    }
    let replies: Replies = Arc::new(replies);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let addr = listener.local_addr().expect("the upstream's address");
    tokio::spawn(http::accept(listener, move |stream| {
        let replies = replies.clone();
        async move {
            let _ = connection(stream, replies).await;
        }
    }));
    addr
}

/// Serves one keep-alive connection until the peer closes it.
async fn connection(mut stream: TcpStream, replies: Replies) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    while let Some(request) = http::read_request(&mut stream, &mut buf).await? {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let model = body["model"].as_str().unwrap_or_default();
        let flavor = match request.path.as_str() {
            "/v1/chat/completions" if model.starts_with("tools-") => Some(Flavor::OpenAiTools),
            "/v1/chat/completions" => Some(Flavor::OpenAi),
            "/api/chat" => Some(Flavor::Ollama),
            _ => None,
        };
        // The configured model (the Messages API's): the parts are in max_tokens.
        let parts = model
            .strip_prefix("parts-")
            .or_else(|| model.strip_prefix("tools-"))
            .and_then(|n| n.parse::<usize>().ok())
            .or_else(|| body["max_tokens"].as_u64().map(|n| n as usize));
        let reply = match (flavor, parts) {
            (Some(flavor), Some(parts)) if body["stream"] == true => replies.get(&(flavor, parts)),
            _ => None,
        };
        let Some(reply) = reply else {
            http::write_response(&mut stream, 400, &[], "").await?;
            continue;
        };
        let content_type = match flavor {
            Some(Flavor::Ollama) => "application/x-ndjson",
            _ => "text/event-stream",
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        for event in reply {
            stream.write_all(event).await?;
        }
    }
    Ok(())
}

/// Whether one line of a stream (an SSE `data:` line or an NDJSON line) is
/// a chunk carrying reply text: a non-empty `content` (OpenAI, Ollama) or
/// `text` (Anthropic's `text_delta`), a tool call starting (`"name":`), or
/// a non-empty piece of its arguments.
fn carries_text(line: &[u8]) -> bool {
    let non_empty = |key: &[u8]| {
        line.windows(key.len())
            .position(|w| w == key)
            .is_some_and(|i| line.get(i + key.len()).is_some_and(|&b| b != b'"'))
    };
    let has = |key: &[u8]| line.windows(key.len()).any(|w| w == key);
    non_empty(b"\"content\":\"")
        || non_empty(b"\"text\":\"")
        || non_empty(b"\"arguments\":\"")
        || has(b"\"name\":\"search\"")
}

/// What the client saw of one streamed answer.
struct Seen {
    /// From sending the request to the first chunk carrying text.
    first_token: Duration,
    /// From sending the request to the end of the stream.
    total: Duration,
    /// Chunks carrying text.
    text_chunks: usize,
}

/// Sends one streaming request and reads the answer to its end, line by
/// line as it arrives.
async fn stream_once(client: &reqwest::Client, url: &str, body: &str) -> Seen {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 200, "{url}");
    let mut first_token = None;
    let mut text_chunks = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        pending.extend_from_slice(&bytes.expect("the stream is read"));
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            if carries_text(&pending[start..start + end]) {
                text_chunks += 1;
                first_token.get_or_insert_with(|| started.elapsed());
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    Seen {
        first_token: first_token.expect("a chunk carried text"),
        total: started.elapsed(),
        text_chunks,
    }
}

/// The upstream and the two gateways.
struct Setup {
    upstream: SocketAddr,
    audit_on: Server,
    audit_off: Server,
    _dirs: Vec<tempfile::TempDir>,
}

impl Setup {
    async fn start() -> Setup {
        let upstream = start_upstream().await;
        let policies = tempfile::tempdir().expect("tempdir");
        std::fs::write(policies.path().join("policy.yaml"), POLICY).expect("write the policy");
        let data = tempfile::tempdir().expect("tempdir");
        let url = format!("http://{upstream}");
        let gateway = |audit: bool| {
            let database = format!("sqlite://{}", data.path().join("audit.db").display());
            let env = Env::from_pairs([
                ("BIND_ADDR", "127.0.0.1:0".to_owned()),
                (
                    "POLICY_DIR",
                    policies.path().to_str().expect("UTF-8 path").to_owned(),
                ),
                ("DATABASE_URL", database),
                ("AUDIT_ENABLED", audit.to_string()),
                ("LOCAL_LLM_URL", url.clone()),
                ("PUBLIC_LLM_URL", url.clone()),
                ("PUBLIC_LLM_PROVIDER", "openai".to_owned()),
                ("PUBLIC_LLM_API_KEY", "sk-bench".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ]);
            async move {
                policy_mesh::server::start(&env)
                    .await
                    .expect("the gateway starts")
            }
        };
        let audit_on = gateway(true).await;
        let audit_off = gateway(false).await;
        Setup {
            upstream,
            audit_on,
            audit_off,
            _dirs: vec![policies, data],
        }
    }

    /// The paths compared: (name, URL, request body) for `parts` parts.
    fn paths(&self, flavor: Flavor, parts: usize) -> Vec<(&'static str, String, String)> {
        let mut body = json!({
            "model": flavor.model(parts),
            "messages": [{"role": "user", "content": flavor.prompt()}],
            "stream": true,
        });
        if flavor == Flavor::OpenAiTools {
            body["tools"] = json!([{"type": "function", "function": {"name": "search",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
        }
        let body = body.to_string();
        let gateway = |server: &Server| format!("http://{}/v1/chat/completions", server.addr());
        let mut paths = vec![
            (
                "direct",
                format!("http://{}{}", self.upstream, flavor.path()),
                body.clone(),
            ),
            ("gateway_audit_on", gateway(&self.audit_on), body.clone()),
            ("gateway_audit_off", gateway(&self.audit_off), body),
        ];
        if flavor == Flavor::OpenAi {
            let messages = json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": parts,
                "messages": [{"role": "user", "content": flavor.prompt()}],
                "stream": true,
            });
            paths.push((
                "gateway_messages_audit_off",
                format!("http://{}/v1/messages", self.audit_off.addr()),
                messages.to_string(),
            ));
        }
        paths
    }
}

/// The chunks a reply of `parts` parts carries: a tool call's start comes
/// before its pieces.
fn expected(flavor: Flavor, parts: usize) -> usize {
    match flavor {
        Flavor::OpenAiTools => parts + 1,
        Flavor::OpenAi | Flavor::Ollama => parts,
    }
}

fn streaming(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let setup = runtime.block_on(Setup::start());
    let client = reqwest::Client::new();

    for flavor in [Flavor::OpenAi, Flavor::Ollama, Flavor::OpenAiTools] {
        let mut group = c.benchmark_group(format!("streaming_ttft/{}", flavor.name()));
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for (name, url, body) in setup.paths(flavor, SHORT) {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut sum = Duration::ZERO;
                        for _ in 0..iters {
                            let seen = stream_once(&client, &url, &body).await;
                            assert_eq!(seen.text_chunks, expected(flavor, SHORT), "{name}");
                            sum += seen.first_token;
                        }
                        sum
                    })
                });
            });
        }
        group.finish();
    }

    for flavor in [Flavor::OpenAi, Flavor::Ollama, Flavor::OpenAiTools] {
        let mut group = c.benchmark_group(format!("streaming_throughput/{}", flavor.name()));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(LONG as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        for (name, url, body) in setup.paths(flavor, LONG) {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut sum = Duration::ZERO;
                        for _ in 0..iters {
                            let seen = stream_once(&client, &url, &body).await;
                            assert_eq!(seen.text_chunks, expected(flavor, LONG), "{name}");
                            sum += seen.total;
                        }
                        sum
                    })
                });
            });
        }
        group.finish();
    }

    runtime.block_on(async move {
        let Setup {
            audit_on,
            audit_off,
            _dirs,
            ..
        } = setup;
        audit_on.shutdown().await.expect("clean shutdown");
        audit_off.shutdown().await.expect("clean shutdown");
    });
}

criterion_group!(benches, streaming);
criterion_main!(benches);
