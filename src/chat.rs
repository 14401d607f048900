//! The chat request as every entry point receives it (`/v1/chat`, `/v1/decide`,
//! `/v1/chat/completions`, `policy-mesh decide`, policy test cases), and the
//! text units of it that leave the machine: what the policy decides on, the
//! prompt hash covers and input chars count.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::Role;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system`, or `tool` (a tool's result).
    pub role: Role,
    /// The text, which may be empty; for a `tool` message, the tool's result.
    pub content: String,
    /// An assistant's calls of the tools it was offered, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's answer to this call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The message's images, after its text. Not text: the policy does not
    /// read them (only `has_images` looks at whether there are any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
}

/// An image of a message: its bytes inline, or an `https` URL the provider
/// fetches (the gateway never does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "type")]
pub enum Image {
    /// Inline: base64 of the bytes, with their media type.
    Base64 {
        /// `image/png`, `image/jpeg`, …
        media_type: String,
        /// The bytes, base64.
        data: String,
    },
    /// An `https` URL.
    Url {
        /// The URL.
        url: String,
    },
}

impl Image {
    /// Reads OpenAI's `image_url.url`: a `data:<type>;base64,<data>` URL or an
    /// `https` URL. `Err` says why not.
    pub fn from_url(url: &str) -> Result<Image, &'static str> {
        if let Some(rest) = url.strip_prefix("data:") {
            let (media_type, data) = rest
                .split_once(";base64,")
                .ok_or("a data URL must be `data:<media type>;base64,<data>`")?;
            if !media_type.starts_with("image/") || data.is_empty() {
                return Err("a data URL must hold an image/… media type and data");
            }
            return Ok(Image::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            });
        }
        if url.starts_with("https://") {
            return Ok(Image::Url {
                url: url.to_owned(),
            });
        }
        Err("expected a `data:` URL or an `https://` URL")
    }

    /// OpenAI's `image_url.url` for this image.
    pub fn to_url(&self) -> String {
        match self {
            Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
            Image::Url { url } => url.clone(),
        }
    }
}

impl ChatMessage {
    /// A message of `role` with `content` and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            images: Vec::new(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::User, content)
    }
}

/// One call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The call's id, which the `tool` message answering it names.
    pub id: String,
    /// The function called.
    pub name: String,
    /// Its arguments: a JSON text, as the model wrote it.
    pub arguments: String,
}

/// A tool (a function) the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDefinition {
    /// The function's name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its parameters: a JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// OpenAI's `strict`: the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ToolDefinition {
    /// The text the policy reads: name, description and parameter schema
    /// as compact JSON (object keys sorted).
    pub fn text(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("name".into(), self.name.clone().into());
        if let Some(description) = &self.description {
            object.insert("description".into(), description.clone().into());
        }
        if let Some(parameters) = &self.parameters {
            object.insert("parameters".into(), parameters.clone());
        }
        serde_json::Value::Object(object).to_string()
    }
}

/// The form of the reply, OpenAI's `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
        /// Whether the reply must follow it exactly.
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// The schema as the policy reads it: a unit like a tool definition (its
    /// name and schema), `None` for a plain JSON object.
    pub fn as_tool(&self) -> Option<ToolDefinition> {
        match self {
            ResponseFormat::JsonObject => None,
            ResponseFormat::JsonSchema { name, schema, .. } => Some(ToolDefinition {
                name: name.clone(),
                description: None,
                parameters: Some(schema.clone()),
                strict: None,
            }),
        }
    }
}

/// Which tool the model must call, OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Call none: answer in text.
    None,
    /// The model chooses.
    Auto,
    /// Call at least one.
    Required,
    /// Call this function.
    Function(String),
}

/// One piece of text a provider receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextUnit<'a> {
    /// The text.
    pub text: std::borrow::Cow<'a, str>,
    /// Whether it is the text of the last user message (what `scope:
    /// last_user` reads).
    pub last_user: bool,
}

/// Every text unit of a request, in order: per message its text, then its
/// tool calls (the name, then the arguments); then each tool definition
/// ([`ToolDefinition::text`]). A `tool` message's text is the tool's result.
/// A plain text chat has one unit per message, its content.
pub fn text_units<'a>(
    messages: &'a [ChatMessage],
    tools: &'a [ToolDefinition],
) -> impl Iterator<Item = TextUnit<'a>> {
    use std::borrow::Cow;
    let last_user = messages.iter().rposition(|m| m.role == Role::User);
    messages
        .iter()
        .enumerate()
        .flat_map(move |(index, message)| {
            std::iter::once(TextUnit {
                text: Cow::Borrowed(message.content.as_str()),
                last_user: last_user == Some(index),
            })
            .chain(message.tool_calls.iter().flat_map(|call| {
                [call.name.as_str(), call.arguments.as_str()]
                    .into_iter()
                    .map(|text| TextUnit {
                        text: Cow::Borrowed(text),
                        last_user: false,
                    })
            }))
        })
        .chain(tools.iter().map(|tool| TextUnit {
            text: Cow::Owned(tool.text()),
            last_user: false,
        }))
}

/// Requests for the translation tests of every provider.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::providers::{ChatRequest, GenerationOptions};

    /// A two-turn tool loop as the OpenAI API carries it: the system prompt,
    /// the question, the model's call, the tool's result.
    pub(crate) fn tool_loop() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new(Role::System, "be brief"),
            ChatMessage::user("weather in Paris?"),
            ChatMessage {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
                ..ChatMessage::new(Role::Assistant, "")
            },
            ChatMessage {
                tool_call_id: Some("call_1".into()),
                ..ChatMessage::new(Role::Tool, "18 °C")
            },
        ]
    }

    /// The tool of [`tool_loop`].
    pub(crate) fn weather_tool() -> ToolDefinition {
        ToolDefinition {
            name: "get_weather".into(),
            description: Some("Weather now".into()),
            parameters: Some(serde_json::json!({"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]})),
            strict: None,
        }
    }

    /// `request_body` (a provider's) of the tool loop with `options`.
    pub(crate) fn tool_loop_body(
        request_body: fn(&ChatRequest<'_>, bool) -> serde_json::Value,
        options: &GenerationOptions,
    ) -> serde_json::Value {
        let messages = tool_loop();
        let tools = [weather_tool()];
        request_body(
            &ChatRequest {
                model: "m",
                messages: &messages,
                tools: &tools,
                options,
            },
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_per_message_text_then_calls_then_the_tool_definitions() {
        let messages = fixtures::tool_loop();
        let tools = [fixtures::weather_tool()];
        let units: Vec<(String, bool)> = text_units(&messages, &tools)
            .map(|u| (u.text.into_owned(), u.last_user))
            .collect();
        let expected: Vec<(String, bool)> = [
            ("be brief", false),
            ("weather in Paris?", true),
            ("", false),
            ("get_weather", false),
            (r#"{"city":"Paris"}"#, false),
            ("18 °C", false),
            (
                r#"{"description":"Weather now","name":"get_weather","parameters":{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}}"#,
                false,
            ),
        ]
        .into_iter()
        .map(|(t, l)| (t.to_owned(), l))
        .collect();
        assert_eq!(units, expected);
    }
}
