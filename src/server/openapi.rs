//! The API description: `GET /openapi.json` (OpenAPI 3.1, built by `utoipa`
//! from the types below) and `GET /docs`, an interactive Swagger UI compiled
//! into the binary (`utoipa-swagger-ui`'s `vendored` feature), so both work
//! offline.
//!
//! The schemas describe the JSON on the wire. Several of the types that
//! produce it serialize by hand (decisions, traces) or borrow from a policy
//! snapshot (`/v1/routes`), so the wire shapes are declared here once, as
//! types, and the tests hold them to the real responses: every response the
//! gateway sends in the black-box tests validates against its schema, and
//! every route the router serves is in the document.

use axum::Router;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::names::{AuditStatus, FailureCategory, Provider, Role, Route};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where the interactive page is served.
pub const DOCS_PATH: &str = "/docs";

/// The routes of the document and the page, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::from(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, ApiDoc::openapi()))
}

/// The OpenAPI document of the whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Policy Mesh",
        description = "A local-first AI gateway: each chat request is routed by a YAML policy to a local model or a cloud provider, and every decision says which rule made it and why.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health, chat, decide, routes_view, audit, metrics, ui_page, ui_root, ui_css, ui_js, docs_page,
        openapi_json, chat_completions, models, model
    ),
    components(schemas(
        Health, ChatRequest, ChatMessage, Role, ChatResponse, Decision, TraceStep, Condition,
        Provider, Route, Routes, Source, Defaults, DefaultProvider, Pricing, PricingValue, Rule,
        Conditions, KeywordMatch, Scope, CharBounds, UsdBounds, Reload, ReloadStatus, AuditEvent,
        AuditStatus, FailureCategory, ErrorBody, ErrorDetail, ErrorType, CompletionRequest,
        CompletionMessage, CompletionRole, CompletionContent, TextPart, StreamOptions, Stop,
        ChatCompletion, CompletionChoice, AssistantMessage, CompletionUsage, ChatCompletionChunk,
        ChunkChoice, ChunkDelta, ModelList, Model, OpenAiErrorBody, OpenAiErrorDetail
    )),
    tags(
        (name = "chat", description = "Chat through the gateway, and dry runs of the policy"),
        (name = "openai", description = "The OpenAI-compatible API: point an OpenAI client's base URL at `/v1`"),
        (name = "policy", description = "The live policy"),
        (name = "audit", description = "One event per chat request, without the prompt"),
        (name = "operations", description = "Health and metrics"),
        (name = "ui", description = "The operator page and this description"),
    )
)]
pub struct ApiDoc;

// ---------------------------------------------------------------------------
// Schemas

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    #[schema(pattern = "^ok$")]
    pub status: String,
}

/// A chat request, for `/v1/chat` and `/v1/decide`. Other fields are ignored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatRequest {
    /// At least one message.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// The model to ask for; absent or `null`: the chosen provider's default
    /// (`LOCAL_LLM_MODEL` or `PUBLIC_LLM_MODEL`).
    /// The policy's `model` conditions match this name; absent or `null` holds
    /// none of them.
    pub model: Option<String>,
}

/// One message of a chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text; may be empty.
    pub content: String,
}

/// `POST /v1/chat`: the decision and the reply, or the provider's failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse {
    /// A new UUID v4 for this request, also in the `X-Request-Id` header.
    #[schema(format = "uuid")]
    pub request_id: String,
    /// The provider the request went to.
    pub provider: Provider,
    /// Exactly one code: the rule's reason, or `default`.
    pub reason_codes: Vec<String>,
    /// The id of the rule that decided; `null` on a default decision.
    pub rule: Option<String>,
    /// The policy version (SHA-256 hex) that decided.
    pub policy_version: String,
    /// The reply, unchanged; `null` when the provider failed.
    pub content: Option<String>,
    /// `null`, or `<category>: <message>` in the gateway's own words when the
    /// provider failed (`server_error: provider answered HTTP 500`).
    pub error: Option<String>,
}

/// `POST /v1/decide`: the decision and the rules tried.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decision {
    /// The provider the request would go to.
    pub provider: Provider,
    /// The route: `local` or `public`.
    pub route: Route,
    /// The id of the rule that decided; `null` on a default decision.
    pub rule: Option<String>,
    /// Exactly one code: the rule's reason, or `default`.
    pub reason_codes: Vec<String>,
    /// The policy version (SHA-256 hex) that decided.
    pub policy_version: String,
    /// One entry per rule evaluated, in order, up to the rule that held
    /// (every rule when none did).
    pub trace: Vec<TraceStep>,
}

/// How one rule fared.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceStep {
    /// The rule id.
    pub rule: String,
    /// Whether all its conditions held.
    pub held: bool,
    /// The first condition that failed; `null` when the rule held.
    pub failed_condition: Option<Condition>,
}

/// A condition of a rule, in the order they are checked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No keyword occurs in the messages in scope.
    Keywords,
    /// No pattern matches a message in scope.
    Patterns,
    /// The input length is outside the bounds.
    InputChars,
    /// The estimated cost is outside the bounds.
    EstimatedUsd,
    /// No glob matches the requested model, or the request names none.
    Model,
}

/// `GET /v1/routes`: the live compiled policy, from one snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct Routes {
    /// The policy version (SHA-256 hex).
    pub version: String,
    /// When this version was loaded (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub loaded_at: String,
    /// The policy files in load order.
    pub sources: Vec<Source>,
    /// The effective defaults and where each came from.
    pub defaults: Defaults,
    /// The rules in evaluation order. Keywords and patterns are counted, never
    /// shown.
    pub rules: Vec<Rule>,
    /// Where `public` routes go.
    pub public_provider: Provider,
    /// The state of hot reload.
    pub reload: Reload,
}

/// One policy file.
#[derive(Debug, Serialize, ToSchema)]
pub struct Source {
    /// The file as read (the policy folder joined with its name).
    pub path: String,
    /// SHA-256 hex of its bytes.
    pub sha256: String,
}

/// The effective defaults.
#[derive(Debug, Serialize, ToSchema)]
pub struct Defaults {
    /// Where a request goes when no rule holds.
    pub provider: DefaultProvider,
    /// The public provider's pricing, for `estimated_usd`.
    pub pricing: Pricing,
}

/// `defaults.provider` and its origin.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultProvider {
    /// The route.
    pub value: Route,
    /// `builtin`, `file:<path>` or `env:<NAME>`.
    pub source: String,
}

/// `defaults.pricing`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pricing {
    /// USD per million input tokens; `null` when no price is set.
    pub input_usd_per_1m_tokens: PricingValue,
    /// Characters per token.
    pub chars_per_token: PricingValue,
}

/// A pricing default and its origin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PricingValue {
    /// The number, or `null` when unset.
    pub value: Option<f64>,
    /// `builtin`, `file:<path>` or `env:<NAME>`.
    pub source: String,
}

/// A rule of the live policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rule {
    /// The rule id.
    pub id: String,
    /// Its description; `null` when absent.
    pub description: Option<String>,
    /// Its route.
    pub route: Route,
    /// The provider that route means now.
    pub provider: Provider,
    /// Its reason code.
    pub reason: String,
    /// The file that holds it.
    pub file: String,
    /// The line where it starts (1-based).
    #[schema(minimum = 1)]
    pub line: u64,
    /// Its conditions, summarized.
    pub conditions: Conditions,
}

/// A rule's conditions: counts of keywords and patterns, never their values;
/// model globs as written.
#[derive(Debug, Serialize, ToSchema)]
pub struct Conditions {
    /// How many keywords.
    pub keywords: u64,
    /// How keywords match.
    pub keyword_match: KeywordMatch,
    /// How many patterns.
    pub patterns: u64,
    /// Which messages keywords and patterns look at.
    pub scope: Scope,
    /// The input length bounds, when the rule has them.
    pub input_chars: Option<CharBounds>,
    /// The estimated cost bounds, when the rule has them.
    pub estimated_usd: Option<UsdBounds>,
    /// The model globs as written, when the rule has a `model` condition.
    #[schema(min_items = 1)]
    pub model: Option<Vec<String>>,
}

/// How keywords match.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeywordMatch {
    /// Anywhere, even inside a longer word.
    Substring,
    /// Not next to a letter, digit or `_`.
    Word,
}

/// Which messages keywords and patterns look at.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every message of every role.
    All,
    /// The last message whose role is `user`.
    LastUser,
}

/// Inclusive bounds on input characters, each optional.
#[derive(Debug, Serialize, ToSchema)]
pub struct CharBounds {
    /// Lower bound.
    pub min: Option<u64>,
    /// Upper bound.
    pub max: Option<u64>,
}

/// Inclusive bounds on the estimated cost in USD, each optional.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsdBounds {
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
}

/// The state of hot reload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reload {
    /// Whether the last attempt succeeded.
    pub status: ReloadStatus,
    /// When the last attempt finished.
    #[schema(format = DateTime)]
    pub last_attempt_at: String,
    /// When a policy was last loaded successfully.
    #[schema(format = DateTime)]
    pub last_success_at: String,
    /// `null`, or the error lines of the last failed attempt joined by `\n`,
    /// each `path:line:column: message`.
    pub last_error: Option<String>,
    /// Reloads since start that swapped in a new version.
    pub successes: u64,
    /// Reloads since start that failed.
    pub failures: u64,
}

/// Whether the last reload attempt succeeded.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReloadStatus {
    /// It did (or there was none since start).
    Ok,
    /// It failed; the last good policy keeps serving.
    Error,
}

/// `GET /v1/audit/{request_id}`: one chat request's audit event. Never the
/// prompt or the reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// The chat's request id.
    #[schema(format = "uuid")]
    pub request_id: String,
    /// `provider=<provider>,reason_codes=<code>`.
    pub decision: String,
    /// The provider the request went to.
    pub provider: Provider,
    /// The rule that decided; `null` on a default decision.
    pub rule: Option<String>,
    /// As in the chat response.
    pub reason_codes: Vec<String>,
    /// The policy version that decided.
    pub policy_version: String,
    /// Whether the provider answered.
    pub status: AuditStatus,
    /// Milliseconds from the decision to the provider's answer or failure.
    pub latency_ms: f64,
    /// The failure category; `null` on success.
    pub failure_category: Option<FailureCategory>,
    /// SHA-256 (HMAC-SHA256 with `AUDIT_HASH_KEY`) of the messages' contents
    /// joined by `\n`: 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prompt_hash: String,
    /// Characters of all messages together.
    pub prompt_length: u64,
    /// The model sent to the provider (or that would have been).
    pub model: String,
    /// When the event was made (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Every API error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error's kind and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The kind, one per status.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// In plain words; names the offending field for `invalid_request`.
    pub message: String,
}

/// The kinds of API error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 400: the body is not well-formed JSON.
    InvalidJson,
    /// 422: well-formed JSON of the wrong shape.
    InvalidRequest,
    /// 413: the body is over `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 404: unknown path, or no such audit event.
    NotFound,
    /// 405: known path, other method.
    MethodNotAllowed,
    /// 500: anything unexpected.
    InternalError,
}

// ---------------------------------------------------------------------------
// The OpenAI-compatible API

/// `POST /v1/chat/completions`: OpenAI's request body. Fields not listed are
/// ignored.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionRequest {
    /// At least one message.
    #[schema(min_items = 1)]
    pub messages: Vec<CompletionMessage>,
    /// The requested model, which `model` policy conditions match. A name
    /// listed by `GET /v1/models` (or absent) means the chosen provider's
    /// configured model; any other name is sent to the chosen provider.
    pub model: Option<String>,
    /// `true`: answer with `text/event-stream` chunks.
    pub stream: Option<bool>,
    /// With `stream`: `include_usage` adds a last chunk with the token counts.
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature, passed on.
    pub temperature: Option<f64>,
    /// Nucleus sampling, passed on.
    pub top_p: Option<f64>,
    /// Reply length limit, passed on.
    #[schema(minimum = 0)]
    pub max_tokens: Option<u64>,
    /// Reply length limit, passed on (wins over `max_tokens`).
    #[schema(minimum = 0)]
    pub max_completion_tokens: Option<u64>,
    /// Sequences that end the reply.
    pub stop: Option<Stop>,
    /// The end user's id, passed on.
    pub user: Option<String>,
    /// Only `1` is supported.
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u64>,
}

/// `stream_options`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamOptions {
    /// Add a final chunk with `usage` (when the provider reports it).
    pub include_usage: Option<bool>,
}

/// One stop sequence or several.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// One message of a completion request.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionMessage {
    /// Who wrote it.
    pub role: CompletionRole,
    /// A string, or text parts (joined as they are); `null` only for an
    /// assistant.
    pub content: Option<CompletionContent>,
}

/// The roles accepted; `developer` counts as `system`. Tool and function
/// messages are refused.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompletionRole {
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name).
    Developer,
    /// The user.
    User,
    /// A previous reply.
    Assistant,
}

/// A message's content.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CompletionContent {
    /// Plain text.
    Text(String),
    /// Text parts; other part types are refused.
    Parts(Vec<TextPart>),
}

/// A text part.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextPart {
    /// Always `text`.
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text.
    pub text: String,
}

/// A whole answer, `object: chat.completion`. The decision is in the
/// `x-policy-mesh-*` headers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the request id.
    pub id: String,
    /// `chat.completion`.
    #[schema(pattern = "^chat\\.completion$")]
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model sent to the provider.
    pub model: String,
    /// Exactly one choice.
    #[schema(min_items = 1, max_items = 1)]
    pub choices: Vec<CompletionChoice>,
    /// Present when the provider reported the counts.
    pub usage: Option<CompletionUsage>,
}

/// The one choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChoice {
    /// `0`.
    pub index: u32,
    /// The reply.
    pub message: AssistantMessage,
    /// Always `null`.
    pub logprobs: Option<String>,
    /// `stop`, `length`, `content_filter` or `tool_calls`.
    pub finish_reason: String,
}

/// The reply message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: String,
    /// The reply text, unchanged.
    pub content: String,
}

/// Token counts, as the provider reported them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Reply tokens.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

/// One server-sent event of a streamed answer (`data: <chunk>`). The stream
/// opens with a chunk whose delta has the role, then one chunk per piece of
/// text as it arrives, one with the `finish_reason`, with `include_usage` one
/// with empty `choices` and `usage`, then `data: [DONE]`. A provider failure
/// after the stream began ends it with `data: {"error": …}` (the shape of
/// [`OpenAiErrorBody`]) and no `[DONE]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same for every chunk of a stream.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model sent to the provider.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the usage chunk.
    pub usage: Option<CompletionUsage>,
}

/// The choice of a chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    /// `0`.
    pub index: u32,
    /// What this chunk adds.
    pub delta: ChunkDelta,
    /// Always `null`.
    pub logprobs: Option<String>,
    /// Set on the chunk that ends the reply.
    pub finish_reason: Option<String>,
}

/// What a chunk adds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkDelta {
    /// `assistant`, in the first chunk only.
    pub role: Option<String>,
    /// The next piece of text.
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// `policy-mesh` (the chosen provider's model), then the configured local
    /// and public models.
    pub data: Vec<Model>,
}

/// A model a client may ask for.
#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// The name to send as `model`.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Always `0`.
    pub created: u64,
    /// `policy-mesh`, `local`, `openai` or `anthropic`.
    pub owned_by: String,
}

/// An error of the OpenAI-compatible API, in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// What went wrong.
    pub error: OpenAiErrorDetail,
}

/// OpenAI's error fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// In plain words; for a provider failure `<category>: <message>`.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `server_error`, or
    /// `provider_error` when the provider failed.
    #[serde(rename = "type")]
    pub kind: String,
    /// The field at fault, or `null`.
    pub param: Option<String>,
    /// The gateway's error type (`invalid_json`, `invalid_request`, …) or the
    /// provider failure category (`timeout`, `server_error`, …).
    pub code: Option<String>,
}

// ---------------------------------------------------------------------------
// Operations. `utoipa::path` describes an operation through a function; these
// exist only to carry the descriptions (the handlers live in `handlers` and
// `ui`), and the tests check both lists agree.

#[utoipa::path(get, path = "/v1/health", tag = "operations",
    responses((status = 200, description = "The process serves", body = Health)))]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(post, path = "/v1/chat", tag = "chat",
    description = "Decides, calls the chosen provider once (no retry, no fallback), writes the audit event, records metrics and answers.",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The provider answered", body = ChatResponse,
            headers(("X-Request-Id" = String, description = "The request id"))),
        (status = 502, description = "The provider failed (`error` says how)", body = ChatResponse),
        (status = 504, description = "The provider timed out", body = ChatResponse),
        (status = 400, description = "Not well-formed JSON", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 422, description = "Wrong shape; the message names the field", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn chat() {}

#[utoipa::path(post, path = "/v1/decide", tag = "chat",
    description = "The decision and the rules tried, without calling a provider, writing audit or counting metrics.",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The decision", body = Decision),
        (status = 400, description = "Not well-formed JSON", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorBody),
        (status = 422, description = "Wrong shape; the message names the field", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn decide() {}

#[utoipa::path(get, path = "/v1/routes", tag = "policy",
    responses((status = 200, description = "The live policy and its reload status", body = Routes)))]
#[allow(dead_code)]
fn routes_view() {}

#[utoipa::path(get, path = "/v1/audit/{request_id}", tag = "audit",
    params(("request_id" = String, Path, description = "The chat's request id (a UUID)")),
    responses(
        (status = 200, description = "The audit event", body = AuditEvent),
        (status = 404, description = "No such event, not a UUID, or audit is off", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn audit() {}

#[utoipa::path(get, path = "/v1/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4")))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 200, description = "The operator page", body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn ui_root() {}

#[utoipa::path(get, path = "/ui", tag = "ui",
    responses((status = 200, description = "The operator page", body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn ui_page() {}

#[utoipa::path(get, path = "/ui/app.css", tag = "ui",
    responses((status = 200, description = "The operator page's style sheet", body = String, content_type = "text/css")))]
#[allow(dead_code)]
fn ui_css() {}

#[utoipa::path(get, path = "/ui/app.js", tag = "ui",
    responses((status = 200, description = "The operator page's script", body = String, content_type = "text/javascript")))]
#[allow(dead_code)]
fn ui_js() {}

#[utoipa::path(get, path = "/docs", tag = "ui",
    responses((status = 303, description = "Redirects to `/docs/`, the interactive page (Swagger UI), served from the binary")))]
#[allow(dead_code)]
fn docs_page() {}

#[utoipa::path(get, path = "/openapi.json", tag = "ui",
    responses((status = 200, description = "This document", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    description = "OpenAI's chat completion, routed by the policy like `/v1/chat` (one provider call, audited and counted). With `stream: true` the answer is `text/event-stream` of `ChatCompletionChunk` events ending with `data: [DONE]`.",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The provider answered: a `ChatCompletion`, or with `stream: true` a `text/event-stream` whose events' `data` are `ChatCompletionChunk`s, then `[DONE]`",
            content(
                (ChatCompletion = "application/json"),
                (ChatCompletionChunk = "text/event-stream"),
            ),
            headers(
                ("x-request-id" = String, description = "The request id (audit)"),
                ("x-policy-mesh-provider" = String, description = "local, openai or anthropic"),
                ("x-policy-mesh-rule" = String, description = "The rule that decided; empty on a default decision"),
                ("x-policy-mesh-reason" = String, description = "The reason code"),
                ("x-policy-mesh-policy-version" = String, description = "The policy version that decided"),
            )),
        (status = 400, description = "Not JSON, or the wrong shape (`param` names the field)", body = OpenAiErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = OpenAiErrorBody),
        (status = 502, description = "The provider failed before answering (`code` is the category)", body = OpenAiErrorBody),
        (status = 504, description = "The provider timed out", body = OpenAiErrorBody),
    ))]
#[allow(dead_code)]
fn chat_completions() {}

#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "The models a client may ask for", body = ModelList)))]
#[allow(dead_code)]
fn models() {}

#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai",
    params(("model" = String, Path, description = "A model id from the list")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "Not a listed model", body = OpenAiErrorBody),
    ))]
#[allow(dead_code)]
fn model() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` with path parameters renamed `{}`: the names are the
    /// handlers' business.
    fn operation(method: &str, path: &str) -> (String, String) {
        let unnamed = regex::Regex::new(r"\{[^}]*\}")
            .expect("valid")
            .replace_all(path, "{}");
        (method.to_ascii_uppercase(), unnamed.into_owned())
    }

    /// Every `.route("path", method(…))` in the router's source, and this
    /// module's own two paths.
    fn served() -> BTreeSet<(String, String)> {
        let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*(get|post|put|patch|delete)\("#)
            .expect("valid");
        let mut served: BTreeSet<_> = [include_str!("mod.rs"), include_str!("ui.rs")]
            .into_iter()
            .flat_map(|source| {
                route
                    .captures_iter(source)
                    .map(|c| operation(&c[2], &c[1]))
                    .collect::<Vec<_>>()
            })
            .collect();
        served.insert(operation("get", OPENAPI_PATH));
        served.insert(operation("get", DOCS_PATH));
        served
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("a path item")
                    .keys()
                    .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                    .map(|method| operation(method, path))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_document_has_exactly_the_routes_the_router_serves() {
        let served = served();
        // The parse must find the router's routes, or the check is empty.
        assert!(
            served.contains(&operation("get", "/v1/routes")),
            "{served:?}"
        );
        assert!(served.contains(&operation("get", "/ui")), "{served:?}");
        let documented = documented();
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_it_refers_to() {
        let text = ApiDoc::openapi().to_json().expect("serializes");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let refs = regex::Regex::new(r##""\$ref":"#/components/schemas/([^"]+)""##).expect("valid");
        let mut seen = 0;
        for c in refs.captures_iter(&text) {
            seen += 1;
            assert!(schemas.contains_key(&c[1]), "no schema {}", &c[1]);
        }
        assert!(seen > 10, "the document refers to {seen} schemas");
    }
}
