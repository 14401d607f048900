//! How a request body is read, for every API: the one reader ([`read`]), the
//! serde pieces the wire types of each API are built from, and the `/v1/chat`
//! and `/v1/decide` body.
//!
//! Parsing is two steps so each failure gets its own answer: well-formed JSON
//! (syntax, UTF-8, surrogates, nesting at most [`MAX_DEPTH`]) or `400
//! invalid_json`; then the shape, read by serde into the API's wire types, or
//! `422 invalid_request` naming the field (`messages[3].role`, from
//! `serde_path_to_error`'s path) in one wording: `<field>: expected <what>,
//! got <kind>`, `<field>: missing`, or the rule the value breaks. The client's
//! text is never quoted back: error messages reach the log. Unknown fields are
//! ignored, as OpenAI-style clients send extra ones.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_path_to_error::{Path, Segment};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::chat::ChatMessage;
use crate::names::Role;

/// Deepest nesting accepted: each object or array is one level, the body's
/// top-level object is level 1.
pub const MAX_DEPTH: usize = 128;

/// What a token count must be.
pub(crate) const WHOLE: &str = "a whole number ≥ 0";

/// Reads a body into `T`: `400` when it is not well-formed JSON, `422` naming
/// the field when it does not fit `T`.
pub(crate) fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = parse_json(body)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = field_name(e.path());
        shape_error(field, &e.into_inner().to_string())
    })
}

/// `messages[3].role` from serde's path; empty at the top level.
fn field_name(path: &Path) -> String {
    let mut name = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => name.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    name
}

/// The 422 for a serde error at `field`, in our wording. serde's own messages
/// quote the value (`invalid type: string "…", expected …`); only its kind is
/// kept.
fn shape_error(mut field: String, message: &str) -> ApiError {
    let text = if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
        "missing".to_owned()
    } else if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        // The expectation is ours (a visitor's `expecting`), never client
        // text, so the last ", expected " is where it starts.
        match rest.rfind(", expected ") {
            Some(at) => format!(
                "expected {}, got {}",
                expectation(&rest[at + ", expected ".len()..]),
                unexpected_kind(&rest[..at])
            ),
            None => "has the wrong type".to_owned(),
        }
    } else {
        message.to_owned()
    };
    if field.is_empty() {
        field.push_str("request body");
    }
    invalid(&field, &text)
}

/// serde's names for what a primitive expects, in the API's words.
fn expectation(expected: &str) -> &str {
    match expected {
        "u64" => WHOLE,
        "f64" => "a number",
        "a sequence" => "a list",
        other => other,
    }
}

/// The kind of value serde's `Unexpected` describes, without the value.
fn unexpected_kind(unexpected: &str) -> &'static str {
    let starts = |prefix: &str| unexpected.starts_with(prefix);
    // serde_json writes `null` for serde's "unit value".
    if starts("null") || starts("unit") {
        "null"
    } else if starts("boolean") {
        "a boolean"
    } else if starts("integer") || starts("floating point") {
        "a number"
    } else if starts("string") {
        "a string"
    } else if starts("sequence") {
        "a list"
    } else if starts("map") {
        "an object"
    } else {
        "another value"
    }
}

/// `422 invalid_request` with the message `<path>: <message>`.
pub(crate) fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::InvalidRequest(format!("{path}: {message}"))
}

/// A JSON object read as `T`. serde reads a struct from a list too (its
/// fields in order); the API's objects must be objects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A closed set of words read from a JSON string.
pub(crate) trait Words: FromStr {
    /// The words to name when another string is sent.
    const EXPECTED: &'static [&'static str];
}

impl Words for Role {
    // A `tool` message answers a tool call, which only the OpenAI API carries.
    const EXPECTED: &'static [&'static str] = &["user", "assistant", "system"];
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `deserialize_with` for a field that holds one of `T`'s words; another
/// string is refused without being quoted back.
pub(crate) fn word<'de, D: Deserializer<'de>, T: Words>(deserializer: D) -> Result<T, D::Error> {
    struct WordVisitor<T>(PhantomData<T>);

    impl<T: Words> Visitor<'_> for WordVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&quoted(T::EXPECTED))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(|_| {
                E::custom(format!(
                    "expected {}, got another string",
                    quoted(T::EXPECTED)
                ))
            })
        }
    }

    deserializer.deserialize_str(WordVisitor(PhantomData))
}

/// `deserialize_with` for `messages`: a list of at least one message.
pub(crate) fn messages<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(de::Error::custom("must hold at least one message"));
    }
    Ok(items)
}

/// `deserialize_with` for an optional field where absent and `null` differ:
/// absent is `None` (with `#[serde(default)]`), `null` is `Some(None)`.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A chat request, for `/v1/chat` and `/v1/decide`. Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ChatRequest)]
pub(crate) struct ChatRequestBody {
    /// At least one message.
    #[serde(deserialize_with = "messages")]
    #[schema(value_type = Vec<MessageBody>, min_items = 1)]
    messages: Vec<Object<MessageBody>>,
    /// The model to ask for; absent or `null`: the chosen provider's default
    /// (`LOCAL_LLM_MODEL` or `PUBLIC_LLM_MODEL`).
    /// The policy's `model` conditions match this name; absent or `null` holds
    /// none of them.
    model: Option<String>,
    /// `/v1/decide` only, from an admin key: decide as this client of the
    /// clients file would be (a chat key's own id is used whatever this says).
    /// `/v1/chat` ignores it.
    client: Option<String>,
}

/// One message of a chat.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ChatMessage)]
pub(crate) struct MessageBody {
    /// Who wrote it.
    #[serde(deserialize_with = "word")]
    role: Role,
    /// The text; may be empty.
    content: String,
}

/// A validated chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// At least one message.
    pub messages: Vec<ChatMessage>,
    /// The model asked for; `None` when absent or `null`.
    pub model: Option<String>,
    /// `/v1/decide` only: the client to decide for (an admin's dry run of
    /// another client's decision); `/v1/chat` ignores it.
    pub client: Option<String>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        let Object(body) = read::<Object<ChatRequestBody>>(body)?;
        let messages = body
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, Object(m))| match m.role {
                Role::Tool => Err(invalid(
                    &format!("messages[{i}].role"),
                    "a tool message answers a tool call: send it to /v1/chat/completions",
                )),
                role => Ok(ChatMessage::new(role, m.content)),
            })
            .collect::<Result<_, _>>()?;
        Ok(ChatRequest {
            messages,
            model: body.model,
            client: body.client,
        })
    }
}

/// Well-formed JSON or `invalid_json`.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson("the request body is empty".into()));
    }
    check_depth(body)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    // serde_json's own limit is fixed at 128 nested values counted so that
    // only 127 levels parse, one short of the API's 128, and it cannot be
    // raised; so `check_depth` bounds the nesting at MAX_DEPTH first (without
    // recursing) and the parser's limit goes (the `unbounded_depth` feature).
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

/// The whole request body, or `413` over the limit in force, or `408` when
/// it does not arrive within the read timeout in force (the client is too
/// slow, or holds the connection on purpose).
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limits = req
        .extensions()
        .get::<BodyLimits>()
        .copied()
        .unwrap_or(BodyLimits {
            max_bytes: 0,
            read_timeout: std::time::Duration::from_secs(30),
        });
    let read = Bytes::from_request(req, state);
    match tokio::time::timeout(limits.read_timeout, read).await {
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s (BODY_READ_TIMEOUT_SECONDS)",
            limits.read_timeout.as_secs_f64()
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(rejection)) => Err(
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: limits.max_bytes,
                }
            } else {
                ApiError::InvalidJson(format!("the request body could not be read: {rejection}"))
            },
        ),
    }
}

/// The body limits in force: its size (so a 413 can say what it is) and
/// the time it may take to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// `MAX_BODY_BYTES`.
    pub max_bytes: usize,
    /// `BODY_READ_TIMEOUT_SECONDS`.
    pub read_timeout: std::time::Duration,
}

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

    /// The 422 message of `body`.
    fn shape(body: &str) -> String {
        match err(body) {
            ApiError::InvalidRequest(m) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn wrong_shapes_name_the_field_in_one_wording() {
        for (body, message) in [
            ("[]", "request body: expected an object, got a list"),
            ("3", "request body: expected an object, got a number"),
            ("{}", "messages: missing"),
            (
                r#"{"messages":{}}"#,
                "messages: expected a list, got an object",
            ),
            (
                r#"{"messages":[]}"#,
                "messages: must hold at least one message",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"},"x"]}"#,
                "messages[1]: expected an object, got a string",
            ),
            // serde reads a struct from a list of its fields; a message is an object.
            (
                r#"{"messages":[["user","hi"]]}"#,
                "messages[0]: expected an object, got a list",
            ),
            (
                r#"{"messages":[{"content":"a"}]}"#,
                "messages[0].role: missing",
            ),
            (
                r#"{"messages":[{"role":"tool","content":"a"}]}"#,
                "messages[0].role: a tool message answers a tool call: send it to /v1/chat/completions",
            ),
            (
                r#"{"messages":[{"role":"robot","content":"a"}]}"#,
                r#"messages[0].role: expected "user", "assistant" or "system", got another string"#,
            ),
            (
                r#"{"messages":[{"role":1,"content":"a"}]}"#,
                r#"messages[0].role: expected "user", "assistant" or "system", got a number"#,
            ),
            (
                r#"{"messages":[{"role":"user"}]}"#,
                "messages[0].content: missing",
            ),
            (
                r#"{"messages":[{"role":"user","content":null}]}"#,
                "messages[0].content: expected a string, got null",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"model":3}"#,
                "model: expected a string, got a number",
            ),
            (
                r#"{"messages":[{"role":"user","content":"a"}],"model":{"a":1}}"#,
                "model: expected a string, got an object",
            ),
        ] {
            assert_eq!(shape(body), message, "{body}");
        }
    }

    #[test]
    fn the_clients_text_is_never_quoted_back() {
        for body in [
            r#"{"messages":[{"role":"top secret, expected x","content":"a"}]}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"model":false,"x":"top secret"}"#,
            r#"{"messages":["top secret, expected an object"]}"#,
            r#"{"messages":"top secret"}"#,
        ] {
            let message = shape(body);
            assert!(!message.contains("top secret"), "{body}: {message}");
        }
    }
}
