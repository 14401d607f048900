//! The chat request as every entry point receives it (`/v1/chat`, `/v1/decide`,
//! `policy-mesh decide`, policy test cases).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::Role;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `user`, `assistant` or `system`.
    pub role: Role,
    /// The text, which may be empty.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
}
