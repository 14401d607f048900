//! The HTTP gateway: the router over the live policy here, its start-up and
//! shutdown in [`start`].
//!
//! [`app`] builds the router from an [`AppState`], so tests can drive it in
//! process; its operations are mounted with `utoipa-axum`, each handler with
//! its OpenAPI description, and the document of [`openapi`] is made from the
//! same router, so the two cannot disagree.

pub mod anthropic_api;
pub mod anthropic_request;
pub mod auth;
pub mod config;
pub mod error;
mod exchange;
pub mod gateway;
mod handlers;
pub mod openai_api;
pub mod openai_request;
pub mod openapi;
pub mod request;
pub mod routes;
mod serve;
pub mod start;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::{AllowedHosts, LogConfig, ServerConfig, Settings};
pub use error::ApiError;
pub use serve::ConnectionLimits;
pub use start::{Server, StartError, init_tracing, run, start};

use crate::audit::{AuditConfig, AuditStore};
use crate::metrics::Metrics;
use crate::providers::Pool;
use crate::reload::LivePolicy;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The policy serving, swapped by reloads.
    pub live: Arc<LivePolicy>,
    /// The exported metrics.
    pub metrics: Arc<Metrics>,
    /// The live clients file; `None`: authentication is off.
    pub clients: Option<Arc<crate::reload::LiveClients>>,
    /// The live providers' clients and circuits.
    pub providers: Arc<Pool>,
    /// Where `/v1/chat` writes its events and `/v1/audit/{id}` reads them;
    /// `None` when `AUDIT_ENABLED` is off.
    pub audit: Option<AuditStore>,
    /// The audit settings: the prompt hash key (`Debug` redacts it).
    pub audit_config: Arc<AuditConfig>,
    /// `ALLOWED_HOSTS`: the `Host` names served.
    pub allowed_hosts: Arc<AllowedHosts>,
}

/// Every endpoint, each mounted with its OpenAPI description: the router
/// [`app`] serves, and the operations of [`openapi::ApiDoc`].
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::ready))
        .routes(routes!(handlers::routes))
        .routes(routes!(handlers::decide))
        .routes(routes!(gateway::chat))
        .routes(routes!(openai_api::chat_completions))
        .routes(routes!(anthropic_api::messages))
        .routes(routes!(openai_api::models))
        .routes(routes!(openai_api::model))
        .routes(routes!(gateway::audit_event))
        .routes(routes!(handlers::metrics))
        .merge(ui::routes())
        .merge(openapi::routes())
}

/// The router: every endpoint, our error shape for unknown paths, other methods
/// and bodies over `body.max_bytes` or slower than `body.read_timeout`.
pub fn app(state: AppState, body: request::BodyLimits) -> Router {
    let max_body_bytes = body.max_bytes;
    Router::from(api())
        // After routing (404 and 405 need no key), before any extractor
        // reads the body.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(error::require_json))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.allowed_hosts),
            error::check_host,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::Extension(body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(axum::middleware::from_fn(error::log_errors))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
