//! The one HTTP exchange every provider makes: POST a JSON body, sort the
//! outcome into a failure category, and hand a 2xx answer to the provider's
//! own reading of it, whole or streamed. A provider is this exchange in its
//! [`WireFormat`]: [`HttpProvider`].

use std::marker::PhantomData;
use std::time::Duration;

use super::spec::Timeouts;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::error::ProviderError;
use super::stream::{self, Decoder, MAX_REPLY_BYTES};
use super::{BoxFuture, ChatProvider, ChatRequest, Reply, ReplyStream};
use crate::env::ConfigError;

/// How a streamed reply is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events (OpenAI, Anthropic).
    Sse,
    /// One JSON object a line (Ollama).
    Ndjson,
}

/// How one provider's API is spoken: the request it takes and the reply it
/// gives, whole or streamed. Each provider module has one, with its pure
/// translation functions tested beside it.
pub trait WireFormat: Send + Sync + 'static {
    /// How a streamed reply is framed.
    const FRAMING: Framing;
    /// The JSON body of a call; its `bool` asks for a streamed reply.
    const REQUEST_BODY: RequestBody;
    /// The reply of a 2xx whole answer.
    const PARSE_REPLY: ParseReply;
    /// Reads a streamed reply, frame by frame.
    type Decoder: Decoder + Default;
}

/// Builds the JSON body of a call; the `bool` asks for a streamed reply.
pub type RequestBody = fn(&ChatRequest<'_>, bool) -> Value;

/// Reads the reply out of the body of a 2xx whole answer.
pub type ParseReply = fn(&[u8]) -> Result<Reply, ProviderError>;

/// A provider spoken to over HTTP in wire format `F`: exactly one upstream
/// request per call, no retry.
pub struct HttpProvider<F> {
    /// `Err` for a provider that needs a key and has none: every call fails
    /// with this `auth_error` before the network.
    endpoint: Result<Endpoint, ProviderError>,
    format: PhantomData<fn() -> F>,
}

impl<F> HttpProvider<F> {
    pub(crate) fn from_endpoint(endpoint: Result<Endpoint, ProviderError>) -> Self {
        HttpProvider {
            endpoint,
            format: PhantomData,
        }
    }

    fn endpoint(&self) -> Result<&Endpoint, ProviderError> {
        self.endpoint.as_ref().map_err(Clone::clone)
    }
}

impl<F: WireFormat> ChatProvider for HttpProvider<F> {
    fn chat<'a>(&'a self, request: ChatRequest<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let endpoint = self.endpoint()?;
            let body = endpoint
                .post_json(&(F::REQUEST_BODY)(&request, false), request.model)
                .await?;
            (F::PARSE_REPLY)(&body).map_err(|e| endpoint.attribute(e, request.model))
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<ReplyStream, ProviderError>> {
        Box::pin(async move {
            let endpoint = self.endpoint()?;
            // Only the wait for the status is bounded here; the stream bounds
            // each read itself.
            let response = endpoint
                .send(&(F::REQUEST_BODY)(&request, true), None, request.model)
                .await?;
            let idle = endpoint.timeouts.idle;
            let frames = match F::FRAMING {
                Framing::Sse => stream::sse_frames(response, idle),
                Framing::Ndjson => stream::ndjson_frames(response, idle),
            };
            Ok(stream::decode(frames, F::Decoder::default()))
        })
    }
}

/// One provider endpoint on the shared client, with its auth headers built
/// once (and marked sensitive, so that no debug output of reqwest or hyper
/// prints them).
#[derive(Clone)]
pub(crate) struct Endpoint {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    timeouts: Timeouts,
    /// The provider's id, for failure messages.
    id: String,
    /// The path called, for failure messages.
    path: &'static str,
}

impl Endpoint {
    /// `base` is a base URL without a trailing `/`; `path` starts with `/`.
    pub(crate) fn new(
        client: reqwest::Client,
        id: &str,
        base: &str,
        path: &'static str,
        timeouts: Timeouts,
    ) -> Self {
        Endpoint {
            client,
            url: format!("{base}{path}"),
            headers: HeaderMap::new(),
            timeouts,
            id: id.to_owned(),
            path,
        }
    }

    /// `error` with this provider, `model` and the path named.
    pub(crate) fn attribute(&self, error: ProviderError, model: &str) -> ProviderError {
        error.attributed(&self.id, model, self.path)
    }

    /// Adds a header whose value is secret. `variable` names its source for
    /// the (key-free) error.
    pub(crate) fn with_secret_header(
        mut self,
        name: HeaderName,
        value: &str,
        variable: &str,
    ) -> Result<Self, ConfigError> {
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(variable, "invalid value: not usable in an HTTP header")
        })?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Adds a plain header.
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// POSTs `body` and returns the response once its status is a 2xx. With
    /// `whole: Some(t)` the whole exchange, body included, is bounded by `t`;
    /// with `None` only the wait for the status is (a stream bounds each read
    /// itself).
    pub(crate) async fn send(
        &self,
        body: &serde_json::Value,
        whole: Option<Duration>,
        model: &str,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .json(body);
        if let Some(timeout) = whole {
            request = request.timeout(timeout);
        }
        // The wait for the status line is `first_byte`, and never beyond
        // the whole call's bound.
        let first_byte = whole.map_or(self.timeouts.first_byte, |w| {
            w.min(self.timeouts.first_byte)
        });
        let response = match tokio::time::timeout(first_byte, request.send()).await {
            Err(_) => return Err(self.attribute(ProviderError::no_headers(first_byte), model)),
            Ok(sent) => {
                sent.map_err(|e| self.attribute(ProviderError::from_send(&e, first_byte), model))?
            }
        };
        let status = response.status().as_u16();
        if let Some(err) = ProviderError::from_status(status) {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after);
            return Err(self.attribute(err.with_retry_after(retry_after), model));
        }
        Ok(response)
    }

    /// POSTs `body` and returns the body of a 2xx answer. Every other outcome
    /// is a categorized [`ProviderError`]; the upstream body of an error is
    /// never read, let alone relayed.
    pub(crate) async fn post_json(
        &self,
        body: &serde_json::Value,
        model: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let total = self.timeouts.total;
        let mut response = self.send(body, Some(total), model).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.attribute(ProviderError::from_body(&e, total), model))?
        {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(self.attribute(ProviderError::too_large(), model));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// A `Retry-After` value in seconds (the HTTP-date form is not read: no
/// provider sends it for a 429).
fn retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The JSON of a 2xx body, or the `bad_response` saying what is wrong with it.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ProviderError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ProviderError::bad_response("is empty"));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            ProviderError::bad_response("was cut short")
        } else {
            ProviderError::bad_response("is not JSON")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::FailureCategory;

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn parse_json_sorts_unusable_bodies() {
        for (body, message) in [
            (&b""[..], "provider's reply is empty"),
            (b" \n", "provider's reply is empty"),
            (b"<html>oops</html>", "provider's reply is not JSON"),
            (
                b"{\"message\": {\"content\": \"hi",
                "provider's reply was cut short",
            ),
        ] {
            let err = parse_json(body).unwrap_err();
            assert_eq!(err.category(), FailureCategory::BadResponse);
            assert_eq!(err.message(), message);
        }
        assert_eq!(
            parse_json(b"{\"a\":1}").unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
