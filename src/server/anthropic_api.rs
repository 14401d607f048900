//! Anthropic's Messages API inbound: `POST /v1/messages`, so that a client
//! written for Anthropic (its SDKs, Claude Code with `ANTHROPIC_BASE_URL`)
//! routes through the policy unchanged, to whichever provider it chooses.
//!
//! A request goes the way of every chat — decided on one policy snapshot,
//! audited pending, sent once to the chosen provider, audited with its
//! outcome, counted and logged through [`Exchange`] — and is answered in
//! Anthropic's shapes: a `message` object, or with `stream: true` Anthropic's
//! event sequence (`message_start`, content blocks, `message_delta`,
//! `message_stop`, a `ping` every 15 s while idle), translated from the
//! provider's own stream as it arrives. A reply that calls a tool ends with
//! `stop_reason: tool_use`, whichever provider wrote it. The decision rides
//! in the `x-policy-mesh-*` headers, the request id in `request-id` and
//! `x-request-id`.
//!
//! Model names: the requested model is what `model` policy conditions read.
//! An Anthropic provider gets it as it is (unless it is one of the names
//! `GET /v1/models` lists, which mean the configured model); OpenAI and the
//! local model, which serve no Claude model, get their configured model.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppState;
use super::anthropic_request::{MessagesBody, MessagesRequest};
use super::auth::Caller;
use super::error::{AnthropicError, AnthropicErrorBody, ApiError};
use super::exchange::Exchange;
use super::openai_api::{decision_headers, events_of};
use crate::names::{Api, ClientApi, FailureCategory};
use crate::providers::{ProviderError, Reply, ReplyStream, StreamEvent, Usage};

/// Anthropic's own request id header, beside `x-request-id`.
pub const ANTHROPIC_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("request-id");

/// How often an idle stream gets a `ping` event.
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Events that may wait for a slow client before the upstream is no longer read.
const STREAM_BUFFER: usize = 32;

/// Anthropic's Messages API, routed by the policy.
#[utoipa::path(post, path = "/v1/messages", tag = "anthropic",
    description = "Anthropic's Messages API, routed by the policy to any provider (one call, audited and counted). With `stream: true` the answer is Anthropic's event stream.",
    request_body = super::anthropic_request::MessagesRequestBody,
    responses(
        (status = 200, description = "The provider answered: a `message`, or with `stream: true` a `text/event-stream` of Anthropic's events",
            content(
                (MessageOut = "application/json"),
                (String = "text/event-stream"),
            ),
            headers(
                ("request-id" = String, description = "The request id (audit)"),
                ("x-request-id" = String, description = "The request id (audit)"),
                ("x-policy-mesh-provider" = String, description = "local, openai or anthropic"),
            )),
        (status = 400, description = "Not JSON, or the wrong shape (the message names the field)", body = AnthropicErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = AnthropicErrorBody),
        (status = 502, description = "The provider failed before answering", body = AnthropicErrorBody),
        (status = 503, description = "The audit event could not be committed, so no provider was called", body = AnthropicErrorBody),
        (status = 504, description = "The provider timed out", body = AnthropicErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    MessagesBody(request): MessagesBody,
) -> Response {
    let caller = caller.map_or_else(Caller::anonymous, |Extension(c)| c);
    // As for the other APIs, the call runs in a task of its own so that a
    // client hanging up cannot cancel the bookkeeping half way.
    match tokio::spawn(serve(state, request, caller)).await {
        Ok(response) => response,
        Err(e) => AnthropicError(ApiError::Internal(format!("the messages task failed: {e}")))
            .into_response(),
    }
}

async fn serve(state: AppState, request: MessagesRequest, caller: Caller) -> Response {
    // The Messages API names Anthropic models: only an Anthropic provider
    // is sent the requested name, the others their own model.
    let mut exchange = Exchange::begin(
        &state,
        ClientApi::Anthropic,
        &request.messages,
        &request.tools,
        Some(&request.model),
        &request.options,
        Some(Api::Anthropic),
        &caller.id,
    )
    .await;
    let headers = |exchange: &Exchange| {
        let mut headers = decision_headers(exchange);
        if let Ok(id) = HeaderValue::from_str(&exchange.request_id.hyphenated().to_string()) {
            headers.insert(ANTHROPIC_REQUEST_ID_HEADER, id);
        }
        headers
    };
    if let Err(e) = exchange
        .admit(&state, &request.messages, &request.tools, &request.options)
        .await
    {
        return (headers(&exchange), AnthropicError(e)).into_response();
    }
    if !request.stream {
        let result = exchange
            .call(&state, &request.messages, &request.tools, &request.options)
            .await;
        let response = match result {
            Ok(reply) => Json(message(&exchange, reply)).into_response(),
            Err(e) => provider_error(&e),
        };
        return (headers(&exchange), response).into_response();
    }
    let upstream = exchange
        .open_stream(&state, &request.messages, &request.tools, &request.options)
        .await;
    let headers = headers(&exchange);
    match upstream {
        Err(e) => (headers, provider_error(&e)).into_response(),
        Ok(upstream) => {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tokio::spawn(relay(state, exchange, upstream, tx));
            let ping = KeepAlive::new()
                .interval(PING_INTERVAL)
                .event(Event::default().event("ping").data(r#"{"type":"ping"}"#));
            (headers, Sse::new(events_of(rx)).keep_alive(ping)).into_response()
        }
    }
}

/// A whole answer, Anthropic's `message`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageOut {
    /// `msg_` and the request id.
    id: String,
    /// `message`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `assistant`.
    role: &'static str,
    /// The model sent to the provider.
    model: String,
    /// The reply: text, then the tools it calls.
    content: Vec<ContentBlockOut>,
    /// `end_turn`, `max_tokens` or `tool_use`.
    stop_reason: &'static str,
    /// Always `null`.
    stop_sequence: Option<String>,
    /// Token counts, when the provider reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

/// A content block of a reply.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlockOut {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// The call's id.
        id: String,
        /// The tool called.
        name: String,
        /// Its input (the arguments as an object).
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// Anthropic's `usage`.
#[derive(Debug, Serialize, ToSchema)]
struct UsageOut {
    /// Input tokens.
    input_tokens: u64,
    /// Reply tokens.
    output_tokens: u64,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        UsageOut {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

/// The message id of an exchange.
fn message_id(exchange: &Exchange) -> String {
    format!("msg_{}", exchange.request_id.simple())
}

/// The `stop_reason` for OpenAI's `finish_reason` word: a reply that calls
/// tools always says `tool_use`.
fn stop_reason(finish: Option<&str>, called_tools: bool) -> &'static str {
    if called_tools {
        return "tool_use";
    }
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") => "tool_use",
        _ => "end_turn",
    }
}

/// The arguments text of a tool call as the object Anthropic's `input` is;
/// what is not a JSON object becomes an empty one.
fn input_of(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({}),
    }
}

/// A whole reply as a `message`.
fn message(exchange: &Exchange, reply: Reply) -> MessageOut {
    let called_tools = !reply.tool_calls.is_empty();
    let mut content = Vec::new();
    if !reply.content.is_empty() || !called_tools {
        content.push(ContentBlockOut::Text {
            text: reply.content,
        });
    }
    content.extend(
        reply
            .tool_calls
            .into_iter()
            .map(|c| ContentBlockOut::ToolUse {
                input: input_of(&c.arguments),
                id: c.id,
                name: c.name,
            }),
    );
    MessageOut {
        id: message_id(exchange),
        kind: "message",
        role: "assistant",
        model: exchange.model.clone(),
        content,
        stop_reason: stop_reason(reply.finish_reason.as_deref(), called_tools),
        stop_sequence: None,
        usage: reply.usage.map(UsageOut::from),
    }
}

/// A provider failure before anything was streamed, in Anthropic's shape:
/// `504 api_error` for a timeout, `529 overloaded_error` when every provider
/// of the chain was skipped by its open circuit, `502 api_error` otherwise.
fn provider_error(e: &ProviderError) -> Response {
    let (status, kind) = match e.category() {
        FailureCategory::Timeout => (StatusCode::GATEWAY_TIMEOUT, "api_error"),
        FailureCategory::Unavailable => (
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
        ),
        _ => (StatusCode::BAD_GATEWAY, "api_error"),
    };
    (status, Json(AnthropicErrorBody::new(kind, e.to_string()))).into_response()
}

/// `event: <name>` with `data` as JSON.
fn event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// Relays one upstream stream to the client as Anthropic's events, then
/// records the exchange. Ends early, dropping the upstream request, when the
/// client goes away; an upstream failure after the stream began is one
/// `event: error`.
async fn relay(
    state: AppState,
    exchange: Exchange,
    mut upstream: ReplyStream,
    tx: mpsc::Sender<Event>,
) {
    let provider = exchange.provider.clone();
    let start = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": message_id(&exchange),
            "type": "message", "role": "assistant", "model": exchange.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
    );
    let mut client_gone = tx.send(start).await.is_err();
    // The open block: its index and whether it is text.
    let mut open: Option<(usize, bool)> = None;
    let mut blocks = 0usize;
    let mut tool_blocks: HashMap<usize, usize> = HashMap::new();
    let mut first_token = true;
    let mut finish: Option<String> = None;
    let mut usage: Option<Usage> = None;
    let mut outcome: Result<(), ProviderError> = Ok(());
    while !client_gone {
        let next = tokio::select! {
            () = tx.closed() => {
                client_gone = true;
                break;
            }
            next = upstream.next() => next,
        };
        let mut out = Vec::new();
        match next {
            None => break,
            Some(Err(e)) => {
                outcome = Err(e);
                break;
            }
            Some(Ok(StreamEvent::Text(text))) => {
                if open.is_none_or(|(_, is_text)| !is_text) {
                    close(&mut open, &mut out);
                    out.push(event(
                        "content_block_start",
                        json!({"type": "content_block_start",
                        "index": blocks, "content_block": {"type": "text", "text": ""}}),
                    ));
                    open = Some((blocks, true));
                    blocks += 1;
                }
                let index = open.map_or(0, |(i, _)| i);
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": index, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            Some(Ok(StreamEvent::ToolCallStart { index, id, name })) => {
                close(&mut open, &mut out);
                out.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start",
                    "index": blocks, "content_block": {"type": "tool_use", "id": id,
                    "name": name, "input": {}}}),
                ));
                tool_blocks.insert(index, blocks);
                open = Some((blocks, false));
                blocks += 1;
            }
            Some(Ok(StreamEvent::ToolCallArguments { index, arguments })) => {
                if let Some(block) = tool_blocks.get(&index) {
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": block, "delta": {"type": "input_json_delta",
                        "partial_json": arguments}}),
                    ));
                }
            }
            Some(Ok(StreamEvent::Finish(reason))) => finish = Some(reason),
            Some(Ok(StreamEvent::Usage(u))) => usage = Some(u),
        }
        if first_token && !out.is_empty() {
            first_token = false;
            state
                .metrics
                .time_to_first_token(&provider, exchange.elapsed().as_secs_f64());
        }
        for e in out {
            if tx.send(e).await.is_err() {
                client_gone = true;
                break;
            }
        }
    }
    // The upstream connection closes here, whatever happens next.
    drop(upstream);
    if client_gone {
        exchange
            .finish(&state, Some(&ProviderError::cancelled()))
            .await;
        return;
    }
    match outcome {
        Ok(()) => {
            let mut out = Vec::new();
            close(&mut open, &mut out);
            let mut usage_out = json!({"output_tokens": usage.map_or(0, |u| u.completion_tokens)});
            if let Some(u) = usage {
                usage_out["input_tokens"] = json!(u.prompt_tokens);
            }
            out.push(event(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(finish.as_deref(), !tool_blocks.is_empty()),
                    "stop_sequence": null},
                "usage": usage_out}),
            ));
            for e in out {
                let _ = tx.send(e).await;
            }
            // Recorded before `message_stop`, so the audit event exists as
            // soon as the client has the whole answer.
            exchange.finish(&state, None).await;
            let _ = tx
                .send(event("message_stop", json!({"type": "message_stop"})))
                .await;
        }
        Err(e) => {
            exchange.finish(&state, Some(&e)).await;
            let body = AnthropicErrorBody::new("api_error", e.to_string());
            let _ = tx
                .send(
                    Event::default()
                        .event("error")
                        .data(serde_json::to_string(&body).unwrap_or_default()),
                )
                .await;
        }
    }
}

/// Closes the open block, if any.
fn close(open: &mut Option<(usize, bool)>, out: &mut Vec<Event>) {
    if let Some((index, _)) = open.take() {
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_that_calls_tools_says_tool_use_whoever_wrote_it() {
        assert_eq!(stop_reason(Some("stop"), true), "tool_use");
        assert_eq!(stop_reason(Some("tool_calls"), false), "tool_use");
        assert_eq!(stop_reason(Some("length"), false), "max_tokens");
        assert_eq!(stop_reason(Some("stop"), false), "end_turn");
        assert_eq!(stop_reason(None, false), "end_turn");
    }

    #[test]
    fn tool_arguments_become_an_input_object() {
        assert_eq!(input_of(r#"{"city":"Paris"}"#), json!({"city": "Paris"}));
        assert_eq!(input_of("[1]"), json!({}));
        assert_eq!(input_of("{"), json!({}));
    }
}
