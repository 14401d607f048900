//! The chat request `policy-mesh decide` reads from stdin: the same body as
//! `POST /v1/decide`, checked field by field so that a mistake is named
//! (`messages[1].role`) instead of reported as a generic parse failure.

use serde_json::Value;

use crate::chat::ChatMessage;
use crate::names::Role;

/// What a decision reads of a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideRequest {
    /// At least one message.
    pub messages: Vec<ChatMessage>,
    /// The model asked for; `None` when absent or `null`.
    pub model: Option<String>,
}

/// Parses `{"messages": [{"role": ..., "content": ...}], "model": ...}`. Other
/// top-level fields and other fields of a message are ignored, as clients of
/// chat APIs send more than the gateway needs. `Err` is one line naming the field.
pub fn parse_chat_request(text: &str) -> Result<DecideRequest, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the request is not valid JSON: {e}"))?;
    let Value::Object(request) = value else {
        return Err("the request must be a JSON object".into());
    };
    let model = match request.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) => Some(model.clone()),
        Some(_) => return Err("model: must be a string".into()),
    };
    let messages = match request.get("messages") {
        None => return Err("messages: missing".into()),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err("messages: must hold at least one message".into());
        }
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err("messages: must be a list".into()),
    };
    let messages = messages
        .iter()
        .enumerate()
        .map(|(i, message)| parse_message(i, message))
        .collect::<Result<_, _>>()?;
    Ok(DecideRequest { messages, model })
}

fn parse_message(i: usize, message: &Value) -> Result<ChatMessage, String> {
    let Value::Object(message) = message else {
        return Err(format!("messages[{i}]: must be an object"));
    };
    let role = match message.get("role") {
        None => return Err(format!("messages[{i}].role: missing")),
        Some(role) => match role.as_str() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system") => Role::System,
            _ => {
                return Err(format!(
                    "messages[{i}].role: must be `user`, `assistant` or `system`, not {role}"
                ));
            }
        },
    };
    let content = match message.get("content") {
        None => return Err(format!("messages[{i}].content: missing")),
        Some(Value::String(content)) => content.clone(),
        Some(_) => return Err(format!("messages[{i}].content: must be a string")),
    };
    Ok(ChatMessage { role, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_request_ignores_other_fields() {
        let request = parse_chat_request(
            r#"{"model": null, "stream": false, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "", "name": "ann"}
            ]}"#,
        )
        .expect("valid");
        assert_eq!(request.model, None);
        assert_eq!(
            request.messages,
            [
                ChatMessage {
                    role: Role::System,
                    content: "be brief".into()
                },
                ChatMessage::user("")
            ]
        );
    }

    #[test]
    fn the_model_is_read() {
        let request = parse_chat_request(
            r#"{"model": "GPT-4o", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .expect("valid");
        assert_eq!(request.model.as_deref(), Some("GPT-4o"));
        assert_eq!(request.messages, [ChatMessage::user("hi")]);
        let request = parse_chat_request(r#"{"messages": [{"role": "user", "content": "hi"}]}"#)
            .expect("valid");
        assert_eq!(request.model, None);
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            ("[]", "the request must be a JSON object"),
            ("{}", "messages: missing"),
            (r#"{"messages": {}}"#, "messages: must be a list"),
            (r#"{"messages": []}"#, "messages: must hold at least one"),
            (r#"{"messages": [1]}"#, "messages[0]: must be an object"),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}"#,
                "messages[1].role: missing",
            ),
            (
                r#"{"messages": [{"role": "robot", "content": "b"}]}"#,
                "messages[0].role: must be `user`, `assistant` or `system`, not \"robot\"",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "messages[0].content: missing",
            ),
            (
                r#"{"messages": [{"role": "user", "content": 3}]}"#,
                "messages[0].content: must be a string",
            ),
            (
                r#"{"model": 4, "messages": [{"role": "user", "content": "a"}]}"#,
                "model: must be a string",
            ),
            ("{", "the request is not valid JSON: "),
        ];
        for (input, expected) in cases {
            let error = parse_chat_request(input).expect_err(input);
            assert!(
                error.starts_with(expected),
                "{input}: {error:?} does not start with {expected:?}"
            );
        }
    }
}
