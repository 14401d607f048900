//! The chat request body shared by `/v1/decide` and `/v1/chat`, and the
//! extractor that turns any bad body into our error shape.
//!
//! Parsing is two steps so each failure gets its own answer: well-formed JSON
//! (syntax, UTF-8, surrogates, nesting at most [`MAX_DEPTH`]) or `400
//! invalid_json`; then the shape, checked by hand so the message names the
//! exact field (`messages[3].role`), or `422 invalid_request`. Unknown fields
//! are ignored, as OpenAI-style clients send extra ones.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::chat::ChatMessage;
use crate::names::Role;

/// Deepest nesting accepted: each object or array is one level, the body's
/// top-level object is level 1.
pub const MAX_DEPTH: usize = 128;

/// A validated chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// At least one message.
    pub messages: Vec<ChatMessage>,
    /// The model asked for; `None` when absent or `null`.
    pub model: Option<String>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        let value = parse_json(body)?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, ApiError> {
        let Value::Object(mut body) = value else {
            return Err(invalid("request body", "expected a JSON object"));
        };
        let messages = messages(&mut body, message)?;
        let model = match body.remove("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(invalid(
                    "model",
                    &format!("expected a string or null, got {}", kind(&other)),
                ));
            }
        };
        Ok(ChatRequest { messages, model })
    }
}

/// The `messages` field: a non-empty list, each item read by `message` with
/// its index.
pub(crate) fn messages(
    body: &mut Map<String, Value>,
    message: fn(usize, Value) -> Result<ChatMessage, ApiError>,
) -> Result<Vec<ChatMessage>, ApiError> {
    match body.remove("messages") {
        None => Err(invalid("messages", "missing")),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(invalid("messages", "must hold at least one message"))
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| message(i, item))
            .collect(),
        Some(other) => Err(invalid(
            "messages",
            &format!("expected a list of messages, got {}", kind(&other)),
        )),
    }
}

fn message(i: usize, item: Value) -> Result<ChatMessage, ApiError> {
    let Value::Object(mut fields) = item else {
        return Err(invalid(
            &format!("messages[{i}]"),
            &format!("expected a message object, got {}", kind(&item)),
        ));
    };
    let role = match field(&mut fields, i, "role")? {
        Value::String(s) => match s.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    // The value is not quoted back: it is the client's text and
                    // error messages reach the log.
                    "expected \"user\", \"assistant\" or \"system\", got another string",
                ));
            }
        },
        other => {
            return Err(invalid(
                &format!("messages[{i}].role"),
                &format!(
                    "expected \"user\", \"assistant\" or \"system\", got {}",
                    kind(&other)
                ),
            ));
        }
    };
    let content = match field(&mut fields, i, "content")? {
        Value::String(s) => s,
        other => {
            return Err(invalid(
                &format!("messages[{i}].content"),
                &format!("expected a string, got {}", kind(&other)),
            ));
        }
    };
    Ok(ChatMessage { role, content })
}

fn field(fields: &mut Map<String, Value>, i: usize, name: &str) -> Result<Value, ApiError> {
    fields
        .remove(name)
        .ok_or_else(|| invalid(&format!("messages[{i}].{name}"), "missing"))
}

pub(crate) fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::InvalidRequest(format!("{path}: {message}"))
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Well-formed JSON or `invalid_json`.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson("the request body is empty".into()));
    }
    check_depth(body)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    // serde_json stops at 127 levels; `check_depth` has already bounded the
    // nesting at MAX_DEPTH, so the parser's own limit can go.
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de)
        .and_then(|v: Value| de.end().map(|()| v))
        .map_err(|e| ApiError::InvalidJson(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Rejects nesting deeper than [`MAX_DEPTH`] before parsing, so no input can
/// make the parser recurse deeply. Brackets inside strings do not count.
fn check_depth(body: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ApiError::InvalidJson(format!(
                        "the request body nests deeper than {MAX_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Extracts a [`ChatRequest`], answering every bad body in our error shape:
/// over the limit → 413, not JSON → 400, wrong shape → 422.
#[derive(Debug)]
pub struct ChatBody(pub ChatRequest);

impl<S: Send + Sync> FromRequest<S> for ChatBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        ChatRequest::from_slice(&bytes).map(ChatBody)
    }
}

/// The whole request body, or `413` over the limit in force.
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or_default();
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidJson(format!("the request body could not be read: {rejection}"))
        }
    })
}

/// The body limit in force, so a 413 can say what it is.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        ChatRequest::from_slice(body.as_bytes()).expect_err(body)
    }

    fn nested(levels: usize) -> String {
        // `levels` levels in all: the top-level object, then arrays inside `x`.
        let inner = levels - 1;
        format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"x":{}{}}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        )
    }

    #[test]
    fn valid_requests() {
        let r = ChatRequest::from_slice(
            br#"{"messages":[{"role":"system","content":""},{"role":"user","content":"hi","name":"x"}],"model":null,"stream":true}"#,
        )
        .expect("valid");
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1], ChatMessage::user("hi"));
        assert_eq!(r.model, None);
        let r = ChatRequest::from_slice(
            br#"{"messages":[{"role":"assistant","content":"x"}],"model":"llama3"}"#,
        )
        .expect("valid");
        assert_eq!(r.model.as_deref(), Some("llama3"));
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in [
            "",
            "  ",
            "{",
            r#"{"messages": [}"#,
            r#"{"messages":[{"role":"user","content":"\ud800"}]}"#,
            r#"{"a":1} trailing"#,
        ] {
            assert!(matches!(err(body), ApiError::InvalidJson(_)), "{body:?}");
        }
        let bad_utf8 = b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}";
        assert!(matches!(
            ChatRequest::from_slice(bad_utf8),
            Err(ApiError::InvalidJson(_))
        ));
    }

    #[test]
    fn nesting_up_to_128_levels_is_accepted() {
        assert!(ChatRequest::from_slice(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert!(matches!(
            err(&nested(MAX_DEPTH + 1)),
            ApiError::InvalidJson(_)
        ));
        // Brackets inside strings are text.
        let text = format!(
            r#"{{"messages":[{{"role":"user","content":"{}\"{}"}}]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(ChatRequest::from_slice(text.as_bytes()).is_ok());
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        for (body, field) in [
            ("[]", "request body"),
            ("{}", "messages"),
            (r#"{"messages":{}}"#, "messages"),
            (r#"{"messages":[]}"#, "messages"),
            (
                r#"{"messages":[{"role":"user","content":"a"},"x"]}"#,
                "messages[1]",
            ),
            (r#"{"messages":[{"content":"a"}]}"#, "messages[0].role"),
            (
                r#"{"messages":[{"role":"tool","content":"a"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages":[{"role":1,"content":"a"}]}"#,
                "messages[0].role",
            ),
            (r#"{"messages":[{"role":"user"}]}"#, "messages[0].content"),
            (
                r#"{"messages":[{"role":"user","content":null}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"model":3}"#,
                "model",
            ),
        ] {
            match err(body) {
                ApiError::InvalidRequest(m) => {
                    assert!(m.starts_with(&format!("{field}: ")), "{body}: {m}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
