//! The body of `POST /v1/chat/completions` on the wire, read by the one
//! reader ([`read`]) and validated into a [`CompletionRequest`].
//!
//! Fields OpenAI defines that the gateway does not carry yet (`n` other than
//! 1, functions, log probabilities, audio,
//! predictions, web search, reasoning effort, verbosity, tool and function
//! messages, non-text content parts) are refused, naming the field, rather than dropped: a client must
//! never get an answer made without a setting it sent. A value that asks for
//! nothing (`"tools": []`, `"response_format": {"type": "text"}`, …) is
//! accepted. Other unknown fields are ignored.

use std::fmt;
use std::str::FromStr;

use axum::extract::{FromRequest, Request};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ApiError, OpenAiError};
use super::request::{Object, Words, body_bytes, invalid, messages, present, read, word};
use crate::chat::{ChatMessage, Image, ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use crate::names::Role;
use crate::providers::GenerationOptions;

/// A validated OpenAI chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The messages, with text parts joined.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// The model asked for; `None` when absent or `null`.
    pub model: Option<String>,
    /// Whether to answer with a stream of chunks.
    pub stream: bool,
    /// Settings passed on to the provider.
    pub options: GenerationOptions,
}

impl CompletionRequest {
    /// Parses and validates a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        let Object(body) = read::<Object<CompletionRequestBody>>(body)?;
        body.validate()
    }
}

/// `POST /v1/chat/completions`: OpenAI's request body. Fields not listed are
/// ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CompletionRequest)]
pub(crate) struct CompletionRequestBody {
    /// At least one message.
    #[serde(deserialize_with = "messages")]
    #[schema(value_type = Vec<CompletionMessage>, min_items = 1)]
    messages: Vec<Object<CompletionMessage>>,
    /// The requested model, which `model` policy conditions match. A name
    /// listed by `GET /v1/models` (or absent) means the chosen provider's
    /// configured model; any other name is sent to the chosen provider.
    model: Option<String>,
    /// `true`: answer with `text/event-stream` chunks.
    stream: Option<bool>,
    /// Only `1` is supported.
    #[schema(minimum = 1, maximum = 1)]
    n: Option<u64>,
    /// With `stream`: `include_usage` adds a last chunk with the token counts.
    #[schema(value_type = Option<StreamOptions>)]
    stream_options: Option<Object<StreamOptions>>,
    /// Sequences that end the reply.
    stop: Option<Stop>,
    /// Sampling temperature, passed on.
    temperature: Option<f64>,
    /// Nucleus sampling, passed on.
    top_p: Option<f64>,
    /// Reply length limit, passed on.
    #[schema(minimum = 0)]
    max_tokens: Option<u64>,
    /// Reply length limit, passed on (wins over `max_tokens`).
    #[schema(minimum = 0)]
    max_completion_tokens: Option<u64>,
    /// The end user's id, passed on.
    user: Option<String>,
    /// Passed on to OpenAI; not sent to Anthropic or Ollama, which have no
    /// such setting.
    seed: Option<i64>,
    /// Passed on to OpenAI; not sent to Anthropic or Ollama.
    presence_penalty: Option<f64>,
    /// Passed on to OpenAI; not sent to Anthropic or Ollama.
    frequency_penalty: Option<f64>,
    /// Token id to bias; passed on to OpenAI; not sent to Anthropic or Ollama.
    #[schema(value_type = Option<Object>)]
    logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    /// The functions the model may call. Each is read by the policy (name,
    /// description and parameter schema), as a unit of scope `all`.
    #[schema(value_type = Option<Vec<ToolBody>>)]
    tools: Option<Vec<Object<ToolBody>>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "function":
    /// {"name": …}}`.
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<serde_json::Value>,
    /// Whether the model may call several tools in one answer.
    parallel_tool_calls: Option<bool>,
    /// Not supported: refused unless empty.
    #[schema(value_type = Option<Vec<Object>>)]
    functions: Option<serde_json::Value>,
    /// Not supported: refused unless `none` or `auto`.
    #[schema(value_type = Option<Object>)]
    function_call: Option<serde_json::Value>,
    /// `text`, `json_object`, or `json_schema` (its schema is read by the
    /// policy, like a tool definition).
    #[schema(value_type = Option<Object>)]
    response_format: Option<serde_json::Value>,
    /// Not supported yet: refused unless `false`.
    logprobs: Option<bool>,
    /// Not supported yet: refused.
    top_logprobs: Option<u64>,
    /// Not supported: refused.
    #[schema(value_type = Option<Object>)]
    audio: Option<serde_json::Value>,
    /// Refused unless `["text"]`.
    #[schema(value_type = Option<Vec<String>>)]
    modalities: Option<serde_json::Value>,
    /// Not supported: refused.
    #[schema(value_type = Option<Object>)]
    prediction: Option<serde_json::Value>,
    /// Not supported: refused.
    #[schema(value_type = Option<Object>)]
    web_search_options: Option<serde_json::Value>,
    /// Not supported yet: refused.
    #[schema(value_type = Option<String>)]
    reasoning_effort: Option<serde_json::Value>,
    /// Not supported yet: refused.
    #[schema(value_type = Option<String>)]
    verbosity: Option<serde_json::Value>,
}

/// Why a field the gateway does not carry yet is refused.
const NOT_CARRIED: &str = "not supported by the gateway yet; the request is refused rather than \
     answered without it";

/// The first field of `body` that asks for something the gateway does not
/// carry, with why.
fn refused_field(body: &CompletionRequestBody) -> Option<(&'static str, &'static str)> {
    use serde_json::Value;
    let absent = |v: &Option<Value>| v.as_ref().is_none_or(Value::is_null);
    let empty = |v: &Option<Value>| {
        absent(v)
            || v.as_ref()
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
    };
    let one_of = |v: &Option<Value>, words: &[&str]| {
        absent(v)
            || v.as_ref()
                .and_then(Value::as_str)
                .is_some_and(|w| words.contains(&w))
    };
    let text_only =
        |v: &Option<Value>| absent(v) || v.as_ref() == Some(&serde_json::json!(["text"]));
    [
        ("functions", empty(&body.functions)),
        (
            "function_call",
            one_of(&body.function_call, &["none", "auto"]),
        ),
        ("logprobs", body.logprobs != Some(true)),
        ("top_logprobs", body.top_logprobs.is_none()),
        ("audio", absent(&body.audio)),
        ("modalities", text_only(&body.modalities)),
        ("prediction", absent(&body.prediction)),
        ("web_search_options", absent(&body.web_search_options)),
        ("reasoning_effort", absent(&body.reasoning_effort)),
        ("verbosity", absent(&body.verbosity)),
    ]
    .into_iter()
    .find(|(_, fine)| !fine)
    .map(|(field, _)| (field, NOT_CARRIED))
}

impl CompletionRequestBody {
    fn validate(self) -> Result<CompletionRequest, ApiError> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(invalid("n", "only one choice (n: 1) is supported"));
        }
        if let Some((field, why)) = refused_field(&self) {
            return Err(invalid(field, why));
        }
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, Object(t))| t.validate(i))
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.map(tool_choice).transpose()?;
        let response_format = match self.response_format {
            None | Some(serde_json::Value::Null) => None,
            Some(format) => response_format(&format)?,
        };
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, Object(m))| m.validate(i))
            .collect::<Result<_, _>>()?;
        let options = GenerationOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            stop: self.stop.map(|Stop(stop)| stop).unwrap_or_default(),
            user: self.user,
            include_usage: self
                .stream_options
                .and_then(|Object(o)| o.include_usage)
                .unwrap_or(false),
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format,
        };
        Ok(CompletionRequest {
            messages,
            tools,
            model: self.model,
            stream: self.stream.unwrap_or(false),
            options,
        })
    }
}

/// One entry of `tools`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Tool)]
struct ToolBody {
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    kind: String,
    /// The function.
    #[schema(value_type = FunctionBody)]
    function: Object<FunctionBody>,
}

/// A function the model may call.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Function)]
struct FunctionBody {
    /// Its name.
    name: String,
    /// What it does.
    description: Option<String>,
    /// Its parameters: a JSON Schema object.
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow the schema exactly.
    strict: Option<bool>,
}

impl ToolBody {
    fn validate(self, i: usize) -> Result<ToolDefinition, ApiError> {
        if self.kind != "function" {
            return Err(invalid(
                &format!("tools[{i}].type"),
                "only `function` tools are supported",
            ));
        }
        let Object(f) = self.function;
        if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(invalid(
                &format!("tools[{i}].function.parameters"),
                "expected a JSON Schema object",
            ));
        }
        Ok(ToolDefinition {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
            strict: f.strict,
        })
    }
}

/// `response_format`: `text` (nothing asked), `json_object` or
/// `json_schema` with its `name` and `schema`.
fn response_format(value: &serde_json::Value) -> Result<Option<ResponseFormat>, ApiError> {
    use serde_json::Value;
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let spec = value
                .get("json_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| invalid("response_format.json_schema", "missing"))?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("response_format.json_schema.name", "missing"))?;
            let schema = spec
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    invalid(
                        "response_format.json_schema.schema",
                        "expected a JSON Schema object",
                    )
                })?;
            Ok(Some(ResponseFormat::JsonSchema {
                name: name.to_owned(),
                schema: schema.clone(),
                strict: spec.get("strict").and_then(Value::as_bool),
            }))
        }
        _ => Err(invalid(
            "response_format.type",
            "expected `text`, `json_object` or `json_schema`",
        )),
    }
}

/// `tool_choice`: a word, or one function.
fn tool_choice(value: serde_json::Value) -> Result<ToolChoice, ApiError> {
    let why = "expected `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": …}}";
    match &value {
        serde_json::Value::String(word) => match word.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            _ => Err(invalid("tool_choice", why)),
        },
        serde_json::Value::Object(_) => value
            .pointer("/function/name")
            .and_then(serde_json::Value::as_str)
            .filter(|_| value.get("type").and_then(serde_json::Value::as_str) == Some("function"))
            .map(|name| ToolChoice::Function(name.to_owned()))
            .ok_or_else(|| invalid("tool_choice", why)),
        _ => Err(invalid("tool_choice", why)),
    }
}

/// An assistant's earlier call of a tool.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ToolCall)]
struct ToolCallBody {
    /// The call's id.
    id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    kind: Option<String>,
    /// The function called and its arguments.
    #[schema(value_type = FunctionCallBody)]
    function: Object<FunctionCallBody>,
}

/// The function of a tool call.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = FunctionCall)]
struct FunctionCallBody {
    /// The function's name.
    name: String,
    /// Its arguments: a JSON text.
    arguments: String,
}

/// `stream_options`.
#[derive(Debug, Deserialize, ToSchema)]
struct StreamOptions {
    /// Add a final chunk with `usage` (when the provider reports it).
    include_usage: Option<bool>,
}

/// `stop`: a string or a list of strings.
#[derive(Debug)]
struct Stop(Vec<String>);

impl PartialSchema for Stop {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        OneOfBuilder::new()
            .item(string().description(Some("One sequence.")))
            .item(
                ArrayBuilder::new()
                    .items(string())
                    .description(Some("Several.")),
            )
            .description(Some("One stop sequence or several."))
            .into()
    }
}

impl ToSchema for Stop {}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor;

        impl<'de> Visitor<'de> for StopVisitor {
            type Value = Stop;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Stop, E> {
                Ok(Stop(vec![s.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut stop = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    stop.push(s);
                }
                Ok(Stop(stop))
            }
        }

        deserializer.deserialize_any(StopVisitor)
    }
}

/// One message of a completion request.
#[derive(Debug, Deserialize, ToSchema)]
struct CompletionMessage {
    /// Who wrote it.
    #[serde(deserialize_with = "word")]
    role: CompletionRole,
    /// A string, or text parts (joined as they are); `null` only for an
    /// assistant.
    // Absent is `None`, `null` is `Some(None)`: an assistant may send either.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<CompletionContent>)]
    content: Option<Option<CompletionContent>>,
    /// An assistant's calls of tools.
    #[schema(value_type = Option<Vec<ToolCallBody>>)]
    tool_calls: Option<Vec<Object<ToolCallBody>>>,
    /// A `tool` message: the id of the call it answers.
    tool_call_id: Option<String>,
}

impl CompletionMessage {
    /// The message as the policy and the providers see it: `developer` counts
    /// as `system`; text parts are joined as they are, so the policy sees
    /// exactly the text the provider gets.
    fn validate(self, i: usize) -> Result<ChatMessage, ApiError> {
        let role = match self.role {
            CompletionRole::User => Role::User,
            CompletionRole::Assistant => Role::Assistant,
            CompletionRole::System | CompletionRole::Developer => Role::System,
            CompletionRole::Tool => Role::Tool,
            CompletionRole::Function => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    "function messages are not supported: send tool calls and `tool` messages",
                ));
            }
        };
        let tool_calls = match self.tool_calls {
            Some(calls) if role == Role::Assistant => calls
                .into_iter()
                .enumerate()
                .map(|(j, Object(call))| {
                    if call.kind.as_deref().is_some_and(|k| k != "function") {
                        return Err(invalid(
                            &format!("messages[{i}].tool_calls[{j}].type"),
                            "only `function` calls are supported",
                        ));
                    }
                    let Object(f) = call.function;
                    // Anthropic and Ollama take the arguments as an object.
                    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                        &f.arguments,
                    )
                    .is_err()
                    {
                        return Err(invalid(
                            &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            "expected a JSON object, as text",
                        ));
                    }
                    Ok(ToolCall {
                        id: call.id,
                        name: f.name,
                        arguments: f.arguments,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(invalid(
                    &format!("messages[{i}].tool_calls"),
                    "only an assistant message calls tools",
                ));
            }
            None => Vec::new(),
        };
        let tool_call_id = match (role, self.tool_call_id) {
            (Role::Tool, Some(id)) => Some(id),
            (Role::Tool, None) => {
                return Err(invalid(&format!("messages[{i}].tool_call_id"), "missing"));
            }
            (_, _) => None,
        };
        let mut images = Vec::new();
        let content = match self.content {
            Some(Some(CompletionContent::Text(text))) => text,
            Some(Some(CompletionContent::Parts(parts))) => {
                let mut text = String::new();
                for (j, Object(part)) in parts.into_iter().enumerate() {
                    let at = format!("messages[{i}].content[{j}]");
                    match (part.kind, part.text) {
                        (PartKind::Text, Some(t)) => text.push_str(&t),
                        (PartKind::Text, None) => {
                            return Err(invalid(&format!("{at}.text"), "missing"));
                        }
                        (PartKind::ImageUrl, _) if role == Role::User => {
                            let Some(Object(image)) = part.image_url else {
                                return Err(invalid(&format!("{at}.image_url"), "missing"));
                            };
                            let _ = image.detail;
                            images.push(
                                Image::from_url(&image.url)
                                    .map_err(|why| invalid(&format!("{at}.image_url.url"), why))?,
                            );
                        }
                        (PartKind::ImageUrl, _) => {
                            return Err(invalid(
                                &format!("{at}.type"),
                                "only a user message carries images",
                            ));
                        }
                        (PartKind::Other, _) => {
                            return Err(invalid(
                                &format!("{at}.type"),
                                "only text and image_url parts are supported",
                            ));
                        }
                    }
                }
                text
            }
            None | Some(None) if role == Role::Assistant => String::new(),
            None => return Err(invalid(&format!("messages[{i}].content"), "missing")),
            Some(None) => {
                return Err(invalid(
                    &format!("messages[{i}].content"),
                    "expected a string or a list of text parts, got null",
                ));
            }
        };
        Ok(ChatMessage {
            tool_calls,
            tool_call_id,
            images,
            ..ChatMessage::new(role, content)
        })
    }
}

/// A message's `role` as OpenAI defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompletionRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl FromStr for CompletionRole {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "system" => CompletionRole::System,
            "developer" => CompletionRole::Developer,
            "user" => CompletionRole::User,
            "assistant" => CompletionRole::Assistant,
            "tool" => CompletionRole::Tool,
            "function" => CompletionRole::Function,
            _ => return Err(()),
        })
    }
}

impl Words for CompletionRole {
    // Function messages are read, then refused with their own reason.
    const EXPECTED: &'static [&'static str] = &["system", "developer", "user", "assistant", "tool"];
}

impl PartialSchema for CompletionRole {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::EXPECTED.iter().copied()))
            .description(Some(
                "The roles accepted; `developer` counts as `system`; a `tool` message\n\
                 answers a tool call. Function messages are refused.",
            ))
            .into()
    }
}

impl ToSchema for CompletionRole {}

/// A message's `content`: a string or a list of parts.
#[derive(Debug)]
enum CompletionContent {
    Text(String),
    Parts(Vec<Object<ContentPart>>),
}

impl PartialSchema for CompletionContent {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Plain text.")),
            )
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(ContentPart::name()))
                    .description(Some("Text parts; other part types are refused.")),
            )
            .description(Some("A message's content."))
            .into()
    }
}

impl ToSchema for CompletionContent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ContentPart::name().into(), ContentPart::schema()));
        schemas.push((ImageUrl::name().into(), ImageUrl::schema()));
    }
}

impl<'de> Deserialize<'de> for CompletionContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = CompletionContent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of text parts")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CompletionContent::Text(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CompletionContent::Text(s))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(CompletionContent::Parts(parts))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// A text part.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TextPart)]
struct ContentPart {
    /// `text` or `image_url`.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(text|image_url)$")]
    kind: PartKind,
    /// The text of a `text` part.
    #[schema(value_type = String)]
    text: Option<String>,
    /// The image of an `image_url` part.
    #[schema(value_type = Option<ImageUrl>)]
    image_url: Option<Object<ImageUrl>>,
}

/// An `image_url` part's image.
#[derive(Debug, Deserialize, ToSchema)]
struct ImageUrl {
    /// A `data:<type>;base64,<data>` URL, or an `https` URL the provider
    /// fetches (the gateway never does).
    url: String,
    /// OpenAI's `detail` (`auto`, `low`, `high`): read, not forwarded.
    detail: Option<String>,
}

/// A part's `type`: text, or a kind the gateway does not relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    ImageUrl,
    Other,
}

impl<'de> Deserialize<'de> for PartKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;

        impl Visitor<'_> for KindVisitor {
            type Value = PartKind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<PartKind, E> {
                Ok(match s {
                    "text" => PartKind::Text,
                    "image_url" => PartKind::ImageUrl,
                    _ => PartKind::Other,
                })
            }
        }

        deserializer.deserialize_str(KindVisitor)
    }
}

/// Extracts a [`CompletionRequest`], answering a bad body in OpenAI's shape.
#[derive(Debug)]
pub struct CompletionBody(pub CompletionRequest);

impl<S: Send + Sync> FromRequest<S> for CompletionBody {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        Ok(CompletionBody(CompletionRequest::from_slice(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<CompletionRequest, ApiError> {
        CompletionRequest::from_slice(body.to_string().as_bytes())
    }

    fn shape(body: serde_json::Value) -> String {
        match parse(body.clone()) {
            Err(ApiError::InvalidRequest(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_full_request_is_read() {
        let request = parse(serde_json::json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
                {"role": "assistant", "content": null},
                {"role": "assistant"},
                {"role": "user", "content": "again", "name": "ann"}
            ],
            "stream": true,
            "n": 1,
            "stream_options": {"include_usage": true},
            "stop": ["\n\n", "END"],
            "temperature": 0.2,
            "top_p": 1,
            "max_tokens": 64,
            "max_completion_tokens": 32,
            "user": "u-1",
            "logit_bias": {"50256": -100}
        }))
        .expect("valid");
        assert_eq!(request.model.as_deref(), Some("gpt-4o"));
        assert!(request.stream);
        let texts: Vec<(Role, &str)> = request
            .messages
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (Role::System, "be brief"),
                (Role::User, "hello"),
                (Role::Assistant, ""),
                (Role::Assistant, ""),
                (Role::User, "again"),
            ]
        );
        let o = &request.options;
        assert_eq!(o.temperature, Some(0.2));
        assert_eq!(o.top_p, Some(1.0));
        assert_eq!(
            (o.max_tokens, o.max_completion_tokens),
            (Some(64), Some(32))
        );
        assert_eq!(o.stop, ["\n\n", "END"]);
        assert_eq!(o.user.as_deref(), Some("u-1"));
        assert!(o.include_usage);
    }

    #[test]
    fn absent_and_null_fields_take_their_defaults() {
        let request = parse(serde_json::json!({
            "messages": [{"role": "user", "content": "hi"}],
            "model": null, "stream": null, "n": null, "stream_options": null, "stop": null,
            "temperature": null, "max_tokens": null, "user": null
        }))
        .expect("valid");
        assert_eq!(request.model, None);
        assert!(!request.stream);
        assert_eq!(request.options, GenerationOptions::default());
        let request = parse(serde_json::json!({
            "messages": [{"role": "user", "content": "hi"}], "stop": "END",
            "stream_options": {}
        }))
        .expect("valid");
        assert_eq!(request.options.stop, ["END"]);
        assert!(!request.options.include_usage);
    }

    #[test]
    fn wrong_shapes_name_the_field_in_the_chat_apis_wording() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        for (body, message) in [
            (
                serde_json::json!([]),
                "request body: expected an object, got a list",
            ),
            (serde_json::json!({}), "messages: missing"),
            (
                serde_json::json!({"messages": []}),
                "messages: must hold at least one message",
            ),
            (
                serde_json::json!({"messages": [["user", "hi"]]}),
                "messages[0]: expected an object, got a list",
            ),
            (
                serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id: missing",
            ),
            (
                serde_json::json!({"messages": [{"role": "function", "content": "x"}]}),
                "messages[0].role: function messages are not supported: send tool calls and `tool` messages",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x",
                    "tool_calls": []}]}),
                "messages[0].tool_calls: only an assistant message calls tools",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "content": null,
                    "tool_calls": [{"id": "c", "type": "function",
                        "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments: expected a JSON object, as text",
            ),
            (
                serde_json::json!({"messages": user, "tools": [{"type": "retrieval"}]}),
                "tools[0].function: missing",
            ),
            (
                serde_json::json!({"messages": user, "tools": [{"type": "retrieval",
                    "function": {"name": "f"}}]}),
                "tools[0].type: only `function` tools are supported",
            ),
            (
                serde_json::json!({"messages": user, "tools": [{"type": "function",
                    "function": {"name": "f", "parameters": []}}]}),
                "tools[0].function.parameters: expected a JSON Schema object",
            ),
            (
                serde_json::json!({"messages": user, "tool_choice": "always"}),
                "tool_choice: expected `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": …}}",
            ),
            (
                serde_json::json!({"messages": [{"role": "robot", "content": "x"}]}),
                r#"messages[0].role: expected "system", "developer", "user", "assistant" or "tool", got another string"#,
            ),
            (
                serde_json::json!({"messages": [{"role": "user"}]}),
                "messages[0].content: missing",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": null}]}),
                "messages[0].content: expected a string or a list of text parts, got null",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": 4}]}),
                "messages[0].content: expected a string or a list of text parts, got a number",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "data:,"}}]}]}),
                "messages[0].content[1].image_url.url: a data URL must be `data:<media type>;base64,<data>`",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]}),
                "messages[0].content[0].type: only text and image_url parts are supported",
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
                "messages[0].content[0].type: only a user message carries images",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}),
                "messages[0].content[0].image_url.url: expected a `data:` URL or an `https://` URL",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"text": "a"}]}]}),
                "messages[0].content[0].type: missing",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": 1}]}]}),
                "messages[0].content[0].type: expected a string, got a number",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "messages[0].content[0].text: missing",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
                "messages[0].content[0].text: expected a string, got a number",
            ),
            (
                serde_json::json!({"messages": user, "n": 2}),
                "n: only one choice (n: 1) is supported",
            ),
            (
                serde_json::json!({"messages": user, "max_tokens": -1}),
                "max_tokens: expected a whole number ≥ 0, got a number",
            ),
            (
                serde_json::json!({"messages": user, "max_completion_tokens": 1.5}),
                "max_completion_tokens: expected a whole number ≥ 0, got a number",
            ),
            (
                serde_json::json!({"messages": user, "temperature": "hot"}),
                "temperature: expected a number, got a string",
            ),
            (
                serde_json::json!({"messages": user, "stream": "yes"}),
                "stream: expected a boolean, got a string",
            ),
            (
                serde_json::json!({"messages": user, "stream_options": []}),
                "stream_options: expected an object, got a list",
            ),
            (
                serde_json::json!({"messages": user, "stream_options": {"include_usage": 1}}),
                "stream_options.include_usage: expected a boolean, got a number",
            ),
            (
                serde_json::json!({"messages": user, "stop": [1]}),
                "stop[0]: expected a string, got a number",
            ),
            (
                serde_json::json!({"messages": user, "stop": {}}),
                "stop: expected a string or a list of strings, got an object",
            ),
            (
                serde_json::json!({"messages": user, "user": 7}),
                "user: expected a string, got a number",
            ),
        ] {
            assert_eq!(shape(body.clone()), message, "{body}");
        }
    }

    #[test]
    fn a_field_the_gateway_does_not_carry_is_refused_by_name_unless_it_asks_for_nothing() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        for (field, value) in [
            ("functions", serde_json::json!([{"name": "f"}])),
            ("function_call", serde_json::json!({"name": "f"})),
            ("logprobs", serde_json::json!(true)),
            ("top_logprobs", serde_json::json!(3)),
            (
                "audio",
                serde_json::json!({"voice": "alloy", "format": "mp3"}),
            ),
            ("modalities", serde_json::json!(["text", "audio"])),
            (
                "prediction",
                serde_json::json!({"type": "content", "content": "x"}),
            ),
            ("web_search_options", serde_json::json!({})),
            ("reasoning_effort", serde_json::json!("high")),
            ("verbosity", serde_json::json!("low")),
        ] {
            let mut body = serde_json::json!({"messages": user});
            body[field] = value.clone();
            let message = shape(body);
            assert!(
                message.starts_with(&format!("{field}: not supported")),
                "{field}={value}: {message}"
            );
        }
        for (field, value) in [
            ("tools", serde_json::json!([])),
            ("tools", serde_json::Value::Null),
            ("parallel_tool_calls", serde_json::json!(true)),
            ("functions", serde_json::json!([])),
            ("function_call", serde_json::json!("none")),
            ("response_format", serde_json::json!({"type": "text"})),
            ("logprobs", serde_json::json!(false)),
            ("modalities", serde_json::json!(["text"])),
        ] {
            let mut body = serde_json::json!({"messages": user});
            body[field] = value.clone();
            assert!(parse(body).is_ok(), "{field}={value} asks for nothing");
        }
    }

    #[test]
    fn tools_calls_and_results_are_read_into_the_request() {
        let request = parse(serde_json::json!({
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1",
                 "content": [{"type": "text", "text": "18 °C"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather now", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
        }))
        .unwrap();
        assert_eq!(
            request.messages[1].tool_calls,
            [ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            }]
        );
        assert_eq!(request.messages[1].content, "");
        assert_eq!(request.messages[2].role, Role::Tool);
        assert_eq!(request.messages[2].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(request.messages[2].content, "18 °C");
        assert_eq!(request.tools.len(), 1);
        assert_eq!(request.tools[0].name, "get_weather");
        assert_eq!(request.tools[0].strict, Some(true));
        assert_eq!(
            request.options.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(request.options.parallel_tool_calls, Some(false));
        for (word, choice) in [
            ("none", ToolChoice::None),
            ("auto", ToolChoice::Auto),
            ("required", ToolChoice::Required),
        ] {
            let request = parse(serde_json::json!({
                "messages": [{"role": "user", "content": "hi"}], "tool_choice": word}))
            .unwrap();
            assert_eq!(request.options.tool_choice, Some(choice));
        }
    }

    #[test]
    fn response_formats_are_read_and_a_bad_one_named() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        let read = |format: serde_json::Value| {
            parse(serde_json::json!({"messages": user, "response_format": format}))
                .map(|r| r.options.response_format)
        };
        assert_eq!(read(serde_json::json!({"type": "text"})).unwrap(), None);
        assert_eq!(
            read(serde_json::json!({"type": "json_object"})).unwrap(),
            Some(ResponseFormat::JsonObject)
        );
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(
            read(serde_json::json!({"type": "json_schema", "json_schema": {
                "name": "answer", "schema": schema, "strict": true}}))
            .unwrap(),
            Some(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: schema.clone(),
                strict: Some(true),
            })
        );
        for (format, message) in [
            (
                serde_json::json!({"type": "yaml"}),
                "response_format.type: expected `text`, `json_object` or `json_schema`",
            ),
            (
                serde_json::json!({"type": "json_schema"}),
                "response_format.json_schema: missing",
            ),
            (
                serde_json::json!({"type": "json_schema", "json_schema": {"name": "a", "schema": 1}}),
                "response_format.json_schema.schema: expected a JSON Schema object",
            ),
        ] {
            assert_eq!(
                shape(serde_json::json!({"messages": user, "response_format": format})),
                message
            );
        }
    }

    #[test]
    fn openai_only_settings_are_read_for_openai() {
        let request = parse(serde_json::json!({
            "messages": [{"role": "user", "content": "hi"}],
            "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -1.0,
            "logit_bias": {"1734": -100},
        }))
        .unwrap();
        assert_eq!(request.options.seed, Some(42));
        assert_eq!(request.options.presence_penalty, Some(0.5));
        assert_eq!(request.options.frequency_penalty, Some(-1.0));
        assert_eq!(
            request.options.logit_bias,
            serde_json::json!({"1734": -100}).as_object().cloned()
        );
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in ["", "{", r#"{"messages": [}"#] {
            assert!(
                matches!(
                    CompletionRequest::from_slice(body.as_bytes()),
                    Err(ApiError::InvalidJson(_))
                ),
                "{body:?}"
            );
        }
    }
}
