//! What a provider is, resolved: the built-ins from the environment and the
//! policy's own `providers`, each with its wire format, trust, models,
//! retries, timeouts and circuit settings. The compiler builds these from the
//! policy; [`super::Pool`] turns each into a client.

use std::fmt;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::names::{Api, ProviderId, Route};

/// The most retries a provider gets, whatever its `retries` says.
pub const MAX_RETRIES: u32 = 2;

/// The most a `connect` timeout defaults to.
pub const MAX_DEFAULT_CONNECT: Duration = Duration::from_secs(10);

/// The model name that always means "the chosen provider's own model".
pub const AUTO_MODEL: &str = "policy-mesh";

/// One model glob, as `models` lists and `when.model` conditions compile it:
/// case-insensitive, `*` across `/`, the whole name.
pub fn model_glob(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("a glob cannot be empty".to_owned());
    }
    GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(false)
        .backslash_escape(true)
        .empty_alternates(false)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// A provider's `models`: the model names it serves, as globs.
#[derive(Clone)]
pub struct ModelGlobs {
    globs: Vec<String>,
    set: GlobSet,
}

impl ModelGlobs {
    /// The globs `globs`; `Err` names the first bad one and why.
    pub fn new(globs: Vec<String>) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in &globs {
            builder.add(
                model_glob(pattern).map_err(|why| format!("invalid glob {pattern:?}: {why}"))?,
            );
        }
        let set = builder
            .build()
            .map_err(|e| format!("the model globs cannot be compiled together: {e}"))?;
        Ok(ModelGlobs { globs, set })
    }

    /// Whether `model` is one of these names.
    pub fn matches(&self, model: &str) -> bool {
        self.set.is_match(model)
    }

    /// The globs as written.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }
}

impl fmt::Debug for ModelGlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.globs).finish()
    }
}

impl PartialEq for ModelGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.globs == other.globs
    }
}

/// How long an attempt may wait, phase by phase; each ends it as `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Timeouts {
    /// TCP and TLS.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub connect: Duration,
    /// From the request sent to the response headers, and for a stream to
    /// its first chunk.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub first_byte: Duration,
    /// Between two chunks of a stream.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub idle: Duration,
    /// A whole, non-streamed call.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub total: Duration,
}

impl Timeouts {
    /// Every phase bounded by `timeout` (`PROVIDER_TIMEOUT_SECONDS`),
    /// `connect` by at most [`MAX_DEFAULT_CONNECT`].
    pub fn all(timeout: Duration) -> Self {
        Timeouts {
            connect: timeout.min(MAX_DEFAULT_CONNECT),
            first_byte: timeout,
            idle: timeout,
            total: timeout,
        }
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// When a provider is skipped after failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive retryable failures that open the circuit.
    pub failures: u32,
    /// How long an open circuit skips the provider.
    pub cooldown: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// One provider, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// Its id.
    pub id: ProviderId,
    /// The wire format it speaks.
    pub api: Api,
    /// Its base URL, without a trailing `/`, `/v1` or `/api`.
    pub url: String,
    /// Whether it may serve sensitive requests.
    pub trust: Route,
    /// The model it is sent when the request names none it serves.
    pub model: String,
    /// The model names it serves.
    pub models: ModelGlobs,
    /// The variable that holds its key, if any; never the key.
    pub api_key_env: Option<String>,
    /// The proxy it is reached through (public providers only).
    pub proxy: Option<String>,
    /// Extra attempts on it after a retryable failure, at most [`MAX_RETRIES`].
    pub retries: u32,
    /// Its timeouts.
    pub timeouts: Timeouts,
    /// When it is skipped.
    pub circuit: CircuitSettings,
    /// One of the two from the environment.
    pub builtin: bool,
}

impl ProviderSpec {
    /// The model sent to this provider for a request that names `requested`.
    /// `aliases` (`policy-mesh`, the built-ins' models, every provider's own
    /// model) always mean this provider's own `model`; otherwise a name its
    /// `models` accept passes as it is, and any other gets its own `model`.
    pub fn model_for(&self, requested: Option<&str>, aliases: &[String]) -> String {
        match requested {
            Some(name)
                if !aliases.iter().any(|a| a == name)
                    && name != AUTO_MODEL
                    && self.models.matches(name) =>
            {
                name.to_owned()
            }
            _ => self.model.clone(),
        }
    }

    /// The path the chat is posted to, under the base URL.
    pub fn chat_path(&self) -> &'static str {
        chat_path(self.api)
    }

    /// The URL as shown in logs and `/v1/routes`: without user info, query
    /// or fragment.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }

    /// The retries it really gets.
    pub fn effective_retries(&self) -> u32 {
        self.retries.min(MAX_RETRIES)
    }
}

/// The path a chat of `api` is posted to, under the base URL.
pub fn chat_path(api: Api) -> &'static str {
    match api {
        Api::Ollama => "/api/chat",
        Api::Openai => "/v1/chat/completions",
        Api::Anthropic => "/v1/messages",
    }
}

/// `raw` without user info, query or fragment.
pub fn shown_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// `url` (already trimmed of trailing `/`) without the API suffix its
/// callers often add (`/v1` for OpenAI and Anthropic, `/api` for Ollama):
/// the gateway adds the whole path itself. `Some` when a suffix was removed.
pub fn strip_api_suffix(url: &str, api: Api) -> Option<String> {
    let suffix = match api {
        Api::Ollama => "/api",
        Api::Openai | Api::Anthropic => "/v1",
    };
    let stripped = url.strip_suffix(suffix)?;
    // Only a whole path segment, after the host: `https://host/v1`.
    (stripped.matches('/').count() >= 2).then(|| stripped.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(models: &[&str]) -> ProviderSpec {
        ProviderSpec {
            id: ProviderId::new("gpu-box"),
            api: Api::Ollama,
            url: "http://10.0.0.7:11434".to_owned(),
            trust: Route::Local,
            model: "llama3.1:70b".to_owned(),
            models: ModelGlobs::new(models.iter().map(|m| (*m).to_owned()).collect())
                .expect("globs"),
            api_key_env: None,
            proxy: None,
            retries: 0,
            timeouts: Timeouts::all(Duration::from_secs(60)),
            circuit: CircuitSettings::default(),
            builtin: false,
        }
    }

    #[test]
    fn a_provider_gets_a_name_it_serves_and_its_own_model_otherwise() {
        let s = spec(&["llama3.1*", "qwen2.5-coder*"]);
        let aliases = ["llama3.2".to_owned(), "gpt-4o-mini".to_owned()];
        assert_eq!(s.model_for(None, &aliases), "llama3.1:70b");
        assert_eq!(s.model_for(Some("Llama3.1:8b"), &aliases), "Llama3.1:8b");
        assert_eq!(
            s.model_for(Some("qwen2.5-coder:7b"), &aliases),
            "qwen2.5-coder:7b"
        );
        for other in [
            "gpt-4o",
            "gpt-3.5-turbo",
            "openai/x",
            "policy-mesh",
            "gpt-4o-mini",
        ] {
            assert_eq!(
                s.model_for(Some(other), &aliases),
                "llama3.1:70b",
                "{other}"
            );
        }
        // An alias the globs would accept still means the provider's own model.
        let s = spec(&["*"]);
        assert_eq!(s.model_for(Some("llama3.2"), &aliases), "llama3.1:70b");
        assert_eq!(s.model_for(Some("gpt-4o"), &aliases), "gpt-4o");
    }

    #[test]
    fn api_suffixes_are_stripped_as_whole_segments() {
        assert_eq!(
            strip_api_suffix("https://api.openai.com/v1", Api::Openai).as_deref(),
            Some("https://api.openai.com")
        );
        assert_eq!(
            strip_api_suffix("http://ollama:11434/api", Api::Ollama).as_deref(),
            Some("http://ollama:11434")
        );
        assert_eq!(
            strip_api_suffix("https://proxy/openai/v1", Api::Anthropic).as_deref(),
            Some("https://proxy/openai")
        );
        assert_eq!(
            strip_api_suffix("https://api.openai.com", Api::Openai),
            None
        );
        assert_eq!(
            strip_api_suffix("http://ollama:11434/v1", Api::Ollama),
            None
        );
        assert_eq!(strip_api_suffix("https://host/xv1", Api::Openai), None);
    }

    #[test]
    fn shown_urls_drop_user_info_and_queries() {
        assert_eq!(
            shown_url("https://me:secret-pw@proxy.example:8443/openai"),
            "https://proxy.example:8443/openai"
        );
        assert_eq!(shown_url("http://10.0.0.7:11434"), "http://10.0.0.7:11434");
    }

    #[test]
    fn default_timeouts_cap_connect() {
        let t = Timeouts::all(Duration::from_secs(60));
        assert_eq!(t.connect, Duration::from_secs(10));
        assert_eq!(t.total, Duration::from_secs(60));
        let t = Timeouts::all(Duration::from_millis(500));
        assert_eq!(t.connect, Duration::from_millis(500));
    }
}
