//! The provider layer: calls to the providers of the live policy (the
//! built-in `local` Ollama-compatible server and public OpenAI or Anthropic
//! one, and the policy's own `providers`), with the request translated into
//! each provider's wire format, the reply extracted, and every failure sorted
//! into one of the chat API's categories.
//!
//! [`spec`] says what a provider is; [`Pool`] holds one client (its own
//! connection pool, rustls, no redirects, no proxy but its own) and one
//! circuit per provider; [`chain`] runs a request along a decision's chain of
//! providers with retries and fallback, never sending a sensitive request to
//! a provider that is not local. Each provider is a [`ChatProvider`] behind an
//! `Arc<dyn …>`; its request translation and reply parsing are pure functions
//! tested beside it. The environment's proxy variables are ignored (a local
//! provider is never reached through a proxy, a public one only through its
//! own), redirects are not followed (a 3xx is a `bad_response`, and
//! following one could carry a key to another host).

pub mod anthropic;
pub mod chain;
mod config;
mod error;
mod http;
pub mod ollama;
pub mod openai;
mod pool;
pub mod spec;
mod stream;

use std::future::Future;
use std::pin::Pin;

pub use self::anthropic::Anthropic;
pub use self::config::{
    Builtins, DEFAULT_ANTHROPIC_MODEL, DEFAULT_LOCAL_LLM_MODEL, DEFAULT_LOCAL_LLM_URL,
    DEFAULT_OPENAI_MODEL, DEFAULT_PROVIDER_TIMEOUT_SECONDS, ProviderConfig, Secret,
};
pub use self::error::ProviderError;
pub use self::ollama::Ollama;
pub use self::openai::OpenAi;
pub use self::pool::{Circuit, CircuitState, Handle, Pool, backoff};
pub use self::spec::{ProviderSpec, Timeouts};
pub use self::stream::{MAX_REPLY_BYTES, ReplyStream, StreamEvent, Usage, whole as whole_stream};

use crate::chat::{ChatMessage, ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use crate::env::ConfigError;

/// A boxed, sendable future: what [`ChatProvider::chat`] returns, so that the
/// trait stays usable as `dyn ChatProvider`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Generation settings a client may pass along; each `None` (or an empty
/// `stop`) leaves the provider's own default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationOptions {
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic's `top_k`); Anthropic and Ollama receive it,
    /// OpenAI has no such setting.
    pub top_k: Option<u64>,
    /// OpenAI's `max_tokens`, as the client sent it.
    pub max_tokens: Option<u64>,
    /// OpenAI's `max_completion_tokens`, as the client sent it.
    pub max_completion_tokens: Option<u64>,
    /// Sequences that end the reply.
    pub stop: Vec<String>,
    /// The end user's id, for the provider's abuse monitoring.
    pub user: Option<String>,
    /// Whether a streamed OpenAI reply should end with its usage.
    pub include_usage: bool,
    /// OpenAI's `seed`; only OpenAI receives it.
    pub seed: Option<i64>,
    /// OpenAI's `presence_penalty`; only OpenAI receives it.
    pub presence_penalty: Option<f64>,
    /// OpenAI's `frequency_penalty`; only OpenAI receives it.
    pub frequency_penalty: Option<f64>,
    /// OpenAI's `logit_bias` (token id to bias); only OpenAI receives it.
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// Which tool the model must call; `None` leaves the provider's default.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once; `None` leaves the
    /// provider's default.
    pub parallel_tool_calls: Option<bool>,
    /// The form of the reply; `None`: text.
    pub response_format: Option<ResponseFormat>,
}

impl GenerationOptions {
    /// The reply length limit, whichever of the two fields the client used
    /// (`max_completion_tokens` wins).
    /// The strings of these options that a provider receives as text: the
    /// `user` id and the `stop` sequences. The policy decides on them.
    pub fn metadata(&self) -> impl Iterator<Item = &str> {
        self.user
            .as_deref()
            .into_iter()
            .chain(self.stop.iter().map(String::as_str))
    }

    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// What one provider call sends.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    /// The model sent (see [`ProviderSpec::model_for`]).
    pub model: &'a str,
    /// The messages as received.
    pub messages: &'a [ChatMessage],
    /// The tools the model may call.
    pub tools: &'a [ToolDefinition],
    /// Generation settings to pass along.
    pub options: &'a GenerationOptions,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply text, unchanged.
    pub content: String,
    /// The tools the model calls, in order (`finish_reason` then says
    /// `tool_calls`).
    pub tool_calls: Vec<ToolCall>,
    /// Why the reply ended, in OpenAI's words (`stop`, `length`, …), when
    /// the provider said.
    pub finish_reason: Option<String>,
    /// The token counts, when the provider reported them.
    pub usage: Option<Usage>,
}

impl Reply {
    /// A reply of `content` with nothing else known.
    pub fn text(content: impl Into<String>) -> Self {
        Reply {
            content: content.into(),
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }
}

/// One provider's chat call: exactly one upstream request, no retry.
pub trait ChatProvider: Send + Sync {
    /// Sends `request` and returns the reply, or the categorized failure,
    /// within the provider's `total` timeout (the chain adds no timer of
    /// its own unless its budget is tighter).
    fn chat<'a>(&'a self, request: ChatRequest<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>>;

    /// Sends `request` for a streamed reply. Resolves once the provider has
    /// accepted it (or failed, categorized as for [`ChatProvider::chat`]);
    /// the stream then yields the reply as it arrives, and an error event
    /// ends it early. Dropping the stream drops the upstream request.
    ///
    /// The default waits for the whole reply and streams it in one piece.
    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest<'a>,
    ) -> BoxFuture<'a, Result<ReplyStream, ProviderError>> {
        Box::pin(async move { self.chat(request).await.map(stream::whole) })
    }
}

/// Why the provider layer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProvidersError {
    /// Provider variables are invalid: one line each.
    #[error("{}", ConfigError::lines(.0))]
    Config(Vec<ConfigError>),
    /// The HTTP client could not be built (TLS roots, proxy settings).
    #[error("cannot build the HTTP client for the providers: {0}")]
    Client(String),
}

impl From<ConfigError> for ProvidersError {
    fn from(e: ConfigError) -> Self {
        ProvidersError::Config(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::env::Env;
    use crate::names::FailureCategory;

    #[test]
    fn debug_of_the_pool_redacts_keys() {
        let pool = Pool::from_env(&Env::from_pairs([
            ("LOCAL_LLM_API_KEY", "ollama-canary-77"),
            ("PUBLIC_LLM_API_KEY", "sk-canary-77"),
        ]))
        .unwrap();
        let debug = format!("{pool:?}");
        assert!(!debug.contains("canary-77"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn the_pool_and_its_calls_can_cross_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        fn sendable<T: Send>(_: &T) {}
        shareable::<Pool>();
        shareable::<Handle>();
        let pool = Pool::from_env(&Env::default()).unwrap();
        let local = Arc::new(pool.config().builtins().local);
        let handle = pool.handle(&local).unwrap();
        let messages = [ChatMessage::user("hi")];
        let options = GenerationOptions::default();
        // An axum handler's future must be Send; this one is never polled.
        let call = handle.client.chat(ChatRequest {
            model: "m",
            messages: &messages,
            tools: &[],
            options: &options,
        });
        sendable(&call);
    }

    #[test]
    fn a_handle_is_kept_while_its_settings_are_and_replaced_when_they_change() {
        let pool = Pool::from_env(&Env::default()).unwrap();
        let local = Arc::new(pool.config().builtins().local);
        let first = pool.handle(&local).unwrap();
        let same = Arc::new((*local).clone());
        assert!(Arc::ptr_eq(&first, &pool.handle(&same).unwrap()));
        let mut moved = (*local).clone();
        moved.url = "http://127.0.0.1:9".to_owned();
        let moved = Arc::new(moved);
        let second = pool.handle(&moved).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second, &pool.built("local").unwrap()));
        // The old handle still serves whoever holds it.
        assert_eq!(first.spec.url, local.url);
    }

    #[tokio::test]
    async fn a_public_call_without_a_key_fails_before_the_network() {
        // The URL is unroutable on purpose: reaching it would be a connect
        // error, not an auth error.
        for (url, provider) in [
            ("http://127.0.0.1:9", "openai"),
            ("https://api.anthropic.com", "anthropic"),
        ] {
            let pool = Pool::from_env(&Env::from_pairs([("PUBLIC_LLM_URL", url)])).unwrap();
            let public = Arc::new(pool.config().builtins().public);
            assert_eq!(public.id, provider);
            let err = pool
                .handle(&public)
                .unwrap()
                .client
                .chat(ChatRequest {
                    model: "m",
                    messages: &[ChatMessage::user("hi")],
                    tools: &[],
                    options: &GenerationOptions::default(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.category(), FailureCategory::AuthError, "{err}");
            assert_eq!(
                err.message(),
                format!("PUBLIC_LLM_API_KEY is not set, so {provider} was not called")
            );
        }
    }
}
