//! YAML documents with positions.
//!
//! One span-keeping parse (saphyr) gives both the values, as JSON, and the position
//! of every key and value, so values and positions can never disagree. The document
//! is then validated against the JSON Schema generated from its Rust type, which
//! reports every unknown key, wrong type and value outside its set, each at its
//! position, before serde turns it into the typed value.

use std::collections::HashMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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

    /// The position of the value at `pointer`, or of the nearest enclosing node
    /// that has one (the document start at worst).
    pub fn value(&self, pointer: &str) -> Position {
        self.nearest(pointer).value
    }

    /// The position of the key at `pointer` (its value for a list item), or of the
    /// nearest enclosing node.
    pub fn key(&self, pointer: &str) -> Position {
        let node = self.nearest(pointer);
        node.key.unwrap_or(node.value)
    }

    fn nearest(&self, pointer: &str) -> NodePosition {
        let mut p = pointer;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return *n;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => {
                    return NodePosition {
                        key: None,
                        value: Position { line: 1, column: 1 },
                    };
                }
            }
        }
    }
}

/// Escapes one key for a JSON pointer (RFC 6901).
pub fn escape_pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A document validated against the schema of `T`, with its positions.
#[derive(Debug, Clone)]
pub struct Document<T> {
    /// The typed value.
    pub value: T,
    /// Where everything was written.
    pub positions: Positions,
}

fn position_of(node: &MarkedYaml<'_>) -> Position {
    Position {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

/// Parses one YAML document into JSON, keeping positions. Errors: YAML syntax, an
/// empty document, several documents, keys that are not scalars, tags, numbers
/// that are not finite.
pub fn parse_value(path: &str, text: &str) -> Result<(Value, Positions), Vec<LoadError>> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let m = e.marker();
        vec![LoadError::at(
            path,
            Position {
                line: m.line(),
                column: m.col() + 1,
            },
            format!("invalid YAML: {}", e.info()),
        )]
    })?;
    let Some(doc) = docs.first() else {
        return Err(vec![LoadError::whole(path, "the file is empty")]);
    };
    if let Some(second) = docs.get(1) {
        return Err(vec![LoadError::at(
            path,
            position_of(second),
            "a file holds one YAML document; found a second one (`---`)",
        )]);
    }
    if matches!(doc.data, YamlData::Value(Scalar::Null)) {
        return Err(vec![LoadError::whole(path, "the file is empty")]);
    }
    let mut converter = Converter {
        path,
        positions: Positions::default(),
        errors: Vec::new(),
    };
    let value = converter.convert(doc, String::new(), None);
    if converter.errors.is_empty() {
        Ok((value, converter.positions))
    } else {
        Err(converter.errors)
    }
}

struct Converter<'p> {
    path: &'p str,
    positions: Positions,
    errors: Vec<LoadError>,
}

impl Converter<'_> {
    fn convert(&mut self, node: &MarkedYaml<'_>, pointer: String, key: Option<Position>) -> Value {
        let at = position_of(node);
        let value = match &node.data {
            YamlData::Value(scalar) => self.scalar(scalar, at),
            YamlData::Representation(text, _, _) => Value::String(text.to_string()),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.convert(item, format!("{pointer}/{i}"), None))
                    .collect(),
            ),
            YamlData::Mapping(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let Some(name) = self.key_name(k) else {
                        continue;
                    };
                    let child = format!("{pointer}/{}", escape_pointer_segment(&name));
                    let converted = self.convert(v, child, Some(position_of(k)));
                    map.insert(name, converted);
                }
                Value::Object(map)
            }
            YamlData::Tagged(tag, _) => {
                self.error(
                    at,
                    format!("YAML tags are not supported here (`!{}`)", tag.suffix),
                );
                Value::Null
            }
            YamlData::Alias(_) | YamlData::BadValue => {
                self.error(at, "this value cannot be read");
                Value::Null
            }
        };
        self.positions
            .nodes
            .insert(pointer, NodePosition { key, value: at });
        value
    }

    fn scalar(&mut self, scalar: &Scalar<'_>, at: Position) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => match serde_json::Number::from_f64(f.into_inner()) {
                Some(n) => Value::Number(n),
                None => {
                    self.error(at, format!("`{}` is not a finite number", f.into_inner()));
                    Value::Null
                }
            },
            Scalar::String(s) => Value::String(s.to_string()),
        }
    }

    fn key_name(&mut self, key: &MarkedYaml<'_>) -> Option<String> {
        match &key.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
            YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
            YamlData::Representation(text, _, _) => Some(text.to_string()),
            _ => {
                self.error(position_of(key), "a key must be a plain word");
                None
            }
        }
    }

    fn error(&mut self, at: Position, message: impl Into<String>) {
        self.errors.push(LoadError::at(self.path, at, message));
    }
}

/// The JSON Schema of a document type, compiled for validation.
#[derive(Debug)]
pub struct DocumentSchema {
    schema: Value,
    validator: jsonschema::Validator,
}

impl DocumentSchema {
    /// The schema as JSON.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The keys a schema object allows, from the `properties` beside the failing
    /// `additionalProperties` keyword.
    fn allowed_keys(&self, schema_path: &str) -> Vec<String> {
        let parent = schema_path
            .strip_suffix("/additionalProperties")
            .unwrap_or(schema_path);
        self.schema
            .pointer(&format!("{parent}/properties"))
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// The schema of `T`, compiled (build it once and keep it).
pub fn validator_for<T: JsonSchema>() -> DocumentSchema {
    let schema = super::schema::schema_for::<T>();
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| unreachable!("the generated schema is a valid JSON Schema: {e}"));
    DocumentSchema { schema, validator }
}

/// Parses, validates against `validator` (the schema of `T`) and deserializes one document.
pub fn parse_document<T: DeserializeOwned + JsonSchema>(
    path: &str,
    text: &str,
    schema: &DocumentSchema,
) -> Result<Document<T>, Vec<LoadError>> {
    let (value, positions) = parse_value(path, text)?;
    let mut errors = schema_errors(path, &value, &positions, schema);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.position);
        errors.dedup();
        return Err(errors);
    }
    match serde_json::from_value::<T>(value) {
        Ok(value) => Ok(Document { value, positions }),
        // The schema is generated from `T`, so this is a bug in a type's attributes;
        // report it rather than panic on an operator's file.
        Err(e) => Err(vec![LoadError::whole(
            path,
            format!("cannot read the document: {e}"),
        )]),
    }
}

/// Every schema violation of `value`, each at its position, in plain words.
pub fn schema_errors(
    path: &str,
    value: &Value,
    positions: &Positions,
    schema: &DocumentSchema,
) -> Vec<LoadError> {
    schema_violations(path, value, positions, schema)
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// Every schema violation of `value` with the JSON pointer of the node it is about.
pub fn schema_violations(
    path: &str,
    value: &Value,
    positions: &Positions,
    schema: &DocumentSchema,
) -> Vec<(String, LoadError)> {
    let mut out = Vec::new();
    // A value of the wrong type also fails its `const`, `enum` or `pattern`; saying
    // so twice helps nobody, so only the type error is kept for that value.
    let mistyped: Vec<String> = schema
        .validator
        .iter_errors(value)
        .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
        .map(|e| e.instance_path().as_str().to_owned())
        .collect();
    for err in schema.validator.iter_errors(value) {
        let ptr = err.instance_path().as_str();
        let is_type_error = matches!(err.kind(), ValidationErrorKind::Type { .. });
        if !is_type_error && mistyped.iter().any(|m| m == ptr) {
            continue;
        }
        let mut push = |e: LoadError| out.push((ptr.to_owned(), e));
        let name = describe_pointer(ptr);
        let instance = err.instance();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = schema.allowed_keys(err.schema_path().as_str());
                for key in unexpected {
                    let child = format!("{ptr}/{}", escape_pointer_segment(key));
                    let mut msg = format!("unknown key `{key}`");
                    if !name.is_empty() {
                        msg.push_str(&format!(" in `{name}`"));
                    }
                    match suggest(key, &allowed) {
                        Some(s) => msg.push_str(&format!(": did you mean `{s}`?")),
                        None if !allowed.is_empty() => {
                            msg.push_str(&format!("; valid keys: {}", quoted_list(&allowed)))
                        }
                        None => {}
                    }
                    push(LoadError::at(path, positions.key(&child), msg));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                let place = if name.is_empty() {
                    "the file".to_owned()
                } else {
                    format!("`{name}`")
                };
                push(LoadError::at(
                    path,
                    positions.value(ptr),
                    format!("{place} is missing the required key `{key}`"),
                ));
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    TypeKind::Single(t) => type_name(&t.to_string()).to_owned(),
                    TypeKind::Multiple(ts) => {
                        let names: Vec<_> = ts
                            .iter()
                            .map(|t| type_name(&t.to_string()).to_owned())
                            .collect();
                        names.join(" or ")
                    }
                };
                push(LoadError::at(
                    path,
                    positions.value(ptr),
                    format!("`{name}` must be {expected}, found {}", found(instance)),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let words: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| {
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut msg = format!(
                    "`{name}` must be one of {}, found {}",
                    quoted_list(&words),
                    found(instance)
                );
                if let Some(s) = instance.as_str().and_then(|v| suggest(v, &words)) {
                    msg.push_str(&format!(": did you mean `{s}`?"));
                }
                push(LoadError::at(path, positions.value(ptr), msg));
            }
            ValidationErrorKind::OneOfNotValid { context }
                if context
                    .iter()
                    .flatten()
                    .all(|e| matches!(e.kind(), ValidationErrorKind::Constant { .. })) =>
            {
                let words: Vec<String> = context
                    .iter()
                    .flatten()
                    .filter_map(|e| match e.kind() {
                        ValidationErrorKind::Constant { expected_value } => Some(
                            expected_value
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| expected_value.to_string()),
                        ),
                        _ => None,
                    })
                    .collect();
                push(LoadError::at(
                    path,
                    positions.value(ptr),
                    format!(
                        "`{name}` must be one of {}, found {}",
                        quoted_list(&words),
                        found(instance)
                    ),
                ));
            }
            ValidationErrorKind::Constant { expected_value } => {
                push(LoadError::at(
                    path,
                    positions.value(ptr),
                    format!(
                        "`{name}` must be {expected_value}, found {}",
                        found(instance)
                    ),
                ));
            }
            ValidationErrorKind::Pattern { pattern } => {
                let hint = if pattern == super::ID_PATTERN {
                    " (1 to 64 lowercase letters, digits, `_` or `-`)"
                } else {
                    ""
                };
                push(LoadError::at(
                    path,
                    positions.value(ptr),
                    format!(
                        "`{name}` must match {pattern}{hint}, found {}",
                        found(instance)
                    ),
                ));
            }
            ValidationErrorKind::Minimum { limit } => push(LoadError::at(
                path,
                positions.value(ptr),
                format!(
                    "`{name}` must be at least {limit}, found {}",
                    found(instance)
                ),
            )),
            ValidationErrorKind::ExclusiveMinimum { limit } => push(LoadError::at(
                path,
                positions.value(ptr),
                format!(
                    "`{name}` must be greater than {limit}, found {}",
                    found(instance)
                ),
            )),
            ValidationErrorKind::MinLength { limit } => push(LoadError::at(
                path,
                positions.value(ptr),
                if *limit == 1 {
                    format!("`{name}` must not be empty")
                } else {
                    format!(
                        "`{name}` must be at least {limit} characters long, found {}",
                        found(instance)
                    )
                },
            )),
            ValidationErrorKind::MinItems { limit } => push(LoadError::at(
                path,
                positions.value(ptr),
                format!(
                    "`{name}` must list at least {limit} item{}",
                    if *limit == 1 { "" } else { "s" }
                ),
            )),
            _ => push(LoadError::at(
                path,
                positions.value(ptr),
                format!("`{name}`: {err}"),
            )),
        }
    }
    out
}

fn suggest<'a>(key: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(key, a), a))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a.as_str())
}

fn quoted_list(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    quoted.join(", ")
}

fn type_name(json_type: &str) -> &'static str {
    match json_type {
        "array" => "a list",
        "object" => "a mapping",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "empty",
        _ => "another type",
    }
}

fn found(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// `/rules/0/when/keywords/1` → `rules[0].when.keywords[1]`.
pub fn describe_pointer(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}
