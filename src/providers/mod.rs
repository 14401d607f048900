//! The provider layer: one call to the local model (Ollama) or the public one
//! (OpenAI or Anthropic), with the request translated into the provider's
//! wire format, the reply extracted, and every failure sorted into one of the
//! chat API's six categories.
//!
//! It is a library of its own so that the `/v1/chat` handler stays thin:
//! decide, [`Providers::call`], audit, respond. Each provider is a
//! [`ChatProvider`] behind an `Arc<dyn …>`; its request translation and reply
//! parsing are pure functions tested beside it. All of them share one
//! `reqwest::Client` per trust, so connections are pooled and TLS is rustls;
//! the environment's proxy variables are ignored (the local model is never
//! reached through a proxy, the public provider only through
//! `PUBLIC_LLM_PROXY`), redirects are not followed (a 3xx
//! is a `bad_response`, and following one could carry a key to another
//! host), and `PROVIDER_TIMEOUT_SECONDS` bounds every whole call.

pub mod anthropic;
mod config;
mod error;
mod http;
pub mod ollama;
pub mod openai;
mod stream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use self::anthropic::Anthropic;
pub use self::config::{
    DEFAULT_ANTHROPIC_MODEL, DEFAULT_LOCAL_LLM_MODEL, DEFAULT_LOCAL_LLM_URL, DEFAULT_OPENAI_MODEL,
    DEFAULT_PROVIDER_TIMEOUT_SECONDS, ProviderConfig, Secret,
};
pub use self::error::ProviderError;
pub use self::ollama::Ollama;
pub use self::openai::OpenAi;
pub use self::stream::{MAX_REPLY_BYTES, ReplyStream, StreamEvent, Usage};

use crate::chat::{ChatMessage, ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use crate::env::ConfigError;
use crate::env::Env;
use crate::names::Provider;

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
    /// The model sent (see [`Providers::model_for`]).
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
    /// Sends `request` and returns the reply, or the categorized failure.
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

/// The three providers on one shared HTTP client. Cloning is cheap (every
/// part is behind an `Arc`), so handlers may hold it by value or in an `Arc`.
#[derive(Clone)]
pub struct Providers {
    config: Arc<ProviderConfig>,
    local: Arc<dyn ChatProvider>,
    openai: Arc<dyn ChatProvider>,
    anthropic: Arc<dyn ChatProvider>,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration's Debug redacts the keys.
        f.debug_struct("Providers")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// Reads the provider variables of `env` and builds the clients.
    pub fn from_env(env: &Env) -> Result<Self, ProvidersError> {
        Self::new(ProviderConfig::from_env(env).map_err(ProvidersError::Config)?)
    }

    /// Builds the shared client and the three providers. No network traffic
    /// happens here.
    pub fn new(config: ProviderConfig) -> Result<Self, ProvidersError> {
        // No client-wide timeout: a whole call is bounded per request, a
        // stream per read (see `http::Endpoint`).
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("policy-mesh/", env!("CARGO_PKG_VERSION")))
                // Never the environment's proxy variables.
                .no_proxy()
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build().map_err(|e| ProvidersError::Client(e.to_string()))
        };
        let local_client = built(builder())?;
        let mut public = builder();
        if let Some(proxy) = &config.public_proxy {
            // The URL was validated with the configuration; the message of
            // this error never quotes it (it may hold a password).
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|_| {
                ProvidersError::Client("PUBLIC_LLM_PROXY is not a usable proxy URL".to_owned())
            })?;
            public = public.proxy(proxy);
        }
        let client = built(public)?;
        let timeout = config.timeout;
        let local = Ollama::new(
            local_client,
            &config.local_url,
            config.local_api_key.as_ref(),
            timeout,
        )?;
        let openai = OpenAi::new(
            client.clone(),
            &config.public_url,
            config.public_api_key.as_ref(),
            timeout,
        )?;
        let anthropic = Anthropic::new(
            client,
            &config.public_url,
            config.public_api_key.as_ref(),
            timeout,
        )?;
        Ok(Providers {
            config: Arc::new(config),
            local: Arc::new(local),
            openai: Arc::new(openai),
            anthropic: Arc::new(anthropic),
        })
    }

    /// A registry of given providers, for tests that need no HTTP at all;
    /// [`Providers::model_for`] still follows `config`.
    #[cfg(test)]
    fn from_parts(
        config: ProviderConfig,
        local: Arc<dyn ChatProvider>,
        openai: Arc<dyn ChatProvider>,
        anthropic: Arc<dyn ChatProvider>,
    ) -> Self {
        Providers {
            config: Arc::new(config),
            local,
            openai,
            anthropic,
        }
    }

    /// The validated settings (keys redacted in `Debug`).
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The model sent to `provider` for a request naming `requested`; also
    /// the audit's `model`, failure or not.
    pub fn model_for(&self, provider: Provider, requested: Option<&str>) -> String {
        self.config.model_for(provider, requested)
    }

    /// The client of `provider`.
    pub fn provider(&self, provider: Provider) -> &Arc<dyn ChatProvider> {
        match provider {
            Provider::Local => &self.local,
            Provider::Openai => &self.openai,
            Provider::Anthropic => &self.anthropic,
        }
    }

    /// Calls `provider` once with `messages` and the model of
    /// [`Providers::model_for`]. A public provider without
    /// `PUBLIC_LLM_API_KEY` fails with `auth_error` and makes no request.
    pub async fn call(
        &self,
        provider: Provider,
        model: Option<&str>,
        messages: &[ChatMessage],
    ) -> Result<Reply, ProviderError> {
        let model = self.model_for(provider, model);
        self.provider(provider)
            .chat(ChatRequest {
                model: &model,
                messages,
                tools: &[],
                options: &GenerationOptions::default(),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::FailureCategory;

    #[test]
    fn debug_of_the_registry_redacts_keys() {
        let providers = Providers::from_env(&Env::from_pairs([
            ("LOCAL_LLM_API_KEY", "ollama-canary-77"),
            ("PUBLIC_LLM_API_KEY", "sk-canary-77"),
        ]))
        .unwrap();
        let debug = format!("{providers:?}");
        assert!(!debug.contains("canary-77"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn providers_and_their_calls_can_cross_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        fn sendable<T: Send>(_: &T) {}
        shareable::<Providers>();
        let providers = Providers::from_env(&Env::default()).unwrap();
        let messages = [ChatMessage::user("hi")];
        // An axum handler's future must be Send; this one is never polled.
        let call = providers.call(Provider::Local, None, &messages);
        sendable(&call);
    }

    /// Answers with the model and message count it was given.
    struct Echo;

    impl ChatProvider for Echo {
        fn chat<'a>(
            &'a self,
            request: ChatRequest<'a>,
        ) -> BoxFuture<'a, Result<Reply, ProviderError>> {
            Box::pin(async move {
                Ok(Reply::text(format!(
                    "{} {}",
                    request.model,
                    request.messages.len()
                )))
            })
        }
    }

    #[tokio::test]
    async fn call_sends_the_resolved_model_to_the_chosen_provider() {
        let config = ProviderConfig::from_env(&Env::from_pairs([
            ("LOCAL_LLM_MODEL", "local-m"),
            ("PUBLIC_LLM_MODEL", "public-m"),
        ]))
        .unwrap();
        let failing = Providers::from_env(&Env::default()).unwrap().openai;
        let providers = Providers::from_parts(config, Arc::new(Echo), failing.clone(), failing);
        let two = [ChatMessage::user("a"), ChatMessage::user("b")];
        let reply = providers.call(Provider::Local, None, &two).await.unwrap();
        assert_eq!(reply.content, "local-m 2");
        let reply = providers
            .call(Provider::Local, Some("x"), &two[..1])
            .await
            .unwrap();
        assert_eq!(reply.content, "x 1");
        // The public ones have no key here: they fail without the network.
        let err = providers
            .call(Provider::Openai, None, &two)
            .await
            .unwrap_err();
        assert_eq!(err.category(), FailureCategory::AuthError);
    }

    #[tokio::test]
    async fn a_public_call_without_a_key_fails_before_the_network() {
        // The URL is unroutable on purpose: reaching it would be a connect
        // error, not an auth error.
        for url in ["http://127.0.0.1:9", "https://api.anthropic.com"] {
            let providers =
                Providers::from_env(&Env::from_pairs([("PUBLIC_LLM_URL", url)])).unwrap();
            for provider in [Provider::Openai, Provider::Anthropic] {
                let err = providers
                    .call(provider, None, &[ChatMessage::user("hi")])
                    .await
                    .unwrap_err();
                assert_eq!(err.category(), FailureCategory::AuthError, "{err}");
            }
        }
    }
}
