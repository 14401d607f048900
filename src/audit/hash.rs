//! The prompt fingerprint kept in an audit event instead of the prompt itself:
//! a hash that lets an operator check "was this the prompt?" without the store
//! ever holding the text, and the prompt's length in input chars.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::chat::{ChatMessage, ToolDefinition, text_units};

/// The audit `prompt_hash` of a request: SHA-256 of the UTF-8 bytes of every
/// text unit ([`text_units`]: each message's content, its tool calls, then the
/// tool definitions), in order, joined by one `\n` (a single message `hello`
/// hashes as `sha256("hello")`), or HMAC-SHA256 of the same bytes when `key`
/// is given (`AUDIT_HASH_KEY`). 64 lowercase hex digits.
pub fn prompt_hash(
    messages: &[ChatMessage],
    tools: &[ToolDefinition],
    key: Option<&[u8]>,
) -> String {
    match key {
        Some(key) => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            feed(messages, tools, |bytes| mac.update(bytes));
            hex::encode(mac.finalize().into_bytes())
        }
        None => {
            let mut sha = Sha256::new();
            feed(messages, tools, |bytes| sha.update(bytes));
            hex::encode(sha.finalize())
        }
    }
}

/// The audit `prompt_length` of a request: the input chars of the policy
/// language, that is the Unicode scalar values of every text unit summed,
/// with nothing counted between them.
pub fn prompt_length(messages: &[ChatMessage], tools: &[ToolDefinition]) -> u64 {
    text_units(messages, tools)
        .map(|u| u.text.chars().count() as u64)
        .sum()
}

/// Streams the joined units into a hasher without building the joined
/// string, which may be as large as the request body.
fn feed(messages: &[ChatMessage], tools: &[ToolDefinition], mut update: impl FnMut(&[u8])) {
    for (i, unit) in text_units(messages, tools).enumerate() {
        if i > 0 {
            update(b"\n");
        }
        update(unit.text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatMessage;
    use crate::names::Role;

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn msgs(contents: &[&str]) -> Vec<ChatMessage> {
        contents.iter().map(|c| ChatMessage::user(*c)).collect()
    }

    #[test]
    fn single_message_hashes_as_its_content() {
        let hash = prompt_hash(&msgs(&["hello"]), &[], None);
        assert_eq!(hash, sha256_hex(b"hello"));
        // The published SHA-256 of "hello", as a fixed point.
        assert_eq!(
            hash,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn messages_are_joined_by_one_newline_in_order() {
        let mut messages = msgs(&["first", "", "thïrd ✓"]);
        messages[1].role = Role::System;
        let hash = prompt_hash(&messages, &[], None);
        assert_eq!(hash, sha256_hex("first\n\nthïrd ✓".as_bytes()));
        assert_ne!(
            hash,
            prompt_hash(&msgs(&["thïrd ✓", "", "first"]), &[], None)
        );
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }

    #[test]
    fn no_messages_hash_the_empty_string() {
        assert_eq!(prompt_hash(&[], &[], None), sha256_hex(b""));
    }

    #[test]
    fn keyed_hash_is_hmac_sha256_rfc4231_case_2() {
        let hash = prompt_hash(&msgs(&["what do ya want for nothing?"]), &[], Some(b"Jefe"));
        assert_eq!(
            hash,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keyed_hash_covers_the_joined_contents() {
        let key = b"audit-key";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(b"a\nb");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(prompt_hash(&msgs(&["a", "b"]), &[], Some(key)), expected);
        assert_ne!(expected, prompt_hash(&msgs(&["a", "b"]), &[], None));
    }

    #[test]
    fn tool_calls_results_and_definitions_are_hashed_and_counted_after_the_text() {
        use crate::chat::{ToolCall, ToolDefinition};
        let messages = [
            ChatMessage {
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                ..ChatMessage::new(Role::Assistant, "ok")
            },
            ChatMessage {
                tool_call_id: Some("c1".into()),
                ..ChatMessage::new(Role::Tool, "42")
            },
        ];
        let tools = [ToolDefinition {
            name: "f".into(),
            description: None,
            parameters: None,
            strict: None,
        }];
        assert_eq!(
            prompt_hash(&messages, &tools, None),
            sha256_hex(b"ok\nf\n{}\n42\n{\"name\":\"f\"}")
        );
        assert_eq!(prompt_length(&messages, &tools), 2 + 1 + 2 + 2 + 12);
    }

    #[test]
    fn length_counts_scalar_values_without_separators() {
        assert_eq!(prompt_length(&msgs(&["hello"]), &[]), 5);
        assert_eq!(prompt_length(&msgs(&["héllo", "wörld"]), &[]), 10);
        assert_eq!(prompt_length(&msgs(&["a\u{0308}", "", "😀"]), &[]), 3);
        assert_eq!(prompt_length(&[], &[]), 0);
    }
}
