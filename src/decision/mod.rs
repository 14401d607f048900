//! The decision: which provider a chat request goes to, and why.
//! STUB: owned by the engine work.

use serde::Serialize;

/// A concrete provider a request is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The Ollama-compatible server at `LOCAL_LLM_URL`.
    Local,
    /// OpenAI's chat completions API at `PUBLIC_LLM_URL`.
    Openai,
    /// Anthropic's messages API at `PUBLIC_LLM_URL`.
    Anthropic,
}

impl Provider {
    /// The word used in APIs, metrics and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

/// A decision with its trace: the body of `POST /v1/decide`.
/// STUB: owned by the engine work.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {}
