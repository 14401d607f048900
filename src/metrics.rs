//! The Prometheus metrics the gateway exports on `GET /v1/metrics`.
//!
//! Everything that touches the `prometheus` crate lives here, behind a small
//! API of domain events (`reload_succeeded`, `decision`, …), so that the crate
//! (unmaintained since 2025) can be swapped for `prometheus-client` without
//! touching callers. Label values are always bounded: results, rule ids,
//! reason codes and policy versions, never paths or messages.

use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::names::{AuditStatus, Detector, FailureCategory};

/// The content type of the text exposition format served on `/v1/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The gateway's metric families, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    last_reload_success: IntGauge,
    last_reload_success_timestamp: Gauge,
    info: IntGaugeVec,
    /// The version `policy_info` currently reports at 1, so the old series can be
    /// removed when a new version goes live.
    info_version: Mutex<Option<String>>,
    decisions: IntCounterVec,
    detections: IntCounterVec,
    chat_requests: IntCounterVec,
    chat_latency: HistogramVec,
    time_to_first_token: HistogramVec,
    audit_write_failures: IntCounter,
    provider_attempts: IntCounterVec,
    circuit_open: IntGaugeVec,
    fallbacks: IntCounterVec,
    auth_failures: IntCounterVec,
}

/// The client label of an open gateway's requests.
const ANONYMOUS: &str = crate::clients::ANONYMOUS;

/// The providers that exist whatever the policy says; their series start at 0.
const BUILTIN_PROVIDERS: [&str; 3] = ["local", "openai", "anthropic"];

/// Latency buckets of `chat_request_latency_seconds`: the seed's 0.01, 0.05,
/// 0.1, 0.5, 1 and 5 seconds, with finer steps below (a small local model on
/// a fast machine answers in milliseconds) and longer ones above (local
/// models that answer in tens of seconds, up to the default
/// `PROVIDER_TIMEOUT_SECONDS`).
pub const CHAT_LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family. Counters with labels start with their known label
    /// values at 0, so dashboards see the series before the first event.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reloads = IntCounterVec::new(
            Opts::new(
                "policy_reloads_total",
                "Policy reloads since start, by result (a reload that yields the live version is not counted).",
            ),
            &["result"],
        )
        .expect("valid metric definition");
        let last_reload_success = IntGauge::new(
            "policy_last_reload_success",
            "1 while the last policy reload succeeded (reload.status ok), 0 while it failed.",
        )
        .expect("valid metric definition");
        let last_reload_success_timestamp = Gauge::new(
            "policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load (reload.last_success_at).",
        )
        .expect("valid metric definition");
        let info = IntGaugeVec::new(
            Opts::new("policy_info", "1 for the policy version that is serving."),
            &["version"],
        )
        .expect("valid metric definition");
        let decisions = IntCounterVec::new(
            Opts::new(
                "policy_decisions_total",
                "Routing decisions of the chat APIs, by client, rule id (empty for the default) and reason code.",
            ),
            &["client", "rule", "reason"],
        )
        .expect("valid metric definition");
        let detections = IntCounterVec::new(
            Opts::new(
                "policy_detections_total",
                "Detectors of the deciding rule that found something, per /v1/chat and /v1/chat/completions decision, by detector.",
            ),
            &["detector"],
        )
        .expect("valid metric definition");
        let chat_requests = IntCounterVec::new(
            Opts::new(
                "chat_requests_total",
                "Accepted /v1/chat and /v1/chat/completions requests, by provider and status (success, failure).",
            ),
            &["client", "provider", "status"],
        )
        .expect("valid metric definition");
        let chat_latency = HistogramVec::new(
            HistogramOpts::new(
                "chat_request_latency_seconds",
                "Time from the routing decision to the provider's answer or failure, in seconds.",
            )
            .buckets(CHAT_LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )
        .expect("valid metric definition");
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "chat_time_to_first_token_seconds",
                "Streamed chats: time from the routing decision to the first piece of reply text, in seconds.",
            )
            .buckets(CHAT_LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )
        .expect("valid metric definition");
        let audit_write_failures = IntCounter::new(
            "audit_write_failures_total",
            "Audit events that could not be written.",
        )
        .expect("valid metric definition");
        let provider_attempts = IntCounterVec::new(
            Opts::new(
                "provider_attempts_total",
                "Provider attempts (calls, retries, fallbacks, and skips by an open circuit: `unavailable`), by provider and outcome.",
            ),
            &["provider", "outcome"],
        )
        .expect("valid metric definition");
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "provider_circuit_open",
                "1 while the provider's circuit is open and it is skipped, else 0.",
            ),
            &["provider"],
        )
        .expect("valid metric definition");
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "chat_fallbacks_total",
                "Chat requests served by a provider other than their first: from the first, to the one that answered.",
            ),
            &["from", "to"],
        )
        .expect("valid metric definition");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "auth_failures_total",
                "Requests refused for their client key: missing, unknown, or without the endpoint's scope.",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        for reason in ["missing", "unknown", "scope"] {
            auth_failures.with_label_values(&[reason]);
        }
        for collector in [
            Box::new(reloads.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(auth_failures.clone()),
            Box::new(provider_attempts.clone()),
            Box::new(circuit_open.clone()),
            Box::new(fallbacks.clone()),
            Box::new(last_reload_success.clone()),
            Box::new(last_reload_success_timestamp.clone()),
            Box::new(info.clone()),
            Box::new(decisions.clone()),
            Box::new(detections.clone()),
            Box::new(chat_requests.clone()),
            Box::new(chat_latency.clone()),
            Box::new(time_to_first_token.clone()),
            Box::new(audit_write_failures.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        for detector in Detector::WORDS {
            detections.with_label_values(&[detector]);
        }
        let metrics = Metrics {
            registry,
            reloads,
            last_reload_success,
            last_reload_success_timestamp,
            info,
            info_version: Mutex::new(None),
            decisions,
            detections,
            chat_requests,
            chat_latency,
            time_to_first_token,
            audit_write_failures,
            provider_attempts,
            circuit_open,
            fallbacks,
            auth_failures,
        };
        metrics.providers_known(BUILTIN_PROVIDERS);
        metrics
    }

    /// Starts the per-provider series of `providers` at 0 (the providers of
    /// a policy that goes live), so dashboards see them before the first
    /// request.
    pub fn providers_known<'a>(&self, providers: impl IntoIterator<Item = &'a str>) {
        for provider in providers {
            for status in AuditStatus::OUTCOMES {
                self.chat_requests
                    .with_label_values(&[ANONYMOUS, provider, status.as_str()]);
            }
            // The histograms too, so a dashboard's rate() has a series from start.
            self.chat_latency.with_label_values(&[provider]);
            self.time_to_first_token.with_label_values(&[provider]);
            self.provider_attempts
                .with_label_values(&[provider, AuditStatus::Success.as_str()]);
            self.circuit_open.with_label_values(&[provider]);
        }
    }

    /// One attempt on `provider`: `None` when it answered, else how it
    /// failed (`unavailable`: skipped by its open circuit).
    pub fn provider_attempt(&self, provider: &str, outcome: Option<FailureCategory>) {
        let outcome = outcome.map_or(AuditStatus::Success.as_str(), FailureCategory::as_str);
        self.provider_attempts
            .with_label_values(&[provider, outcome])
            .inc();
    }

    /// Whether `provider`'s circuit is open now.
    pub fn circuit(&self, provider: &str, open: bool) {
        self.circuit_open
            .with_label_values(&[provider])
            .set(i64::from(open));
    }

    /// A request refused for its key: `missing`, `unknown` or `scope`.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// A request whose first provider was `from` was served by `to`.
    pub fn fallback(&self, from: &str, to: &str) {
        self.fallbacks.with_label_values(&[from, to]).inc();
    }

    /// The policy `version` is serving since `at` (unix seconds), after the
    /// start-up load or a successful reload.
    pub fn policy_live(&self, version: &str, at: f64) {
        self.last_reload_success.set(1);
        self.last_reload_success_timestamp.set(at);
        let mut current = self
            .info_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Set the new series before removing the old one: a scrape in between
        // sees two series rather than none; never two at 1 afterwards.
        self.info.with_label_values(&[version]).set(1);
        if let Some(old) = current.as_deref()
            && old != version
        {
            let _ = self.info.remove_label_values(&[old]);
        }
        *current = Some(version.to_owned());
    }

    /// A reload swapped in a new version.
    pub fn reload_succeeded(&self, version: &str, at: f64) {
        self.reloads.with_label_values(&["success"]).inc();
        self.policy_live(version, at);
    }

    /// A reload yielded the live version again: not counted, but it clears a
    /// previous failure.
    pub fn reload_unchanged(&self) {
        self.last_reload_success.set(1);
    }

    /// A reload failed; the last good version keeps serving.
    pub fn reload_failed(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
        self.last_reload_success.set(0);
    }

    /// One chat decision for `client` (a bounded label: see
    /// [`crate::clients::ClientTable::label`]): `rule` is `None` for the
    /// default decision.
    pub fn decision(&self, client: &str, rule: Option<&str>, reason: &str) {
        self.decisions
            .with_label_values(&[client, rule.unwrap_or(""), reason])
            .inc();
    }

    /// Counts each detector that found something for a chat decision.
    pub fn detections(&self, detectors: impl IntoIterator<Item = Detector>) {
        for detector in detectors {
            self.detections
                .with_label_values(&[detector.as_str()])
                .inc();
        }
    }

    /// One accepted `/v1/chat` request: its provider (`local`, `openai`,
    /// `anthropic`), whether the provider answered, and the seconds from the
    /// decision to the answer or failure.
    pub fn chat_request(
        &self,
        client: &str,
        provider: &str,
        status: AuditStatus,
        latency_seconds: f64,
    ) {
        self.chat_requests
            .with_label_values(&[client, provider, status.as_str()])
            .inc();
        self.chat_latency
            .with_label_values(&[provider])
            .observe(latency_seconds);
    }

    /// A streamed chat to `provider` sent its first piece of text
    /// `seconds` after the decision.
    pub fn time_to_first_token(&self, provider: &str, seconds: f64) {
        self.time_to_first_token
            .with_label_values(&[provider])
            .observe(seconds);
    }

    /// An audit event could not be written.
    pub fn audit_write_failed(&self) {
        self.audit_write_failures.inc();
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which `new` rules out.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn reloads_and_info_follow_events() {
        let m = Metrics::new();
        m.policy_live("aaa", 1_000.0);
        let text = m.render();
        assert_eq!(
            line_value(&text, "policy_reloads_total{result=\"success\"}"),
            Some(0.0)
        );
        assert_eq!(line_value(&text, "policy_info{version=\"aaa\"}"), Some(1.0));

        m.reload_failed();
        let text = m.render();
        assert_eq!(line_value(&text, "policy_last_reload_success "), Some(0.0));
        assert_eq!(
            line_value(&text, "policy_reloads_total{result=\"failure\"}"),
            Some(1.0)
        );

        m.reload_succeeded("bbb", 2_000.0);
        let text = m.render();
        assert_eq!(line_value(&text, "policy_info{version=\"bbb\"}"), Some(1.0));
        assert!(!text.contains("version=\"aaa\""), "{text}");
        assert_eq!(line_value(&text, "policy_last_reload_success "), Some(1.0));
        assert_eq!(
            line_value(&text, "policy_last_reload_success_timestamp_seconds "),
            Some(2_000.0)
        );
    }

    #[test]
    fn chat_and_audit_families() {
        let m = Metrics::new();
        let text = m.render();
        assert_eq!(
            line_value(
                &text,
                "chat_request_latency_seconds_count{provider=\"openai\"}"
            ),
            Some(0.0)
        );
        assert_eq!(line_value(&text, "audit_write_failures_total"), Some(0.0));
        assert_eq!(
            line_value(
                &text,
                "chat_requests_total{client=\"anonymous\",provider=\"anthropic\",status=\"failure\"}"
            ),
            Some(0.0)
        );
        m.chat_request("anonymous", "local", AuditStatus::Success, 0.07);
        m.audit_write_failed();
        let text = m.render();
        assert_eq!(
            line_value(
                &text,
                "chat_requests_total{client=\"anonymous\",provider=\"local\",status=\"success\"}"
            ),
            Some(1.0)
        );
        assert_eq!(line_value(&text, "audit_write_failures_total"), Some(1.0));
        for le in [
            "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
            "5", "10", "30", "60",
        ] {
            assert!(
                text.contains(&format!(
                    "chat_request_latency_seconds_bucket{{provider=\"local\",le=\"{le}\"}}"
                )),
                "{le}: {text}"
            );
        }
        assert_eq!(
            line_value(
                &text,
                "chat_request_latency_seconds_bucket{provider=\"local\",le=\"0.05\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            line_value(
                &text,
                "chat_request_latency_seconds_bucket{provider=\"local\",le=\"0.1\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn provider_families_follow_attempts_circuits_and_fallbacks() {
        let m = Metrics::new();
        m.providers_known(["gpu-box"]);
        let text = m.render();
        for series in [
            "provider_attempts_total{outcome=\"success\",provider=\"gpu-box\"}",
            "provider_circuit_open{provider=\"gpu-box\"}",
            "chat_requests_total{client=\"anonymous\",provider=\"gpu-box\",status=\"failure\"}",
        ] {
            assert_eq!(line_value(&text, series), Some(0.0), "{series}: {text}");
        }
        m.provider_attempt("gpu-box", Some(FailureCategory::ConnectError));
        m.provider_attempt("gpu-box", Some(FailureCategory::Unavailable));
        m.provider_attempt("local", None);
        m.circuit("gpu-box", true);
        m.fallback("gpu-box", "local");
        let text = m.render();
        for (series, value) in [
            (
                "provider_attempts_total{outcome=\"connect_error\",provider=\"gpu-box\"}",
                1.0,
            ),
            (
                "provider_attempts_total{outcome=\"unavailable\",provider=\"gpu-box\"}",
                1.0,
            ),
            (
                "provider_attempts_total{outcome=\"success\",provider=\"local\"}",
                1.0,
            ),
            ("provider_circuit_open{provider=\"gpu-box\"}", 1.0),
            ("chat_fallbacks_total{from=\"gpu-box\",to=\"local\"}", 1.0),
        ] {
            assert_eq!(line_value(&text, series), Some(value), "{series}: {text}");
        }
    }

    #[test]
    fn decisions_are_labelled_by_rule_and_reason() {
        let m = Metrics::new();
        m.decision("team-a", Some("sensitive"), "sensitive_keyword_match");
        m.decision("anonymous", None, "default");
        m.decision("anonymous", None, "default");
        let text = m.render();
        assert_eq!(
            line_value(
                &text,
                "policy_decisions_total{client=\"anonymous\",reason=\"default\",rule=\"\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                "policy_decisions_total{client=\"team-a\",reason=\"sensitive_keyword_match\",rule=\"sensitive\"}"
            ),
            Some(1.0)
        );
    }
}
