//! The OpenAI-compatible API: `POST /v1/chat/completions` and
//! `GET /v1/models`, so that a client written for OpenAI (its SDKs, or
//! anything that takes a `base_url`) routes through the policy unchanged.
//!
//! A completion goes the same way as a `/v1/chat` request — decided on one
//! policy snapshot, sent once to the chosen provider, audited, counted and
//! logged through [`Exchange`] — and is answered in OpenAI's shapes: a
//! `chat.completion` object, or with `stream: true` a `text/event-stream` of
//! `chat.completion.chunk` events ending with `data: [DONE]`, translated
//! from the provider's own stream as the tokens arrive. The decision rides
//! in response headers. Errors use OpenAI's error shape.
//!
//! Model names: the `model` a client sends is the requested model, which
//! `model` policy conditions look at. Because OpenAI clients always name a
//! model, and the policy may send the request to a provider that does not
//! serve it, the names this gateway lists on `/v1/models` (its configured
//! local and public models, and [`AUTO_MODEL`]) mean "the chosen provider's
//! configured model"; any other name is sent to the chosen provider as it is.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, OpenAiError};
use super::gateway::{Exchange, REQUEST_ID_HEADER, failure_status};
use super::openai_request::{CompletionBody, CompletionRequest};
use crate::decision::Decision;
use crate::names::Provider;
use crate::providers::{ProviderError, Reply, ReplyStream, StreamEvent, Usage};

/// The model name that always means "the chosen provider's configured model".
pub const AUTO_MODEL: &str = "policy-mesh";

/// The provider the request went to.
pub const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-provider");
/// The rule that decided; empty on a default decision.
pub const RULE_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-rule");
/// The decision's reason code.
pub const REASON_HEADER: HeaderName = HeaderName::from_static("x-policy-mesh-reason");
/// The version of the policy that decided.
pub const POLICY_VERSION_HEADER: HeaderName =
    HeaderName::from_static("x-policy-mesh-policy-version");

/// How many chunks may wait for a slow client before the upstream is no
/// longer read (back-pressure, not buffering of the whole reply).
const STREAM_BUFFER: usize = 32;

/// The model sent for `requested` when the policy chose `provider`: see the
/// module's notes.
fn resolve_model(state: &AppState, provider: Provider, requested: Option<&str>) -> String {
    let config = state.providers.config();
    let requested = requested
        .filter(|m| *m != AUTO_MODEL && *m != config.local_model && *m != config.public_model);
    state.providers.model_for(provider, requested)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    CompletionBody(request): CompletionBody,
) -> Response {
    // As for /v1/chat, the call runs in a task of its own so that a client
    // hanging up cannot cancel it half way through the bookkeeping. A stream
    // notices the hang-up itself and drops the upstream request.
    match tokio::spawn(serve(state, request)).await {
        Ok(response) => response,
        Err(e) => OpenAiError(ApiError::Internal(format!(
            "the completion task failed: {e}"
        )))
        .into_response(),
    }
}

async fn serve(state: AppState, request: CompletionRequest) -> Response {
    let requested = request.model.as_deref();
    let exchange = Exchange::begin(&state, &request.messages, requested, |provider| {
        resolve_model(&state, provider, requested)
    });
    let headers = decision_headers(&exchange);
    if !request.stream {
        let result = exchange
            .call(&state, &request.messages, &request.options)
            .await;
        exchange.finish(&state, result.as_ref().err()).await;
        let response = match result {
            Ok(reply) => Json(completion(&exchange, reply)).into_response(),
            Err(e) => provider_error(&e),
        };
        return (headers, response).into_response();
    }
    let upstream = state
        .providers
        .provider(exchange.decision.provider)
        .chat_stream(exchange.request(&request.messages, &request.options))
        .await;
    match upstream {
        // Nothing was streamed yet: a plain error answer.
        Err(e) => {
            exchange.finish(&state, Some(&e)).await;
            (headers, provider_error(&e)).into_response()
        }
        Ok(upstream) => {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tokio::spawn(relay(
                state,
                exchange,
                upstream,
                request.options.include_usage,
                tx,
            ));
            let events = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|event| (Ok::<_, std::convert::Infallible>(event), rx))
            });
            (headers, Sse::new(events).keep_alive(KeepAlive::default())).into_response()
        }
    }
}

/// The decision, in the response headers of every completion answer.
fn decision_headers(exchange: &Exchange) -> HeaderMap {
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
    put(PROVIDER_HEADER, decision.provider.as_str());
    put(RULE_HEADER, decision.rule_id().unwrap_or(""));
    put(REASON_HEADER, &decision.reason);
    put(POLICY_VERSION_HEADER, &decision.policy_version);
    headers
}

/// The `id` of a completion and of each of its chunks.
fn completion_id(exchange: &Exchange) -> String {
    format!("chatcmpl-{}", exchange.request_id.simple())
}

/// Unix seconds, as OpenAI's `created`.
fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// A whole reply as a `chat.completion`.
fn completion(exchange: &Exchange, reply: Reply) -> Value {
    let mut body = json!({
        "id": completion_id(exchange),
        "object": "chat.completion",
        "created": unix_now(),
        "model": exchange.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.content},
            "logprobs": null,
            "finish_reason": reply.finish_reason.as_deref().unwrap_or("stop"),
        }],
    });
    if let Some(usage) = reply.usage {
        body["usage"] = usage_json(usage);
    }
    body
}

/// The error body of a provider failure: the gateway's own words (never the
/// upstream's body), `type` `provider_error`, `code` the failure category.
fn provider_error_body(e: &ProviderError) -> Value {
    json!({"error": {
        "message": e.to_string(),
        "type": "provider_error",
        "param": null,
        "code": e.category().as_str(),
    }})
}

/// A provider failure before anything was streamed: 502, or 504 for a timeout.
fn provider_error(e: &ProviderError) -> Response {
    (failure_status(e.category()), Json(provider_error_body(e))).into_response()
}

/// Builds the chunks of one streamed completion.
struct Chunks {
    id: String,
    created: i64,
    model: String,
}

impl Chunks {
    fn event(&self, choices: Value, usage: Option<Usage>) -> Event {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage_json(usage);
        }
        Event::default().data(chunk.to_string())
    }

    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> Event {
        self.event(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
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
    let provider = exchange.decision.provider;
    let mut first_token = true;
    let mut finished = false;
    let mut usage = None;
    let mut outcome: Result<(), ProviderError> = Ok(());
    let mut client_gone = tx
        .send(chunks.delta(json!({"role": "assistant", "content": ""}), None))
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
        let event = match next {
            None => break,
            Some(Err(e)) => {
                outcome = Err(e);
                break;
            }
            Some(Ok(StreamEvent::Text(text))) => {
                if first_token {
                    first_token = false;
                    state
                        .metrics
                        .time_to_first_token(provider, exchange.elapsed().as_secs_f64());
                }
                chunks.delta(json!({"content": text}), None)
            }
            Some(Ok(StreamEvent::Finish(reason))) => {
                finished = true;
                chunks.delta(json!({}), Some(&reason))
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
                let _ = tx.send(chunks.delta(json!({}), Some("stop"))).await;
            }
            if include_usage && let Some(usage) = usage {
                let _ = tx.send(chunks.event(json!([]), Some(usage))).await;
            }
            // Recorded before `[DONE]`, so the audit event exists as soon as
            // the client has the whole answer.
            exchange.finish(&state, None).await;
            let _ = tx.send(Event::default().data("[DONE]")).await;
        }
        Err(e) => {
            exchange.finish(&state, Some(&e)).await;
            let _ = tx
                .send(Event::default().data(provider_error_body(&e).to_string()))
                .await;
        }
    }
}

/// The list `GET /v1/models` answers: [`AUTO_MODEL`], then the configured
/// local and public models (once each).
fn model_list(state: &AppState) -> Vec<Value> {
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
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect()
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"object": "list", "data": model_list(&state)}))
}

/// `GET /v1/models/{model}`: one listed model, or `404` in OpenAI's shape.
pub async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match model_list(&state).into_iter().find(|m| m["id"] == id) {
        Some(model) => Json(model).into_response(),
        None => OpenAiError(ApiError::NotFound(
            "no such model: GET /v1/models lists the models served".to_owned(),
        ))
        .into_response(),
    }
}
