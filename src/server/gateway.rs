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
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::request::{ChatBody, ChatRequest};
use crate::audit::{self, AuditEvent};
use crate::chat::ChatMessage;
use crate::decision::Decision;
use crate::names::{AuditStatus, FailureCategory, Provider};
use crate::providers::{self, GenerationOptions, ProviderError, Reply};

/// The header that carries the request id of a chat.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// `POST /v1/chat`: the decision and the reply, or the provider's failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse<'a> {
    /// A new UUID v4 for this request, also in the `X-Request-Id` header.
    #[schema(value_type = String, format = "uuid")]
    pub request_id: Uuid,
    /// The provider the request went to.
    pub provider: Provider,
    /// Exactly one code: the rule's reason, or `default`.
    #[schema(value_type = Vec<String>)]
    pub reason_codes: [&'a str; 1],
    /// The id of the rule that decided; `null` on a default decision.
    pub rule: Option<&'a str>,
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
    description = "Decides, calls the chosen provider once (no retry, no fallback), writes the audit event, records metrics and answers.",
    request_body = super::request::ChatRequestBody,
    responses(
        (status = 200, description = "The provider answered", body = ChatResponse,
            headers(("X-Request-Id" = String, description = "The request id"))),
        (status = 502, description = "The provider failed (`error` says how)", body = ChatResponse),
        (status = 504, description = "The provider timed out", body = ChatResponse),
        (status = 400, description = "Not well-formed JSON", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 422, description = "Wrong shape; the message names the field", body = ErrorBody),
    ))]
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
    let requested = request.model.as_deref();
    let exchange = Exchange::begin(&state, &request.messages, requested, |provider| {
        state.providers.model_for(provider, requested)
    });
    let result = exchange
        .call(&state, &request.messages, &GenerationOptions::default())
        .await;
    exchange.finish(&state, result.as_ref().err()).await;
    respond(exchange.request_id, &exchange.decision, result)
}

/// One accepted chat request on its way through the gateway, whichever API
/// it came in by: decided on one snapshot of the live policy, timed from the
/// decision, and audited, counted and logged exactly once by
/// [`Exchange::finish`]. It keeps the prompt's fingerprint, never the prompt.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// A new UUID v4.
    pub(crate) request_id: Uuid,
    /// Where the request goes and why.
    pub(crate) decision: Decision,
    /// The model sent to the provider.
    pub(crate) model: String,
    started: Instant,
    prompt_hash: String,
    prompt_length: u64,
}

impl Exchange {
    /// Decides where `messages` for `requested_model` go; `model` names the
    /// model sent to the chosen provider.
    pub(crate) fn begin(
        state: &AppState,
        messages: &[ChatMessage],
        requested_model: Option<&str>,
        model: impl FnOnce(Provider) -> String,
    ) -> Self {
        // One snapshot for the whole request: a reload meanwhile does not affect it.
        let decision = state
            .live
            .snapshot()
            .policy
            .decide(messages, requested_model);
        let model = model(decision.provider);
        Exchange {
            request_id: Uuid::new_v4(),
            prompt_hash: audit::prompt_hash(messages, state.audit_config.hash_key()),
            prompt_length: audit::prompt_length(messages),
            decision,
            model,
            started: Instant::now(),
        }
    }

    /// The request for the chosen provider.
    pub(crate) fn request<'a>(
        &'a self,
        messages: &'a [ChatMessage],
        options: &'a GenerationOptions,
    ) -> providers::ChatRequest<'a> {
        providers::ChatRequest {
            model: &self.model,
            messages,
            options,
        }
    }

    /// Calls the chosen provider once for a whole reply.
    pub(crate) async fn call(
        &self,
        state: &AppState,
        messages: &[ChatMessage],
        options: &GenerationOptions,
    ) -> Result<Reply, ProviderError> {
        state
            .providers
            .provider(self.decision.provider)
            .chat(self.request(messages, options))
            .await
    }

    /// Time since the decision.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records the outcome: the audit event (committed before this returns,
    /// so `GET /v1/audit/{id}` finds it as soon as the client has the
    /// answer), the metrics and one log line.
    pub(crate) async fn finish(&self, state: &AppState, failure: Option<&ProviderError>) {
        let latency = self.elapsed();
        if let Some(store) = &state.audit
            && let Err(error) = store.record(self.audit_record(failure, latency)).await
        {
            state.metrics.audit_write_failed();
            tracing::error!(
                request_id = %self.request_id,
                error = %error,
                "The audit event of a chat request could not be written; the chat answer is unchanged."
            );
        }
        let decision = &self.decision;
        state.metrics.decision(decision.rule_id(), &decision.reason);
        let status = AuditStatus::of(failure.is_none());
        state
            .metrics
            .chat_request(decision.provider, status, latency.as_secs_f64());
        log_chat(self.request_id, decision, failure, latency);
    }

    /// The audit event: never the prompt or the reply, only their fingerprint.
    fn audit_record(&self, failure: Option<&ProviderError>, latency: Duration) -> AuditEvent {
        let decision = &self.decision;
        let reason_codes = decision.reason_codes();
        AuditEvent {
            request_id: self.request_id,
            decision: audit::decision_string(decision.provider, &reason_codes),
            provider: decision.provider,
            rule: decision.rule_id().map(str::to_owned),
            reason_codes: reason_codes.iter().map(|c| (*c).to_owned()).collect(),
            policy_version: decision.policy_version.to_string(),
            status: AuditStatus::of(failure.is_none()),
            latency_ms: latency.as_secs_f64() * 1000.0,
            failure_category: failure.map(ProviderError::category),
            prompt_hash: self.prompt_hash.clone(),
            prompt_length: self.prompt_length,
            model: self.model.clone(),
            created_at: audit::now(),
        }
    }
}

/// One line per chat: ids, route and outcome, never text.
fn log_chat(
    request_id: Uuid,
    decision: &Decision,
    failure: Option<&ProviderError>,
    latency: Duration,
) {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let rule = decision.rule_id().unwrap_or("");
    match failure {
        None => tracing::info!(
            request_id = %request_id,
            provider = decision.provider.as_str(),
            rule,
            status = "success",
            latency_ms,
            "chat request answered"
        ),
        Some(e) if e.category() == FailureCategory::Cancelled => tracing::info!(
            request_id = %request_id,
            provider = decision.provider.as_str(),
            rule,
            status = "failure",
            latency_ms,
            failure_category = e.category().as_str(),
            "chat stream cancelled by the client"
        ),
        // The error is in the gateway's own words: no upstream body, key or URL.
        Some(e) => tracing::warn!(
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

/// The status a provider failure is answered with: 504 for a timeout, 502
/// otherwise (499, nginx's "client closed request", for a cancelled stream,
/// which no client ever reads).
pub(crate) fn failure_status(category: FailureCategory) -> StatusCode {
    match category {
        FailureCategory::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureCategory::ConnectError
        | FailureCategory::AuthError
        | FailureCategory::ClientError
        | FailureCategory::ServerError
        | FailureCategory::BadResponse => StatusCode::BAD_GATEWAY,
        FailureCategory::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_GATEWAY),
    }
}

fn respond(
    request_id: Uuid,
    decision: &Decision,
    result: Result<Reply, ProviderError>,
) -> Response {
    let (status, content, error) = match result {
        Ok(reply) => (StatusCode::OK, Some(reply.content), None),
        Err(e) => (failure_status(e.category()), None, Some(e.to_string())),
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
