//! The OpenAI public provider: `POST /v1/chat/completions`, whole or streamed
//! as server-sent `chat.completion.chunk` events ending with `[DONE]`.

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::config::Secret;
use super::http::{
    Endpoint, Framing, HttpProvider, ParseReply, RequestBody, WireFormat, parse_json,
};
use super::spec::ProviderSpec;
use super::stream::{Decoder, StreamEvent, Usage, count, frame_json};
use super::{ChatRequest, ProviderError, Reply};
use crate::chat::{ChatMessage, ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use crate::env::ConfigError;

/// The JSON body of a chat call: the messages as received (tool calls and
/// results included), the tools, and each generation setting the client
/// gave, under OpenAI's own names. `stream` is
/// left out of a whole call (OpenAI's default is not to stream); a streamed
/// one asks for the usage chunk only when the client did.
pub fn request_body(request: &ChatRequest<'_>, stream: bool) -> Value {
    let o = request.options;
    let messages: Vec<Value> = request.messages.iter().map(message).collect();
    let mut body = json!({"model": request.model, "messages": messages});
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
    match &o.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => set("response_format", json!({"type": "json_object"})),
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            let mut spec = json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                spec["strict"] = json!(strict);
            }
            set(
                "response_format",
                json!({"type": "json_schema", "json_schema": spec}),
            );
        }
    }
    // The tool settings only with tools: OpenAI refuses them alone.
    if !request.tools.is_empty() {
        set("tools", request.tools.iter().map(tool).collect());
        if let Some(choice) = &o.tool_choice {
            set("tool_choice", tool_choice(choice));
        }
        if let Some(parallel) = o.parallel_tool_calls {
            set("parallel_tool_calls", json!(parallel));
        }
    }
    if stream {
        set("stream", json!(true));
        if o.include_usage {
            set("stream_options", json!({"include_usage": true}));
        }
    }
    body
}

/// One message in OpenAI's shape: an assistant's tool calls as
/// `tool_calls` (its content `null` when it has no text), a tool result with
/// the `tool_call_id` it answers.
pub fn message(m: &ChatMessage) -> Value {
    let mut out = json!({"role": m.role.as_str(), "content": m.content});
    if !m.images.is_empty() {
        let mut parts = Vec::new();
        if !m.content.is_empty() {
            parts.push(json!({"type": "text", "text": m.content}));
        }
        parts.extend(
            m.images
                .iter()
                .map(|i| json!({"type": "image_url", "image_url": {"url": i.to_url()}})),
        );
        out["content"] = Value::Array(parts);
    }
    if !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            out["content"] = Value::Null;
        }
        out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

/// A tool definition in OpenAI's shape.
pub fn tool(t: &ToolDefinition) -> Value {
    let mut function = json!({"name": t.name});
    if let Some(d) = &t.description {
        function["description"] = json!(d);
    }
    if let Some(p) = &t.parameters {
        function["parameters"] = p.clone();
    }
    if let Some(strict) = t.strict {
        function["strict"] = json!(strict);
    }
    json!({"type": "function", "function": function})
}

/// `tool_choice` in OpenAI's words.
pub fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => json!("none"),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
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
    let tool_calls = value
        .pointer("/choices/0/message/tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(tool_call).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    let content = match value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        Some(text) => text,
        // A reply that only calls tools has no text.
        None if !tool_calls.is_empty() => "",
        None => {
            return Err(ProviderError::bad_response(
                "has no choices[0].message.content",
            ));
        }
    };
    Ok(Reply {
        tool_calls,
        content: content.to_owned(),
        finish_reason: value
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        usage: usage(&value),
    })
}

/// One entry of a reply's `tool_calls`.
fn tool_call(call: &Value) -> Result<ToolCall, ProviderError> {
    let field = |pointer: &str| {
        call.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ProviderError::bad_response("has a tool call without id, name or arguments")
            })
    };
    Ok(ToolCall {
        id: field("/id")?,
        name: field("/function/name")?,
        arguments: field("/function/arguments")?,
    })
}

/// Reads OpenAI's chunk stream: `choices[0].delta.content` pieces, tool
/// calls (a delta with an `id` starts one, later ones add to the arguments
/// of the call at their `index`), the `finish_reason`, the usage chunk when
/// asked for, then `[DONE]`.
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
        for call in value
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| {
                    ProviderError::bad_response("has a tool call delta without index")
                })?;
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ProviderError::bad_response("starts a tool call without a name")
                    })?;
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: id.to_owned(),
                    name: name.to_owned(),
                });
            }
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str)
                && !arguments.is_empty()
            {
                out.push(StreamEvent::ToolCallArguments {
                    index,
                    arguments: arguments.to_owned(),
                });
            }
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
        spec: &ProviderSpec,
        api_key: Option<&Secret>,
    ) -> Result<Self, ConfigError> {
        let variable = spec.api_key_env.as_deref().unwrap_or("api_key_env");
        let endpoint = match api_key {
            None => Err(ProviderError::missing_key(variable, &spec.id)),
            Some(key) => {
                Ok(
                    Endpoint::new(client, &spec.id, &spec.url, spec.chat_path(), spec.timeouts)
                        .with_secret_header(
                            AUTHORIZATION,
                            &format!("Bearer {}", key.expose()),
                            variable,
                        )?,
                )
            }
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
                tools: &[],
                options,
            },
            stream,
        )
    }

    #[test]
    fn request_passes_messages_as_received() {
        let messages = [
            ChatMessage::new(Role::System, "be brief"),
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
            top_k: None,
            max_tokens: Some(10),
            max_completion_tokens: None,
            stop: vec!["a".into(), "b".into()],
            user: Some("u1".into()),
            include_usage: true,
            seed: Some(7),
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            logit_bias: json!({"50256": -100}).as_object().cloned(),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
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

    fn tool_request_body(options: &GenerationOptions) -> Value {
        crate::chat::fixtures::tool_loop_body(request_body, options)
    }

    #[test]
    fn tools_calls_and_results_go_in_openais_shape() {
        let options = GenerationOptions {
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            ..GenerationOptions::default()
        };
        let b = tool_request_body(&options);
        assert_eq!(
            b["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "content": "18 °C", "tool_call_id": "call_1"},
            ])
        );
        assert_eq!(
            b["tools"],
            json!([{"type": "function", "function": {"name": "get_weather",
                "description": "Weather now", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
        );
        assert_eq!(b["tool_choice"], json!("required"));
        assert_eq!(b["parallel_tool_calls"], json!(false));
        // Without tools, the tool settings stay home: OpenAI refuses them alone.
        let b = body(&[ChatMessage::user("hi")], &options, false);
        assert!(b.get("tool_choice").is_none() && b.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn a_reply_calling_a_tool_gives_its_calls() {
        // The example of OpenAI's function calling guide.
        let body = br#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1699896916,
            "model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",
            "content":null,"tool_calls":[{"id":"call_abc123","type":"function",
            "function":{"name":"get_current_weather",
            "arguments":"{\n\"location\": \"Boston, MA\"\n}"}}]},
            "logprobs":null,"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(reply.content, "");
        assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            reply.tool_calls,
            [ToolCall {
                id: "call_abc123".into(),
                name: "get_current_weather".into(),
                arguments: "{\n\"location\": \"Boston, MA\"\n}".into(),
            }]
        );
    }

    #[tokio::test]
    async fn streamed_tool_calls_start_with_their_id_and_add_arguments_by_index() {
        use crate::providers::stream::tests::tool_calls;
        // OpenAI's chunk form for two parallel calls (function calling guide),
        // the arguments cut inside strings and escapes.
        let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":"#;
        let tail = r#","logprobs":null,"finish_reason":null}]}"#;
        let chunk = |delta: &str| format!("{head}{delta}{tail}");
        let frames = [
            chunk(r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Par\\"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"u00e9is\"}"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":1,"function":{"arguments":"\"Lyon\"}"}}]}"#),
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#.to_owned(),
            "[DONE]".to_owned(),
        ];
        let events = run(
            ChunkDecoder::default(),
            frames.iter().map(|f| (None, f.as_str())).collect(),
        )
        .await;
        assert_eq!(
            tool_calls(&events),
            [
                (
                    0,
                    "call_DdmO9pD3xa9XTPNJ32zg2hcA".to_owned(),
                    "get_weather".to_owned(),
                    r#"{"city":"Par\u00e9is"}"#.to_owned()
                ),
                (
                    1,
                    "call_2".to_owned(),
                    "get_weather".to_owned(),
                    r#"{"city":"Lyon"}"#.to_owned()
                ),
            ]
        );
        assert!(events.contains(&Ok(StreamEvent::Finish("tool_calls".into()))));
    }
}
