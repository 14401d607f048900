//! Configuration from the environment (and an optional `.env`), read once into
//! an [`Env`] snapshot so that every consumer, and every test, sees one
//! consistent set of values without touching the process environment.

use std::collections::HashMap;
use std::path::Path;

use crate::decision::Provider;
use crate::policy::LoadError;

/// A snapshot of configuration variables. An empty value counts as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment, with `.env` in the working folder filling in
    /// what the environment does not set.
    pub fn from_process() -> Self {
        Self::from_process_and_dotenv(Path::new(".env"))
    }

    /// The process environment, with the dotenv file at `path` (when it exists)
    /// filling in what the environment does not set.
    pub fn from_process_and_dotenv(path: &Path) -> Self {
        let mut vars: HashMap<String, String> = HashMap::new();
        if let Ok(iter) = dotenvy::from_path_iter(path) {
            for (k, v) in iter.flatten() {
                vars.insert(k, v);
            }
        }
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                vars.insert(k, v);
            }
        }
        Env { vars }
    }

    /// A snapshot holding exactly these variables (for tests and embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, or `None` when it is unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Default base URL of the public provider.
pub const DEFAULT_PUBLIC_LLM_URL: &str = "https://api.openai.com";

/// The provider that `route: public` resolves to: `PUBLIC_LLM_PROVIDER` when
/// set, else `anthropic` when the host of `PUBLIC_LLM_URL` contains
/// `anthropic` (any case), else `openai`.
pub fn public_provider(env: &Env) -> Result<Provider, LoadError> {
    let url = env.get("PUBLIC_LLM_URL").unwrap_or(DEFAULT_PUBLIC_LLM_URL);
    let parsed = url::Url::parse(url)
        .map_err(|e| LoadError::whole("PUBLIC_LLM_URL", format!("invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(LoadError::whole(
            "PUBLIC_LLM_URL",
            format!("invalid URL {url:?}: expected an http:// or https:// URL with a host"),
        ));
    }
    match env.get("PUBLIC_LLM_PROVIDER") {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "openai" => Ok(Provider::Openai),
            "anthropic" => Ok(Provider::Anthropic),
            _ => Err(LoadError::whole(
                "PUBLIC_LLM_PROVIDER",
                format!("invalid value {v:?}: expected `openai` or `anthropic`"),
            )),
        },
        None => {
            let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
            Ok(if host.contains("anthropic") {
                Provider::Anthropic
            } else {
                Provider::Openai
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(pairs: &[(&str, &str)]) -> Result<Provider, LoadError> {
        public_provider(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn public_provider_is_guessed_from_the_host_only() {
        assert_eq!(provider(&[]), Ok(Provider::Openai));
        assert_eq!(
            provider(&[("PUBLIC_LLM_URL", "https://API.Anthropic.com")]),
            Ok(Provider::Anthropic)
        );
        assert_eq!(
            provider(&[(
                "PUBLIC_LLM_URL",
                "https://proxy.example/anthropic?x=anthropic"
            )]),
            Ok(Provider::Openai)
        );
    }

    #[test]
    fn explicit_provider_wins_and_bad_values_name_the_variable() {
        assert_eq!(
            provider(&[
                ("PUBLIC_LLM_URL", "https://api.anthropic.com"),
                ("PUBLIC_LLM_PROVIDER", "openai")
            ]),
            Ok(Provider::Openai)
        );
        let err = provider(&[("PUBLIC_LLM_PROVIDER", "azure")]).unwrap_err();
        assert_eq!(err.origin, "PUBLIC_LLM_PROVIDER");
        let err = provider(&[("PUBLIC_LLM_URL", "not a url")]).unwrap_err();
        assert_eq!(err.origin, "PUBLIC_LLM_URL");
    }

    #[test]
    fn empty_values_count_as_unset() {
        assert_eq!(
            provider(&[("PUBLIC_LLM_PROVIDER", ""), ("PUBLIC_LLM_URL", "")]),
            Ok(Provider::Openai)
        );
    }
}
