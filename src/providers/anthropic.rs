//! The Anthropic public provider: `POST /v1/messages`, not streamed. Its API
//! takes system instructions apart from the conversation and requires a
//! `max_tokens`, so the request is translated rather than passed through.

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::config::{ProviderConfigError, Secret};
use super::http::{Endpoint, parse_json};
use super::{BoxFuture, ChatProvider, ChatRequest, ProviderError, Reply};
use crate::chat::{ChatMessage, Role};

/// The `anthropic-version` header sent with every call.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent with every call. The chat API has no field for it,
/// and Anthropic requires one; 4096 is the output limit of the smallest
/// Claude 3 models, so every current model accepts it, and it is long enough
/// for a chat answer.
pub const MAX_TOKENS: u32 = 4096;

/// The JSON body of a chat call: the system messages' contents, in order,
/// joined by `\n` as `system` (left out when there are none), the other
/// messages in order.
pub fn request_body(model: &str, messages: &[ChatMessage]) -> Value {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let conversation: Vec<&ChatMessage> =
        messages.iter().filter(|m| m.role != Role::System).collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(MAX_TOKENS));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n")));
    }
    body.insert("messages".into(), json!(conversation));
    Value::Object(body)
}

/// The reply of a 2xx body: the `text` of every `text` block of `content`,
/// concatenated in order. Other blocks (thinking, tool use) are skipped; a
/// `content` with no text block gives an empty reply, as the model said
/// nothing.
pub fn parse_reply(body: &[u8]) -> Result<String, ProviderError> {
    let missing = || ProviderError::bad_response("has no content");
    let value = parse_json(body)?;
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(missing)?;
    let mut reply = String::new();
    for block in blocks {
        if block.get("type").and_then(Value::as_str) == Some("text") {
            let text = block
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::bad_response("has a text block without text"))?;
            reply.push_str(text);
        }
    }
    Ok(reply)
}

/// A client for `POST {PUBLIC_LLM_URL}/v1/messages`.
pub struct Anthropic {
    /// `None` without `PUBLIC_LLM_API_KEY`: every call fails before the network.
    endpoint: Option<Endpoint>,
}

impl Anthropic {
    /// Sends `x-api-key: <key>` and `anthropic-version`.
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<&Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, ProviderConfigError> {
        let endpoint = match api_key {
            None => None,
            Some(key) => Some(
                Endpoint::new(client, base_url, "/v1/messages", timeout)
                    .with_header(
                        HeaderName::from_static("anthropic-version"),
                        HeaderValue::from_static(ANTHROPIC_VERSION),
                    )
                    .with_secret_header(
                        HeaderName::from_static("x-api-key"),
                        key.expose(),
                        "PUBLIC_LLM_API_KEY",
                    )?,
            ),
        };
        Ok(Anthropic { endpoint })
    }
}

impl ChatProvider for Anthropic {
    fn chat<'a>(&'a self, request: ChatRequest<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let endpoint = self
                .endpoint
                .as_ref()
                .ok_or_else(ProviderError::missing_public_key)?;
            endpoint.chat(request, request_body, parse_reply).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureCategory;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn system_messages_are_joined_and_taken_out_of_the_conversation() {
        let messages = [
            msg(Role::System, "be brief"),
            msg(Role::User, "hi"),
            msg(Role::System, "answer in French"),
            msg(Role::Assistant, "salut"),
            msg(Role::User, "again"),
        ];
        assert_eq!(
            request_body("claude-3-5-haiku-latest", &messages),
            json!({"model": "claude-3-5-haiku-latest", "max_tokens": MAX_TOKENS,
                   "system": "be brief\nanswer in French",
                   "messages": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "salut"},
                                {"role": "user", "content": "again"}]})
        );
    }

    #[test]
    fn system_is_left_out_when_there_is_none_but_kept_when_empty() {
        let body = request_body("m", &[msg(Role::User, "hi")]);
        assert!(body.get("system").is_none(), "{body}");
        let body = request_body("m", &[msg(Role::System, ""), msg(Role::User, "hi")]);
        assert_eq!(body["system"], json!(""));
    }

    #[test]
    fn reply_concatenates_text_blocks_only() {
        let body = br#"{"id":"msg_01","type":"message","role":"assistant",
            "model":"claude-3-5-haiku-20241022","content":[
              {"type":"thinking","thinking":"hmm","signature":"x"},
              {"type":"text","text":"Hello, "},
              {"type":"tool_use","id":"t","name":"f","input":{}},
              {"type":"text","text":"world"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":3,"output_tokens":2}}"#;
        assert_eq!(parse_reply(body).unwrap(), "Hello, world");
        assert_eq!(parse_reply(br#"{"content":[]}"#).unwrap(), "");
    }

    #[test]
    fn a_body_without_content_is_a_bad_response() {
        for body in [
            &br#"{"type":"message"}"#[..],
            br#"{"content":"text"}"#,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
            br#"{"content":[{"type":"text"}]}"#,
        ] {
            let err = parse_reply(body).unwrap_err();
            assert_eq!(err.category(), FailureCategory::BadResponse, "{err}");
        }
    }
}
