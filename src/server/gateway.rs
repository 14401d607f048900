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
//! counts, through [`Exchange`]. The handler only sequences them and shapes
//! the answer. Neither the prompt nor the reply is ever logged or stored.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::exchange::{Exchange, REQUEST_ID_HEADER, failure_status};
use super::request::{ChatBody, ChatRequest};
use crate::audit::AuditEvent;
use crate::names::ClientApi;
use crate::providers::{GenerationOptions, ProviderError, Reply};

/// `POST /v1/chat`: the decision and the reply, or the provider's failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse<'a> {
    /// A new UUID v4 for this request, also in the `X-Request-Id` header.
    #[schema(value_type = String, format = "uuid")]
    pub request_id: Uuid,
    /// The provider that answered, or the last one tried.
    #[schema(value_type = String)]
    pub provider: &'a str,
    /// The provider calls made: 1, more after retries or fallbacks (a
    /// provider skipped by its open circuit is not called).
    pub attempts: usize,
    /// Exactly one code: the rule's reason, or `default`.
    #[schema(value_type = Vec<String>)]
    pub reason_codes: [&'a str; 1],
    /// The id of the rule that decided; `null` on a default decision.
    pub rule: Option<&'a str>,
    /// Whether a sensitive rule decided: then the request stayed local.
    pub sensitive: bool,
    /// The detectors of the deciding rule that found something, sorted.
    #[schema(value_type = Vec<crate::names::Detector>)]
    pub detections: Vec<&'static str>,
    /// The policy version (SHA-256 hex) that decided.
    pub policy_version: &'a str,
    /// The reply, unchanged; `null` when the provider failed.
    pub content: Option<String>,
    /// `null`, or `<category>: <message>` in the gateway's own words when the
    /// provider failed (`server_error: provider answered HTTP 500`).
    pub error: Option<String>,
}

/// Chat through the gateway: the reply of the provider the policy chose.
#[utoipa::path(post, path = "/v1/chat", tag = "chat",
    description = "Decides, commits the audit event as pending, sends the request along the decision's chain of providers (retries, fallbacks, circuits; never a sensitive request to a public provider), updates the audit event with the outcome, records metrics and answers.",
    request_body = super::request::ChatRequestBody,
    responses(
        (status = 200, description = "The provider answered", body = ChatResponse,
            headers(("X-Request-Id" = String, description = "The request id"))),
        (status = 502, description = "The provider failed (`error` says how)", body = ChatResponse),
        (status = 504, description = "The provider timed out", body = ChatResponse),
        (status = 503, description = "Every provider of the chain was skipped by its open circuit (`unavailable`)", body = ChatResponse),
        (status = 503, description = "The audit event could not be committed, so no provider was called (`audit_unavailable`, AUDIT_FAILURE_MODE=closed)", body = ErrorBody),
        (status = 400, description = "Not well-formed JSON", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 422, description = "Wrong shape; the message names the field", body = ErrorBody),
    ))]
pub async fn chat(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ChatBody(request): ChatBody,
) -> Response {
    let caller = caller.map_or_else(Caller::anonymous, |Extension(c)| c);
    // The work runs in a task of its own so that a client hanging up cannot
    // cancel it half way: every accepted request reaches its provider at most
    // once and is audited and counted exactly once.
    match tokio::spawn(serve_chat(state, request, caller)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("the chat task failed: {e}")).into_response(),
    }
}

async fn serve_chat(state: AppState, request: ChatRequest, caller: Caller) -> Response {
    let requested = request.model.as_deref();
    let options = GenerationOptions::default();
    let mut exchange = Exchange::begin(
        &state,
        ClientApi::Chat,
        &request.messages,
        &[],
        requested,
        &options,
        None,
        &caller.id,
    )
    .await;
    if let Err(e) = exchange.record_pending(&state).await {
        return e.into_response();
    }
    let result = exchange
        .call(&state, &request.messages, &[], &options)
        .await;
    respond(&exchange, result)
}

fn respond(exchange: &Exchange, result: Result<Reply, ProviderError>) -> Response {
    let request_id = exchange.request_id;
    let decision = &exchange.decision;
    let (status, content, error) = match result {
        Ok(reply) => (StatusCode::OK, Some(reply.content), None),
        Err(e) => (failure_status(e.category()), None, Some(e.to_string())),
    };
    let body = ChatResponse {
        request_id,
        provider: &exchange.provider,
        attempts: exchange.calls(),
        reason_codes: decision.reason_codes(),
        rule: decision.rule_id(),
        sensitive: decision.sensitive,
        detections: decision.detections.names(),
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

/// The audit event of one chat request.
#[utoipa::path(get, path = "/v1/audit/{request_id}", tag = "audit", operation_id = "audit",
    params(("request_id" = String, Path, description = "The chat's request id (a UUID)")),
    responses(
        (status = 200, description = "The audit event", body = AuditEvent),
        (status = 404, description = "No such event, not a UUID, or audit is off", body = ErrorBody),
    ))]
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
