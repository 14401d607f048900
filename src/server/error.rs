//! The API's one error type and its JSON shape,
//! `{"error": {"type": "...", "message": "..."}}`.
//!
//! Handlers and extractors return [`ApiError`]; its response carries the error
//! in an extension so that the logging middleware ([`log_errors`]) logs it once,
//! with its details, instead of `into_response` doing so.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Everything the API can answer with instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unknown path.
    #[error("{0}")]
    NotFound(String),
    /// Known path, other method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is not well-formed JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// Well-formed JSON of the wrong shape; the message names the field.
    #[error("{0}")]
    InvalidRequest(String),
    /// A `Host` that `ALLOWED_HOSTS` does not name.
    #[error("{0}")]
    MisdirectedRequest(String),
    /// The body did not arrive within `BODY_READ_TIMEOUT_SECONDS`.
    #[error("{0}")]
    RequestTimeout(String),
    /// A body that is not declared `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is over `MAX_BODY_BYTES`.
    #[error("request body is larger than the limit of {limit} bytes (MAX_BODY_BYTES)")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The chat request's pending audit event could not be committed
    /// (`AUDIT_FAILURE_MODE=closed`), so no provider was called.
    #[error("{0}")]
    AuditUnavailable(String),
    /// No client key, or one the clients file does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A client key without the scope this endpoint needs.
    #[error("{0}")]
    Forbidden(String),
    /// Anything unexpected; the detail goes to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of each kind of error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of error, the `type` field of the body.
    pub(crate) fn error_type(&self) -> ErrorType {
        match self {
            ApiError::NotFound(_) => ErrorType::NotFound,
            ApiError::MethodNotAllowed(_) => ErrorType::MethodNotAllowed,
            ApiError::InvalidJson(_) => ErrorType::InvalidJson,
            ApiError::InvalidRequest(_) => ErrorType::InvalidRequest,
            ApiError::UnsupportedMediaType(_) => ErrorType::UnsupportedMediaType,
            ApiError::MisdirectedRequest(_) => ErrorType::MisdirectedRequest,
            ApiError::RequestTimeout(_) => ErrorType::RequestTimeout,
            ApiError::PayloadTooLarge { .. } => ErrorType::PayloadTooLarge,
            ApiError::AuditUnavailable(_) => ErrorType::AuditUnavailable,
            ApiError::Unauthenticated(_) => ErrorType::AuthenticationError,
            ApiError::Forbidden(_) => ErrorType::PermissionError,
            ApiError::Internal(_) => ErrorType::InternalError,
        }
    }

    /// The `type` field of the body, as a word.
    pub fn kind(&self) -> &'static str {
        self.error_type().as_str()
    }
}

/// The kinds of API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorType {
    /// 400: the body is not well-formed JSON.
    InvalidJson,
    /// 422: well-formed JSON of the wrong shape.
    InvalidRequest,
    /// 413: the body is over `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 415: a body not declared `application/json`.
    UnsupportedMediaType,
    /// 421: a `Host` that `ALLOWED_HOSTS` does not name.
    MisdirectedRequest,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 404: unknown path, or no such audit event.
    NotFound,
    /// 405: known path, other method.
    MethodNotAllowed,
    /// 503: the audit event could not be committed; no provider was called.
    AuditUnavailable,
    /// 401: no client key, or an unknown one.
    AuthenticationError,
    /// 403: a client key without the scope the endpoint needs.
    PermissionError,
    /// 500: anything unexpected.
    InternalError,
}

impl ErrorType {
    /// The word serde writes for it (the tests hold the two together).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidJson => "invalid_json",
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::PayloadTooLarge => "payload_too_large",
            ErrorType::UnsupportedMediaType => "unsupported_media_type",
            ErrorType::MisdirectedRequest => "misdirected_request",
            ErrorType::RequestTimeout => "request_timeout",
            ErrorType::NotFound => "not_found",
            ErrorType::MethodNotAllowed => "method_not_allowed",
            ErrorType::AuditUnavailable => "audit_unavailable",
            ErrorType::AuthenticationError => "authentication_error",
            ErrorType::PermissionError => "permission_error",
            ErrorType::InternalError => "internal_error",
        }
    }
}

/// Every API error: `{"error": {"type", "message"}}`, in that order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The error's kind and message.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// The kind, one per status.
    #[serde(rename = "type")]
    kind: ErrorType,
    /// In plain words; names the offending field for `invalid_request`.
    message: String,
}

/// An error of the OpenAI-compatible API, in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}`, in that order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct OpenAiErrorBody {
    /// What went wrong.
    pub(crate) error: OpenAiErrorDetail,
}

/// OpenAI's error fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct OpenAiErrorDetail {
    /// In plain words; for a provider failure `<category>: <message>`.
    pub(crate) message: String,
    /// `invalid_request_error`, `not_found_error`, `server_error`,
    /// `api_error` (the audit store is unavailable), or `provider_error`
    /// when the provider failed.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The field at fault, or `null`.
    pub(crate) param: Option<String>,
    /// The gateway's error type (`invalid_json`, `invalid_request`, …) or the
    /// provider failure category (`timeout`, `server_error`, …).
    pub(crate) code: &'static str,
}

/// The error attached to a response for the logging middleware.
#[derive(Debug, Clone)]
struct Logged(Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.error_type(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status_code(), axum::Json(body)).into_response();
        response.extensions_mut().insert(Logged(Arc::new(self)));
        response
    }
}

impl ApiError {
    /// The same error in OpenAI's shape, for the OpenAI-compatible endpoints:
    /// `{"error": {"message", "type", "param", "code"}}`, where `type` is
    /// OpenAI's word, `code` ours, and `param` the field at fault. A body of
    /// the wrong shape is a 400 there, as OpenAI answers it, not a 422.
    pub fn into_openai_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            ApiError::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "authentication_error"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "permission_error"),
            ApiError::MethodNotAllowed(_)
            | ApiError::InvalidJson(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::MisdirectedRequest(_)
            | ApiError::RequestTimeout(_)
            | ApiError::PayloadTooLarge { .. } => (self.status_code(), "invalid_request_error"),
        };
        let message = self.to_string();
        // Shape errors read `<field>: <what is wrong>`; the field is `param`.
        let param = match &self {
            ApiError::InvalidRequest(m) => m
                .split_once(": ")
                .map(|(field, _)| field)
                .filter(|field| !field.contains(' '))
                .map(str::to_owned),
            _ => None,
        };
        let body = OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message,
                kind,
                param,
                code: self.kind(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Logged(Arc::new(self)));
        response
    }
}

impl ApiError {
    /// The same error in Anthropic's shape, for the Messages API:
    /// `{"type": "error", "error": {"type", "message"}}`, with Anthropic's
    /// error types (a wrong shape is a `400 invalid_request_error`, as
    /// Anthropic answers it).
    pub fn into_anthropic_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
            }
            ApiError::AuditUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "authentication_error"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "permission_error"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
            ApiError::MethodNotAllowed(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::MisdirectedRequest(_)
            | ApiError::RequestTimeout(_) => (self.status_code(), "invalid_request_error"),
        };
        let body = AnthropicErrorBody::new(kind, self.to_string());
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Logged(Arc::new(self)));
        response
    }
}

/// An error of the Messages API, in Anthropic's shape.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AnthropicErrorBody {
    /// `error`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// What went wrong.
    error: AnthropicErrorDetail,
}

/// Anthropic's error fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AnthropicErrorDetail {
    /// `invalid_request_error`, `not_found_error`, `request_too_large`,
    /// `api_error` or `overloaded_error`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// In plain words.
    message: String,
}

impl AnthropicErrorBody {
    /// An error of Anthropic's `kind` saying `message`.
    pub(crate) fn new(kind: &'static str, message: String) -> Self {
        AnthropicErrorBody {
            kind: "error",
            error: AnthropicErrorDetail { kind, message },
        }
    }
}

/// The error of a rejected request, answered in Anthropic's shape.
#[derive(Debug)]
pub struct AnthropicError(pub ApiError);

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.into_anthropic_response()
    }
}

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

/// The error of a rejected request, answered in OpenAI's shape.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.into_openai_response()
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

/// Logs each error response once: server errors at ERROR with their detail,
/// client errors at DEBUG (they are the client's to fix, and may be many).
pub async fn log_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(Logged(error)) = response.extensions().get::<Logged>() {
        match &**error {
            ApiError::Internal(detail) => {
                tracing::error!(%method, %path, error = %detail, "request failed");
            }
            other => {
                tracing::debug!(%method, %path, kind = other.kind(), error = %other, "request rejected");
            }
        }
    }
    response
}

/// Whether `path` belongs to the OpenAI-compatible API, whose errors take
/// OpenAI's shape.
fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/chat/completions") || path.starts_with("/v1/models")
}

/// `error` in the shape of the API `path` belongs to.
pub(crate) fn in_shape_of(path: &str, error: ApiError) -> Response {
    if is_openai_path(path) {
        error.into_openai_response()
    } else if path.starts_with("/v1/messages") {
        error.into_anthropic_response()
    } else {
        error.into_response()
    }
}

/// `415 unsupported_media_type` for a request that carries a body not
/// declared `application/json` (parameters such as `charset` allowed), a
/// missing header included, before the body is read: a page on another
/// origin can then send no "simple" cross-site request that the gateway
/// acts on. A request without a body is not refused.
pub async fn require_json(request: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    let has_body = request.body().size_hint().exact() != Some(0);
    let is_json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !has_body || is_json {
        return next.run(request).await;
    }
    let error = ApiError::UnsupportedMediaType(
        "a request body must be sent as Content-Type: application/json".to_owned(),
    );
    in_shape_of(request.uri().path(), error)
}

/// `421 misdirected_request` for a `Host` (or HTTP/2 authority) that
/// `ALLOWED_HOSTS` does not name, which is what a DNS-rebinding page sends.
/// The probes (`/v1/health`, `/v1/ready`) are exempt: they address pods by
/// IP. A request naming no host at all (HTTP/1.0) is served: a browser
/// always names one.
pub async fn check_host(
    axum::extract::State(allowed): axum::extract::State<Arc<super::AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if matches!(path, "/v1/health" | "/v1/ready") {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if host.is_none_or(|h| allowed.allows(h)) {
        return next.run(request).await;
    }
    let error = ApiError::MisdirectedRequest(
        "this host is not served: name it in ALLOWED_HOSTS".to_owned(),
    );
    in_shape_of(path, error)
}

/// `404 not_found` for every unknown path.
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint {method} {}", uri.path()))
}

/// `405 method_not_allowed` for a known path with another method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not accept {method}", uri.path()))
}

/// `500 internal_error` for a handler that panicked: the client gets our error
/// shape, the log gets the panic message, and the server goes on serving.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn every_error_has_the_same_shape() {
        for (error, status, kind) in [
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed("x".into()),
                405,
                "method_not_allowed",
            ),
            (ApiError::InvalidJson("x".into()), 400, "invalid_json"),
            (ApiError::InvalidRequest("x".into()), 422, "invalid_request"),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::MisdirectedRequest("x".into()),
                421,
                "misdirected_request",
            ),
            (ApiError::RequestTimeout("x".into()), 408, "request_timeout"),
            (ApiError::Internal("x".into()), 500, "internal_error"),
        ] {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            let body = body(response).await;
            assert_eq!(body["error"]["type"], kind);
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .expect("message")
                    .is_empty()
            );
        }
    }

    #[test]
    fn each_error_type_is_written_as_its_word() {
        for kind in [
            ErrorType::InvalidJson,
            ErrorType::InvalidRequest,
            ErrorType::PayloadTooLarge,
            ErrorType::UnsupportedMediaType,
            ErrorType::MisdirectedRequest,
            ErrorType::RequestTimeout,
            ErrorType::NotFound,
            ErrorType::MethodNotAllowed,
            ErrorType::AuditUnavailable,
            ErrorType::InternalError,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                kind.as_str()
            );
        }
    }

    #[tokio::test]
    async fn audit_unavailable_is_503_in_both_shapes() {
        let message = "the audit store cannot record the request";
        let ours = ApiError::AuditUnavailable(message.into()).into_response();
        assert_eq!(ours.status().as_u16(), 503);
        assert_eq!(
            body(ours).await,
            serde_json::json!({"error": {"type": "audit_unavailable", "message": message}})
        );
        let openai = ApiError::AuditUnavailable(message.into()).into_openai_response();
        assert_eq!(openai.status().as_u16(), 503);
        assert_eq!(
            body(openai).await,
            serde_json::json!({"error": {"message": message, "type": "api_error",
                "param": null, "code": "audit_unavailable"}})
        );
    }

    #[tokio::test]
    async fn openai_errors_keep_a_null_param() {
        let response = ApiError::NotFound("no such model".into()).into_openai_response();
        assert_eq!(response.status().as_u16(), 404);
        assert_eq!(
            body(response).await,
            serde_json::json!({"error": {"message": "no such model", "type": "not_found_error",
                "param": null, "code": "not_found"}})
        );
        let response =
            ApiError::InvalidRequest("messages[0].role: missing".into()).into_openai_response();
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(body(response).await["error"]["param"], "messages[0].role");
    }

    #[tokio::test]
    async fn a_panic_answers_500_without_its_detail() {
        let response = panic_response(Box::new("secret detail"));
        assert_eq!(response.status().as_u16(), 500);
        let body = body(response).await;
        assert_eq!(
            body,
            serde_json::json!({"error": {"type": "internal_error", "message": "internal error"}})
        );
    }
}
