//! The provider settings read from the environment: base URLs, keys, default
//! models and the call timeout, validated once at start-up so that a bad value
//! stops the process with a message naming the variable instead of failing on
//! the first chat request.

use std::fmt;
use std::time::Duration;

use super::spec::{self, CircuitSettings, ModelGlobs, ProviderSpec, Timeouts};
use crate::config;
use crate::env::{ConfigError, ConfigErrors, Env};
use crate::names::{Api, ProviderId, Route};

/// Default base URL of the local (Ollama-compatible) provider.
pub const DEFAULT_LOCAL_LLM_URL: &str = "http://localhost:11434";
/// Default local model.
pub const DEFAULT_LOCAL_LLM_MODEL: &str = "llama3.2";
/// Default public model when the public provider is OpenAI.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
/// Default public model when the public provider is Anthropic.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-3-5-haiku-latest";
/// Default whole-call timeout, in seconds.
pub const DEFAULT_PROVIDER_TIMEOUT_SECONDS: u64 = 60;

/// A secret value (an API key). It has no `Display`, and its `Debug` prints
/// `[redacted]`, so that printing a configuration can never leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The validated provider settings. `Debug` redacts the keys and any
/// password written in a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// `LOCAL_LLM_URL` without a trailing `/`.
    pub local_url: String,
    /// `LOCAL_LLM_API_KEY`: sent as a bearer token only when set.
    pub local_api_key: Option<Secret>,
    /// `LOCAL_LLM_MODEL`.
    pub local_model: String,
    /// `LOCAL_LLM_MODELS`: the model names the local provider serves, as
    /// globs (default: `LOCAL_LLM_MODEL` alone).
    pub local_models: Vec<String>,
    /// `PUBLIC_LLM_URL` without a trailing `/`.
    pub public_url: String,
    /// Which API `PUBLIC_LLM_URL` speaks (`PUBLIC_LLM_PROVIDER` or the guess
    /// from the host).
    pub public_provider: Api,
    /// `PUBLIC_LLM_API_KEY`: without it, every public call fails with
    /// `auth_error` before any network traffic.
    pub public_api_key: Option<Secret>,
    /// `PUBLIC_LLM_MODEL`, or the public provider's default.
    pub public_model: String,
    /// `PUBLIC_LLM_MODELS`: the model names the public provider serves, as
    /// globs (default `*`: any).
    pub public_models: Vec<String>,
    /// The variables whose URL lost an API suffix (`/v1`, `/api`), with the
    /// URL kept; logged at start-up.
    pub stripped_urls: Vec<(&'static str, String)>,
    /// `PROVIDER_TIMEOUT_SECONDS`: bounds each whole call (connect, headers,
    /// body).
    pub timeout: Duration,
    /// `PUBLIC_LLM_PROXY`: the only proxy any provider uses, and only the
    /// public one. The local model is never reached through a proxy.
    pub public_proxy: Option<String>,
    /// The proxy variables set in the environment (`HTTP_PROXY`, …), which
    /// are ignored; named at start-up so that nobody relies on them.
    pub ignored_proxy_variables: Vec<&'static str>,
}

/// The proxy variables that HTTP clients commonly honour. The gateway
/// ignores all of them: a local prompt must not leave through a proxy, and
/// the public provider's proxy is named explicitly (`PUBLIC_LLM_PROXY`).
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("local_url", &redact_url(&self.local_url))
            .field("local_api_key", &self.local_api_key)
            .field("local_model", &self.local_model)
            .field("public_url", &redact_url(&self.public_url))
            .field("public_provider", &self.public_provider)
            .field("public_api_key", &self.public_api_key)
            .field("public_model", &self.public_model)
            .field("timeout", &self.timeout)
            .field(
                "public_proxy",
                &self.public_proxy.as_deref().map(redact_url),
            )
            .field("ignored_proxy_variables", &self.ignored_proxy_variables)
            .finish()
    }
}

/// `raw` with the password of its user info, if any, replaced.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Cannot fail: the URL has a host, since it has a password.
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

impl ProviderConfig {
    /// Reads and validates the provider variables of `env`; `Err` names each
    /// invalid one.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigError>> {
        let mut errors = ConfigErrors::default();
        let mut stripped_urls = Vec::new();
        let mut api_url =
            |variable: &'static str, url: String, api: Api| match spec::strip_api_suffix(&url, api)
            {
                Some(base) => {
                    stripped_urls.push((variable, spec::shown_url(&base)));
                    base
                }
                None => url,
            };
        let local_url = errors.or(
            base_url(
                "LOCAL_LLM_URL",
                env.get("LOCAL_LLM_URL").unwrap_or(DEFAULT_LOCAL_LLM_URL),
            ),
            String::new(),
        );
        let local_url = api_url("LOCAL_LLM_URL", local_url, Api::Ollama);
        let public_url = base_url(
            "PUBLIC_LLM_URL",
            env.get("PUBLIC_LLM_URL")
                .unwrap_or(config::DEFAULT_PUBLIC_LLM_URL),
        );
        // When the provider is guessed from the URL, a bad URL is reported once.
        let public_provider = if public_url.is_err() && env.get("PUBLIC_LLM_PROVIDER").is_none() {
            Api::Openai
        } else {
            errors.or(config::public_provider(env), Api::Openai)
        };
        let public_url = errors.or(public_url, String::new());
        let public_url = api_url("PUBLIC_LLM_URL", public_url, public_provider);
        let local_api_key = errors.or(api_key(env, "LOCAL_LLM_API_KEY"), None);
        let public_api_key = errors.or(api_key(env, "PUBLIC_LLM_API_KEY"), None);
        let timeout = errors.or(
            timeout(env),
            Duration::from_secs(DEFAULT_PROVIDER_TIMEOUT_SECONDS),
        );
        let public_proxy = match env.get("PUBLIC_LLM_PROXY") {
            Some(value) => errors.or(base_url("PUBLIC_LLM_PROXY", value).map(Some), None),
            None => None,
        };
        let default_public_model = match public_provider {
            Api::Anthropic => DEFAULT_ANTHROPIC_MODEL,
            Api::Openai | Api::Ollama => DEFAULT_OPENAI_MODEL,
        };
        let local_model = env
            .get("LOCAL_LLM_MODEL")
            .unwrap_or(DEFAULT_LOCAL_LLM_MODEL)
            .to_owned();
        let local_models = errors.or(
            model_list(env, "LOCAL_LLM_MODELS", &local_model),
            Vec::new(),
        );
        let public_models = errors.or(model_list(env, "PUBLIC_LLM_MODELS", "*"), Vec::new());
        errors.into_result(ProviderConfig {
            local_url,
            local_api_key,
            local_model,
            local_models,
            public_url,
            public_provider,
            public_api_key,
            public_model: env
                .get("PUBLIC_LLM_MODEL")
                .unwrap_or(default_public_model)
                .to_owned(),
            public_models,
            stripped_urls,
            timeout,
            public_proxy,
            ignored_proxy_variables: PROXY_VARIABLES
                .into_iter()
                .filter(|name| env.get(name).is_some())
                .collect(),
        })
    }

    /// The public provider's id: `openai` or `anthropic`.
    pub fn public_id(&self) -> ProviderId {
        ProviderId::new(self.public_provider.as_str())
    }

    /// The two built-in providers, `local` and the public one, as the
    /// policy's providers see them.
    pub fn builtins(&self) -> Builtins {
        let globs = |list: &[String]| {
            // Each glob was checked when the list was read.
            ModelGlobs::new(list.to_vec()).unwrap_or_else(|_| {
                ModelGlobs::new(Vec::new()).unwrap_or_else(|_| unreachable!("no globs"))
            })
        };
        let timeouts = Timeouts::all(self.timeout);
        Builtins {
            local: ProviderSpec {
                id: ProviderId::local(),
                api: Api::Ollama,
                url: self.local_url.clone(),
                trust: Route::Local,
                model: self.local_model.clone(),
                models: globs(&self.local_models),
                api_key_env: Some("LOCAL_LLM_API_KEY".to_owned()),
                proxy: None,
                retries: 0,
                timeouts,
                circuit: CircuitSettings::default(),
                builtin: true,
            },
            public: ProviderSpec {
                id: self.public_id(),
                api: self.public_provider,
                url: self.public_url.clone(),
                trust: Route::Public,
                model: self.public_model.clone(),
                models: globs(&self.public_models),
                api_key_env: Some("PUBLIC_LLM_API_KEY".to_owned()),
                proxy: self.public_proxy.clone(),
                retries: 0,
                timeouts,
                circuit: CircuitSettings::default(),
                builtin: true,
            },
            timeout: self.timeout,
        }
    }
}

/// The built-in providers, from the environment, and the timeout every
/// provider's phases default to.
#[derive(Debug, Clone, PartialEq)]
pub struct Builtins {
    /// `local`: `LOCAL_LLM_*`.
    pub local: ProviderSpec,
    /// `openai` or `anthropic`: `PUBLIC_LLM_*`.
    pub public: ProviderSpec,
    /// `PROVIDER_TIMEOUT_SECONDS`.
    pub timeout: Duration,
}

impl Builtins {
    /// The built-ins of an environment with no provider variable set.
    pub fn defaults() -> Self {
        ProviderConfig::from_env(&Env::default())
            .map(|c| c.builtins())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// A comma-separated list of model globs; unset: `default` alone.
fn model_list(env: &Env, variable: &str, default: &str) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = env.get(variable) else {
        return Ok(vec![default.to_owned()]);
    };
    let globs: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    if globs.is_empty() {
        return Ok(vec![default.to_owned()]);
    }
    ModelGlobs::new(globs.clone()).map_err(|why| ConfigError::new(variable, why))?;
    Ok(globs)
}

/// An `http(s)://host…` URL with any trailing `/` removed, so that endpoint
/// paths can be appended to it as they are.
fn base_url(variable: &str, value: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(value).map_err(|e| {
        // Unparsed, its password cannot be told apart: quote it only without
        // user info.
        let message = if value.contains('@') {
            format!("invalid URL (not shown, it holds user info): {e}")
        } else {
            format!("invalid URL {value:?}: {e}")
        };
        ConfigError::new(variable, message)
    })?;
    let shown = redact_url(value);
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::new(
            variable,
            format!("invalid URL {shown:?}: expected an http:// or https:// URL with a host"),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::new(
            variable,
            format!("invalid URL {shown:?}: a base URL takes no query or fragment"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// An optional key. It must be usable in an HTTP header; the message never
/// quotes it.
fn api_key(env: &Env, variable: &str) -> Result<Option<Secret>, ConfigError> {
    let Some(key) = env.get(variable) else {
        return Ok(None);
    };
    if !key.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return Err(ConfigError::new(
            variable,
            "invalid value: a key may hold only visible ASCII characters and spaces",
        ));
    }
    Ok(Some(Secret::new(key)))
}

fn timeout(env: &Env) -> Result<Duration, ConfigError> {
    const VAR: &str = "PROVIDER_TIMEOUT_SECONDS";
    let Some(raw) = env.get(VAR) else {
        return Ok(Duration::from_secs(DEFAULT_PROVIDER_TIMEOUT_SECONDS));
    };
    let invalid = || {
        ConfigError::new(
            VAR,
            format!("invalid value {raw:?}: expected a number of seconds > 0"),
        )
    };
    let seconds: f64 = raw.trim().parse().map_err(|_| invalid())?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(invalid());
    }
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| ConfigError::new(VAR, format!("invalid value {raw:?}: too large")))?;
    // A value so small that it rounds to zero would disable the timeout.
    if duration.is_zero() {
        return Err(invalid());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<ProviderConfig, ConfigError> {
        ProviderConfig::from_env(&Env::from_pairs(pairs.iter().copied())).map_err(|mut errors| {
            assert_eq!(errors.len(), 1, "{errors:?}");
            errors.remove(0)
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.local_url, DEFAULT_LOCAL_LLM_URL);
        assert_eq!(c.local_api_key, None);
        assert_eq!(c.local_model, DEFAULT_LOCAL_LLM_MODEL);
        assert_eq!(c.public_url, config::DEFAULT_PUBLIC_LLM_URL);
        assert_eq!(c.public_provider, Api::Openai);
        assert_eq!(c.public_api_key, None);
        assert_eq!(c.public_model, DEFAULT_OPENAI_MODEL);
        assert_eq!(c.timeout, Duration::from_secs(60));
    }

    #[test]
    fn anthropic_gets_its_own_default_model() {
        let c = config(&[("PUBLIC_LLM_URL", "https://api.anthropic.com/")]).unwrap();
        assert_eq!(c.public_provider, Api::Anthropic);
        assert_eq!(c.public_model, DEFAULT_ANTHROPIC_MODEL);
        assert_eq!(c.public_url, "https://api.anthropic.com");
        let c = config(&[
            ("PUBLIC_LLM_PROVIDER", "anthropic"),
            ("PUBLIC_LLM_MODEL", "claude-sonnet-4-5"),
        ])
        .unwrap();
        assert_eq!(c.public_model, "claude-sonnet-4-5");
    }

    #[test]
    fn trailing_slashes_are_ignored_and_paths_kept() {
        let c = config(&[
            ("LOCAL_LLM_URL", "http://ollama:11434/"),
            ("PUBLIC_LLM_URL", "https://proxy.example/openai/"),
        ])
        .unwrap();
        assert_eq!(c.local_url, "http://ollama:11434");
        assert_eq!(c.public_url, "https://proxy.example/openai");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = config(&[
            ("LOCAL_LLM_URL", ""),
            ("LOCAL_LLM_API_KEY", ""),
            ("PUBLIC_LLM_MODEL", ""),
            ("PROVIDER_TIMEOUT_SECONDS", ""),
        ])
        .unwrap();
        assert_eq!(c.local_url, DEFAULT_LOCAL_LLM_URL);
        assert_eq!(c.local_api_key, None);
        assert_eq!(c.public_model, DEFAULT_OPENAI_MODEL);
        assert_eq!(c.timeout, Duration::from_secs(60));
    }

    #[test]
    fn fractional_timeouts_are_accepted() {
        let c = config(&[("PROVIDER_TIMEOUT_SECONDS", "0.25")]).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("PROVIDER_TIMEOUT_SECONDS", "0"),
            ("PROVIDER_TIMEOUT_SECONDS", "-1"),
            ("PROVIDER_TIMEOUT_SECONDS", "ten"),
            ("PROVIDER_TIMEOUT_SECONDS", "NaN"),
            ("PROVIDER_TIMEOUT_SECONDS", "inf"),
            ("PROVIDER_TIMEOUT_SECONDS", "1e300"),
            ("PROVIDER_TIMEOUT_SECONDS", "1e-12"),
            ("LOCAL_LLM_URL", "not a url"),
            ("LOCAL_LLM_URL", "ftp://host"),
            ("LOCAL_LLM_URL", "http://host/?x=1"),
            ("PUBLIC_LLM_URL", "localhost:11434"),
            ("PUBLIC_LLM_PROVIDER", "azure"),
            ("LOCAL_LLM_API_KEY", "line\nbreak"),
            ("PUBLIC_LLM_API_KEY", "caf\u{e9}"),
        ] {
            let err = config(&[(var, value)]).expect_err(value);
            assert_eq!(err.variable, var, "{value:?}");
            assert!(err.to_string().starts_with(&format!("{var}: ")), "{err}");
        }
    }

    #[test]
    fn every_invalid_variable_is_named_at_once() {
        let env = Env::from_pairs([
            ("LOCAL_LLM_URL", "ftp://host"),
            ("PUBLIC_LLM_URL", "localhost:11434"),
            ("PUBLIC_LLM_PROVIDER", "azure"),
            ("PUBLIC_LLM_API_KEY", "line\nbreak"),
            ("PROVIDER_TIMEOUT_SECONDS", "abc"),
        ]);
        let errors = ProviderConfig::from_env(&env).expect_err("invalid");
        let variables: Vec<&str> = errors.iter().map(|e| e.variable.as_str()).collect();
        assert_eq!(
            variables,
            [
                "LOCAL_LLM_URL",
                "PUBLIC_LLM_PROVIDER",
                "PUBLIC_LLM_URL",
                "PUBLIC_LLM_API_KEY",
                "PROVIDER_TIMEOUT_SECONDS"
            ]
        );
        // The provider guessed from a URL that is not one: the URL, once.
        let env = Env::from_pairs([("PUBLIC_LLM_URL", "x")]);
        let errors = ProviderConfig::from_env(&env).expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn key_errors_do_not_quote_the_key() {
        let err = config(&[("PUBLIC_LLM_API_KEY", "sk-canary-\u{7f}")]).unwrap_err();
        assert!(!err.to_string().contains("sk-canary"), "{err}");
    }

    #[test]
    fn debug_redacts_keys() {
        let c = config(&[
            ("LOCAL_LLM_API_KEY", "ollama-canary-4242"),
            ("PUBLIC_LLM_API_KEY", "sk-canary-4242"),
        ])
        .unwrap();
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("canary-4242"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert_eq!(
            c.public_api_key.as_ref().map(Secret::expose),
            Some("sk-canary-4242")
        );
    }

    #[test]
    fn public_llm_proxy_is_a_validated_url_and_environment_proxies_are_named() {
        let c = config(&[
            ("PUBLIC_LLM_PROXY", "http://me:proxy-canary-pw@squid:3128"),
            ("https_proxy", "http://corp:8080"),
            ("ALL_PROXY", "http://corp:8080"),
        ])
        .unwrap();
        assert_eq!(
            c.public_proxy.as_deref(),
            Some("http://me:proxy-canary-pw@squid:3128")
        );
        assert_eq!(c.ignored_proxy_variables, ["https_proxy", "ALL_PROXY"]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("proxy-canary-pw"), "{debug}");
        assert_eq!(config(&[]).unwrap().public_proxy, None);
        for bad in [
            "squid:3128",
            "socks5://squid:1080",
            "http://me:proxy-canary-pw@/",
        ] {
            let err = config(&[("PUBLIC_LLM_PROXY", bad)]).unwrap_err();
            assert_eq!(err.variable, "PUBLIC_LLM_PROXY", "{bad}");
            assert!(!err.to_string().contains("proxy-canary-pw"), "{err}");
        }
    }

    #[test]
    fn debug_and_errors_redact_url_passwords() {
        let c = config(&[("LOCAL_LLM_URL", "http://me:url-canary-pw@ollama:11434/")]).unwrap();
        assert_eq!(c.local_url, "http://me:url-canary-pw@ollama:11434");
        let debug = format!("{c:?}");
        assert!(!debug.contains("url-canary-pw"), "{debug}");
        assert!(debug.contains("http://me:redacted@ollama:11434"), "{debug}");
        let err = config(&[("PUBLIC_LLM_URL", "https://me:url-canary-pw@proxy/?a=b")]).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_LLM_URL");
        assert!(!err.to_string().contains("url-canary-pw"), "{err}");
    }

    #[test]
    fn model_lists_default_to_the_model_and_to_any() {
        let c = config(&[("LOCAL_LLM_MODEL", "qwen3")]).unwrap();
        assert_eq!(c.local_models, ["qwen3"]);
        assert_eq!(c.public_models, ["*"]);
        let c = config(&[
            ("LOCAL_LLM_MODELS", "llama3*, qwen2.5-coder*,"),
            ("PUBLIC_LLM_MODELS", "gpt-*"),
        ])
        .unwrap();
        assert_eq!(c.local_models, ["llama3*", "qwen2.5-coder*"]);
        assert_eq!(c.public_models, ["gpt-*"]);
        let b = c.builtins();
        assert!(b.local.models.matches("LLAMA3.2"));
        assert!(!b.public.models.matches("claude-3"));
        let err = config(&[("LOCAL_LLM_MODELS", "llama[")]).unwrap_err();
        assert_eq!(err.variable, "LOCAL_LLM_MODELS");
    }

    #[test]
    fn api_suffixes_of_base_urls_are_stripped_and_noted() {
        let c = config(&[
            ("PUBLIC_LLM_URL", "https://api.openai.com/v1/"),
            ("LOCAL_LLM_URL", "http://ollama:11434/api"),
        ])
        .unwrap();
        assert_eq!(c.public_url, "https://api.openai.com");
        assert_eq!(c.local_url, "http://ollama:11434");
        assert_eq!(
            c.stripped_urls,
            [
                ("LOCAL_LLM_URL", "http://ollama:11434".to_owned()),
                ("PUBLIC_LLM_URL", "https://api.openai.com".to_owned())
            ]
        );
        let b = c.builtins();
        assert_eq!(b.public.id, "openai");
        assert_eq!(b.local.id, "local");
        assert_eq!(b.local.trust, Route::Local);
        assert_eq!(b.public.trust, Route::Public);
    }
}
