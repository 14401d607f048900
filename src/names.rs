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
    /// Where a request is sent, as a policy writes it.
    pub enum Route ("route") {
        /// The local, Ollama-compatible model server (`LOCAL_LLM_URL`).
        Local = "local",
        /// The cloud provider (`PUBLIC_LLM_URL`): OpenAI or Anthropic.
        Public = "public",
    }
}

impl Route {
    /// The provider this route resolves to when `route: public` means `public`.
    pub const fn provider(self, public: Provider) -> Provider {
        match self {
            Route::Local => Provider::Local,
            Route::Public => public,
        }
    }
}

names! {
    /// A concrete provider a request is sent to.
    pub enum Provider ("provider") {
        /// The Ollama-compatible server at `LOCAL_LLM_URL`.
        Local = "local",
        /// OpenAI's chat completions API (or a compatible server) at `PUBLIC_LLM_URL`.
        Openai = "openai",
        /// Anthropic's messages API at `PUBLIC_LLM_URL`.
        Anthropic = "anthropic",
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
        /// No complete answer within `PROVIDER_TIMEOUT_SECONDS`.
        Timeout = "timeout",
        /// No HTTP response: refused, DNS, TLS, closed or reset before a status line.
        ConnectError = "connect_error",
        /// HTTP 401 or 403, or a public call with no `PUBLIC_LLM_API_KEY`.
        AuthError = "auth_error",
        /// Any other 4xx, 429 included.
        ClientError = "client_error",
        /// Any 5xx.
        ServerError = "server_error",
        /// Any other status, or a 2xx whose body is empty, cut short, not JSON or
        /// lacks the reply.
        BadResponse = "bad_response",
        /// The client closed the connection before a streamed reply ended; the
        /// upstream request was dropped. Only a stream ends this way.
        Cancelled = "cancelled",
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
        round_trips(&Provider::ALL);
        round_trips(&Role::ALL);
        round_trips(&FailureCategory::ALL);
        round_trips(&AuditStatus::ALL);
        round_trips(&AuditFailureMode::ALL);
        round_trips(&ClientApi::ALL);
        round_trips(&Detector::ALL);
        assert_eq!(Detector::ALL.len(), 14);
        assert!(Detector::PII.iter().all(|d| d.is_pii()));
        assert_eq!(Provider::WORDS, ["local", "openai", "anthropic"]);
        assert_eq!(FailureCategory::ALL.len(), 7);
    }

    #[test]
    fn an_unknown_word_names_the_set_and_its_words() {
        let err = "remote".parse::<Route>().expect_err("not a route");
        assert_eq!(
            err.to_string(),
            "invalid route \"remote\": expected `local` or `public`"
        );
        let err = "Local"
            .parse::<Provider>()
            .expect_err("words are lowercase");
        assert_eq!(
            err.to_string(),
            "invalid provider \"Local\": expected `local`, `openai` or `anthropic`"
        );
    }

    #[test]
    fn a_route_resolves_to_a_provider() {
        assert_eq!(Route::Local.provider(Provider::Anthropic), Provider::Local);
        assert_eq!(
            Route::Public.provider(Provider::Anthropic),
            Provider::Anthropic
        );
    }
}
