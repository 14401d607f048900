//! The body of `POST /v1/messages` (Anthropic's Messages API) on the wire,
//! read by the one reader ([`read`]) and validated into the gateway's model
//! of a chat: a [`MessagesRequest`] of [`ChatMessage`]s, tool definitions and
//! generation options, which any provider can be sent.
//!
//! - `system` (a string or text blocks) is the first message, role `system`.
//! - A `user` turn's text blocks are one user message; its `tool_result`
//!   blocks are `tool` messages answering their `tool_use_id`, before it.
//! - An `assistant` turn's text blocks are its text, its `tool_use` blocks
//!   its tool calls (the input serialized as the arguments).
//! - A `user` turn's `image` blocks (`base64` or an `https` `url`) are its
//!   message's images.
//! - Blocks the gateway does not carry yet (documents, thinking) and server
//!   tools are refused with `400` naming the field, never dropped.
//!   Unknown fields are ignored, as Anthropic does.

use axum::extract::{FromRequest, Request};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{AnthropicError, ApiError};
use super::request::{Object, body_bytes, invalid, messages, read};
use crate::chat::{ChatMessage, Image, ToolCall, ToolChoice, ToolDefinition};
use crate::names::Role;
use crate::providers::GenerationOptions;

/// A validated Messages API request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    /// The conversation: the system prompt first, then the turns.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// The model asked for.
    pub model: String,
    /// Whether to answer with Anthropic's event stream.
    pub stream: bool,
    /// Settings passed on to the provider.
    pub options: GenerationOptions,
}

impl MessagesRequest {
    /// Parses and validates a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        let Object(body) = read::<Object<MessagesRequestBody>>(body)?;
        body.validate()
    }
}

/// `POST /v1/messages`: Anthropic's request body. Fields not listed are
/// ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = MessagesRequest)]
pub(crate) struct MessagesRequestBody {
    /// The model asked for; see `docs/anthropic-api.md` for which provider
    /// gets it.
    model: String,
    /// The reply length limit (required, as by Anthropic).
    #[schema(minimum = 1)]
    max_tokens: u64,
    /// The system prompt: a string or text blocks.
    #[schema(value_type = Option<Object>)]
    system: Option<Value>,
    /// The turns, `user` and `assistant`, at least one.
    #[serde(deserialize_with = "messages")]
    #[schema(value_type = Vec<TurnBody>, min_items = 1)]
    messages: Vec<Object<TurnBody>>,
    /// Client tools the model may call.
    #[schema(value_type = Option<Vec<ToolBody>>)]
    tools: Option<Vec<Object<ToolBody>>>,
    /// `auto`, `any`, `tool` (with `name`) or `none`.
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<Value>,
    /// Sequences that end the reply.
    stop_sequences: Option<Vec<String>>,
    /// Sampling temperature, passed on.
    temperature: Option<f64>,
    /// Nucleus sampling, passed on.
    top_p: Option<f64>,
    /// Top-k sampling: Anthropic and Ollama get it, OpenAI has no such setting.
    top_k: Option<u64>,
    /// `user_id`, passed on as the end user's id.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Object<MetadataBody>>,
    /// `true`: answer with Anthropic's event stream.
    stream: Option<bool>,
}

/// One turn.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = MessageTurn)]
struct TurnBody {
    /// `user` or `assistant`.
    #[schema(pattern = "^(user|assistant)$")]
    role: String,
    /// A string, or blocks: `text`, `tool_use` (assistant), `tool_result`
    /// (user).
    #[schema(value_type = Object)]
    content: Value,
}

/// A client tool.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = MessagesTool)]
struct ToolBody {
    /// Absent (or `custom`) for a client tool; server tools are refused.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The tool's name.
    name: String,
    /// What it does.
    description: Option<String>,
    /// Its input: a JSON Schema object.
    #[schema(value_type = Object)]
    input_schema: Option<Value>,
}

/// `metadata`.
#[derive(Debug, Deserialize, ToSchema)]
struct MetadataBody {
    /// The end user's id.
    user_id: Option<String>,
}

/// Why a block the gateway does not carry is refused.
const NOT_CARRIED: &str = "not supported by the gateway yet; the request is refused rather than \
     answered without it";

impl MessagesRequestBody {
    fn validate(self) -> Result<MessagesRequest, ApiError> {
        let mut out = Vec::new();
        if let Some(system) = &self.system {
            out.push(ChatMessage::new(Role::System, system_text(system)?));
        }
        for (i, Object(turn)) in self.messages.into_iter().enumerate() {
            turn.validate(i, &mut out)?;
        }
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, Object(t))| t.validate(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (tool_choice, parallel_tool_calls) = match &self.tool_choice {
            None | Some(Value::Null) => (None, None),
            Some(choice) => tool_choice(choice)?,
        };
        let options = GenerationOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_tokens: Some(self.max_tokens),
            stop: self.stop_sequences.unwrap_or_default(),
            user: self.metadata.and_then(|Object(m)| m.user_id),
            tool_choice,
            parallel_tool_calls,
            // Anthropic's stream always ends with the counts: ask OpenAI for them.
            include_usage: true,
            ..GenerationOptions::default()
        };
        Ok(MessagesRequest {
            messages: out,
            tools,
            model: self.model,
            stream: self.stream.unwrap_or(false),
            options,
        })
    }
}

/// `system`: a string, or text blocks joined.
fn system_text(system: &Value) -> Result<String, ApiError> {
    match system {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (j, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(&format!("system[{j}].type"), "expected `text`"));
                }
                text.push_str(string_at(block, "text", &format!("system[{j}].text"))?);
            }
            Ok(text)
        }
        _ => Err(invalid(
            "system",
            "expected a string or a list of text blocks",
        )),
    }
}

/// The string at `key` of `block`, or a 400 naming `field`.
fn string_at<'a>(block: &'a Value, key: &str, field: &str) -> Result<&'a str, ApiError> {
    match block.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(field, "missing")),
        Some(_) => Err(invalid(field, "expected a string")),
    }
}

impl TurnBody {
    /// Appends the turn's messages to `out`: a user turn's tool results,
    /// then its text; an assistant turn's text with its tool calls.
    fn validate(self, i: usize, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
        let role = match self.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    "expected \"user\" or \"assistant\"",
                ));
            }
        };
        let blocks = match self.content {
            Value::String(text) => {
                out.push(ChatMessage::new(role, text));
                return Ok(());
            }
            Value::Array(blocks) => blocks,
            _ => {
                return Err(invalid(
                    &format!("messages[{i}].content"),
                    "expected a string or a list of blocks",
                ));
            }
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut results = Vec::new();
        let mut images = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            let kind = string_at(block, "type", &format!("{at}.type"))?;
            match (kind, role) {
                ("text", _) => text.push_str(string_at(block, "text", &format!("{at}.text"))?),
                ("tool_use", Role::Assistant) => calls.push(ToolCall {
                    id: string_at(block, "id", &format!("{at}.id"))?.to_owned(),
                    name: string_at(block, "name", &format!("{at}.name"))?.to_owned(),
                    arguments: match block.get("input") {
                        Some(input @ Value::Object(_)) => input.to_string(),
                        _ => return Err(invalid(&format!("{at}.input"), "expected an object")),
                    },
                }),
                ("tool_result", Role::User) => {
                    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                        return Err(invalid(&format!("{at}.is_error"), NOT_CARRIED));
                    }
                    let id = string_at(block, "tool_use_id", &format!("{at}.tool_use_id"))?;
                    let content = tool_result_text(block.get("content"), &at)?;
                    results.push(ChatMessage {
                        tool_call_id: Some(id.to_owned()),
                        ..ChatMessage::new(Role::Tool, content)
                    });
                }
                ("image", Role::User) => images.push(image(block, &at)?),
                ("tool_use", _) | ("tool_result", _) => {
                    return Err(invalid(
                        &format!("{at}.type"),
                        "a tool_use block belongs to an assistant turn, a tool_result block to a user turn",
                    ));
                }
                _ => return Err(invalid(&format!("{at}.type"), NOT_CARRIED)),
            }
        }
        out.append(&mut results);
        if !text.is_empty()
            || !calls.is_empty()
            || !images.is_empty()
            || out.last().is_none_or(|m| m.role != Role::Tool)
        {
            out.push(ChatMessage {
                tool_calls: calls,
                images,
                ..ChatMessage::new(role, text)
            });
        }
        Ok(())
    }
}

/// An `image` block: its `base64` or `url` source.
fn image(block: &Value, at: &str) -> Result<Image, ApiError> {
    let source = block
        .get("source")
        .ok_or_else(|| invalid(&format!("{at}.source"), "missing"))?;
    let field = |name: &str| format!("{at}.source.{name}");
    match string_at(source, "type", &field("type"))? {
        "base64" => {
            let media_type = string_at(source, "media_type", &field("media_type"))?;
            if !media_type.starts_with("image/") {
                return Err(invalid(
                    &field("media_type"),
                    "expected an image/… media type",
                ));
            }
            Ok(Image::Base64 {
                media_type: media_type.to_owned(),
                data: string_at(source, "data", &field("data"))?.to_owned(),
            })
        }
        "url" => {
            let url = string_at(source, "url", &field("url"))?;
            if !url.starts_with("https://") {
                return Err(invalid(&field("url"), "expected an `https://` URL"));
            }
            Ok(Image::Url {
                url: url.to_owned(),
            })
        }
        _ => Err(invalid(&field("type"), "expected `base64` or `url`")),
    }
}

/// A `tool_result`'s `content`: absent, a string, or text blocks joined.
fn tool_result_text(content: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (k, block) in blocks.iter().enumerate() {
                let field = format!("{at}.content[{k}]");
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(&format!("{field}.type"), NOT_CARRIED));
                }
                text.push_str(string_at(block, "text", &format!("{field}.text"))?);
            }
            Ok(text)
        }
        Some(_) => Err(invalid(
            &format!("{at}.content"),
            "expected a string or a list of text blocks",
        )),
    }
}

impl ToolBody {
    fn validate(self, i: usize) -> Result<ToolDefinition, ApiError> {
        if self.kind.as_deref().is_some_and(|k| k != "custom") {
            return Err(invalid(&format!("tools[{i}].type"), NOT_CARRIED));
        }
        match &self.input_schema {
            Some(Value::Object(_)) => {}
            None => return Err(invalid(&format!("tools[{i}].input_schema"), "missing")),
            Some(_) => {
                return Err(invalid(
                    &format!("tools[{i}].input_schema"),
                    "expected a JSON Schema object",
                ));
            }
        }
        Ok(ToolDefinition {
            name: self.name,
            description: self.description,
            parameters: self.input_schema,
            strict: None,
        })
    }
}

/// `tool_choice` in the gateway's words, and whether parallel calls stay on.
fn tool_choice(choice: &Value) -> Result<(Option<ToolChoice>, Option<bool>), ApiError> {
    let why = "expected {\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": \"none\"} or {\"type\": \"tool\", \"name\": …}";
    let kind = choice
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("tool_choice", why))?;
    let choice_of = match kind {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Function(string_at(choice, "name", "tool_choice.name")?.to_owned()),
        _ => return Err(invalid("tool_choice.type", why)),
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) => Some(!disable),
        Some(_) => {
            return Err(invalid(
                "tool_choice.disable_parallel_tool_use",
                "expected a boolean",
            ));
        }
    };
    Ok((Some(choice_of), parallel))
}

/// Extracts a [`MessagesRequest`], answering a bad body in Anthropic's shape.
#[derive(Debug)]
pub struct MessagesBody(pub MessagesRequest);

impl<S: Send + Sync> FromRequest<S> for MessagesBody {
    type Rejection = AnthropicError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        Ok(MessagesBody(MessagesRequest::from_slice(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<MessagesRequest, ApiError> {
        MessagesRequest::from_slice(body.to_string().as_bytes())
    }

    fn shape(body: Value) -> String {
        match parse(body) {
            Err(ApiError::InvalidRequest(m)) => m,
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn a_tool_loop_of_the_anthropic_docs_is_read_into_the_model() {
        // The tool use example of Anthropic's documentation, second turn.
        let request = parse(serde_json::json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are a weather bot."}],
            "tools": [{"name": "get_weather", "description": "Get the current weather",
                "input_schema": {"type": "object",
                    "properties": {"location": {"type": "string"}}, "required": ["location"]}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "u-1"},
            "stop_sequences": ["END"], "top_k": 5, "temperature": 0.5,
            "messages": [
                {"role": "user", "content": "What's the weather like in San Francisco?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "I'll check."},
                    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                     "name": "get_weather", "input": {"location": "San Francisco, CA"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                     "content": [{"type": "text", "text": "15 degrees"}]},
                    {"type": "text", "text": "And tomorrow?"}]}
            ]
        }))
        .unwrap();
        let m = &request.messages;
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(
            (m[0].role, m[0].content.as_str()),
            (Role::System, "You are a weather bot.")
        );
        assert_eq!(m[1].role, Role::User);
        assert_eq!(
            (m[2].role, m[2].content.as_str()),
            (Role::Assistant, "I'll check.")
        );
        assert_eq!(
            m[2].tool_calls,
            [ToolCall {
                id: "toolu_01A09q90qw90lq917835lq9".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"San Francisco, CA"}"#.into(),
            }]
        );
        assert_eq!(
            (m[3].role, m[3].content.as_str()),
            (Role::Tool, "15 degrees")
        );
        assert_eq!(
            m[3].tool_call_id.as_deref(),
            Some("toolu_01A09q90qw90lq917835lq9")
        );
        assert_eq!(
            (m[4].role, m[4].content.as_str()),
            (Role::User, "And tomorrow?")
        );
        assert_eq!(request.tools[0].name, "get_weather");
        assert_eq!(request.options.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(request.options.parallel_tool_calls, Some(false));
        assert_eq!(request.options.max_tokens, Some(1024));
        assert_eq!(request.options.top_k, Some(5));
        assert_eq!(request.options.user.as_deref(), Some("u-1"));
        assert_eq!(request.options.stop, ["END"]);
        assert_eq!(request.model, "claude-sonnet-4-5");
        assert!(!request.stream);
    }

    #[test]
    fn a_user_turn_of_tool_results_only_adds_no_empty_text() {
        let request = parse(
            serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": "ok"}]}]}),
        )
        .unwrap();
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].role, Role::Tool);
    }

    #[test]
    fn wrong_shapes_and_uncarried_blocks_are_refused_by_field() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        for (body, message) in [
            (
                serde_json::json!({"max_tokens": 1, "messages": user}),
                "model: missing",
            ),
            (
                serde_json::json!({"model": "m", "messages": user}),
                "max_tokens: missing",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
                    {"role": "system", "content": "x"}]}),
                "messages[0].role: expected \"user\" or \"assistant\"",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
                    {"role": "user", "content": [{"type": "document", "source": {
                        "type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]}),
                "messages[0].content[0].type: not supported by the gateway yet; the request is refused rather than answered without it",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {
                        "type": "url", "url": "http://example.com/a.png"}}]}]}),
                "messages[0].content[0].source.url: expected an `https://` URL",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f",
                        "input": {}}]}]}),
                "messages[0].content[0].type: a tool_use block belongs to an assistant turn, a tool_result block to a user turn",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": user,
                    "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type: not supported by the gateway yet; the request is refused rather than answered without it",
            ),
            (
                serde_json::json!({"model": "m", "max_tokens": 1, "messages": user,
                    "tool_choice": {"type": "sometimes"}}),
                "tool_choice.type: expected {\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": \"none\"} or {\"type\": \"tool\", \"name\": …}",
            ),
        ] {
            assert_eq!(shape(body.clone()), message, "{body}");
        }
    }
}
