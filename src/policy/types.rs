//! The policy file as an operator writes it: plain serde + schemars types.
//!
//! These types are the single source of truth for the policy language. The
//! JSON Schema in `schema/policy.schema.json` is generated from them, the
//! loader validates every file against that schema (so every unknown key and
//! wrong type is reported, not only the first) and then deserializes into
//! them. Nothing here does I/O or knows about positions; the loader keeps
//! positions beside the values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::{Api, Detector, Route};

/// The detector groups `when.detect` accepts beside the detectors' names.
pub const DETECTOR_GROUPS: [&str; 2] = ["pii", "secrets"];

/// `when.detect`'s schema: at least one of the detectors' names or groups,
/// from [`Detector::WORDS`] and [`DETECTOR_GROUPS`].
fn detect_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let words: Vec<&str> = DETECTOR_GROUPS
        .iter()
        .chain(Detector::WORDS)
        .copied()
        .collect();
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "enum": words},
    })
}

/// Pattern shared by rule ids and reason codes.
pub const ID_PATTERN: &str = "^[a-z0-9_-]{1,64}$";

/// One policy file. A policy is the concatenation of every file in load order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Policy Mesh policy file")]
pub struct PolicyFile {
    /// Version of the policy language. Only `1` exists.
    #[schemars(with = "LanguageVersion")]
    pub version: u8,
    /// Defaults used when no rule holds. At most one file of a policy may carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Defaults")]
    pub defaults: Option<Defaults>,
    /// Providers besides the built-in `local` and public one: a second
    /// Ollama box, an OpenAI-compatible server, another cloud. Ids are unique
    /// across files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderEntry>,
    /// Rules, tried in order (files in load order, then rules in file order). The first rule
    /// whose conditions all hold decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// Pattern of a provider id (as rule ids).
pub const PROVIDER_ID_PATTERN: &str = ID_PATTERN;

/// Pattern of an environment variable's name.
pub const VARIABLE_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// One provider of the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Unique across files: lowercase letters, digits, `_` and `-`, at most
    /// 64; not `local`, `public`, `openai` or `anthropic`.
    #[schemars(regex(pattern = PROVIDER_ID_PATTERN))]
    pub id: String,
    /// The wire format it speaks.
    pub api: Api,
    /// Its base URL (`http://10.0.0.7:11434`); a trailing `/`, and `/v1`
    /// (openai, anthropic) or `/api` (ollama), are stripped.
    #[schemars(regex(pattern = "^https?://"))]
    pub url: String,
    /// `local`: on premises, may serve sensitive requests. `public`: never
    /// sent one.
    pub trust: Route,
    /// The model it is sent when the request names none it serves.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The model names it serves, as globs (`llama3.1*`); a request naming
    /// another gets `model`. Absent: it always gets `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", length(min = 1), inner(length(min = 1)))]
    pub models: Option<Vec<String>>,
    /// The environment variable that holds its key (never the key itself).
    /// Required for `openai` and `anthropic`; optional for `ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", regex(pattern = VARIABLE_PATTERN))]
    pub api_key_env: Option<String>,
    /// The proxy a `trust: public` provider is reached through; a local one
    /// never uses a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", regex(pattern = "^https?://"))]
    pub proxy: Option<String>,
    /// Extra attempts on it after a `connect_error`, `timeout`,
    /// `server_error` or `rate_limited`. Default `0`; at most 2 are made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    pub retries: Option<u32>,
    /// Its timeouts in seconds; each defaults to `PROVIDER_TIMEOUT_SECONDS`
    /// (`connect`: at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "TimeoutsEntry")]
    pub timeouts: Option<TimeoutsEntry>,
    /// When it is skipped after failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CircuitEntry")]
    pub circuit: Option<CircuitEntry>,
}

/// A provider's timeouts, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsEntry {
    /// TCP and TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub connect: Option<f64>,
    /// From the request sent to the response headers, and for a stream to its first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub first_byte: Option<f64>,
    /// Between two chunks of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub idle: Option<f64>,
    /// A whole, non-streamed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub total: Option<f64>,
}

/// A provider's circuit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitEntry {
    /// Consecutive retryable failures that open it. Default `5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1))]
    pub failures: Option<u32>,
    /// Seconds an open circuit skips the provider. Default `30`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = 0))]
    pub cooldown_seconds: Option<f64>,
}

/// The language version: the integer `1`.
#[derive(JsonSchema)]
#[schemars(extend("const" = 1), transform = integer_type)]
#[allow(dead_code)] // only its schema is used
struct LanguageVersion(u8);

fn integer_type(schema: &mut schemars::Schema) {
    schema.insert("type".into(), "integer".into());
    schema.remove("format");
    schema.remove("minimum");
    schema.remove("maximum");
}

/// Where requests go when no rule holds, and what the public provider costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Route when no rule holds. Built-in: `local`. Overlaid by `POLICY_DEFAULT_PROVIDER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Route")]
    pub provider: Option<Route>,
    /// Providers tried in order when the default decision's provider fails:
    /// `local`, `public` or a provider id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", inner(regex(pattern = PROVIDER_ID_PATTERN)))]
    pub fallback: Option<Vec<String>>,
    /// Price of the public provider, used by `estimated_usd` conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Pricing")]
    pub pricing: Option<Pricing>,
}

/// Price of the public provider's input tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// USD per one million input tokens of the public provider. Overlaid by
    /// `POLICY_INPUT_USD_PER_1M_TOKENS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = 0))]
    pub input_usd_per_1m_tokens: Option<f64>,
    /// Characters per token used to estimate tokens from characters. Built-in: `4`.
    /// Overlaid by `POLICY_CHARS_PER_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", extend("exclusiveMinimum" = 0))]
    pub chars_per_token: Option<f64>,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id across all files: lowercase letters, digits, `_` and `-`, at most 64.
    #[schemars(regex(pattern = ID_PATTERN))]
    pub id: String,
    /// What the rule is for, shown in `/v1/routes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub description: Option<String>,
    /// Conditions; every one listed must hold. Absent or `{}`: the rule always holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "When")]
    pub when: Option<When>,
    /// The provider a request goes to when the rule holds: `local`, `public`
    /// or a provider id.
    #[schemars(regex(pattern = PROVIDER_ID_PATTERN))]
    pub route: String,
    /// Providers tried in order after the first fails: `local`, `public` or
    /// provider ids. A sensitive rule may list only `trust: local` ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", inner(regex(pattern = PROVIDER_ID_PATTERN)))]
    pub fallback: Option<Vec<String>>,
    /// Reason code reported with the decision. Default: the rule's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", regex(pattern = ID_PATTERN))]
    pub reason: Option<String>,
    /// A guard: tried before every other rule, its `route` and `fallback`
    /// may name only `trust: local` providers, and a decision it makes is
    /// marked sensitive. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// The conditions of a rule, checked in this order: `keywords`, `patterns`,
/// `detect`, `input_chars`, `estimated_usd`, `model`, `client`, `has_images`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Holds when any keyword occurs in the messages in scope. Matching ignores case,
    /// width and invisible characters (NFKC, full case folding, default-ignorable
    /// code points removed) and, under `keyword_normalization: strict` (the
    /// default), disguises too: accents and marks, controls, look-alike letters,
    /// digits for letters, letter-spaced words and words broken across lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub keywords: Option<Vec<String>>,
    /// `substring` (default): a keyword may occur inside a word. `word`: it must not
    /// touch a letter, digit or `_` on either side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "KeywordMatch")]
    pub keyword_match: Option<KeywordMatch>,
    /// `strict` (default): keywords also match disguised text (`c0nf1dential`,
    /// `C O N F I D E N T I A L`, Cyrillic look-alikes, accents). `standard`:
    /// only case, width and invisible characters are ignored. Patterns always
    /// see `standard` text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "KeywordNormalization")]
    pub keyword_normalization: Option<KeywordNormalization>,
    /// Holds when any regular expression (Rust `regex` syntax, case-insensitive) matches
    /// a message in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub patterns: Option<Vec<String>>,
    /// Holds when any of these built-in detectors finds an instance in the
    /// messages in scope: detector names, or the groups `pii` (`email`,
    /// `credit_card`, `iban`, `us_ssn`) and `secrets` (every other one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "detect_schema")]
    pub detect: Option<Vec<String>>,
    /// Which messages `keywords`, `patterns` and `detect` look at: `all`
    /// (default) or `last_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Scope")]
    pub scope: Option<Scope>,
    /// Bounds, inclusive, on the characters of all messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CharBounds")]
    pub input_chars: Option<CharBounds>,
    /// Bounds, inclusive, on the estimated USD cost of the input on the public
    /// provider. Needs `defaults.pricing.input_usd_per_1m_tokens` (or its variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "UsdBounds")]
    pub estimated_usd: Option<UsdBounds>,
    /// Holds when any glob matches the model the client asked for (`model` in the
    /// request), ignoring case: `gpt-4o*`, `llama*`, `*/gpt-4o`. `*` matches any run
    /// of characters, `/` included; `?` one character; `[a-z]` a class; `{a,b}` either.
    /// It does not hold for a request that names no model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", length(min = 1), inner(length(min = 1)))]
    pub model: Option<Vec<String>>,
    /// Holds when any glob matches the calling client's id (from the clients
    /// file; `anonymous` on a gateway without one), as `model` globs match:
    /// `team-*`, `ops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>", length(min = 1), inner(length(min = 1)))]
    pub client: Option<Vec<String>>,
    /// `true`: holds when any message of the request has an image (whatever
    /// `scope` says: an image of an earlier turn leaves the machine too);
    /// `false`: when none has. Images are not text: nothing else reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_images: Option<bool>,
}

/// How keywords match.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum KeywordMatch {
    /// Anywhere, even inside a word.
    #[default]
    Substring,
    /// As a whole word: not next to a letter, digit or `_`.
    Word,
}

/// How text is normalized before keywords are looked for in it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum KeywordNormalization {
    /// Case, width and invisible characters ignored (NFKC, full case folding,
    /// default-ignorable code points removed).
    Standard,
    /// `standard`, then marks, controls and blanks, look-alike letters, digits
    /// and symbols for letters, letter-spaced and line-broken words.
    #[default]
    Strict,
}

/// Which messages keywords and patterns look at.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every message of every role.
    #[default]
    All,
    /// Only the last message whose role is `user`.
    LastUser,
}

/// Inclusive bounds on a character count.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CharBounds {
    /// Smallest count that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub min: Option<u64>,
    /// Largest count that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64")]
    pub max: Option<u64>,
}

/// Inclusive bounds on an estimated cost in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsdBounds {
    /// Smallest cost that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = 0))]
    pub min: Option<f64>,
    /// Largest cost that holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64", range(min = 0))]
    pub max: Option<f64>,
}
