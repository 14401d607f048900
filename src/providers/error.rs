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
}

impl ProviderError {
    /// An error of `category`. Callers pass only the gateway's own words.
    pub(crate) fn new(category: FailureCategory, message: impl Into<String>) -> Self {
        ProviderError {
            category,
            message: message.into(),
        }
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

    /// A public call without `PUBLIC_LLM_API_KEY`; no request is made.
    pub(crate) fn missing_public_key() -> Self {
        Self::new(
            FailureCategory::AuthError,
            "PUBLIC_LLM_API_KEY is not set, so the public provider was not called",
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
        assert_eq!(category(429), Some(FailureCategory::ClientError));
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
