//! YAML documents with positions. STUB: the real reader lands from the lead.
//!
//! One span-keeping parse (saphyr) gives both the values, as JSON, and the position
//! of every key and value; the document is validated against the JSON Schema of its
//! Rust type (every error, each at its position), then deserialized.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{LoadError, Position};

/// Where each node of a document was written, by JSON pointer (`/rules/0/when/keywords/1`).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    nodes: HashMap<String, NodePosition>,
}

/// The position of a node's value, and of its key when it is a mapping entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePosition {
    /// Where the key was written (mapping entries only).
    pub key: Option<Position>,
    /// Where the value starts.
    pub value: Position,
}

impl Positions {
    /// The position of the node at `pointer`.
    pub fn get(&self, pointer: &str) -> Option<NodePosition> {
        self.nodes.get(pointer).copied()
    }
}

/// A document validated against the schema of `T`, with its positions.
#[derive(Debug, Clone)]
pub struct Document<T> {
    /// The typed value.
    pub value: T,
    /// Where everything was written.
    pub positions: Positions,
}

/// Parses one YAML document into JSON, keeping positions. Errors: YAML syntax, an
/// empty document, several documents, keys that are not strings, tags.
pub fn parse_value(
    path: &str,
    text: &str,
) -> Result<(serde_json::Value, Positions), Vec<LoadError>> {
    unimplemented!("{path} {text}")
}

/// Parses, validates against `validator` (the schema of `T`) and deserializes one document.
pub fn parse_document<T: DeserializeOwned + JsonSchema>(
    path: &str,
    text: &str,
    validator: &jsonschema::Validator,
) -> Result<Document<T>, Vec<LoadError>> {
    unimplemented!("{path} {text} {validator:?}")
}

/// The schema validator for `T` (build it once and keep it).
pub fn validator_for<T: JsonSchema>() -> jsonschema::Validator {
    unimplemented!()
}
