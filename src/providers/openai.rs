//! The OpenAI public provider: `POST /v1/chat/completions`, whole or streamed
//! as server-sent `chat.completion.chunk` events ending with `[DONE]`.

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::config::Secret;
use super::http::{
    Endpoint, Framing, HttpProvider, ParseReply, RequestBody, WireFormat, parse_json,
};
use super::stream::{Decoder, StreamEvent, Usage, count, frame_json};
use super::{ChatRequest, ProviderError, Reply};
use crate::env::ConfigError;

/// The JSON body of a chat call: the messages as received and each
/// generation setting the client gave, under OpenAI's own names. `stream` is
/// left out of a whole call (OpenAI's default is not to stream); a streamed
/// one asks for the usage chunk only when the client did.
pub fn request_body(request: &ChatRequest<'_>, stream: bool) -> Value {
    let o = request.options;
    let mut body = json!({"model": request.model, "messages": request.messages});
    let mut set = |key: &str, value: Value| {
        body[key] = value;
    };
    if let Some(t) = o.temperature {
        set("temperature", json!(t));
    }
    if let Some(p) = o.top_p {
        set("top_p", json!(p));
    }
    if let Some(n) = o.max_tokens {
        set("max_tokens", json!(n));
    }
    if let Some(n) = o.max_completion_tokens {
        set("max_completion_tokens", json!(n));
    }
    if !o.stop.is_empty() {
        set("stop", json!(o.stop));
    }
    if let Some(user) = &o.user {
        set("user", json!(user));
    }
    if let Some(seed) = o.seed {
        set("seed", json!(seed));
    }
    if let Some(p) = o.presence_penalty {
        set("presence_penalty", json!(p));
    }
    if let Some(p) = o.frequency_penalty {
        set("frequency_penalty", json!(p));
    }
    if let Some(bias) = &o.logit_bias {
        set("logit_bias", Value::Object(bias.clone()));
    }
    if stream {
        set("stream", json!(true));
        if o.include_usage {
            set("stream_options", json!({"include_usage": true}));
        }
    }
    body
}

/// The `usage` of a completion or chunk, when it has one.
fn usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: count(value, "/usage/prompt_tokens")?,
        completion_tokens: count(value, "/usage/completion_tokens")?,
    })
}

/// The reply of a 2xx body: `choices[0].message.content` (a `null` content,
/// as for a refusal or a tool call, counts as missing), with its
/// `finish_reason` and `usage`.
pub fn parse_reply(body: &[u8]) -> Result<Reply, ProviderError> {
    let value = parse_json(body)?;
    let content = value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::bad_response("has no choices[0].message.content"))?;
    Ok(Reply {
        content: content.to_owned(),
        finish_reason: value
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        usage: usage(&value),
    })
}

/// Reads OpenAI's chunk stream: `choices[0].delta.content` pieces, the
/// `finish_reason`, the usage chunk when asked for, then `[DONE]`.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    finished: bool,
}

impl Decoder for ChunkDecoder {
    fn frame(
        &mut self,
        _event: Option<&str>,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if data.trim() == "[DONE]" {
            return if self.finished {
                Ok(true)
            } else {
                Err(ProviderError::bad_response(
                    "stream ended without a finish_reason",
                ))
            };
        }
        let value = frame_json(data)?;
        if value.get("error").is_some() {
            return Err(ProviderError::in_stream());
        }
        if let Some(text) = value
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            && !text.is_empty()
        {
            out.push(StreamEvent::Text(text.to_owned()));
        }
        if let Some(reason) = value
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            self.finished = true;
            out.push(StreamEvent::Finish(reason.to_owned()));
        }
        out.extend(usage(&value).map(StreamEvent::Usage));
        Ok(false)
    }
}

/// OpenAI's `/v1/chat/completions` format.
#[derive(Debug)]
pub struct OpenAiApi;

impl WireFormat for OpenAiApi {
    const FRAMING: Framing = Framing::Sse;
    const REQUEST_BODY: RequestBody = request_body;
    const PARSE_REPLY: ParseReply = parse_reply;
    type Decoder = ChunkDecoder;
}

/// A client for `POST {PUBLIC_LLM_URL}/v1/chat/completions`.
pub type OpenAi = HttpProvider<OpenAiApi>;

impl OpenAi {
    /// Sends `Authorization: Bearer <key>`; without a key every call fails
    /// before the network.
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<&Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, ConfigError> {
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
        Ok(HttpProvider::from_endpoint(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatMessage;
    use crate::names::FailureCategory;
    use crate::names::Role;
    use crate::providers::GenerationOptions;
    use crate::providers::stream::tests::{run, text};

    fn body(messages: &[ChatMessage], options: &GenerationOptions, stream: bool) -> Value {
        request_body(
            &ChatRequest {
                model: "gpt-4o-mini",
                messages,
                options,
            },
            stream,
        )
    }

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
            body(&messages, &GenerationOptions::default(), false),
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn settings_pass_under_their_own_names_and_a_stream_asks_for_usage_when_told() {
        let options = GenerationOptions {
            temperature: Some(0.5),
            top_p: None,
            max_tokens: Some(10),
            max_completion_tokens: None,
            stop: vec!["a".into(), "b".into()],
            user: Some("u1".into()),
            include_usage: true,
            seed: Some(7),
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            logit_bias: json!({"50256": -100}).as_object().cloned(),
        };
        let b = body(&[ChatMessage::user("hi")], &options, true);
        assert_eq!(b["seed"], json!(7));
        assert_eq!(b["presence_penalty"], json!(0.25));
        assert_eq!(b["frequency_penalty"], json!(-0.5));
        assert_eq!(b["logit_bias"], json!({"50256": -100}));
        assert_eq!(b["temperature"], json!(0.5));
        assert!(b.get("top_p").is_none());
        assert_eq!(b["max_tokens"], json!(10));
        assert!(b.get("max_completion_tokens").is_none());
        assert_eq!(b["stop"], json!(["a", "b"]));
        assert_eq!(b["user"], json!("u1"));
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        let plain = GenerationOptions::default();
        let b = body(&[ChatMessage::user("hi")], &plain, true);
        assert!(b.get("stream_options").is_none(), "{b}");
    }

    #[test]
    fn reply_is_the_first_choice() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1764064800,
            "model":"gpt-4o-mini-2024-07-18","choices":[
              {"index":0,"message":{"role":"assistant","content":"first","refusal":null},
               "logprobs":null,"finish_reason":"length"},
              {"index":1,"message":{"role":"assistant","content":"second"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(reply.content, "first");
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1
            })
        );
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

    const ROLE: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    const HEL: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
    const LO: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#;
    const STOP: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

    #[tokio::test]
    async fn chunks_become_text_finish_and_usage_up_to_done() {
        let events = run(
            ChunkDecoder::default(),
            vec![
                (Some("message"), ROLE),
                (Some("message"), HEL),
                (Some("message"), LO),
                (Some("message"), STOP),
                (Some("message"), USAGE),
                (Some("message"), "[DONE]"),
            ],
        )
        .await;
        assert_eq!(text(&events), "Hello");
        let tail: Vec<_> = events[2..].iter().map(|e| e.clone().unwrap()).collect();
        assert_eq!(
            tail,
            vec![
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 2
                })
            ]
        );
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_or_with_an_error_event_fails() {
        let events = run(ChunkDecoder::default(), vec![(None, HEL), (None, STOP)]).await;
        assert_eq!(
            events.last().unwrap().as_ref().unwrap_err().category(),
            FailureCategory::BadResponse
        );
        let events = run(ChunkDecoder::default(), vec![(None, HEL), (None, "[DONE]")]).await;
        assert_eq!(
            events.last().unwrap().as_ref().unwrap_err().category(),
            FailureCategory::BadResponse
        );
        let events = run(
            ChunkDecoder::default(),
            vec![
                (None, HEL),
                (
                    None,
                    r#"{"error":{"message":"overloaded sk-canary","type":"server_error"}}"#,
                ),
            ],
        )
        .await;
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.category(), FailureCategory::ServerError);
        assert!(!err.to_string().contains("canary"));
    }
}
