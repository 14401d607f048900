//! The OpenAI public provider: `POST /v1/chat/completions`, not streamed.

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::config::{ProviderConfigError, Secret};
use super::http::{Endpoint, parse_json};
use super::{BoxFuture, ChatProvider, ChatRequest, ProviderError, Reply};
use crate::chat::ChatMessage;

/// The JSON body of a chat call: the messages as received. `stream` is left
/// out: OpenAI's default is not to stream.
pub fn request_body(model: &str, messages: &[ChatMessage]) -> Value {
    json!({"model": model, "messages": messages})
}

/// The reply of a 2xx body: `choices[0].message.content` (a `null` content,
/// as for a refusal or a tool call, counts as missing).
pub fn parse_reply(body: &[u8]) -> Result<String, ProviderError> {
    parse_json(body)?
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::bad_response("has no choices[0].message.content"))
}

/// A client for `POST {PUBLIC_LLM_URL}/v1/chat/completions`.
pub struct OpenAi {
    /// `None` without `PUBLIC_LLM_API_KEY`: every call fails before the network.
    endpoint: Option<Endpoint>,
}

impl OpenAi {
    /// Sends `Authorization: Bearer <key>`.
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<&Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, ProviderConfigError> {
        let endpoint = match api_key {
            None => None,
            Some(key) => Some(
                Endpoint::new(client, base_url, "/v1/chat/completions", timeout)
                    .with_secret_header(
                        AUTHORIZATION,
                        &format!("Bearer {}", key.expose()),
                        "PUBLIC_LLM_API_KEY",
                    )?,
            ),
        };
        Ok(OpenAi { endpoint })
    }
}

impl ChatProvider for OpenAi {
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
    use crate::chat::Role;
    use crate::providers::FailureCategory;

    #[test]
    fn request_passes_messages_as_received() {
        let messages = [
            ChatMessage {
                role: Role::System,
                content: "be brief".into(),
            },
            ChatMessage::user("hi"),
        ];
        assert_eq!(
            request_body("gpt-4o-mini", &messages),
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn reply_is_the_first_choice() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1764064800,
            "model":"gpt-4o-mini-2024-07-18","choices":[
              {"index":0,"message":{"role":"assistant","content":"first","refusal":null},
               "logprobs":null,"finish_reason":"stop"},
              {"index":1,"message":{"role":"assistant","content":"second"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        assert_eq!(parse_reply(body).unwrap(), "first");
    }

    #[test]
    fn a_body_without_the_reply_is_a_bad_response() {
        for body in [
            &br#"{"choices":[]}"#[..],
            br#"{"object":"chat.completion"}"#,
            br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"no"}}]}"#,
            br#"{"choices":[{"text":"legacy completion"}]}"#,
        ] {
            let err = parse_reply(body).unwrap_err();
            assert_eq!(err.category(), FailureCategory::BadResponse);
            assert_eq!(
                err.message(),
                "provider's reply has no choices[0].message.content"
            );
        }
    }
}
