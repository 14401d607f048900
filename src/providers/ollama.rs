//! The local provider: an Ollama-compatible `POST /api/chat`, whole or
//! streamed as NDJSON (one JSON object a line, the last with `done: true`).

use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value, json};

use super::config::Secret;
use super::http::{
    Endpoint, Framing, HttpProvider, ParseReply, RequestBody, WireFormat, parse_json,
};
use super::stream::{Decoder, StreamEvent, Usage, count, frame_json};
use super::{ChatRequest, ProviderError, Reply};
use crate::env::ConfigError;

/// The JSON body of a chat call: the messages as received, `stream` as
/// asked, and the generation settings given, in Ollama's `options`.
pub fn request_body(request: &ChatRequest<'_>, stream: bool) -> Value {
    let o = request.options;
    let mut options = Map::new();
    if let Some(t) = o.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(p) = o.top_p {
        options.insert("top_p".into(), json!(p));
    }
    if let Some(n) = o.max_output_tokens() {
        options.insert("num_predict".into(), json!(n));
    }
    if !o.stop.is_empty() {
        options.insert("stop".into(), json!(o.stop));
    }
    let mut body = json!({"model": request.model, "messages": request.messages, "stream": stream});
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    body
}

/// Ollama's `done_reason` in OpenAI's words.
fn finish_reason(value: &Value) -> String {
    match value.get("done_reason").and_then(Value::as_str) {
        Some("length") => "length",
        _ => "stop",
    }
    .to_owned()
}

/// The token counts of a final object, when it has them.
fn usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: count(value, "/prompt_eval_count")?,
        completion_tokens: count(value, "/eval_count")?,
    })
}

/// The reply of a 2xx body: `message.content`, with `done_reason` and the
/// token counts.
pub fn parse_reply(body: &[u8]) -> Result<Reply, ProviderError> {
    let value = parse_json(body)?;
    let content = value
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::bad_response("has no message.content"))?;
    Ok(Reply {
        content: content.to_owned(),
        finish_reason: Some(finish_reason(&value)),
        usage: usage(&value),
    })
}

/// Reads Ollama's NDJSON stream: each line's `message.content`, then the
/// `done: true` line with the reason and counts. A line with `error` is the
/// server giving up half way.
#[derive(Debug, Default)]
pub struct NdjsonDecoder;

impl Decoder for NdjsonDecoder {
    fn frame(
        &mut self,
        _event: Option<&str>,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let value = frame_json(data)?;
        if value.get("error").is_some() {
            return Err(ProviderError::in_stream());
        }
        if let Some(text) = value.pointer("/message/content").and_then(Value::as_str)
            && !text.is_empty()
        {
            out.push(StreamEvent::Text(text.to_owned()));
        }
        if value.get("done").and_then(Value::as_bool) == Some(true) {
            out.push(StreamEvent::Finish(finish_reason(&value)));
            out.extend(usage(&value).map(StreamEvent::Usage));
            return Ok(true);
        }
        Ok(false)
    }
}

/// Ollama's `/api/chat` format.
#[derive(Debug)]
pub struct OllamaApi;

impl WireFormat for OllamaApi {
    const FRAMING: Framing = Framing::Ndjson;
    const REQUEST_BODY: RequestBody = request_body;
    const PARSE_REPLY: ParseReply = parse_reply;
    type Decoder = NdjsonDecoder;
}

/// A client for `POST {LOCAL_LLM_URL}/api/chat`.
pub type Ollama = HttpProvider<OllamaApi>;

impl Ollama {
    /// Sends `Authorization: Bearer <key>` only when a key is given.
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        api_key: Option<&Secret>,
        timeout: std::time::Duration,
    ) -> Result<Self, ConfigError> {
        let mut endpoint = Endpoint::new(client, base_url, "/api/chat", timeout);
        if let Some(key) = api_key {
            endpoint = endpoint.with_secret_header(
                AUTHORIZATION,
                &format!("Bearer {}", key.expose()),
                "LOCAL_LLM_API_KEY",
            )?;
        }
        Ok(HttpProvider::from_endpoint(Some(endpoint)))
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
                model: "llama3.2",
                messages,
                options,
            },
            stream,
        )
    }

    #[test]
    fn request_keeps_every_message_in_order_and_says_whether_to_stream() {
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
        let expected = json!({"model": "llama3.2", "stream": false, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""}]});
        assert_eq!(
            body(&messages, &GenerationOptions::default(), false),
            expected
        );
        assert_eq!(
            body(&messages, &GenerationOptions::default(), true)["stream"],
            json!(true)
        );
    }

    #[test]
    fn generation_settings_go_in_options() {
        let options = GenerationOptions {
            temperature: Some(0.2),
            top_p: Some(0.9),
            max_tokens: Some(10),
            max_completion_tokens: Some(20),
            stop: vec!["END".into()],
            user: Some("u1".into()),
            include_usage: true,
            // OpenAI's own: not passed to Ollama.
            seed: Some(7),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.5),
            logit_bias: serde_json::Map::new().into(),
        };
        let body = body(&[ChatMessage::user("hi")], &options, false);
        assert_eq!(
            body["options"],
            json!({"temperature": 0.2, "top_p": 0.9, "num_predict": 20, "stop": ["END"]})
        );
        assert!(body.get("user").is_none(), "{body}");
    }

    #[test]
    fn reply_is_message_content_with_reason_and_counts() {
        let body = br#"{"model":"llama3.2","created_at":"2026-11-25T10:00:00Z",
            "message":{"role":"assistant","content":"Bonjour"},"done":true,
            "done_reason":"length","total_duration":1,"prompt_eval_count":7,"eval_count":2}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(reply.content, "Bonjour");
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 2
            })
        );
        let reply = parse_reply(br#"{"message":{"role":"assistant","content":""}}"#).unwrap();
        assert_eq!(reply.content, "");
        assert_eq!(reply.usage, None);
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

    #[tokio::test]
    async fn stream_lines_become_text_then_finish_and_usage() {
        let events = run(
            NdjsonDecoder,
            vec![
                (None, r#"{"message":{"role":"assistant","content":"Bon"},"done":false}"#),
                (None, r#"{"message":{"role":"assistant","content":""},"done":false}"#),
                (None, r#"{"message":{"role":"assistant","content":"jour"},"done":false}"#),
                (
                    None,
                    r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":2}"#,
                ),
                (None, r#"{"message":{"content":"after the end"}}"#),
            ],
        )
        .await;
        assert_eq!(text(&events), "Bonjour");
        let tail: Vec<_> = events[2..].iter().map(|e| e.clone().unwrap()).collect();
        assert_eq!(
            tail,
            vec![
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 2
                })
            ]
        );
    }

    #[tokio::test]
    async fn an_error_line_or_a_missing_done_ends_the_stream_in_error() {
        let events = run(
            NdjsonDecoder,
            vec![
                (None, r#"{"message":{"content":"a"},"done":false}"#),
                (None, r#"{"error":"out of memory; key sk-canary"}"#),
            ],
        )
        .await;
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.category(), FailureCategory::ServerError);
        assert!(!err.to_string().contains("canary"), "{err}");
        let events = run(
            NdjsonDecoder,
            vec![(None, r#"{"message":{"content":"a"}}"#)],
        )
        .await;
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.category(), FailureCategory::BadResponse);
        let events = run(NdjsonDecoder, vec![(None, "not json")]).await;
        assert_eq!(
            events[0].as_ref().unwrap_err().category(),
            FailureCategory::BadResponse
        );
    }
}
