//! The audit store: one event per accepted chat request, in SQLite or
//! PostgreSQL, so that an operator can see after the fact where a request went
//! and why, without the store ever holding a prompt, a reply or a key.
//!
//! - [`AuditConfig`] reads `AUDIT_ENABLED`, `DATABASE_URL` and `AUDIT_HASH_KEY`.
//! - [`AuditStore::connect`] opens the database chosen by the URL's scheme and
//!   applies the embedded migrations (`migrations/sqlite`, `migrations/postgres`).
//! - [`AuditStore::record`] hands an [`AuditEvent`] to a background writer that
//!   commits whatever is queued in one transaction, and returns once the
//!   caller's own event is committed (or failed), so a chat response sent after
//!   it can always be followed by a successful [`AuditStore::get`]. Recording
//!   an event whose request id is stored replaces it (all but `created_at`):
//!   a chat request records itself `pending` before its provider is called
//!   and again with the outcome.
//! - Each process writes under a random instance id and refreshes its row in
//!   `audit_instances` every [`HEARTBEAT_INTERVAL`]; pending events of an
//!   instance silent for [`INSTANCE_TIMEOUT`] (it died) are marked
//!   `interrupted`, at start-up and at every heartbeat.
//! - [`AuditStore::readiness`] probes the store with a write it rolls back,
//!   at most once per [`PROBE_INTERVAL`], for `GET /v1/ready`.
//! - [`prompt_hash`] and [`prompt_length`] fingerprint the prompt.
//!
//! What a failed write means is the caller's choice (`AUDIT_FAILURE_MODE`):
//! the chat handler refuses to call a provider when the pending event cannot
//! be committed (`closed`, the default), or goes on (`open`); either way it
//! logs the failure with the request id and counts it in
//! `audit_write_failures_total`.
//!
//! ```no_run
//! # async fn chat(messages: Vec<policy_mesh::chat::ChatMessage>) -> Result<(), Box<dyn std::error::Error>> {
//! use policy_mesh::audit::{self, Attempt, AuditConfig, AuditEvent, AuditStore};
//! use policy_mesh::env::Env;
//! use policy_mesh::names::{AuditStatus, ClientApi, ProviderId};
//!
//! // At start-up: an error here names each bad variable (and never the password).
//! let config = AuditConfig::from_env(&Env::from_process())
//!     .map_err(|errors| policy_mesh::env::ConfigError::lines(&errors))?;
//! let store = AuditStore::connect(&config).await?; // None when audit is off
//!
//! // Per chat request, before the provider is called:
//! if let Some(store) = &store {
//!     let reason_codes = vec!["default".to_owned()];
//!     let mut event = AuditEvent {
//!         request_id: uuid::Uuid::new_v4(),
//!         decision: audit::decision_string("local", &reason_codes),
//!         provider: ProviderId::local(),
//!         rule: None,
//!         reason_codes,
//!         policy_version: "…".to_owned(),
//!         status: AuditStatus::Pending,
//!         latency_ms: 0.0,
//!         failure_category: None,
//!         prompt_hash: audit::prompt_hash(&messages, &[], config.hash_key()),
//!         prompt_length: audit::prompt_length(&messages, &[]),
//!         model: "llama3.2".to_owned(),
//!         created_at: audit::now(),
//!         sensitive: false,
//!         detections: Vec::new(),
//!         attempts: Vec::new(),
//!         instance_id: store.instance_id(),
//!         client_api: Some(ClientApi::Chat),
//!         client: Some("anonymous".to_owned()),
//!     };
//!     // Not committed: call no provider (AUDIT_FAILURE_MODE=closed).
//!     store.record(event.clone()).await?;
//!
//!     // … the provider answers in 12.5 ms:
//!     event.status = AuditStatus::Success;
//!     event.latency_ms = 12.5;
//!     event.attempts = vec![Attempt::of(ProviderId::local(), None, 12.5)];
//!     if let Err(error) = store.record(event).await {
//!         // Log it with the request id and count it; the chat response stands.
//!         tracing::error!(%error, "The audit event could not be updated.");
//!     }
//! }
//!
//! // At shutdown: commit what is queued and close the pool.
//! if let Some(store) = &store {
//!     store.shutdown().await;
//! }
//! # Ok(()) }
//! ```

mod config;
mod hash;
mod store;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::names::{AuditStatus, ClientApi, FailureCategory, ProviderId};

pub use config::{AuditConfig, AuditDatabase, DEFAULT_DATABASE_URL, redact_url};
pub use hash::{prompt_hash, prompt_length};
pub use store::{AuditStore, HEARTBEAT_INTERVAL, INSTANCE_TIMEOUT, PROBE_INTERVAL};

/// `GET /v1/audit/{request_id}`: one chat request's audit event. Never the
/// prompt or the reply.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// The chat's request id.
    #[schema(value_type = String, format = "uuid")]
    pub request_id: Uuid,
    /// `provider=<provider>,reason_codes=<code>`: the decision's first
    /// provider.
    pub decision: String,
    /// The provider that answered, or the last one tried.
    #[schema(value_type = String)]
    pub provider: ProviderId,
    /// The rule that decided; `null` on a default decision.
    pub rule: Option<String>,
    /// The decision's reason codes (exactly one in practice).
    pub reason_codes: Vec<String>,
    /// The policy version (sha256 hex) that decided.
    pub policy_version: String,
    /// `pending` while the request is in flight, then `success` or
    /// `failure`; `interrupted` when the process died before the outcome.
    pub status: AuditStatus,
    /// Milliseconds from the decision to the provider's answer or failure
    /// (0 while pending).
    pub latency_ms: f64,
    /// The failure category (`timeout`, `connect_error`, …); `null` on success.
    pub failure_category: Option<FailureCategory>,
    /// SHA-256 (HMAC-SHA256 with `AUDIT_HASH_KEY`) of the messages' contents
    /// joined by `\n`: 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prompt_hash: String,
    /// Characters (Unicode scalar values) of all messages together.
    pub prompt_length: u64,
    /// The model sent to the provider (or that would have been).
    pub model: String,
    /// When the event was made (RFC 3339, to the millisecond).
    #[serde(serialize_with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Whether a sensitive rule decided: then the request stayed local.
    pub sensitive: bool,
    /// The detectors of the deciding rule that found something, sorted by
    /// name; never what they found.
    #[schema(value_type = Vec<crate::names::Detector>)]
    pub detections: Vec<String>,
    /// The provider attempts, in order (empty while pending): each call,
    /// retry and fallback, and each provider skipped by an open circuit
    /// (`unavailable`).
    pub attempts: Vec<Attempt>,
    /// The gateway process that wrote the event: a random id each process
    /// makes at start-up, so that replicas sharing one database tell their
    /// events apart.
    #[schema(value_type = String, format = "uuid")]
    pub instance_id: Uuid,
    /// The API the request came in by: `chat`, `openai` or `anthropic`;
    /// `null` for events recorded before the gateway kept it.
    pub client_api: Option<ClientApi>,
    /// The calling client's id (`anonymous` on a gateway without a clients
    /// file); `null` for events recorded before the gateway kept it.
    pub client: Option<String>,
}

/// One provider call of a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// The provider called (or skipped).
    #[schema(value_type = String)]
    pub provider: ProviderId,
    /// `success`, or the failure category (`timeout`, `server_error`, …).
    pub outcome: String,
    /// Milliseconds the call took.
    pub latency_ms: f64,
}

impl Attempt {
    /// A call to `provider` that failed with `failure` (`None`: it answered).
    pub fn of(provider: ProviderId, failure: Option<FailureCategory>, latency_ms: f64) -> Attempt {
        let outcome = match failure {
            None => AuditStatus::Success.as_str(),
            Some(category) => category.as_str(),
        };
        Attempt {
            provider,
            outcome: outcome.to_owned(),
            latency_ms,
        }
    }
}

/// The audit `decision` string: `provider=<provider>,reason_codes=<codes>`,
/// the codes joined by `,`.
pub fn decision_string(provider: &str, reason_codes: &[impl AsRef<str>]) -> String {
    let codes: Vec<&str> = reason_codes.iter().map(AsRef::as_ref).collect();
    format!("provider={provider},reason_codes={}", codes.join(","))
}

/// The current time at the precision the store keeps (milliseconds), so an
/// event reads back exactly as it was recorded.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Why the audit store could not be opened, written or read (a bad variable
/// is an [`crate::env::ConfigError`] of [`AuditConfig::from_env`]).
/// No variant's message holds a password or key.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened (or its folder created).
    #[error("cannot open the audit store at DATABASE_URL={url}: {source}")]
    Open {
        /// The redacted `DATABASE_URL`.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The migrations could not be applied.
    #[error("cannot migrate the audit store at DATABASE_URL={url}: {source}")]
    Migrate {
        /// The redacted `DATABASE_URL`.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// An event could not be committed. Shared because one failed
    /// transaction may answer several callers.
    #[error("audit write failed: {0}")]
    Write(#[source] std::sync::Arc<sqlx::Error>),
    /// An event could not be read back.
    #[error("audit read failed: {0}")]
    Read(#[source] sqlx::Error),
    /// A stored row does not form a valid event.
    #[error("audit event {request_id} is malformed: {message}")]
    Malformed {
        /// The event's id.
        request_id: Uuid,
        /// What is wrong.
        message: String,
    },
    /// The store did not answer in time.
    #[error("the audit store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The store was shut down before the event was handed over.
    #[error("the audit store is shut down")]
    Closed,
    /// The writer stopped without answering (it panicked).
    #[error("the audit writer stopped before committing the event")]
    WriterGone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn decision_string_is_the_seeds_format() {
        assert_eq!(
            decision_string("local", &["sensitive_keyword_match"]),
            "provider=local,reason_codes=sensitive_keyword_match"
        );
        assert_eq!(
            decision_string("openai", &["default".to_owned()]),
            "provider=openai,reason_codes=default"
        );
    }

    #[test]
    fn created_at_serializes_as_rfc3339_utc_with_milliseconds() {
        let event = AuditEvent {
            request_id: Uuid::nil(),
            decision: decision_string("anthropic", &["default"]),
            provider: ProviderId::new("anthropic"),
            rule: None,
            reason_codes: vec!["default".to_owned()],
            policy_version: "v".to_owned(),
            status: AuditStatus::Failure,
            latency_ms: 1.5,
            failure_category: Some(FailureCategory::Timeout),
            prompt_hash: "h".to_owned(),
            prompt_length: 3,
            model: "m".to_owned(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
                + chrono::Duration::milliseconds(123),
            sensitive: false,
            detections: Vec::new(),
            attempts: vec![Attempt::of(
                ProviderId::new("anthropic"),
                Some(FailureCategory::Timeout),
                1.5,
            )],
            instance_id: Uuid::nil(),
            client_api: Some(ClientApi::Openai),
            client: Some("team-a".to_owned()),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["client_api"], "openai");
        assert_eq!(json["created_at"], "2026-11-24T10:00:00.123Z");
        assert_eq!(
            json["attempts"],
            serde_json::json!([{"provider": "anthropic", "outcome": "timeout", "latency_ms": 1.5}])
        );
        assert_eq!(json["status"], "failure");
        assert_eq!(json["provider"], "anthropic");
        assert_eq!(json["request_id"], "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn now_is_whole_milliseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
