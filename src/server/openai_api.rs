//! The OpenAI-compatible API: `POST /v1/chat/completions` and
//! `GET /v1/models`, so that a client written for OpenAI (its SDKs, or
//! anything that takes a `base_url`) routes through the policy unchanged.
//!
//! A completion goes the same way as a `/v1/chat` request — decided on one
//! policy snapshot, sent along the decision's chain of providers, audited,
//! counted and logged through [`Exchange`] — and is answered in OpenAI's shapes: a
//! `chat.completion` object, or with `stream: true` a `text/event-stream` of
//! `chat.completion.chunk` events ending with `data: [DONE]`, translated
//! from the provider's own stream as the tokens arrive. The decision rides
//! in response headers. Errors use OpenAI's error shape.
//!
//! Model names: the `model` a client sends is the requested model, which
//! `model` policy conditions look at. Because OpenAI clients always name a
//! model, and the policy may send the request to a provider that does not
//! serve it, the names this gateway lists on `/v1/models` (its configured
//! local and public models, and [`AUTO_MODEL`]) and every provider's own
//! `model` mean "the chosen provider's model"; any other name is sent as it
//! is to a provider whose `models` globs accept it, and a provider that does
//! not serve it gets its own `model` (so `gpt-4o` routed local gets the
//! local model, not a 404).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, OpenAiError, OpenAiErrorBody, OpenAiErrorDetail};
use super::exchange::{Exchange, REQUEST_ID_HEADER, failure_status};
use super::openai_request::{CompletionBody, CompletionRequest};
use crate::decision::Decision;
use crate::names::{ClientApi, FailureCategory};
pub use crate::providers::spec::AUTO_MODEL;
use crate::providers::{ProviderError, Reply, ReplyStream, StreamEvent, Usage};

/// The provider calls made (more than 1 after retries or fallbacks).
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-attempts");
/// The provider that answered, or the last one tried.
pub const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-provider");
/// The calling client's id (`anonymous` on a gateway without clients).
pub const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-client");
/// The rule that decided; empty on a default decision.
pub const RULE_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-rule");
/// `true` when a sensitive rule decided (the request stayed local), else `false`.
pub const SENSITIVE_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-sensitive");
/// The detectors of the deciding rule that found something, sorted, joined
/// by `,`; empty when none did.
pub const DETECTIONS_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-detections");
/// The decision's reason code.
pub const REASON_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-reason");
/// The version of the policy that decided.
pub const POLICY_VERSION_HEADER: HeaderName =
    HeaderName::from_static("x-policy-mesh-policy-version");

/// How many chunks may wait for a slow client before the upstream is no
/// longer read (back-pressure, not buffering of the whole reply).
const STREAM_BUFFER: usize = 32;

/// OpenAI's chat completion, routed by the policy.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    description = "OpenAI's chat completion, routed by the policy like `/v1/chat` (along the decision's chain of providers, audited and counted). With `stream: true` the answer is `text/event-stream` of `ChatCompletionChunk` events ending with `data: [DONE]`.",
    request_body = super::openai_request::CompletionRequestBody,
    responses(
        (status = 200, description = "The provider answered: a `ChatCompletion`, or with `stream: true` a `text/event-stream` whose events' `data` are `ChatCompletionChunk`s, then `[DONE]`",
            content(
                (ChatCompletion = "application/json"),
                (ChatCompletionChunk = "text/event-stream"),
            ),
            headers(
                ("x-request-id" = String, description = "The request id (audit)"),
                ("x-policy-mesh-provider" = String, description = "The provider that answered, or the last one tried: `local`, `openai`, `anthropic` or a policy provider's id"),
                ("x-policy-mesh-attempts" = String, description = "The provider calls made (more than 1 after retries or fallbacks)"),
                ("x-policy-mesh-rule" = String, description = "The rule that decided; empty on a default decision"),
                ("x-policy-mesh-client" = String, description = "The calling client's id (`anonymous` without a clients file)"),
                ("x-policy-mesh-sensitive" = String, description = "`true` when a sensitive rule decided (the request stayed local), else `false`"),
                ("x-policy-mesh-detections" = String, description = "The detectors of the deciding rule that found something, sorted, joined by `,`; empty when none did"),
                ("x-policy-mesh-reason" = String, description = "The reason code"),
                ("x-policy-mesh-policy-version" = String, description = "The policy version that decided"),
            )),
        (status = 400, description = "Not JSON, or the wrong shape (`param` names the field)", body = OpenAiErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = OpenAiErrorBody),
        (status = 502, description = "The provider failed before answering (`code` is the category)", body = OpenAiErrorBody),
        (status = 504, description = "The provider timed out", body = OpenAiErrorBody),
        (status = 503, description = "Every provider of the chain was skipped by its open circuit (`code` `unavailable`), or the audit event could not be committed (`code` `audit_unavailable`)", body = OpenAiErrorBody),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    CompletionBody(request): CompletionBody,
) -> Response {
    let caller = caller.map_or_else(Caller::anonymous, |Extension(c)| c);
    // As for /v1/chat, the call runs in a task of its own so that a client
    // hanging up cannot cancel it half way through the bookkeeping. A stream
    // notices the hang-up itself and drops the upstream request.
    match tokio::spawn(serve(state, request, caller)).await {
        Ok(response) => response,
        Err(e) => OpenAiError(ApiError::Internal(format!(
            "the completion task failed: {e}"
        )))
        .into_response(),
    }
}

async fn serve(state: AppState, request: CompletionRequest, caller: Caller) -> Response {
    let requested = request.model.as_deref();
    // A `json_schema` format's schema leaves with the request: the policy
    // reads it like a tool definition.
    let mut decided_tools = request.tools.clone();
    decided_tools.extend(
        request
            .options
            .response_format
            .as_ref()
            .and_then(crate::chat::ResponseFormat::as_tool),
    );
    let mut exchange = Exchange::begin(
        &state,
        ClientApi::Openai,
        &request.messages,
        &decided_tools,
        requested,
        &request.options,
        None,
        &caller.id,
    )
    .await;
    if let Err(e) = exchange
        .admit(&state, &request.messages, &request.tools, &request.options)
        .await
    {
        return (decision_headers(&exchange), OpenAiError(e)).into_response();
    }
    if !request.stream {
        let result = exchange
            .call(&state, &request.messages, &request.tools, &request.options)
            .await;
        let response = match result {
            Ok(reply) => Json(completion(&exchange, reply)).into_response(),
            Err(e) => provider_error(&e),
        };
        return (decision_headers(&exchange), response).into_response();
    }
    let upstream = exchange
        .open_stream(&state, &request.messages, &request.tools, &request.options)
        .await;
    let headers = decision_headers(&exchange);
    match upstream {
        // Nothing was streamed yet: a plain error answer.
        Err(e) => (headers, provider_error(&e)).into_response(),
        Ok(upstream) => {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tokio::spawn(relay(
                state,
                exchange,
                upstream,
                request.options.include_usage,
                tx,
            ));
            (
                headers,
                Sse::new(events_of(rx)).keep_alive(KeepAlive::default()),
            )
                .into_response()
        }
    }
}

/// The events a relay sends on `rx`, as the body of an SSE answer.
pub(crate) fn events_of(
    rx: mpsc::Receiver<Event>,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}

/// The decision, in the response headers of every completion answer.
pub(crate) fn decision_headers(exchange: &Exchange) -> HeaderMap {
    let decision: &Decision = &exchange.decision;
    let mut headers = HeaderMap::new();
    let mut put = |name: HeaderName, value: &str| {
        // Ids, reasons and versions are plain ASCII by the policy language.
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put(
        REQUEST_ID_HEADER,
        &exchange.request_id.hyphenated().to_string(),
    );
    put(PROVIDER_HEADER, exchange.provider.as_str());
    put(ATTEMPTS_HEADER, &exchange.calls().to_string());
    put(RULE_HEADER, decision.rule_id().unwrap_or(""));
    put(CLIENT_HEADER, &decision.client);
    put(
        SENSITIVE_HEADER,
        if decision.sensitive { "true" } else { "false" },
    );
    put(DETECTIONS_HEADER, &decision.detections.names().join(","));
    put(REASON_HEADER, &decision.reason);
    put(POLICY_VERSION_HEADER, &decision.policy_version);
    headers
}

/// The `id` of a completion and of each of its chunks.
fn completion_id(exchange: &Exchange) -> String {
    format!("chatcmpl-{}", exchange.request_id.simple())
}

/// Unix seconds, as OpenAI's `created`.
fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// A whole answer, `object: chat.completion`. The decision is in the
/// `x-policy-mesh-*` headers.
#[derive(Debug, Serialize, ToSchema)]
struct ChatCompletion {
    /// `chatcmpl-` and the request id.
    id: String,
    /// `chat.completion`.
    #[schema(pattern = "^chat\\.completion$")]
    object: &'static str,
    /// Unix seconds.
    created: u64,
    /// The model sent to the provider.
    model: String,
    /// Exactly one choice.
    #[schema(min_items = 1, max_items = 1)]
    choices: Vec<CompletionChoice>,
    /// Present when the provider reported the counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<CompletionUsage>,
}

/// The one choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
struct CompletionChoice {
    /// `0`.
    index: u32,
    /// The reply.
    message: AssistantMessage,
    /// Always `null`.
    logprobs: Option<String>,
    /// `stop`, `length`, `content_filter` or `tool_calls`.
    finish_reason: String,
}

/// The reply message.
#[derive(Debug, Serialize, ToSchema)]
struct AssistantMessage {
    /// `assistant`.
    role: &'static str,
    /// The reply text, unchanged; `null` when the reply only calls tools.
    content: Option<String>,
    /// The tools the model calls, in order; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut>,
}

/// One tool call of a reply, in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplyToolCall)]
struct ToolCallOut {
    /// The call's id (made by the gateway when the provider gives none).
    id: String,
    /// `function`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The function called.
    function: FunctionOut,
}

/// The function of a tool call.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplyFunctionCall)]
struct FunctionOut {
    /// Its name.
    name: String,
    /// Its arguments: a JSON text, as the provider wrote it.
    arguments: String,
}

impl From<crate::chat::ToolCall> for ToolCallOut {
    fn from(call: crate::chat::ToolCall) -> Self {
        ToolCallOut {
            id: call.id,
            kind: "function",
            function: FunctionOut {
                name: call.name,
                arguments: call.arguments,
            },
        }
    }
}

/// Token counts, as the provider reported them.
#[derive(Debug, Serialize, ToSchema)]
struct CompletionUsage {
    /// Input tokens.
    prompt_tokens: u64,
    /// Reply tokens.
    completion_tokens: u64,
    /// Their sum.
    total_tokens: u64,
}

impl From<Usage> for CompletionUsage {
    fn from(usage: Usage) -> Self {
        CompletionUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
        }
    }
}

/// A whole reply as a `chat.completion`.
fn completion(exchange: &Exchange, reply: Reply) -> ChatCompletion {
    ChatCompletion {
        id: completion_id(exchange),
        object: "chat.completion",
        created: unix_now(),
        model: exchange.model.clone(),
        choices: vec![CompletionChoice {
            index: 0,
            finish_reason: if reply.tool_calls.is_empty() {
                reply.finish_reason.unwrap_or_else(|| "stop".to_owned())
            } else {
                // Whichever provider wrote it, a reply that calls tools says so.
                "tool_calls".to_owned()
            },
            message: AssistantMessage {
                role: "assistant",
                content: (!reply.content.is_empty() || reply.tool_calls.is_empty())
                    .then_some(reply.content),
                tool_calls: reply
                    .tool_calls
                    .into_iter()
                    .map(ToolCallOut::from)
                    .collect(),
            },
            logprobs: None,
        }],
        usage: reply.usage.map(CompletionUsage::from),
    }
}

/// The error body of a provider failure: the gateway's own words (never the
/// upstream's body), `type` `provider_error`, `code` the failure category.
fn provider_error_body(e: &ProviderError) -> OpenAiErrorBody {
    let (kind, code) = match e.category() {
        // Every circuit of the chain open: the gateway's own state, not a
        // provider's answer.
        FailureCategory::Unavailable => ("api_error", "providers_unavailable"),
        category => ("provider_error", category.as_str()),
    };
    OpenAiErrorBody {
        error: OpenAiErrorDetail {
            message: e.to_string(),
            kind,
            param: None,
            code,
        },
    }
}

/// A provider failure before anything was streamed: 502, or 504 for a timeout.
fn provider_error(e: &ProviderError) -> Response {
    (failure_status(e.category()), Json(provider_error_body(e))).into_response()
}

/// One server-sent event of a streamed answer (`data: <chunk>`). The stream
/// opens with a chunk whose delta has the role, then one chunk per piece of
/// text as it arrives, one with the `finish_reason`, with `include_usage` one
/// with empty `choices` and `usage`, then `data: [DONE]`. A provider failure
/// after the stream began ends it with `data: {"error": …}` (the shape of
/// `OpenAiErrorBody`) and no `[DONE]`.
#[derive(Debug, Serialize, ToSchema)]
struct ChatCompletionChunk<'a> {
    /// The same for every chunk of a stream.
    id: &'a str,
    /// `chat.completion.chunk`.
    object: &'static str,
    /// Unix seconds.
    created: u64,
    /// The model sent to the provider.
    model: &'a str,
    /// One choice, or none in the usage chunk.
    choices: Vec<ChunkChoice<'a>>,
    /// Only in the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<CompletionUsage>,
}

/// The choice of a chunk.
#[derive(Debug, Serialize, ToSchema)]
struct ChunkChoice<'a> {
    /// `0`.
    index: u32,
    /// What this chunk adds.
    delta: ChunkDelta<'a>,
    /// Always `null`.
    logprobs: Option<String>,
    /// Set on the chunk that ends the reply.
    finish_reason: Option<&'a str>,
}

/// What a chunk adds.
#[derive(Debug, Default, Serialize, ToSchema)]
struct ChunkDelta<'a> {
    /// `assistant`, in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// The next piece of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// A tool call starting (with its `id`, `type` and name) or the next
    /// piece of its arguments, by `index`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChunkToolCall<'a>>,
}

/// A tool call in a chunk: the first of a call carries `id`, `type` and
/// `function.name`, the later ones `index` and a piece of
/// `function.arguments`.
#[derive(Debug, Serialize, ToSchema)]
struct ChunkToolCall<'a> {
    /// The call's place among the reply's calls.
    index: usize,
    /// The call's id, in its first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    /// `function`, in its first chunk.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// The name (first chunk) or a piece of the arguments.
    function: ChunkFunction<'a>,
}

/// The function part of a chunk's tool call.
#[derive(Debug, Serialize, ToSchema)]
struct ChunkFunction<'a> {
    /// The function's name, in the call's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// A piece of the arguments (`""` in the first chunk).
    arguments: &'a str,
}

/// `data: <JSON>`. The types written here always serialize.
fn json_event(value: &impl Serialize) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_default())
}

/// Builds the chunks of one streamed completion.
struct Chunks {
    id: String,
    created: u64,
    model: String,
}

impl Chunks {
    fn event(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Usage>) -> Event {
        json_event(&ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage: usage.map(CompletionUsage::from),
        })
    }

    fn delta(&self, delta: ChunkDelta<'_>, finish_reason: Option<&str>) -> Event {
        self.event(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            None,
        )
    }
}

/// Relays one upstream stream to the client as OpenAI chunks, then records
/// the exchange. Ends early, dropping the upstream request, when the client
/// goes away; an upstream failure after the stream began is sent in-band as
/// a final `{"error": …}` event, without `[DONE]`.
async fn relay(
    state: AppState,
    exchange: Exchange,
    mut upstream: ReplyStream,
    include_usage: bool,
    tx: mpsc::Sender<Event>,
) {
    let chunks = Chunks {
        id: completion_id(&exchange),
        created: unix_now(),
        model: exchange.model.clone(),
    };
    let provider = exchange.provider.clone();
    let mut first_token = true;
    let mut called_tools = false;
    let mut finished = false;
    let mut usage = None;
    let mut outcome: Result<(), ProviderError> = Ok(());
    let mut client_gone = tx
        .send(chunks.delta(
            ChunkDelta {
                role: Some("assistant"),
                content: Some(""),
                tool_calls: Vec::new(),
            },
            None,
        ))
        .await
        .is_err();
    while !client_gone {
        let next = tokio::select! {
            () = tx.closed() => {
                client_gone = true;
                break;
            }
            next = upstream.next() => next,
        };
        // The first piece of the answer, text or a tool call, is its first token.
        if first_token
            && matches!(
                next,
                Some(Ok(StreamEvent::Text(_) | StreamEvent::ToolCallStart { .. }))
            )
        {
            first_token = false;
            state
                .metrics
                .time_to_first_token(&provider, exchange.elapsed().as_secs_f64());
        }
        let event = match next {
            None => break,
            Some(Err(e)) => {
                outcome = Err(e);
                break;
            }
            Some(Ok(StreamEvent::Text(text))) => chunks.delta(
                ChunkDelta {
                    role: None,
                    content: Some(&text),
                    tool_calls: Vec::new(),
                },
                None,
            ),
            Some(Ok(StreamEvent::ToolCallStart { index, id, name })) => {
                called_tools = true;
                chunks.delta(
                    ChunkDelta {
                        tool_calls: vec![ChunkToolCall {
                            index,
                            id: Some(&id),
                            kind: Some("function"),
                            function: ChunkFunction {
                                name: Some(&name),
                                arguments: "",
                            },
                        }],
                        ..ChunkDelta::default()
                    },
                    None,
                )
            }
            Some(Ok(StreamEvent::ToolCallArguments { index, arguments })) => chunks.delta(
                ChunkDelta {
                    tool_calls: vec![ChunkToolCall {
                        index,
                        id: None,
                        kind: None,
                        function: ChunkFunction {
                            name: None,
                            arguments: &arguments,
                        },
                    }],
                    ..ChunkDelta::default()
                },
                None,
            ),
            Some(Ok(StreamEvent::Finish(reason))) => {
                finished = true;
                // Whichever provider wrote it, a reply that calls tools says so.
                let reason = if called_tools {
                    "tool_calls"
                } else {
                    reason.as_str()
                };
                chunks.delta(ChunkDelta::default(), Some(reason))
            }
            Some(Ok(StreamEvent::Usage(u))) => {
                usage = Some(u);
                continue;
            }
        };
        client_gone = tx.send(event).await.is_err();
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
            if !finished {
                let reason = if called_tools { "tool_calls" } else { "stop" };
                let _ = tx
                    .send(chunks.delta(ChunkDelta::default(), Some(reason)))
                    .await;
            }
            if include_usage && let Some(usage) = usage {
                let _ = tx.send(chunks.event(Vec::new(), Some(usage))).await;
            }
            // Recorded before `[DONE]`, so the audit event exists as soon as
            // the client has the whole answer.
            exchange.finish(&state, None).await;
            let _ = tx.send(Event::default().data("[DONE]")).await;
        }
        Err(e) => {
            exchange.finish(&state, Some(&e)).await;
            let _ = tx.send(json_event(&provider_error_body(&e))).await;
        }
    }
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
struct ModelList {
    /// `list`.
    object: &'static str,
    /// `policy-mesh` (the chosen provider's model), then the configured local
    /// and public models.
    data: Vec<Model>,
}

/// A model a client may ask for.
#[derive(Debug, Serialize, ToSchema)]
struct Model {
    /// The name to send as `model`.
    id: String,
    /// `model`.
    object: &'static str,
    /// Always `0`.
    created: u64,
    /// `policy-mesh`, `local`, `openai` or `anthropic`.
    owned_by: &'static str,
}

/// The list `GET /v1/models` answers: [`AUTO_MODEL`], then the configured
/// local and public models (once each).
fn model_list(state: &AppState) -> Vec<Model> {
    let config = state.providers.config();
    let mut models = vec![
        (AUTO_MODEL, "policy-mesh"),
        (config.local_model.as_str(), "local"),
        (
            config.public_model.as_str(),
            config.public_provider.as_str(),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    models.retain(|(id, _)| seen.insert(*id));
    models
        .into_iter()
        .map(|(id, owned_by)| Model {
            id: id.to_owned(),
            object: "model",
            created: 0,
            owned_by,
        })
        .collect()
}

/// The models a client may ask for.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "The models a client may ask for", body = ModelList)))]
pub async fn models(State(state): State<AppState>) -> Response {
    Json(ModelList {
        object: "list",
        data: model_list(&state),
    })
    .into_response()
}

/// One listed model, or `404` in OpenAI's shape.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai",
    params(("model" = String, Path, description = "A model id from the list")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "Not a listed model", body = OpenAiErrorBody),
    ))]
pub async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match model_list(&state).into_iter().find(|m| m.id == id) {
        Some(model) => Json(model).into_response(),
        None => OpenAiError(ApiError::NotFound(
            "no such model: GET /v1/models lists the models served".to_owned(),
        ))
        .into_response(),
    }
}
