//! Configuration that spans stages: the public provider that `route: public`
//! resolves to, read from the [`Env`] snapshot.

use crate::env::{ConfigError, Env};
use crate::names::Api;

/// Default base URL of the public provider.
pub const DEFAULT_PUBLIC_LLM_URL: &str = "https://api.openai.com";

/// The provider that `route: public` resolves to: `PUBLIC_LLM_PROVIDER` when
/// set, else `anthropic` when the host of `PUBLIC_LLM_URL` contains
/// `anthropic` (any case), else `openai`. The URL is checked only when the
/// provider is guessed from it.
pub fn public_provider(env: &Env) -> Result<Api, ConfigError> {
    if let Some(v) = env.get("PUBLIC_LLM_PROVIDER") {
        return match v.to_ascii_lowercase().parse::<Api>() {
            Ok(provider) if provider != Api::Ollama => Ok(provider),
            _ => Err(ConfigError::new(
                "PUBLIC_LLM_PROVIDER",
                format!("invalid value {v:?}: expected `openai` or `anthropic`"),
            )),
        };
    }
    let url = env.get("PUBLIC_LLM_URL").unwrap_or(DEFAULT_PUBLIC_LLM_URL);
    let parsed = url::Url::parse(url)
        .map_err(|e| ConfigError::new("PUBLIC_LLM_URL", format!("invalid URL {url:?}: {e}")))?;
    match parsed.host_str() {
        Some(host) if matches!(parsed.scheme(), "http" | "https") => {
            Ok(if host.to_ascii_lowercase().contains("anthropic") {
                Api::Anthropic
            } else {
                Api::Openai
            })
        }
        _ => Err(ConfigError::new(
            "PUBLIC_LLM_URL",
            format!("invalid URL {url:?}: expected an http:// or https:// URL with a host"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(pairs: &[(&str, &str)]) -> Result<Api, ConfigError> {
        public_provider(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn public_provider_is_guessed_from_the_host_only() {
        assert_eq!(provider(&[]), Ok(Api::Openai));
        assert_eq!(
            provider(&[("PUBLIC_LLM_URL", "https://API.Anthropic.com")]),
            Ok(Api::Anthropic)
        );
        assert_eq!(
            provider(&[(
                "PUBLIC_LLM_URL",
                "https://proxy.example/anthropic?x=anthropic"
            )]),
            Ok(Api::Openai)
        );
    }

    #[test]
    fn explicit_provider_wins_and_bad_values_name_the_variable() {
        assert_eq!(
            provider(&[
                ("PUBLIC_LLM_URL", "https://api.anthropic.com"),
                ("PUBLIC_LLM_PROVIDER", "openai")
            ]),
            Ok(Api::Openai)
        );
        let err = provider(&[("PUBLIC_LLM_PROVIDER", "azure")]).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_LLM_PROVIDER");
        let err = provider(&[("PUBLIC_LLM_URL", "not a url")]).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_LLM_URL");
    }

    #[test]
    fn empty_values_count_as_unset() {
        assert_eq!(
            provider(&[("PUBLIC_LLM_PROVIDER", ""), ("PUBLIC_LLM_URL", "")]),
            Ok(Api::Openai)
        );
    }
}
