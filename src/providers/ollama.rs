//! The local provider: an Ollama-compatible `POST /api/chat`, whole or
//! streamed as NDJSON (one JSON object a line, the last with `done: true`).

use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value, json};

use super::config::Secret;
use super::http::{
    Endpoint, Framing, HttpProvider, ParseReply, RequestBody, WireFormat, parse_json,
};
use super::spec::ProviderSpec;
use super::stream::{Decoder, StreamEvent, Usage, count, frame_json};
use super::{ChatRequest, ProviderError, Reply};
use crate::chat::{ChatMessage, Image, ResponseFormat, ToolCall, ToolChoice};
use crate::env::ConfigError;

/// The JSON body of a chat call: the messages (tool calls and results in
/// Ollama's form), `stream` as asked, the generation settings given, in
/// Ollama's `options`, and the tools.
pub fn request_body(request: &ChatRequest<'_>, stream: bool) -> Value {
    let o = request.options;
    let mut options = Map::new();
    if let Some(t) = o.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(p) = o.top_p {
        options.insert("top_p".into(), json!(p));
    }
    if let Some(k) = o.top_k {
        options.insert("top_k".into(), json!(k));
    }
    if let Some(n) = o.max_output_tokens() {
        options.insert("num_predict".into(), json!(n));
    }
    if !o.stop.is_empty() {
        options.insert("stop".into(), json!(o.stop));
    }
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| message(m, request.messages))
        .collect();
    let mut body = json!({"model": request.model, "messages": messages, "stream": stream});
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    match &o.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => body["format"] = json!("json"),
        Some(ResponseFormat::JsonSchema { schema, .. }) => body["format"] = schema.clone(),
    }
    // Ollama has no `tool_choice`: `none` is honoured by offering no tools.
    if !request.tools.is_empty() && o.tool_choice != Some(ToolChoice::None) {
        body["tools"] = request.tools.iter().map(super::openai::tool).collect();
    }
    body
}

/// One message in Ollama's shape: an assistant's tool calls with their
/// arguments as an object (Ollama's form; it has no call ids), a tool result
/// with the name of the tool it answers (found by its call id in `all`).
pub fn message(m: &ChatMessage, all: &[ChatMessage]) -> Value {
    let mut out = json!({"role": m.role.as_str(), "content": m.content});
    // Ollama takes images as base64 only; `refusal` keeps URLs away.
    let images: Vec<&str> = m
        .images
        .iter()
        .filter_map(|i| match i {
            Image::Base64 { data, .. } => Some(data.as_str()),
            Image::Url { .. } => None,
        })
        .collect();
    if !images.is_empty() {
        out["images"] = json!(images);
    }
    if !m.tool_calls.is_empty() {
        out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                let arguments: Value =
                    serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                json!({"function": {"name": c.name, "arguments": arguments}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id
        && let Some(call) = all.iter().flat_map(|m| &m.tool_calls).find(|c| &c.id == id)
    {
        out["tool_name"] = json!(call.name);
    }
    out
}

/// Whether Ollama can carry `request`: it has no `tool_choice`, so one that
/// demands a call (`required`, or one function) cannot be honoured; and it
/// takes images as base64 only, so an image URL cannot go (the gateway
/// fetches nothing). `Some` names the field and says why.
pub fn refusal(request: &ChatRequest<'_>) -> Option<(String, &'static str)> {
    if let Some(ToolChoice::Required | ToolChoice::Function(_)) = request.options.tool_choice {
        return Some((
            "tool_choice".to_owned(),
            "the local model (Ollama) cannot be made to call a tool: send `auto` or `none`",
        ));
    }
    request
        .messages
        .iter()
        .position(|m| m.images.iter().any(|i| matches!(i, Image::Url { .. })))
        .map(|i| {
            (
                format!("messages[{i}].content"),
                "the local model (Ollama) takes images inline only: send a `data:` URL, the gateway fetches nothing",
            )
        })
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
    let tool_calls = tool_calls(&value)?;
    let finish = if tool_calls.is_empty() {
        finish_reason(&value)
    } else {
        "tool_calls".to_owned()
    };
    Ok(Reply {
        tool_calls,
        content: content.to_owned(),
        finish_reason: Some(finish),
        usage: usage(&value),
    })
}

/// A reply's `message.tool_calls`: Ollama gives the arguments as an object
/// and no id, so the arguments are serialized and each call gets an id
/// `call_<random>`.
fn tool_calls(value: &Value) -> Result<Vec<ToolCall>, ProviderError> {
    let Some(calls) = value
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
    else {
        return Ok(Vec::new());
    };
    calls
        .iter()
        .map(|call| {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::bad_response("has a tool call without a name"))?;
            let arguments = match call.pointer("/function/arguments") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "{}".to_owned(),
            };
            Ok(ToolCall {
                id: format!("call_{}", uuid::Uuid::new_v4().simple()),
                name: name.to_owned(),
                arguments,
            })
        })
        .collect()
}

/// Reads Ollama's NDJSON stream: each line's `message.content` and whole
/// `message.tool_calls`, then the `done: true` line with the reason and counts. A line with `error` is the
/// server giving up half way.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    /// Tool calls seen so far: the next one's place.
    tool_calls: usize,
}

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
        // Ollama sends each call whole, in one line.
        for call in tool_calls(&value)? {
            let index = self.tool_calls;
            self.tool_calls += 1;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: call.id,
                name: call.name,
            });
            out.push(StreamEvent::ToolCallArguments {
                index,
                arguments: call.arguments,
            });
        }
        if value.get("done").and_then(Value::as_bool) == Some(true) {
            let reason = if self.tool_calls > 0 {
                "tool_calls".to_owned()
            } else {
                finish_reason(&value)
            };
            out.push(StreamEvent::Finish(reason));
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
        spec: &ProviderSpec,
        api_key: Option<&Secret>,
    ) -> Result<Self, ConfigError> {
        let variable = spec.api_key_env.as_deref().unwrap_or("api_key_env");
        let mut endpoint =
            Endpoint::new(client, &spec.id, &spec.url, spec.chat_path(), spec.timeouts);
        if let Some(key) = api_key {
            endpoint = endpoint.with_secret_header(
                AUTHORIZATION,
                &format!("Bearer {}", key.expose()),
                variable,
            )?;
        }
        Ok(HttpProvider::from_endpoint(Ok(endpoint)))
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
                tools: &[],
                options,
            },
            stream,
        )
    }

    #[test]
    fn request_keeps_every_message_in_order_and_says_whether_to_stream() {
        let messages = [
            ChatMessage::new(Role::System, "be brief"),
            ChatMessage::user("hi"),
            ChatMessage::new(Role::Assistant, String::new()),
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
            top_k: None,
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
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
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
            NdjsonDecoder::default(),
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
            NdjsonDecoder::default(),
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
            NdjsonDecoder::default(),
            vec![(None, r#"{"message":{"content":"a"}}"#)],
        )
        .await;
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.category(), FailureCategory::BadResponse);
        let events = run(NdjsonDecoder::default(), vec![(None, "not json")]).await;
        assert_eq!(
            events[0].as_ref().unwrap_err().category(),
            FailureCategory::BadResponse
        );
    }

    fn tool_request_body(options: &GenerationOptions) -> Value {
        crate::chat::fixtures::tool_loop_body(request_body, options)
    }

    #[test]
    fn tools_calls_and_results_go_in_ollamas_shape() {
        let b = tool_request_body(&GenerationOptions::default());
        assert_eq!(
            b["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {
                    "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "18 °C", "tool_name": "get_weather"},
            ])
        );
        assert_eq!(b["tools"][0]["function"]["name"], json!("get_weather"));
        assert_eq!(b["tools"][0]["type"], json!("function"));
        // `none` is honoured by offering no tools; Ollama has no tool_choice.
        let none = GenerationOptions {
            tool_choice: Some(ToolChoice::None),
            ..GenerationOptions::default()
        };
        let b = tool_request_body(&none);
        assert!(
            b.get("tools").is_none() && b.get("tool_choice").is_none(),
            "{b}"
        );
    }

    #[test]
    fn a_demanded_call_cannot_be_carried() {
        for (choice, refused) in [
            (ToolChoice::Required, true),
            (ToolChoice::Function("f".into()), true),
            (ToolChoice::Auto, false),
            (ToolChoice::None, false),
        ] {
            let options = GenerationOptions {
                tool_choice: Some(choice.clone()),
                ..GenerationOptions::default()
            };
            let request = ChatRequest {
                model: "m",
                messages: &[],
                tools: &[],
                options: &options,
            };
            assert_eq!(
                refusal(&request).map(|(field, _)| field),
                refused.then(|| "tool_choice".to_owned()),
                "{choice:?}"
            );
        }
    }

    #[test]
    fn tool_calls_get_serialized_arguments_and_ids() {
        // The example of Ollama's API reference (chat request with tools).
        let body = br#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.123648Z",
            "message":{"role":"assistant","content":"","tool_calls":[{"function":{
            "name":"get_current_weather","arguments":{"format":"celsius","location":"Paris, FR"}}}]},
            "done_reason":"stop","done":true,"total_duration":885095291,"load_duration":3753500,
            "prompt_eval_count":122,"prompt_eval_duration":328493000,"eval_count":33,
            "eval_duration":552222000}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(reply.tool_calls.len(), 1);
        let call = &reply.tool_calls[0];
        assert_eq!(call.name, "get_current_weather");
        assert!(
            call.id.starts_with("call_") && call.id.len() > 10,
            "{}",
            call.id
        );
        let arguments: Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(
            arguments,
            json!({"format": "celsius", "location": "Paris, FR"})
        );
        let again = parse_reply(body).unwrap();
        assert_ne!(again.tool_calls[0].id, call.id, "ids are made afresh");
    }

    #[tokio::test]
    async fn streamed_tool_calls_come_whole_in_a_line() {
        use crate::providers::stream::tests::tool_calls;
        // Ollama streams a tool call as one whole message, then the done line.
        let frames = vec![
            (
                None,
                r#"{"model":"llama3.2","created_at":"2025-05-27T10:00:00Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Orléans"}}}]},"done":false}"#,
            ),
            (
                None,
                r#"{"model":"llama3.2","created_at":"2025-05-27T10:00:01Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":122,"eval_count":33}"#,
            ),
        ];
        let events = run(NdjsonDecoder::default(), frames).await;
        let calls = tool_calls(&events);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, 0);
        assert!(calls[0].1.starts_with("call_"));
        assert_eq!(calls[0].2, "get_weather");
        assert_eq!(calls[0].3, r#"{"city":"Orléans"}"#);
        assert!(events.contains(&Ok(StreamEvent::Finish("tool_calls".into()))));
    }
}
