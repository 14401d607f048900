//! The Anthropic public provider: `POST /v1/messages`, whole or streamed as
//! server-sent events. Its API
//! takes system instructions apart from the conversation and requires a
//! `max_tokens`, so the request is translated rather than passed through.

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::config::Secret;
use super::http::{
    Endpoint, Framing, HttpProvider, ParseReply, RequestBody, WireFormat, parse_json,
};
use super::spec::ProviderSpec;
use super::stream::{Decoder, StreamEvent, Usage, count, frame_json};
use super::{ChatRequest, ProviderError, Reply};
use crate::chat::{ChatMessage, Image, ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use crate::env::ConfigError;
use crate::names::Role;

/// The `anthropic-version` header sent with every call.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent with every call. The chat API has no field for it,
/// and Anthropic requires one; 4096 is the output limit of the smallest
/// Claude 3 models, so every current model accepts it, and it is long enough
/// for a chat answer.
pub const MAX_TOKENS: u32 = 4096;

/// The JSON body of a chat call: the system messages' contents, in order,
/// joined by `\n` as `system` (left out when there are none), the other
/// messages in order, and the generation settings under Anthropic's names
/// (`stop_sequences`, `metadata.user_id`; the client's token limit instead
/// of [`MAX_TOKENS`] when it gave one).
pub fn request_body(request: &ChatRequest<'_>, stream: bool) -> Value {
    let messages = request.messages;
    let o = request.options;
    let mut system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    // Anthropic has no response format: the instruction goes in `system`.
    let instruction = o.response_format.as_ref().map(format_instruction);
    system.extend(instruction.as_deref());
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(o.max_output_tokens().unwrap_or(u64::from(MAX_TOKENS))),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n")));
    }
    body.insert("messages".into(), Value::Array(conversation(messages)));
    if let Some(t) = o.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = o.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = o.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if !o.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(o.stop));
    }
    if let Some(user) = &o.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    // The tool settings only with tools: Anthropic refuses them alone.
    if !request.tools.is_empty() {
        body.insert(
            "tools".into(),
            request.tools.iter().map(tool).collect::<Vec<_>>().into(),
        );
        if let Some(choice) = tool_choice(o.tool_choice.as_ref(), o.parallel_tool_calls) {
            body.insert("tool_choice".into(), choice);
        }
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

/// The conversation without its system messages, as Anthropic's turns: an
/// assistant's tool calls become `tool_use` blocks (their arguments parsed:
/// Anthropic takes an object), and tool results `tool_result` blocks of a
/// user turn, consecutive results sharing one turn.
pub fn conversation(messages: &[ChatMessage]) -> Vec<Value> {
    let mut turns: Vec<Value> = Vec::new();
    for m in messages.iter().filter(|m| m.role != Role::System) {
        match m.role {
            Role::Tool => {
                let block = json!({"type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": m.content});
                let last_is_results = turns.last().is_some_and(|t| {
                    t["role"] == "user"
                        && t["content"]
                            .as_array()
                            .is_some_and(|blocks| blocks.iter().all(|b| b["type"] == "tool_result"))
                });
                match turns.last_mut().and_then(|t| t["content"].as_array_mut()) {
                    Some(blocks) if last_is_results => blocks.push(block),
                    _ => turns.push(json!({"role": "user", "content": [block]})),
                }
            }
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for call in &m.tool_calls {
                    let input: Value =
                        serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id,
                        "name": call.name, "input": input}));
                }
                turns.push(json!({"role": "assistant", "content": blocks}));
            }
            role if !m.images.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                blocks.extend(m.images.iter().map(image_block));
                turns.push(json!({"role": role.as_str(), "content": blocks}));
            }
            role => turns.push(json!({"role": role.as_str(), "content": m.content})),
        }
    }
    turns
}

/// The instruction that asks for `format`, for a provider without the setting.
pub fn format_instruction(format: &ResponseFormat) -> String {
    match format {
        ResponseFormat::JsonObject => {
            "Respond with a single JSON object and nothing else.".to_owned()
        }
        ResponseFormat::JsonSchema { schema, .. } => format!(
            "Respond with a single JSON object that follows this JSON Schema, and nothing else: {schema}"
        ),
    }
}

/// Whether Anthropic can carry `request`: a strict schema cannot be
/// enforced by an instruction. `Some` names the field and says why.
pub fn refusal(request: &ChatRequest<'_>) -> Option<(String, &'static str)> {
    matches!(
        request.options.response_format,
        Some(ResponseFormat::JsonSchema {
            strict: Some(true),
            ..
        })
    )
    .then(|| {
        (
            "response_format".to_owned(),
            "Anthropic cannot enforce a strict JSON schema: send `strict: false`",
        )
    })
}

/// An image as Anthropic's `image` block: `base64` or `url` source.
pub fn image_block(image: &Image) -> Value {
    match image {
        Image::Base64 { media_type, data } => json!({"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}),
        Image::Url { url } => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// A tool definition in Anthropic's shape (`input_schema` is required: an
/// empty object schema when the tool has no parameters).
pub fn tool(t: &ToolDefinition) -> Value {
    let mut out = json!({"name": t.name,
        "input_schema": t.parameters.clone().unwrap_or_else(|| json!({"type": "object"}))});
    if let Some(d) = &t.description {
        out["description"] = json!(d);
    }
    out
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` in Anthropic's words:
/// `none`, `auto`, `any` (required) or one `tool`, with
/// `disable_parallel_tool_use` when parallel calls are off.
pub fn tool_choice(choice: Option<&ToolChoice>, parallel: Option<bool>) -> Option<Value> {
    let mut out = match choice {
        None if parallel == Some(false) => json!({"type": "auto"}),
        None => return None,
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
    };
    if parallel == Some(false) {
        out["disable_parallel_tool_use"] = json!(true);
    }
    Some(out)
}

/// Anthropic's `stop_reason` in OpenAI's words.
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
    .to_owned()
}

/// The reply of a 2xx body: the `text` of every `text` block of `content`,
/// concatenated in order, each `tool_use` block as a tool call (its input
/// serialized as the arguments), with the stop reason and token counts.
/// Other blocks (thinking) are skipped; a `content` with no text block
/// gives an empty reply, as the model said nothing.
pub fn parse_reply(body: &[u8]) -> Result<Reply, ProviderError> {
    let missing = || ProviderError::bad_response("has no content");
    let value = parse_json(body)?;
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(missing)?;
    let mut reply = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ProviderError::bad_response("has a text block without text"))?;
                reply.push_str(text);
            }
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ProviderError::bad_response("has a tool_use block without id or name")
                        })
                };
                tool_calls.push(ToolCall {
                    id: field("id")?,
                    name: field("name")?,
                    arguments: block.get("input").unwrap_or(&json!({})).to_string(),
                });
            }
            _ => {}
        }
    }
    let usage = (|| {
        Some(Usage {
            prompt_tokens: count(&value, "/usage/input_tokens")?,
            completion_tokens: count(&value, "/usage/output_tokens")?,
        })
    })();
    Ok(Reply {
        tool_calls,
        content: reply,
        finish_reason: value
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason),
        usage,
    })
}

/// Reads Anthropic's event stream: the input count from `message_start`,
/// `text_delta` pieces, `tool_use` blocks (`content_block_start`) and their
/// `input_json_delta` pieces as tool calls, the stop reason and output count from
/// `message_delta`, and `message_stop` to end. `ping` and the block
/// boundaries carry nothing; an `error` event is the server giving up.
#[derive(Debug, Default)]
pub struct EventDecoder {
    input_tokens: Option<u64>,
    /// The content block index of each `tool_use` block, in order: a call's
    /// place among the reply's calls is its place here.
    tool_blocks: Vec<u64>,
}

impl Decoder for EventDecoder {
    fn frame(
        &mut self,
        event: Option<&str>,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let value = frame_json(data)?;
        // The data's own `type` names the event as well as the event line.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or("");
        match kind {
            "message_start" => {
                self.input_tokens = count(&value, "/message/usage/input_tokens");
            }
            "content_block_start"
                if value.pointer("/content_block/type").and_then(Value::as_str)
                    == Some("tool_use") =>
            {
                let field = |name: &str| {
                    value
                        .pointer(&format!("/content_block/{name}"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ProviderError::bad_response(
                                "starts a tool_use block without id or name",
                            )
                        })
                };
                let block = count(&value, "/index").unwrap_or_default();
                out.push(StreamEvent::ToolCallStart {
                    index: self.tool_blocks.len(),
                    id: field("id")?,
                    name: field("name")?,
                });
                self.tool_blocks.push(block);
            }
            "content_block_delta" => match value.pointer("/delta/type").and_then(Value::as_str) {
                Some("text_delta") => {
                    if let Some(text) = value.pointer("/delta/text").and_then(Value::as_str)
                        && !text.is_empty()
                    {
                        out.push(StreamEvent::Text(text.to_owned()));
                    }
                }
                Some("input_json_delta") => {
                    // Input for a block that is not a tool call carries nothing.
                    let block = count(&value, "/index").unwrap_or_default();
                    if let Some(index) = self.tool_blocks.iter().position(|b| *b == block)
                        && let Some(piece) =
                            value.pointer("/delta/partial_json").and_then(Value::as_str)
                        && !piece.is_empty()
                    {
                        out.push(StreamEvent::ToolCallArguments {
                            index,
                            arguments: piece.to_owned(),
                        });
                    }
                }
                _ => {}
            },
            "message_delta" => {
                if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(StreamEvent::Finish(finish_reason(reason)));
                }
                if let (Some(prompt_tokens), Some(completion_tokens)) =
                    (self.input_tokens, count(&value, "/usage/output_tokens"))
                {
                    out.push(StreamEvent::Usage(Usage {
                        prompt_tokens,
                        completion_tokens,
                    }));
                }
            }
            "message_stop" => return Ok(true),
            "error" => return Err(ProviderError::in_stream()),
            _ => {}
        }
        Ok(false)
    }
}

/// Anthropic's `/v1/messages` format.
#[derive(Debug)]
pub struct AnthropicApi;

impl WireFormat for AnthropicApi {
    const FRAMING: Framing = Framing::Sse;
    const REQUEST_BODY: RequestBody = request_body;
    const PARSE_REPLY: ParseReply = parse_reply;
    type Decoder = EventDecoder;
}

/// A client for `POST {PUBLIC_LLM_URL}/v1/messages`.
pub type Anthropic = HttpProvider<AnthropicApi>;

impl Anthropic {
    /// Sends `x-api-key: <key>` and `anthropic-version`.
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
                        .with_header(
                            HeaderName::from_static("anthropic-version"),
                            HeaderValue::from_static(ANTHROPIC_VERSION),
                        )
                        .with_secret_header(
                            HeaderName::from_static("x-api-key"),
                            key.expose(),
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
    use crate::names::FailureCategory;
    use crate::providers::GenerationOptions;
    use crate::providers::stream::tests::{run, text};

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    fn body_with(model: &str, messages: &[ChatMessage], options: &GenerationOptions) -> Value {
        request_body(
            &ChatRequest {
                model,
                messages,
                tools: &[],
                options,
            },
            false,
        )
    }

    fn body(model: &str, messages: &[ChatMessage]) -> Value {
        body_with(model, messages, &GenerationOptions::default())
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
            body("claude-3-5-haiku-latest", &messages),
            json!({"model": "claude-3-5-haiku-latest", "max_tokens": MAX_TOKENS,
                   "system": "be brief\nanswer in French",
                   "messages": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "salut"},
                                {"role": "user", "content": "again"}]})
        );
    }

    #[test]
    fn system_is_left_out_when_there_is_none_but_kept_when_empty() {
        let b = body("m", &[msg(Role::User, "hi")]);
        assert!(b.get("system").is_none(), "{b}");
        let b = body("m", &[msg(Role::System, ""), msg(Role::User, "hi")]);
        assert_eq!(b["system"], json!(""));
    }

    #[test]
    fn settings_take_anthropic_names() {
        let options = GenerationOptions {
            temperature: Some(0.3),
            top_p: Some(0.8),
            top_k: None,
            max_tokens: Some(64),
            max_completion_tokens: None,
            stop: vec!["END".into()],
            user: Some("u1".into()),
            include_usage: false,
            // OpenAI's own: Anthropic has no such settings.
            seed: Some(7),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.5),
            logit_bias: serde_json::Map::new().into(),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
        };
        let mut b = body_with("m", &[msg(Role::User, "hi")], &options);
        for dropped in [
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logit_bias",
        ] {
            assert!(b.get(dropped).is_none(), "{dropped} in {b}");
        }
        assert_eq!(b["max_tokens"], json!(64));
        assert_eq!(b["temperature"], json!(0.3));
        assert_eq!(b["top_p"], json!(0.8));
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["metadata"], json!({"user_id": "u1"}));
        assert!(b.get("stream").is_none());
        b = request_body(
            &ChatRequest {
                model: "m",
                messages: &[msg(Role::User, "hi")],
                tools: &[],
                options: &options,
            },
            true,
        );
        assert_eq!(b["stream"], json!(true));
    }

    #[test]
    fn reply_concatenates_text_blocks_only() {
        let body = br#"{"id":"msg_01","type":"message","role":"assistant",
            "model":"claude-3-5-haiku-20241022","content":[
              {"type":"thinking","thinking":"hmm","signature":"x"},
              {"type":"text","text":"Hello, "},
              {"type":"tool_use","id":"t","name":"f","input":{}},
              {"type":"text","text":"world"}],
            "stop_reason":"max_tokens","stop_sequence":null,
            "usage":{"input_tokens":3,"output_tokens":2}}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(reply.content, "Hello, world");
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            reply.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2
            })
        );
        assert_eq!(parse_reply(br#"{"content":[]}"#).unwrap().content, "");
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

    #[tokio::test]
    async fn events_become_text_finish_and_usage_up_to_message_stop() {
        let events = run(
            EventDecoder::default(),
            vec![
                (
                    Some("message_start"),
                    r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":19,"output_tokens":1}}}"#,
                ),
                (
                    Some("content_block_start"),
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                ),
                (Some("ping"), r#"{"type":"ping"}"#),
                (
                    Some("content_block_delta"),
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}"#,
                ),
                (
                    Some("content_block_delta"),
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
                ),
                (
                    Some("content_block_delta"),
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there"}}"#,
                ),
                (Some("content_block_stop"), r#"{"type":"content_block_stop","index":0}"#),
                (
                    Some("message_delta"),
                    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}"#,
                ),
                (Some("message_stop"), r#"{"type":"message_stop"}"#),
            ],
        )
        .await;
        assert_eq!(text(&events), "Hi there");
        let tail: Vec<_> = events[2..].iter().map(|e| e.clone().unwrap()).collect();
        assert_eq!(
            tail,
            vec![
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    prompt_tokens: 19,
                    completion_tokens: 2
                })
            ]
        );
    }

    #[tokio::test]
    async fn an_error_event_or_a_missing_message_stop_fails() {
        let events = run(
            EventDecoder::default(),
            vec![(
                Some("error"),
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )],
        )
        .await;
        assert_eq!(
            events[0].as_ref().unwrap_err().category(),
            FailureCategory::ServerError
        );
        let events = run(
            EventDecoder::default(),
            vec![(
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            )],
        )
        .await;
        assert_eq!(
            events.last().unwrap().as_ref().unwrap_err().category(),
            FailureCategory::BadResponse
        );
    }

    fn tool_request_body(options: &GenerationOptions) -> Value {
        crate::chat::fixtures::tool_loop_body(request_body, options)
    }

    #[test]
    fn tools_calls_and_results_go_in_anthropics_shape() {
        let options = GenerationOptions {
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            ..GenerationOptions::default()
        };
        let b = tool_request_body(&options);
        assert_eq!(b["system"], json!("be brief"));
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1",
                    "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                    "content": "18 °C"}]},
            ])
        );
        assert_eq!(
            b["tools"],
            json!([{"name": "get_weather", "description": "Weather now",
                "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
        );
        assert_eq!(
            b["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn consecutive_tool_results_share_one_user_turn() {
        let mut messages = crate::chat::fixtures::tool_loop();
        messages[2].tool_calls.push(crate::chat::ToolCall {
            id: "call_2".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Lyon"}"#.into(),
        });
        messages.push(ChatMessage {
            tool_call_id: Some("call_2".into()),
            ..ChatMessage::new(Role::Tool, "20 °C")
        });
        let turns = conversation(&messages);
        assert_eq!(turns.len(), 3, "{turns:?}");
        assert_eq!(
            turns[2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 °C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "20 °C"},
            ])
        );
    }

    #[test]
    fn tool_choice_takes_anthropics_words() {
        for (choice, expected) in [
            (Some(ToolChoice::None), Some(json!({"type": "none"}))),
            (Some(ToolChoice::Auto), Some(json!({"type": "auto"}))),
            (Some(ToolChoice::Required), Some(json!({"type": "any"}))),
            (
                Some(ToolChoice::Function("f".into())),
                Some(json!({"type": "tool", "name": "f"})),
            ),
            (None, None),
        ] {
            assert_eq!(tool_choice(choice.as_ref(), None), expected);
        }
        assert_eq!(
            tool_choice(None, Some(false)),
            Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
        );
    }

    #[test]
    fn tool_use_blocks_become_tool_calls() {
        // The example of Anthropic's tool use guide.
        let body = br#"{"id":"msg_01Aq9w938a90dw8q","model":"claude-3-5-sonnet-20241022",
            "stop_reason":"tool_use","role":"assistant","content":[
            {"type":"text","text":"I'll check the current weather in San Francisco for you."},
            {"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather",
             "input":{"location":"San Francisco, CA","unit":"celsius"}}],
            "usage":{"input_tokens":384,"output_tokens":91}}"#;
        let reply = parse_reply(body).unwrap();
        assert_eq!(
            reply.content,
            "I'll check the current weather in San Francisco for you."
        );
        assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(reply.tool_calls[0].name, "get_weather");
        let arguments: Value = serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
        assert_eq!(
            arguments,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
    }

    #[tokio::test]
    async fn streamed_tool_use_blocks_become_tool_calls() {
        use crate::providers::stream::tests::tool_calls;
        // The event sequence of Anthropic's streaming guide (tool use), with
        // a second tool and the input cut inside a string and an escape.
        let frames = vec![
            (
                Some("message_start"),
                r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-3-haiku-20240307","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#,
            ),
            (
                Some("content_block_start"),
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}"#,
            ),
            (
                Some("content_block_stop"),
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                Some("content_block_start"),
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\\"}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"u00e9\"}"}}"#,
            ),
            (
                Some("content_block_stop"),
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                Some("content_block_start"),
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}}"#,
            ),
            (
                Some("content_block_delta"),
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            ),
            (
                Some("content_block_stop"),
                r#"{"type":"content_block_stop","index":2}"#,
            ),
            (
                Some("message_delta"),
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
            ),
            (Some("message_stop"), r#"{"type":"message_stop"}"#),
        ];
        let events = run(EventDecoder::default(), frames).await;
        assert_eq!(text(&events), "Okay");
        assert_eq!(
            tool_calls(&events),
            [
                (
                    0,
                    "toolu_01T1x1fJ34qAmk2tNTrN7Up6".to_owned(),
                    "get_weather".to_owned(),
                    r#"{"location": "San Francisco, CA\u00e9"}"#.to_owned()
                ),
                (
                    1,
                    "toolu_2".to_owned(),
                    "get_time".to_owned(),
                    "{}".to_owned()
                ),
            ]
        );
        assert!(events.contains(&Ok(StreamEvent::Finish("tool_calls".into()))));
    }
}
