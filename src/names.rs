//! The shared names: the closed sets of words that policies, decisions,
//! providers, the audit, metrics and the APIs all speak (`local`, `openai`,
//! `timeout`, `success`, …).
//!
//! Each set is one enum, declared once with `names!`: its words are its
//! serde names (snake case), its `FromStr`, its `Display`, its JSON Schema (for policy
//! editors) and its OpenAPI schema, and `ALL` lists its values in order for
//! whoever must enumerate them (metric labels that start at zero, the store
//! reading a row back). A new value is added here and nowhere else.
//!
//! This module imports nothing of the crate, so every other module may use it
//! without making a cycle.

use std::fmt;
use std::str::FromStr;

/// A word that is not one of its set's, as `FromStr` reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected {}", one_of(expected))]
pub struct UnknownName {
    /// What the word names (`provider`, `route`, …).
    pub what: &'static str,
    /// The word as given.
    pub value: String,
    /// The words of the set, in order.
    pub expected: &'static [&'static str],
}

/// `` `a` ``, `` `a` or `b` ``, `` `a`, `b` or `c` ``.
fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Declares a closed set of words as an enum with its serde names,
/// `as_str`, `Display`, `FromStr`, both schemas and `ALL`.
macro_rules! names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema, utoipa::ToSchema,
        )]
        // Each word is its variant's name in snake case; the tests hold
        // `as_str` to serde's. (utoipa reads `rename_all`, not a variant's
        // own `rename`.)
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: [$name; { [$($word),+].len() }] = [$($name::$variant),+];

            /// The words of the set, in the order of [`Self::ALL`].
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word used in policies, APIs, audit and metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            /// The value whose word is `s`, exactly (words are lowercase).
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: Self::WORDS,
                    }),
                }
            }
        }
    };
}

names! {
    /// A provider's trust, and so a decision's route: whether the provider
    /// is on premises.
    pub enum Route ("route") {
        /// On premises: may serve sensitive requests (the built-in `local`
        /// at `LOCAL_LLM_URL`, or a policy provider with `trust: local`).
        Local = "local",
        /// A cloud provider (the built-in one at `PUBLIC_LLM_URL`, or a
        /// policy provider with `trust: public`): never sent a sensitive request.
        Public = "public",
    }
}

names! {
    /// The wire format a provider speaks.
    pub enum Api ("api") {
        /// Ollama's `/api/chat` (or a compatible server).
        Ollama = "ollama",
        /// OpenAI's `/v1/chat/completions` (or a compatible server: vLLM,
        /// llama.cpp's server).
        Openai = "openai",
        /// Anthropic's `/v1/messages`.
        Anthropic = "anthropic",
    }
}

/// A provider's id, as policies, decisions, the audit, headers and metric
/// labels name it: `local`, the public one (`openai` or `anthropic`), or an
/// id of the policy's `providers`. Cloning is cheap (it is shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ProviderId(std::sync::Arc<str>);

impl ProviderId {
    /// The built-in local provider's id.
    pub const LOCAL: &'static str = "local";
    /// The ids no policy provider may take: the built-ins' and `public`.
    pub const RESERVED: [&'static str; 4] = ["local", "public", "openai", "anthropic"];

    /// The id `id`.
    pub fn new(id: &str) -> Self {
        ProviderId(std::sync::Arc::from(id))
    }

    /// The built-in local provider's id.
    pub fn local() -> Self {
        ProviderId::new(Self::LOCAL)
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ProviderId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ProviderId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ProviderId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl schemars::JsonSchema for ProviderId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProviderId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

impl utoipa::PartialSchema for ProviderId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A provider id: `local`, `openai`, `anthropic` or one of the policy's `providers`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ProviderId {}

names! {
    /// What a client key may do (`admin` implies the others).
    pub enum ClientScope ("scope") {
        /// The chat APIs, `/v1/models` and `/v1/decide`.
        Chat = "chat",
        /// Everything: the chat scope and the operator's reads (`/v1/routes`,
        /// `/v1/audit`, `/v1/metrics`).
        Admin = "admin",
        /// `GET /v1/metrics` alone (a Prometheus credential).
        Metrics = "metrics",
    }
}

names! {
    /// Who wrote a chat message.
    pub enum Role ("role") {
        /// The person asking.
        User = "user",
        /// The model's earlier replies.
        Assistant = "assistant",
        /// Instructions to the model.
        System = "system",
        /// A tool's result, answering an assistant's tool call.
        Tool = "tool",
    }
}

names! {
    /// Why a provider call failed: the word before the `:` of a chat
    /// response's `error`, the audit's `failure_category` and a bounded metric
    /// label.
    pub enum FailureCategory ("failure category") {
        /// No answer within one of the provider's timeouts (`connect`,
        /// `first_byte`, `idle`, `total`).
        Timeout = "timeout",
        /// No HTTP response: refused, DNS, TLS, closed or reset before a status line.
        ConnectError = "connect_error",
        /// HTTP 401 or 403, or a public call with no `PUBLIC_LLM_API_KEY`.
        AuthError = "auth_error",
        /// Any other 4xx but 429: the request itself is at fault, so it is
        /// neither retried nor sent elsewhere.
        ClientError = "client_error",
        /// HTTP 429: the provider is busy or over a quota.
        RateLimited = "rate_limited",
        /// Any 5xx.
        ServerError = "server_error",
        /// Any other status, or a 2xx whose body is empty, cut short, not JSON or
        /// lacks the reply.
        BadResponse = "bad_response",
        /// The client closed the connection before a streamed reply ended; the
        /// upstream request was dropped. Only a stream ends this way.
        Cancelled = "cancelled",
        /// No call was made: the provider's circuit is open after repeated
        /// failures (or, for a whole chain, every provider's was).
        Unavailable = "unavailable",
    }
}

impl FailureCategory {
    /// Whether an attempt that failed so is tried again on the same
    /// provider (and counts toward its circuit).
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureCategory::ConnectError
                | FailureCategory::Timeout
                | FailureCategory::ServerError
                | FailureCategory::RateLimited
        )
    }

    /// Whether the request goes on to the next provider of its chain after
    /// failing so: not for a `client_error` (another provider would refuse
    /// it too) nor a cancelled stream.
    pub const fn falls_back(self) -> bool {
        !matches!(
            self,
            FailureCategory::ClientError | FailureCategory::Cancelled
        )
    }
}

names! {
    /// Where a chat request stands, as its audit event records it;
    /// `chat_requests_total` counts the two outcomes ([`AuditStatus::OUTCOMES`]).
    pub enum AuditStatus ("audit status") {
        /// Accepted and about to be sent: written before the first provider
        /// call, so a crash still leaves a trace of a prompt that may have gone.
        Pending = "pending",
        /// The provider returned a reply.
        Success = "success",
        /// The provider failed; the event's `failure_category` says how.
        Failure = "failure",
        /// Left pending by a process that died before the outcome was known.
        Interrupted = "interrupted",
    }
}

names! {
    /// The API a chat request came in by, as its audit event records it.
    pub enum ClientApi ("client API") {
        /// `POST /v1/chat`, the gateway's own.
        Chat = "chat",
        /// `POST /v1/chat/completions`, OpenAI's.
        Openai = "openai",
        /// `POST /v1/messages`, Anthropic's.
        Anthropic = "anthropic",
    }
}

names! {
    /// `AUDIT_FAILURE_MODE`: what a chat request does when its pending audit
    /// event cannot be committed.
    pub enum AuditFailureMode ("audit failure mode") {
        /// No provider is called: `503 audit_unavailable`.
        Closed = "closed",
        /// The request goes on unaudited; the failure is logged and counted.
        Open = "open",
    }
}

impl AuditStatus {
    /// The outcomes of a request that reached its provider.
    pub const OUTCOMES: [AuditStatus; 2] = [AuditStatus::Success, AuditStatus::Failure];

    /// `success` when the provider answered, else `failure`.
    pub const fn of(answered: bool) -> AuditStatus {
        if answered {
            AuditStatus::Success
        } else {
            AuditStatus::Failure
        }
    }
}

names! {
    /// A built-in detector of `when.detect`: personal data (`pii`) or a
    /// secret (`secrets`).
    pub enum Detector ("detector") {
        /// An e-mail address.
        Email = "email",
        /// A payment card number that passes the Luhn checksum, of a known network.
        CreditCard = "credit_card",
        /// An IBAN of a registered country, its length and checksum right.
        Iban = "iban",
        /// A US social security number in a valid range.
        UsSsn = "us_ssn",
        /// A PEM private key header.
        PrivateKey = "private_key",
        /// An AWS access key id.
        AwsAccessKeyId = "aws_access_key_id",
        /// A GitHub token.
        GithubToken = "github_token",
        /// A GitLab personal access token.
        GitlabToken = "gitlab_token",
        /// A Slack token.
        SlackToken = "slack_token",
        /// A live Stripe secret or restricted key.
        StripeKey = "stripe_key",
        /// An OpenAI API key.
        OpenaiApiKey = "openai_api_key",
        /// An Anthropic API key.
        AnthropicApiKey = "anthropic_api_key",
        /// A Google API key.
        GoogleApiKey = "google_api_key",
        /// A JSON Web Token whose header names its `alg`.
        Jwt = "jwt",
    }
}

impl Detector {
    /// The detectors of the `pii` group; every other one is in `secrets`.
    pub const PII: [Detector; 4] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::UsSsn,
    ];

    /// Whether this detector finds personal data (`pii`) rather than a secret.
    pub fn is_pii(self) -> bool {
        Detector::PII.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each set's words are its serde names, and `FromStr` reads them back.
    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + serde::Serialize,
    {
        for &value in all {
            let word = value.to_string();
            assert_eq!(serde_json::to_value(value).ok(), Some(word.clone().into()));
            assert_eq!(word.parse::<T>().ok(), Some(value));
        }
    }

    #[test]
    fn words_are_serde_names_and_parse_back() {
        round_trips(&Route::ALL);
        round_trips(&Api::ALL);
        round_trips(&ClientScope::ALL);
        round_trips(&Role::ALL);
        round_trips(&FailureCategory::ALL);
        round_trips(&AuditStatus::ALL);
        round_trips(&AuditFailureMode::ALL);
        round_trips(&ClientApi::ALL);
        round_trips(&Detector::ALL);
        assert_eq!(Detector::ALL.len(), 14);
        assert!(Detector::PII.iter().all(|d| d.is_pii()));
        assert_eq!(Api::WORDS, ["ollama", "openai", "anthropic"]);
        assert_eq!(FailureCategory::ALL.len(), 9);
    }

    #[test]
    fn an_unknown_word_names_the_set_and_its_words() {
        let err = "remote".parse::<Route>().expect_err("not a route");
        assert_eq!(
            err.to_string(),
            "invalid route \"remote\": expected `local` or `public`"
        );
        let err = "Ollama".parse::<Api>().expect_err("words are lowercase");
        assert_eq!(
            err.to_string(),
            "invalid api \"Ollama\": expected `ollama`, `openai` or `anthropic`"
        );
    }

    #[test]
    fn failure_categories_say_what_follows_them() {
        use FailureCategory as F;
        let retried: Vec<F> = F::ALL.into_iter().filter(|c| c.is_retryable()).collect();
        assert_eq!(
            retried,
            [F::Timeout, F::ConnectError, F::RateLimited, F::ServerError]
        );
        let stays: Vec<F> = F::ALL.into_iter().filter(|c| !c.falls_back()).collect();
        assert_eq!(stays, [F::ClientError, F::Cancelled]);
    }

    #[test]
    fn a_provider_id_is_its_string() {
        let id = ProviderId::new("gpu-box");
        assert_eq!(serde_json::to_value(&id).ok(), Some("gpu-box".into()));
        assert_eq!(id.to_string(), "gpu-box");
        assert_eq!(id, "gpu-box");
        assert_eq!(format!("{id:?}"), "\"gpu-box\"");
    }
}
