//! The endpoint handlers: each loads one snapshot of the live policy and hands
//! it to the core, nothing more.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::request::ChatBody;
use super::routes::RoutesView;

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// `GET /v1/health`.
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /v1/routes`: the live policy and reload status from one snapshot.
pub async fn routes(State(state): State<AppState>) -> Response {
    let live = state.live.snapshot();
    Json(RoutesView::new(&live)).into_response()
}

/// `POST /v1/decide`: the decision and its trace, without calling a provider
/// or counting metrics.
pub async fn decide(State(state): State<AppState>, ChatBody(request): ChatBody) -> Response {
    // One snapshot for the whole request: a reload meanwhile does not affect it.
    let live = state.live.snapshot();
    Json(
        live.policy
            .explain(&request.messages, request.model.as_deref()),
    )
    .into_response()
}

/// `GET /v1/metrics`: Prometheus text format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
