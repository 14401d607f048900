//! The local provider: an Ollama-compatible `POST /api/chat`, not streamed.

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::config::{ProviderConfigError, Secret};
use super::http::{Endpoint, parse_json};
use super::{BoxFuture, ChatProvider, ChatRequest, ProviderError, Reply};
use crate::chat::ChatMessage;

/// The JSON body of a chat call: the messages as received, `stream: false`.
pub fn request_body(model: &str, messages: &[ChatMessage]) -> Value {
    json!({"model": model, "messages": messages, "stream": false})
}

/// The reply of a 2xx body: `message.content`.
pub fn parse_reply(body: &[u8]) -> Result<String, ProviderError> {
    parse_json(body)?
        .pointer("/message/content")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::bad_response("has no message.content"))
}

/// A client for `POST {LOCAL_LLM_URL}/api/chat`.
pub struct Ollama {
    endpoint: Endpoint,
}

impl Ollama {
    /// Sends `Authorization: Bearer <key>` only when a key is given.
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<&Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, ProviderConfigError> {
        let mut endpoint = Endpoint::new(client, base_url, "/api/chat", timeout);
        if let Some(key) = api_key {
            endpoint = endpoint.with_secret_header(
                AUTHORIZATION,
                &format!("Bearer {}", key.expose()),
                "LOCAL_LLM_API_KEY",
            )?;
        }
        Ok(Ollama { endpoint })
    }
}

impl ChatProvider for Ollama {
    fn chat<'a>(&'a self, request: ChatRequest<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move { self.endpoint.chat(request, request_body, parse_reply).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;
    use crate::providers::FailureCategory;

    #[test]
    fn request_keeps_every_message_in_order_and_disables_streaming() {
        let messages = [
            ChatMessage {
                role: Role::System,
                content: "be brief".into(),
            },
            ChatMessage::user("hi"),
            ChatMessage {
                role: Role::Assistant,
                content: String::new(),
            },
        ];
        assert_eq!(
            request_body("llama3.2", &messages),
            json!({"model": "llama3.2", "stream": false, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""}]})
        );
    }

    #[test]
    fn reply_is_message_content() {
        let body = br#"{"model":"llama3.2","created_at":"2026-11-25T10:00:00Z",
            "message":{"role":"assistant","content":"Bonjour"},"done":true,
            "done_reason":"stop","total_duration":1,"eval_count":2}"#;
        assert_eq!(parse_reply(body).unwrap(), "Bonjour");
        assert_eq!(
            parse_reply(br#"{"message":{"role":"assistant","content":""}}"#).unwrap(),
            ""
        );
    }

    #[test]
    fn a_body_without_the_reply_is_a_bad_response() {
        for body in [
            &br#"{"done":true}"#[..],
            br#"{"message":{"role":"assistant"}}"#,
            br#"{"message":{"content":42}}"#,
            br#"{"error":"model not found"}"#,
            br#"[]"#,
        ] {
            let err = parse_reply(body).unwrap_err();
            assert_eq!(err.category(), FailureCategory::BadResponse);
            assert_eq!(err.message(), "provider's reply has no message.content");
        }
    }
}
