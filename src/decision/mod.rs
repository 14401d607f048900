//! The decision: which provider a chat request goes to, and why.
//! STUB: owned by the engine work.

use std::sync::Arc;

use serde::Serialize;

use crate::policy::Route;

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

/// Where a request goes and why. STUB: owned by the engine work.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The route of the rule that held, or the default.
    pub route: Route,
    /// The concrete provider.
    pub provider: Provider,
    /// The id of the rule that held; `None` for the default decision.
    pub rule: Option<Arc<str>>,
    /// The reason code.
    pub reason: Arc<str>,
    /// The policy version that decided.
    pub policy_version: Arc<str>,
}

/// A decision with its trace: the `/v1/decide` body. STUB: owned by the engine work.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {}
