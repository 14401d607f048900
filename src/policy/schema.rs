//! The JSON Schema of policy files and policy test files, generated from the Rust
//! types. Draft 7, the draft editors' YAML language servers support best.

use schemars::{JsonSchema, generate::SchemaSettings};

use super::PolicyFile;

/// The schema of `T`, as a JSON value.
pub fn schema_for<T: JsonSchema>() -> serde_json::Value {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.to_value()
}

/// The policy file schema as committed in `schema/policy.schema.json`
/// (pretty-printed, with a final newline).
pub fn policy_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema_for::<PolicyFile>())
        .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
    text.push('\n');
    text
}
