//! The configuration snapshot: the environment (and an optional `.env`), read
//! once into an [`Env`] so that every consumer, and every test, sees one
//! consistent set of values without touching the process environment.
//!
//! A leaf: it imports nothing of the crate, so the policy language, the
//! providers, the audit and the server all read their variables from it.

use std::collections::HashMap;
use std::path::Path;

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

/// A configuration variable with an invalid value: the one error of every
/// stage that reads the environment (server, providers, audit, logging).
/// `Display` gives `VARIABLE: message`; the message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable's name (`PROVIDER_TIMEOUT_SECONDS`).
    pub variable: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.into(),
            message: message.into(),
        }
    }

    /// Several errors, one `VARIABLE: message` line each.
    pub fn lines(errors: &[ConfigError]) -> String {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    }

    /// `invalid value "…": expected …`, for a variable whose value may be
    /// shown (never a key's).
    pub fn invalid(variable: impl Into<String>, value: &str, expected: &str) -> Self {
        Self::new(variable, format!("invalid value {value:?}: {expected}"))
    }
}

/// The invalid variables of one stage, gathered so that one run names them
/// all: each value is read with [`ConfigErrors::or`], which keeps a stand-in
/// when it is invalid, and [`ConfigErrors::into_result`] refuses the whole
/// when any was.
#[derive(Debug, Default)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The value read, or `stand_in` with the error kept.
    pub fn or<T>(&mut self, read: Result<T, ConfigError>, stand_in: T) -> T {
        read.unwrap_or_else(|e| {
            self.0.push(e);
            stand_in
        })
    }

    /// `value` when every variable was valid, else every error, in the order read.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// A boolean variable's value: `true`, `false`, `1` or `0`, any case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}
