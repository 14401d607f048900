//! Provider failures, sorted into the six categories of the chat API. The
//! messages are the gateway's own words: an upstream body is never relayed (it
//! may quote the key) and nothing here ever holds a key or a URL.

use crate::names::FailureCategory;

/// A failed provider call. `Display` gives `<category>: <message>`, the chat
/// response's `error` as it is sent (`server_error: provider answered HTTP 500`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{category}: {message}")]
pub struct ProviderError {
    category: FailureCategory,
    message: String,
    /// The provider's `Retry-After`, when it sent one with the failure.
    retry_after: Option<std::time::Duration>,
}

impl ProviderError {
    /// An error of `category`. Callers pass only the gateway's own words.
    pub(crate) fn new(category: FailureCategory, message: impl Into<String>) -> Self {
        ProviderError {
            category,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The wait the provider asked for before another attempt, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    pub(crate) fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// This failure with the provider `id`, the `model` sent and the `path`
    /// called named in its message: `gpu-box answered HTTP 404 for model
    /// gpt-4o at /api/chat`. Never the host, its user info or a query.
    pub(crate) fn attributed(mut self, id: &str, model: &str, path: &str) -> Self {
        self.message = match self.message.strip_prefix("provider ") {
            Some(rest) => format!("{id} {rest} for model {model} at {path}"),
            None => format!("{} ({id}, model {model}, at {path})", self.message),
        };
        self
    }

    /// Provider `id` could not be set up (its key variable holds a value
    /// no header can carry, or its client cannot be built); no call is made.
    pub(crate) fn setup(id: &str, error: &super::ProvidersError) -> Self {
        let category = match error {
            super::ProvidersError::Config(_) => FailureCategory::AuthError,
            super::ProvidersError::Client(_) => FailureCategory::ConnectError,
        };
        Self::new(
            category,
            format!("{id} cannot be set up, so it was not called"),
        )
    }

    /// No provider was called: every one of the chain was skipped.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(FailureCategory::Unavailable, message)
    }

    /// The category (decides 504 vs 502, the audit and the metric label).
    pub fn category(&self) -> FailureCategory {
        self.category
    }

    /// The message without the category.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer to a non-2xx status, or `None` for a 2xx.
    pub(crate) fn from_status(status: u16) -> Option<Self> {
        let category = match status {
            200..=299 => return None,
            401 | 403 => FailureCategory::AuthError,
            429 => FailureCategory::RateLimited,
            400..=499 => FailureCategory::ClientError,
            500..=599 => FailureCategory::ServerError,
            _ => FailureCategory::BadResponse,
        };
        Some(Self::new(
            category,
            format!("provider answered HTTP {status}"),
        ))
    }

    /// A 2xx answer whose body is unusable.
    pub(crate) fn bad_response(what: &str) -> Self {
        Self::new(
            FailureCategory::BadResponse,
            format!("provider's reply {what}"),
        )
    }

    /// A call to provider `id`, which needs a key, without `variable` set;
    /// no request is made.
    pub(crate) fn missing_key(variable: &str, id: &str) -> Self {
        Self::new(
            FailureCategory::AuthError,
            format!("{variable} is not set, so {id} was not called"),
        )
    }

    /// The chain's whole budget (its first provider's `total` times the
    /// number of providers) ran out before an answer.
    pub(crate) fn chain_budget() -> Self {
        Self::new(
            FailureCategory::Timeout,
            "no answer within the request's budget for all its providers and retries",
        )
    }

    /// A stream whose first event did not arrive within `first_byte`.
    pub(crate) fn no_first_chunk(timeout: std::time::Duration) -> Self {
        Self::new(
            FailureCategory::Timeout,
            format!(
                "the provider's stream sent no first chunk within {} s",
                timeout.as_secs_f64()
            ),
        )
    }

    /// No status line within `first_byte`.
    pub(crate) fn no_headers(timeout: std::time::Duration) -> Self {
        Self::new(
            FailureCategory::Timeout,
            format!(
                "no answer from the provider within {} s",
                timeout.as_secs_f64()
            ),
        )
    }

    /// A transport failure before any response arrived. reqwest's own text is
    /// not used: it quotes the URL, which may carry credentials.
    pub(crate) fn from_send(err: &reqwest::Error, timeout: std::time::Duration) -> Self {
        if err.is_timeout() {
            return Self::timed_out(timeout);
        }
        let detail = if err.is_dns() {
            "could not resolve the provider's host"
        } else {
            match io_error_kind(err) {
                Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
                Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
                Some(std::io::ErrorKind::ConnectionAborted) => "connection aborted",
                _ if err.is_connect() => "could not connect",
                _ => "connection closed",
            }
        };
        Self::new(
            FailureCategory::ConnectError,
            format!("no HTTP response from the provider ({detail})"),
        )
    }

    /// A transport failure while the body was being read, after a 2xx status.
    pub(crate) fn from_body(err: &reqwest::Error, timeout: std::time::Duration) -> Self {
        if err.is_timeout() {
            return Self::timed_out(timeout);
        }
        Self::bad_response("was cut short")
    }

    /// A streamed reply that sent nothing for `idle`.
    pub(crate) fn stalled(idle: std::time::Duration) -> Self {
        Self::new(
            FailureCategory::Timeout,
            format!(
                "the provider's stream sent nothing for {} s",
                idle.as_secs_f64()
            ),
        )
    }

    /// A reply over [`super::MAX_REPLY_BYTES`].
    pub(crate) fn too_large() -> Self {
        Self::bad_response(&format!(
            "is larger than {} MiB",
            super::MAX_REPLY_BYTES / (1024 * 1024)
        ))
    }

    /// An error event inside a streamed reply that had begun. Its text is the
    /// upstream's, so it is not relayed.
    pub(crate) fn in_stream() -> Self {
        Self::new(
            FailureCategory::ServerError,
            "provider reported an error in the middle of the stream",
        )
    }

    /// The client went away before a streamed reply ended.
    pub fn cancelled() -> Self {
        Self::new(
            FailureCategory::Cancelled,
            "the client closed the connection before the stream ended",
        )
    }

    pub(crate) fn timed_out(timeout: std::time::Duration) -> Self {
        Self::new(
            FailureCategory::Timeout,
            format!(
                "no complete answer from the provider within {} s",
                timeout.as_secs_f64()
            ),
        )
    }
}

/// The kind of the first I/O error in `err`'s source chain.
fn io_error_kind(err: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(status: u16) -> Option<FailureCategory> {
        ProviderError::from_status(status).map(|e| e.category())
    }

    #[test]
    fn statuses_map_to_the_api_table() {
        assert_eq!(category(200), None);
        assert_eq!(category(204), None);
        assert_eq!(category(401), Some(FailureCategory::AuthError));
        assert_eq!(category(403), Some(FailureCategory::AuthError));
        assert_eq!(category(400), Some(FailureCategory::ClientError));
        assert_eq!(category(404), Some(FailureCategory::ClientError));
        assert_eq!(category(429), Some(FailureCategory::RateLimited));
        assert_eq!(category(422), Some(FailureCategory::ClientError));
        assert_eq!(category(500), Some(FailureCategory::ServerError));
        assert_eq!(category(503), Some(FailureCategory::ServerError));
        assert_eq!(category(101), Some(FailureCategory::BadResponse));
        assert_eq!(category(302), Some(FailureCategory::BadResponse));
        assert_eq!(category(304), Some(FailureCategory::BadResponse));
        assert_eq!(category(600), Some(FailureCategory::BadResponse));
    }

    #[test]
    fn display_is_category_then_message() {
        let e = ProviderError::from_status(500).unwrap();
        assert_eq!(e.to_string(), "server_error: provider answered HTTP 500");
        assert_eq!(e.message(), "provider answered HTTP 500");
    }

    #[test]
    fn attributed_messages_name_provider_model_and_path() {
        let e =
            ProviderError::from_status(404)
                .unwrap()
                .attributed("gpu-box", "gpt-4o", "/api/chat");
        assert_eq!(
            e.to_string(),
            "client_error: gpu-box answered HTTP 404 for model gpt-4o at /api/chat"
        );
        let e =
            ProviderError::bad_response("is empty").attributed("local", "llama3.2", "/api/chat");
        assert_eq!(
            e.to_string(),
            "bad_response: provider's reply is empty (local, model llama3.2, at /api/chat)"
        );
    }

    #[test]
    fn category_words_are_the_serialized_names() {
        for c in FailureCategory::ALL {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().to_owned())
            );
        }
    }

    #[test]
    fn timeout_message_names_the_limit() {
        let e = ProviderError::timed_out(std::time::Duration::from_millis(500));
        assert_eq!(
            e.to_string(),
            "timeout: no complete answer from the provider within 0.5 s"
        );
    }
}
