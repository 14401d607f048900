//! The endpoint handlers: each loads one snapshot of the live policy and hands
//! it to the core, nothing more. Each carries its OpenAPI description.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::request::ChatBody;
use super::routes::RoutesView;
use crate::decision::Explanation;

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// Answers `ok` while the process serves.
#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses((status = 200, description = "The process serves", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /v1/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(pattern = "^(ready|not_ready)$")]
    status: &'static str,
    /// What is missing, when not ready (never a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Whether the gateway can serve chat requests: the policy is loaded (always,
/// once started) and, with `AUDIT_FAILURE_MODE=closed`, the audit store takes
/// writes. The store is probed with a write that is rolled back, at most once
/// a second; a failed chat audit write makes this 503 until a probe succeeds.
/// With audit off or `AUDIT_FAILURE_MODE=open` the store does not gate it.
#[utoipa::path(get, path = "/v1/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready; `reason` says what is missing", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let gated = state.audit_config.failure_mode() == crate::names::AuditFailureMode::Closed;
    let audit = match &state.audit {
        Some(store) if gated => store.readiness().await,
        _ => Ok(()),
    };
    match audit {
        Ok(()) => Json(Readiness {
            status: "ready",
            reason: None,
        })
        .into_response(),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not_ready",
                reason: Some(format!("the audit store takes no writes: {why}")),
            }),
        )
            .into_response(),
    }
}

/// The live policy and its reload status, from one snapshot.
#[utoipa::path(get, path = "/v1/routes", tag = "policy", operation_id = "routes_view",
    responses((status = 200, description = "The live policy and its reload status", body = RoutesView)))]
pub async fn routes(State(state): State<AppState>) -> Response {
    let live = state.live.snapshot();
    let clients = state.clients.as_ref().map(|c| (c, c.snapshot()));
    let view = RoutesView::new(
        &live,
        &state.providers,
        clients
            .as_ref()
            .map(|(c, snapshot)| (c.path(), &**snapshot)),
    );
    Json(view).into_response()
}

/// The decision for a chat request and its trace, without sending it.
#[utoipa::path(post, path = "/v1/decide", tag = "chat",
    description = "The decision and the rules tried, without calling a provider, writing audit or counting metrics.",
    request_body = super::request::ChatRequestBody,
    responses(
        (status = 200, description = "The decision", body = Explanation),
        (status = 400, description = "Not well-formed JSON", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 422, description = "Wrong shape; the message names the field", body = ErrorBody),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ChatBody(request): ChatBody,
) -> Response {
    let caller = caller.map_or_else(Caller::anonymous, |Extension(c)| c);
    // An admin may dry-run another client's decision; anyone else decides
    // as itself.
    let client = match (&request.client, caller.admin) {
        (Some(id), true) => {
            let known = state
                .clients
                .as_ref()
                .is_none_or(|clients| clients.snapshot().table.get(id).is_some());
            if !known {
                return ApiError::InvalidRequest(format!(
                    "client: no client {id:?} in the clients file"
                ))
                .into_response();
            }
            Arc::from(id.as_str())
        }
        _ => caller.id,
    };
    // One snapshot for the whole request: a reload meanwhile does not affect it.
    let policy = Arc::clone(&state.live.snapshot().policy);
    let bytes: usize = request.messages.iter().map(|m| m.content.len()).sum();
    let explanation = if bytes <= super::exchange::BLOCKING_DECISION_BYTES {
        policy.explain_for(&request.messages, request.model.as_deref(), &client)
    } else {
        super::exchange::off_the_workers(move || {
            policy.explain_for(&request.messages, request.model.as_deref(), &client)
        })
        .await
    };
    Json(explanation).into_response()
}

/// The metrics, in Prometheus text format 0.0.4.
#[utoipa::path(get, path = "/v1/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // A circuit whose cooldown ended since the last request reads 0 now.
    for (provider, open) in state.providers.circuits() {
        state.metrics.circuit(&provider, open);
    }
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
