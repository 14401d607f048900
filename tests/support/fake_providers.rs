//! Fake upstream providers for tests: Ollama, OpenAI and Anthropic HTTP
//! servers on `127.0.0.1:0` that speak the real wire formats, record every
//! request they receive, and fail on demand.
//!
//! Each is the raw HTTP/1.1 server of [`super::http`], so that it can fail
//! below what a server framework allows (no status line, a body cut short, a
//! stall mid-body). The listener is bound before [`FakeProvider::start`]
//! returns, so a test can call it at once: no readiness wait is needed.
//!
//! A request whose JSON body has `"stream": true` is answered in the
//! provider's streaming format (Ollama NDJSON, OpenAI and Anthropic SSE),
//! one chunk per reply part, with the token usage where the real API puts it
//! (OpenAI only when `stream_options.include_usage` is true). The streaming
//! modes [`Mode::StreamThenFail`] and [`Mode::StreamThenStall`] break a stream
//! after its first part; the fake counts peers that hang up mid-stream
//! ([`FakeProvider::disconnects`]) and lets a test wait for that, or for a
//! stream to begin, without polling.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use super::http::Request as RecordedRequest;
use super::http::{self, head, read_request, write_chunks, write_response};

/// How long the slow modes wait before going on. Far beyond any timeout a
/// test sets, and bounded so that nothing hangs if a test forgets one; the
/// connection task is aborted when the fake is dropped anyway.
pub const SLOW_DELAY: Duration = Duration::from_secs(20);

/// Which API a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST /api/chat`, reply in `message.content`.
    Ollama,
    /// `POST /v1/chat/completions`, reply in `choices[0].message.content`.
    OpenAi,
    /// `POST /v1/messages`, reply in the text blocks of `content`.
    Anthropic,
}

impl Flavor {
    /// The path the real API serves chat on.
    pub fn chat_path(self) -> &'static str {
        match self {
            Flavor::Ollama => "/api/chat",
            Flavor::OpenAi => "/v1/chat/completions",
            Flavor::Anthropic => "/v1/messages",
        }
    }
}

/// How a fake answers the next requests. Switch with [`FakeProvider::set_mode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A well-formed success in the provider's format.
    Normal,
    /// This status with the provider's error body, which quotes the
    /// credentials received (as some real upstreams do) so tests can check
    /// that no body is relayed. Not for 1xx: HTTP clients read past an
    /// informational status and would wait for the final one.
    Status(u16),
    /// `429` with the provider's error body, and `Retry-After: N` when given.
    RateLimited(Option<u64>),
    /// `307` to this URL.
    Redirect(String),
    /// Waits [`SLOW_DELAY`] before the status line, then answers normally.
    Slow,
    /// Sends the status, headers and half of a normal body, then waits
    /// [`SLOW_DELAY`] before the rest.
    StallBody,
    /// `200` with an HTML body.
    Garbage,
    /// `200` with an empty body.
    Empty,
    /// `200` with well-formed JSON in the provider's shape but without the reply.
    MissingReply,
    /// `200` declaring a longer `Content-Length` than the half body it sends,
    /// then closes the connection.
    CutShort,
    /// Reads the request, then closes the connection without a byte of response.
    Close,
    /// A well-formed success whose reply is this many `a`s (for size limits).
    LargeReply(usize),
    /// A whole reply that calls these tools, each `(name, arguments as JSON
    /// text)`, in the provider's own form: OpenAI `tool_calls` with ids,
    /// Anthropic `tool_use` blocks after a line of text, Ollama `tool_calls`
    /// with the arguments as an object and no id. A request whose last turn
    /// brings tool results is answered as in [`Mode::Normal`], as a model
    /// answers once it has them.
    ToolCalls(Vec<(String, String)>),
    /// For a streaming request: the stream of [`Mode::ToolCalls`] up to the
    /// middle of its body, then a wait of [`SLOW_DELAY`] while watching the
    /// connection, then the rest; a peer that closes before the end is
    /// counted in [`FakeProvider::disconnects`].
    ToolCallsThenStall(Vec<(String, String)>),
    /// For a streaming request: `200`, the headers and the events up to and
    /// including the first reply part, then the connection is closed without
    /// the rest or the chunked body's end, as when an upstream crashes. Not
    /// counted as a disconnect: the fake hung up, not the peer. A request
    /// without `"stream": true` is answered as in [`Mode::Normal`].
    StreamThenFail,
    /// For a streaming request: `200`, the headers and the events up to and
    /// including the first reply part, then a wait of [`SLOW_DELAY`] while
    /// watching the connection, then the rest. A peer that closes the
    /// connection meanwhile is counted in [`FakeProvider::disconnects`] and
    /// the stream ends there. A request without `"stream": true` is answered
    /// as in [`Mode::Normal`].
    StreamThenStall,
}

/// The token counts a fake reports, in its provider's terms; the same
/// streaming or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Ollama's `prompt_eval_count`, OpenAI's `prompt_tokens`, Anthropic's
    /// `input_tokens`.
    pub prompt_tokens: u64,
    /// Ollama's `eval_count`, OpenAI's `completion_tokens`, Anthropic's
    /// `output_tokens`.
    pub completion_tokens: u64,
}

impl Usage {
    /// The sum, as OpenAI's `total_tokens`.
    pub fn total_tokens(self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// What each flavor reports.
pub fn usage_of(flavor: Flavor) -> Usage {
    match flavor {
        Flavor::Ollama => Usage {
            prompt_tokens: 26,
            completion_tokens: 298,
        },
        Flavor::OpenAi | Flavor::Anthropic => Usage {
            prompt_tokens: 19,
            completion_tokens: 10,
        },
    }
}

struct Shared {
    flavor: Flavor,
    mode: Mutex<Mode>,
    /// Modes for the next requests, one each, before `mode` applies again.
    script: Mutex<std::collections::VecDeque<Mode>>,
    reply: Mutex<Vec<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: Mutex<usize>,
    /// Streams whose head and first part were sent.
    streams_started: watch::Sender<usize>,
    /// Connections whose peer closed before the stream they were sent ended.
    disconnects: watch::Sender<usize>,
}

/// A running fake provider. Dropping it stops the server and every
/// connection it holds.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and serves `flavor` in [`Mode::Normal`].
    pub async fn start(flavor: Flavor) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake provider");
        let addr = listener.local_addr().expect("the fake's address");
        let shared = Arc::new(Shared {
            flavor,
            mode: Mutex::new(Mode::Normal),
            script: Mutex::new(std::collections::VecDeque::new()),
            reply: Mutex::new(vec![
                "Hello".to_owned(),
                " from the fake ".to_owned(),
                format!("{flavor:?}"),
            ]),
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
            streams_started: watch::Sender::new(0),
            disconnects: watch::Sender::new(0),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        FakeProvider { addr, shared, task }
    }

    /// A fake Ollama.
    pub async fn ollama() -> Self {
        Self::start(Flavor::Ollama).await
    }

    /// A fake OpenAI.
    pub async fn openai() -> Self {
        Self::start(Flavor::OpenAi).await
    }

    /// A fake Anthropic.
    pub async fn anthropic() -> Self {
        Self::start(Flavor::Anthropic).await
    }

    /// The base URL (`http://127.0.0.1:PORT`), as `LOCAL_LLM_URL` or
    /// `PUBLIC_LLM_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The variables pointing the gateway at this fake: `LOCAL_LLM_URL` for
    /// Ollama; `PUBLIC_LLM_URL` and `PUBLIC_LLM_PROVIDER` otherwise.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        match self.shared.flavor {
            Flavor::Ollama => vec![("LOCAL_LLM_URL".into(), self.url())],
            Flavor::OpenAi => vec![
                ("PUBLIC_LLM_URL".into(), self.url()),
                ("PUBLIC_LLM_PROVIDER".into(), "openai".into()),
            ],
            Flavor::Anthropic => vec![
                ("PUBLIC_LLM_URL".into(), self.url()),
                ("PUBLIC_LLM_PROVIDER".into(), "anthropic".into()),
            ],
        }
    }

    /// Which API it speaks.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// How the next requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.script.lock().unwrap().clear();
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// The next requests are answered in these modes, one each, then as
    /// [`Self::set_mode`] said.
    pub fn set_script(&self, modes: impl IntoIterator<Item = Mode>) {
        *self.shared.script.lock().unwrap() = modes.into_iter().collect();
    }

    /// The reply of [`Mode::Normal`], in parts: Anthropic sends one text
    /// block per part, the streaming formats one chunk per part, the others
    /// the parts joined.
    pub fn set_reply<S: Into<String>>(&self, parts: impl IntoIterator<Item = S>) {
        *self.shared.reply.lock().unwrap() = parts.into_iter().map(Into::into).collect();
    }

    /// The reply text a client should extract: the parts joined.
    pub fn reply_text(&self) -> String {
        self.shared.reply.lock().unwrap().concat()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// How many TCP connections were accepted so far (to check pooling).
    pub fn connection_count(&self) -> usize {
        *self.shared.connections.lock().unwrap()
    }

    /// The token counts this fake reports.
    pub fn usage(&self) -> Usage {
        usage_of(self.shared.flavor)
    }

    /// How many streaming responses have sent their head and first reply part.
    pub fn streams_started(&self) -> usize {
        *self.shared.streams_started.borrow()
    }

    /// How many connections were closed by the peer in the middle of a
    /// streaming response (seen at once in [`Mode::StreamThenStall`]; in
    /// [`Mode::Normal`] only if a write fails).
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Waits until [`Self::streams_started`] reaches `n`; `false` if it has
    /// not after `timeout`.
    pub async fn wait_for_streams_started(&self, n: usize, timeout: Duration) -> bool {
        wait_for_count(&self.shared.streams_started, n, timeout).await
    }

    /// Waits until a streaming response has sent its first part; `false` if
    /// none has after `timeout`.
    pub async fn wait_for_stream_started(&self, timeout: Duration) -> bool {
        self.wait_for_streams_started(1, timeout).await
    }

    /// Waits until [`Self::disconnects`] reaches `n`; `false` if it has not
    /// after `timeout`.
    pub async fn wait_for_disconnects(&self, n: usize, timeout: Duration) -> bool {
        wait_for_count(&self.shared.disconnects, n, timeout).await
    }

    /// Waits until a peer has closed its connection mid-stream; `false` if
    /// none has after `timeout`.
    pub async fn wait_for_disconnect(&self, timeout: Duration) -> bool {
        self.wait_for_disconnects(1, timeout).await
    }

    /// The only request received; panics unless there was exactly one.
    pub fn single_request(&self) -> RecordedRequest {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request");
        requests.into_iter().next().unwrap()
    }
}

/// Waits, woken by each change, until `count` reaches `n`.
async fn wait_for_count(count: &watch::Sender<usize>, n: usize, timeout: Duration) -> bool {
    let mut receiver = count.subscribe();
    tokio::time::timeout(timeout, receiver.wait_for(|c| *c >= n))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A base URL on which nothing listens: connections to it are refused.
pub async fn closed_port_url() -> String {
    // Bound but never listening: a connection is refused, and while the
    // socket lives no other server of this test process (they all bind port
    // 0) can be given the port. It lives as long as the process: a freed
    // port could be handed to another test's fake, which would answer.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind a port");
    let addr = socket.local_addr().expect("its address");
    std::mem::forget(socket);
    format!("http://{addr}")
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in the accept loop's set: aborting this task aborts them all.
    http::accept(listener, |stream| {
        *shared.connections.lock().unwrap() += 1;
        connection(stream, shared.clone())
    })
    .await;
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    // Keep-alive: serve requests until the client closes or a mode closes.
    while let Ok(Some(request)) = read_request(&mut stream, &mut buf).await {
        let body = serde_json::from_slice::<Value>(&request.body).unwrap_or(Value::Null);
        let credential = request
            .header("authorization")
            .or_else(|| request.header("x-api-key"))
            .unwrap_or("none")
            .to_owned();
        let close_requested = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        shared.requests.lock().unwrap().push(request);
        let scripted = shared.script.lock().unwrap().pop_front();
        let mode = scripted.unwrap_or_else(|| shared.mode.lock().unwrap().clone());
        let reply = shared.reply.lock().unwrap().clone();
        let keep_open = respond(&mut stream, &shared, &mode, &reply, &body, &credential)
            .await
            .unwrap_or(false);
        if !keep_open || close_requested {
            return;
        }
    }
}

/// Answers one request; `Ok(true)` when the connection may serve another.
async fn respond(
    stream: &mut TcpStream,
    shared: &Shared,
    mode: &Mode,
    reply: &[String],
    request: &Value,
    credential: &str,
) -> std::io::Result<bool> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let flavor = shared.flavor;
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    // Once the tool results are back, a model answers in text.
    let mode = match mode {
        Mode::ToolCalls(_) if ends_with_tool_results(request) => &Mode::Normal,
        other => other,
    };
    match mode {
        Mode::ToolCalls(calls) | Mode::ToolCallsThenStall(calls) if streaming => {
            let content_type = match flavor {
                Flavor::Ollama => "application/x-ndjson",
                Flavor::OpenAi | Flavor::Anthropic => "text/event-stream",
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            // Cut every 5 bytes, so chunks end inside UTF-8 characters too.
            let body = tool_call_stream(flavor, &model, calls)
                .concat()
                .into_bytes();
            let stall_at = match mode {
                Mode::ToolCallsThenStall(_) => body.len() / 2 / 5,
                _ => usize::MAX,
            };
            // A peer that goes away while the stream is written is counted.
            let peer_gone = |e: std::io::Error| {
                shared.disconnects.send_modify(|n| *n += 1);
                e
            };
            for (i, piece) in body.chunks(5).enumerate() {
                if i == stall_at {
                    shared.streams_started.send_modify(|n| *n += 1);
                    if !stall_watching(stream).await {
                        shared.disconnects.send_modify(|n| *n += 1);
                        return Ok(false);
                    }
                }
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(piece);
                chunk.extend_from_slice(b"\r\n");
                stream.write_all(&chunk).await.map_err(peer_gone)?;
                stream.flush().await.map_err(peer_gone)?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            stream.flush().await?;
            if stall_at == usize::MAX {
                shared.streams_started.send_modify(|n| *n += 1);
            }
            Ok(true)
        }
        Mode::Normal | Mode::StreamThenFail | Mode::StreamThenStall if streaming => {
            let include_usage = request
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
            let events = stream_events(flavor, &model, reply, include_usage);
            let (first, rest) = events.split_at(first_part_end(flavor, reply).min(events.len()));
            let content_type = match flavor {
                Flavor::Ollama => "application/x-ndjson",
                Flavor::OpenAi | Flavor::Anthropic => "text/event-stream",
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let peer_gone = |e: std::io::Error| {
                shared.disconnects.send_modify(|n| *n += 1);
                e
            };
            stream.write_all(head.as_bytes()).await.map_err(peer_gone)?;
            write_chunks(stream, first).await.map_err(peer_gone)?;
            shared.streams_started.send_modify(|n| *n += 1);
            if *mode == Mode::StreamThenFail {
                return Ok(false);
            }
            if *mode == Mode::StreamThenStall && !stall_watching(stream).await {
                shared.disconnects.send_modify(|n| *n += 1);
                return Ok(false);
            }
            write_chunks(stream, rest).await.map_err(peer_gone)?;
            stream.write_all(b"0\r\n\r\n").await.map_err(peer_gone)?;
            stream.flush().await.map_err(peer_gone)?;
            Ok(true)
        }
        Mode::Normal | Mode::StreamThenFail | Mode::StreamThenStall => {
            write_response(stream, 200, &[], &success_body(flavor, &model, reply)).await?;
            Ok(true)
        }
        Mode::ToolCalls(calls) | Mode::ToolCallsThenStall(calls) => {
            write_response(stream, 200, &[], &tool_call_body(flavor, &model, calls)).await?;
            Ok(true)
        }
        Mode::Status(status) => {
            let body = error_body(flavor, *status, credential);
            write_response(stream, *status, &[], &body).await?;
            Ok(true)
        }
        Mode::RateLimited(retry_after) => {
            let body = error_body(flavor, 429, credential);
            let seconds = retry_after.map(|s| s.to_string());
            let headers: Vec<(&str, &str)> = seconds
                .as_deref()
                .map(|s| ("Retry-After", s))
                .into_iter()
                .collect();
            write_response(stream, 429, &headers, &body).await?;
            Ok(true)
        }
        Mode::Redirect(location) => {
            let body = json!({"redirect": location}).to_string();
            write_response(stream, 307, &[("Location", location)], &body).await?;
            Ok(true)
        }
        Mode::Slow => {
            tokio::time::sleep(SLOW_DELAY).await;
            write_response(stream, 200, &[], &success_body(flavor, &model, reply)).await?;
            Ok(true)
        }
        Mode::StallBody => {
            let body = success_body(flavor, &model, reply);
            let (first, rest) = body.split_at(body.len() / 2);
            let head = head(200, "application/json", body.len(), &[]);
            stream
                .write_all(format!("{head}{first}").as_bytes())
                .await?;
            stream.flush().await?;
            tokio::time::sleep(SLOW_DELAY).await;
            stream.write_all(rest.as_bytes()).await?;
            Ok(true)
        }
        Mode::Garbage => {
            let body = "<html><body><h1>502 Bad Gateway</h1></body></html>";
            let head = head(200, "text/html", body.len(), &[]);
            stream.write_all(format!("{head}{body}").as_bytes()).await?;
            Ok(true)
        }
        Mode::Empty => {
            write_response(stream, 200, &[], "").await?;
            Ok(true)
        }
        Mode::MissingReply => {
            let body = missing_reply_body(flavor, &model);
            write_response(stream, 200, &[], &body).await?;
            Ok(true)
        }
        Mode::CutShort => {
            let body = success_body(flavor, &model, reply);
            let half = &body[..body.len() / 2];
            let head = head(200, "application/json", body.len() + 100, &[]);
            stream.write_all(format!("{head}{half}").as_bytes()).await?;
            stream.flush().await?;
            stream.shutdown().await?;
            Ok(false)
        }
        Mode::Close => Ok(false),
        Mode::LargeReply(len) => {
            let reply = ["a".repeat(*len)];
            write_response(stream, 200, &[], &success_body(flavor, &model, &reply)).await?;
            Ok(true)
        }
    }
}

/// Waits [`SLOW_DELAY`] while reading from the peer; `false` as soon as it
/// closes the connection (or it fails), `true` if it is still there after.
async fn stall_watching(stream: &mut TcpStream) -> bool {
    let watch = async {
        let mut scratch = [0u8; 1024];
        // Bytes sent meanwhile (a pipelined request, say) are not expected
        // from a client waiting for this response; they are dropped.
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = watch => false,
        () = tokio::time::sleep(SLOW_DELAY) => true,
    }
}

const CREATED_AT: &str = "2026-11-25T10:00:00.000000Z";
const CREATED_UNIX: u64 = 1_795_600_800;

/// A success in the provider's non-streaming format.
fn success_body(flavor: Flavor, model: &str, reply: &[String]) -> String {
    let text = reply.concat();
    let usage = usage_of(flavor);
    let body = match flavor {
        Flavor::Ollama => json!({
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": text},
            "done_reason": "stop",
            "done": true,
            "total_duration": 5_191_566_416_u64,
            "load_duration": 2_154_458_u64,
            "prompt_eval_count": usage.prompt_tokens,
            "prompt_eval_duration": 383_809_000_u64,
            "eval_count": usage.completion_tokens,
            "eval_duration": 4_799_921_000_u64
        }),
        Flavor::OpenAi => json!({
            "id": "chatcmpl-fake0001",
            "object": "chat.completion",
            "created": CREATED_UNIX,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens()},
            "service_tier": "default",
            "system_fingerprint": "fp_fake"
        }),
        Flavor::Anthropic => json!({
            "id": "msg_fake0001",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": reply.iter().map(|part| json!({"type": "text", "text": part})).collect::<Vec<_>>(),
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens}
        }),
    };
    body.to_string()
}

/// Whether the request's last turn brings tool results: a `tool` message
/// (OpenAI, Ollama) or a user turn of `tool_result` blocks (Anthropic).
fn ends_with_tool_results(request: &Value) -> bool {
    let Some(last) = request
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
    else {
        return false;
    };
    last["role"] == "tool"
        || last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// A whole reply calling `calls` (name, arguments), in the shapes of each
/// provider's tool use documentation.
fn tool_call_body(flavor: Flavor, model: &str, calls: &[(String, String)]) -> String {
    let args = |a: &str| serde_json::from_str::<Value>(a).expect("arguments are JSON");
    let body = match flavor {
        Flavor::Ollama => json!({
            "model": model, "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": "",
                "tool_calls": calls.iter().map(|(name, a)| json!(
                    {"function": {"name": name, "arguments": args(a)}})).collect::<Vec<_>>()},
            "done_reason": "stop", "done": true,
            "prompt_eval_count": 122, "eval_count": 33
        }),
        Flavor::OpenAi => json!({
            "id": "chatcmpl-fake0002", "object": "chat.completion",
            "created": CREATED_UNIX, "model": model,
            "choices": [{"index": 0,
                "message": {"role": "assistant", "content": null, "refusal": null,
                    "tool_calls": calls.iter().enumerate().map(|(i, (name, a))| json!(
                        {"id": format!("call_fake{i}"), "type": "function",
                         "function": {"name": name, "arguments": a}})).collect::<Vec<_>>()},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
        }),
        Flavor::Anthropic => {
            let mut content = vec![json!({"type": "text", "text": "Let me check."})];
            content.extend(calls.iter().enumerate().map(|(i, (name, a))| {
                json!(
                {"type": "tool_use", "id": format!("toolu_fake{i}"), "name": name,
                 "input": args(a)})
            }));
            json!({
                "id": "msg_fake0002", "type": "message", "role": "assistant",
                "model": model, "content": content,
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 384, "output_tokens": 91}
            })
        }
    };
    body.to_string()
}

/// A streamed reply calling `calls`, in each provider's stream form, the
/// arguments cut every 3 characters (inside strings and escapes): OpenAI
/// chunks, Anthropic `tool_use` blocks with `input_json_delta` pieces after
/// a text block, Ollama one line with the whole calls.
fn tool_call_stream(flavor: Flavor, model: &str, calls: &[(String, String)]) -> Vec<String> {
    let pieces = |a: &str| -> Vec<String> {
        let chars: Vec<char> = a.chars().collect();
        chars.chunks(3).map(|c| c.iter().collect()).collect()
    };
    let args = |a: &str| serde_json::from_str::<Value>(a).expect("arguments are JSON");
    match flavor {
        Flavor::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-fake0003",
                    "object": "chat.completion.chunk", "created": CREATED_UNIX, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null,
                        "finish_reason": finish}]})
                )
            };
            let mut events = Vec::new();
            for (i, (name, a)) in calls.iter().enumerate() {
                let mut start = json!({"tool_calls": [{"index": i, "id": format!("call_fake{i}"),
                    "type": "function", "function": {"name": name, "arguments": ""}}]});
                if i == 0 {
                    start["role"] = json!("assistant");
                    start["content"] = Value::Null;
                }
                events.push(chunk(start, Value::Null));
                for piece in pieces(a) {
                    events.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
            events.push(chunk(json!({}), json!("tool_calls")));
            events.push("data: [DONE]\n\n".to_owned());
            events
        }
        Flavor::Anthropic => {
            let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
            let mut events = vec![
                event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                    "id": "msg_fake0003", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 384, "output_tokens": 1}}}),
                ),
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ),
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": "Let me check."}}),
                ),
                event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
            ];
            for (i, (name, a)) in calls.iter().enumerate() {
                let block = i + 1;
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start",
                    "index": block, "content_block": {"type": "tool_use",
                    "id": format!("toolu_fake{i}"), "name": name, "input": {}}}),
                ));
                for piece in std::iter::once(String::new()).chain(pieces(a)) {
                    events.push(event("content_block_delta", json!({"type": "content_block_delta",
                        "index": block, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": block}),
                ));
            }
            events.push(event(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 91}}),
            ));
            events.push(event("message_stop", json!({"type": "message_stop"})));
            events
        }
        Flavor::Ollama => vec![
            json!({"model": model, "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": "",
                    "tool_calls": calls.iter().map(|(name, a)| json!(
                        {"function": {"name": name, "arguments": args(a)}})).collect::<Vec<_>>()},
                "done": false})
            .to_string()
                + "\n",
            json!({"model": model, "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": ""},
                "done_reason": "stop", "done": true,
                "prompt_eval_count": 122, "eval_count": 33})
            .to_string()
                + "\n",
        ],
    }
}

/// A 200 in the provider's shape with the reply field left out.
fn missing_reply_body(flavor: Flavor, model: &str) -> String {
    let body = match flavor {
        Flavor::Ollama => json!({"model": model, "created_at": CREATED_AT, "done": true}),
        Flavor::OpenAi => json!({
            "id": "chatcmpl-fake0001", "object": "chat.completion",
            "created": CREATED_UNIX, "model": model, "choices": []
        }),
        Flavor::Anthropic => json!({
            "id": "msg_fake0001", "type": "message", "role": "assistant",
            "model": model, "stop_reason": "end_turn"
        }),
    };
    body.to_string()
}

/// The provider's error body, quoting the credential it was sent.
fn error_body(flavor: Flavor, status: u16, credential: &str) -> String {
    let message = format!("request rejected with {status}; credential received: {credential}");
    let body = match flavor {
        Flavor::Ollama => json!({"error": message}),
        Flavor::OpenAi => json!({"error": {
            "message": message, "type": "invalid_request_error",
            "param": null, "code": "invalid_api_key"
        }}),
        Flavor::Anthropic => json!({"type": "error", "error": {
            "type": "authentication_error", "message": message
        }}),
    };
    body.to_string()
}

/// How many of [`stream_events`] go up to and including the first reply
/// part (all the events before the reply's end when it has no part).
fn first_part_end(flavor: Flavor, reply: &[String]) -> usize {
    let preamble = match flavor {
        Flavor::Ollama => 0,
        // The role chunk.
        Flavor::OpenAi => 1,
        // message_start, content_block_start, ping.
        Flavor::Anthropic => 3,
    };
    preamble + usize::from(!reply.is_empty())
}

/// The provider's streaming events, one per chunk of the response.
fn stream_events(
    flavor: Flavor,
    model: &str,
    reply: &[String],
    include_usage: bool,
) -> Vec<String> {
    let usage = usage_of(flavor);
    match flavor {
        Flavor::Ollama => {
            let mut lines: Vec<String> = reply
                .iter()
                .map(|part| {
                    json!({"model": model, "created_at": CREATED_AT,
                           "message": {"role": "assistant", "content": part}, "done": false})
                    .to_string()
                        + "\n"
                })
                .collect();
            // The last line carries the statistics, as in the non-streaming body.
            lines.push(
                json!({"model": model, "created_at": CREATED_AT,
                       "message": {"role": "assistant", "content": ""},
                       "done_reason": "stop", "done": true,
                       "total_duration": 5_191_566_416_u64,
                       "load_duration": 2_154_458_u64,
                       "prompt_eval_count": usage.prompt_tokens,
                       "prompt_eval_duration": 383_809_000_u64,
                       "eval_count": usage.completion_tokens,
                       "eval_duration": 4_799_921_000_u64})
                .to_string()
                    + "\n",
            );
            lines
        }
        Flavor::OpenAi => {
            // With `include_usage`, every chunk has `"usage": null` and one
            // more chunk, with no choices, carries the usage before [DONE].
            let data = |choices: Value, usage: Value| {
                let mut data = json!({"id": "chatcmpl-fake0001", "object": "chat.completion.chunk",
                    "created": CREATED_UNIX, "model": model,
                    "service_tier": "default", "system_fingerprint": "fp_fake",
                    "choices": choices});
                if include_usage {
                    data["usage"] = usage;
                }
                format!("data: {data}\n\n")
            };
            let chunk = |delta: Value, finish: Value| {
                data(
                    json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                    Value::Null,
                )
            };
            let mut events = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            events.extend(
                reply
                    .iter()
                    .map(|part| chunk(json!({"content": part}), Value::Null)),
            );
            events.push(chunk(json!({}), json!("stop")));
            if include_usage {
                events.push(data(
                    json!([]),
                    json!({"prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens(),
                        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
                ));
            }
            events.push("data: [DONE]\n\n".to_owned());
            events
        }
        Flavor::Anthropic => {
            let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
            let mut events = vec![
                event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                    "id": "msg_fake0001", "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": usage.prompt_tokens,
                        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                        "output_tokens": 1}}}),
                ),
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ),
                event("ping", json!({"type": "ping"})),
            ];
            events.extend(reply.iter().map(|part| {
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": part}}),
                )
            }));
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(event(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": usage.completion_tokens}}),
            ));
            events.push(event("message_stop", json!({"type": "message_stop"})));
            events
        }
    }
}
