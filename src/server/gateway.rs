//! `POST /v1/chat` and `GET /v1/audit/{request_id}`: the gateway proper.
//!
//! A chat request is decided on one snapshot of the live policy, sent once to
//! the provider the decision names (no retry, and never a fallback to another
//! provider: a sensitive prompt whose local call fails stays failed), audited,
//! counted and answered. A provider failure is not an API error: the answer
//! keeps the chat body, with `content: null` and the failure in the gateway's
//! own words, and status 502 (504 for a timeout).
//!
//! Everything here reuses the core: [`crate::decision`] decides,
//! [`crate::providers`] calls, [`crate::audit`] stores, [`crate::metrics`]
//! counts. The handler only sequences them and shapes the answer. Neither the
//! prompt nor the reply is ever logged or stored.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::request::{ChatBody, ChatRequest};
use crate::audit::{self, AuditEvent, AuditStatus};
use crate::decision::{Decision, Provider};
use crate::providers::{self, FailureCategory, ProviderError, Reply};

/// The header that carries the request id of a chat.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The body of every `/v1/chat` answer, success or provider failure.
#[derive(Debug, Serialize)]
pub struct ChatResponse<'a> {
    /// A new UUID v4 for each request, also in the `X-Request-Id` header.
    pub request_id: Uuid,
    /// The provider the request went to.
    pub provider: Provider,
    /// The decision's reason codes.
    pub reason_codes: [&'a str; 1],
    /// The rule that decided; `null` on a default decision.
    pub rule: Option<&'a str>,
    /// The version of the policy that decided.
    pub policy_version: &'a str,
    /// The reply, unchanged; `null` when the provider failed.
    pub content: Option<String>,
    /// `"<category>: <message>"` when the provider failed, else `null`.
    pub error: Option<String>,
}

/// `POST /v1/chat`.
pub async fn chat(State(state): State<AppState>, ChatBody(request): ChatBody) -> Response {
    // The work runs in a task of its own so that a client hanging up cannot
    // cancel it half way: every accepted request reaches its provider at most
    // once and is audited and counted exactly once.
    match tokio::spawn(serve_chat(state, request)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("the chat task failed: {e}")).into_response(),
    }
}

async fn serve_chat(state: AppState, request: ChatRequest) -> Response {
    let request_id = Uuid::new_v4();
    // One snapshot for the whole request: a reload meanwhile does not affect it.
    let decision = state
        .live
        .snapshot()
        .policy
        .decide(&request.messages, request.model.as_deref());
    let provider = decision.provider;
    let model = state
        .providers
        .model_for(provider, request.model.as_deref());

    let started = Instant::now();
    let result = state
        .providers
        .provider(provider)
        .chat(providers::ChatRequest {
            model: &model,
            messages: &request.messages,
        })
        .await;
    let latency = started.elapsed();

    if let Some(store) = &state.audit {
        let event = audit_record(
            request_id,
            &decision,
            &request,
            model,
            &result,
            latency,
            state.audit_config.hash_key(),
        );
        // Awaited: the event is committed before the client has the answer,
        // so `GET /v1/audit/{id}` finds it at once.
        if let Err(error) = store.record(event).await {
            state.metrics.audit_write_failed();
            tracing::error!(
                request_id = %request_id,
                error = %error,
                "The audit event of a chat request could not be written; the chat answer is unchanged."
            );
        }
    }

    state.metrics.decision(decision.rule_id(), &decision.reason);
    state
        .metrics
        .chat_request(provider.as_str(), result.is_ok(), latency.as_secs_f64());
    log_chat(request_id, &decision, &result, latency);
    respond(request_id, &decision, result)
}

/// The audit event of one chat: never the prompt or the reply, only their
/// fingerprint.
fn audit_record(
    request_id: Uuid,
    decision: &Decision,
    request: &ChatRequest,
    model: String,
    result: &Result<Reply, ProviderError>,
    latency: Duration,
    hash_key: Option<&[u8]>,
) -> AuditEvent {
    let reason_codes = decision.reason_codes();
    AuditEvent {
        request_id,
        decision: audit::decision_string(decision.provider, &reason_codes),
        provider: decision.provider,
        rule: decision.rule_id().map(str::to_owned),
        reason_codes: reason_codes.iter().map(|c| (*c).to_owned()).collect(),
        policy_version: decision.policy_version.to_string(),
        status: if result.is_ok() {
            AuditStatus::Success
        } else {
            AuditStatus::Failure
        },
        latency_ms: latency.as_secs_f64() * 1000.0,
        failure_category: result
            .as_ref()
            .err()
            .map(|e| e.category().as_str().to_owned()),
        prompt_hash: audit::prompt_hash(&request.messages, hash_key),
        prompt_length: audit::prompt_length(&request.messages),
        model,
        created_at: audit::now(),
    }
}

/// One line per chat: ids, route and outcome, never text.
fn log_chat(
    request_id: Uuid,
    decision: &Decision,
    result: &Result<Reply, ProviderError>,
    latency: Duration,
) {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let rule = decision.rule_id().unwrap_or("");
    match result {
        Ok(_) => tracing::info!(
            request_id = %request_id,
            provider = decision.provider.as_str(),
            rule,
            status = "success",
            latency_ms,
            "chat request answered"
        ),
        // The error is in the gateway's own words: no upstream body, key or URL.
        Err(e) => tracing::warn!(
            request_id = %request_id,
            provider = decision.provider.as_str(),
            rule,
            status = "failure",
            latency_ms,
            failure_category = e.category().as_str(),
            error = %e,
            "chat request failed at the provider"
        ),
    }
}

fn respond(
    request_id: Uuid,
    decision: &Decision,
    result: Result<Reply, ProviderError>,
) -> Response {
    let (status, content, error) = match result {
        Ok(reply) => (StatusCode::OK, Some(reply.content), None),
        Err(e) => {
            let status = match e.category() {
                FailureCategory::Timeout => StatusCode::GATEWAY_TIMEOUT,
                FailureCategory::ConnectError
                | FailureCategory::AuthError
                | FailureCategory::ClientError
                | FailureCategory::ServerError
                | FailureCategory::BadResponse => StatusCode::BAD_GATEWAY,
            };
            (status, None, Some(e.to_string()))
        }
    };
    let body = ChatResponse {
        request_id,
        provider: decision.provider,
        reason_codes: decision.reason_codes(),
        rule: decision.rule_id(),
        policy_version: &decision.policy_version,
        content,
        error,
    };
    let id = HeaderValue::from_str(&request_id.hyphenated().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    (status, [(REQUEST_ID_HEADER, id)], Json(body)).into_response()
}

/// The event of one chat, or `404 not_found` when there is none, the id is
/// not a UUID, or audit is off.
async fn find_event(state: &AppState, raw_id: &str) -> Result<Json<AuditEvent>, ApiError> {
    let not_found = |why: &str| ApiError::NotFound(format!("no audit event {raw_id:?}: {why}"));
    let Some(store) = &state.audit else {
        return Err(not_found("audit is off (AUDIT_ENABLED=false)"));
    };
    let Ok(request_id) = Uuid::try_parse(raw_id) else {
        return Err(not_found("not a request id (a UUID)"));
    };
    match store.get(request_id).await {
        Ok(Some(event)) => Ok(Json(event)),
        Ok(None) => Err(not_found("no chat request has this id")),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// `GET /v1/audit/{request_id}`.
pub async fn audit_event(
    State(state): State<AppState>,
    request_id: Result<Path<String>, PathRejection>,
) -> Result<Json<AuditEvent>, ApiError> {
    match request_id {
        Ok(Path(raw)) => find_event(&state, &raw).await,
        // A segment that does not decode (bad percent-encoding) names no event.
        Err(_) => Err(ApiError::NotFound(
            "no audit event: the request id is not a UUID".to_owned(),
        )),
    }
}
