//! One chat request on its way through the gateway, whichever API it came in
//! by: decided, audited as pending, sent along its chain of providers
//! (retries, fallbacks, circuits), then audited with its outcome, counted
//! and logged exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, StatusCode};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::audit::{self, Attempt, AuditEvent};
use crate::chat::{ChatMessage, ToolDefinition};
use crate::compiler::CompiledPolicy;
use crate::decision::Decision;
use crate::names::{Api, AuditFailureMode, AuditStatus, ClientApi, FailureCategory, ProviderId};
use crate::providers::chain::{self, Answer, Attempted, Call, ChainRequest};
use crate::providers::{self, GenerationOptions, ProviderError, Reply, ReplyStream};

/// Requests whose text (messages and metadata) is larger than this are
/// decided on the blocking pool: a long prompt against many patterns must not
/// hold an async worker, and with it `/v1/health` and every other request.
pub(crate) const BLOCKING_DECISION_BYTES: usize = 64 << 10;

/// Runs `decide` on the blocking pool and waits for it; a panic in it goes
/// on in the caller, as it would inline.
pub(crate) async fn off_the_workers<T: Send + 'static>(
    decide: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(decide).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The header that carries the request id of a chat.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// One accepted chat request on its way through the gateway, whichever API
/// it came in by: decided on one snapshot of the live policy, recorded
/// pending by [`Exchange::record_pending`] before any provider call, sent
/// along the decision's chain of providers, timed from the decision, and
/// audited with its outcome, counted and logged exactly once by
/// [`Exchange::finish`]. It keeps the prompt's fingerprint, never the prompt.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// A new UUID v4.
    pub(crate) request_id: Uuid,
    /// Where the request goes and why.
    pub(crate) decision: Decision,
    /// The model sent to [`Self::provider`].
    pub(crate) model: String,
    /// The provider that answered, or the last one tried (the first until
    /// the chain has run).
    pub(crate) provider: ProviderId,
    /// The attempts of the chain, in order.
    attempts: Vec<Attempted>,
    policy: Arc<CompiledPolicy>,
    requested_model: Option<String>,
    model_api: Option<Api>,
    started: Instant,
    created_at: chrono::DateTime<chrono::Utc>,
    client_api: ClientApi,
    prompt_hash: String,
    prompt_length: u64,
}

impl Exchange {
    /// Decides where `messages` for `requested_model` go. With `model_api`
    /// set, only providers of that API may be sent the requested model
    /// (the others get their own).
    ///
    /// Everything forwarded is decided on: besides the messages, the
    /// requested model and the `user` and `stop` strings of `options` are
    /// text the provider receives, read by the rules of scope `all`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn begin(
        state: &AppState,
        client_api: ClientApi,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        requested_model: Option<&str>,
        options: &GenerationOptions,
        model_api: Option<Api>,
        client: &Arc<str>,
    ) -> Self {
        let metadata: Vec<&str> = requested_model
            .into_iter()
            .chain(options.metadata())
            .collect();
        // One snapshot for the whole request: a reload meanwhile does not affect it.
        let policy = Arc::clone(&state.live.snapshot().policy);
        let bytes = crate::chat::text_units(messages, tools)
            .map(|u| u.text.len())
            .sum::<usize>()
            + metadata.iter().map(|m| m.len()).sum::<usize>();
        let decision = if bytes <= BLOCKING_DECISION_BYTES {
            policy.decide_with_metadata(messages, tools, &metadata, requested_model, client)
        } else {
            let messages = messages.to_vec();
            let tools = tools.to_vec();
            let metadata: Vec<String> = metadata.iter().map(|m| (*m).to_owned()).collect();
            let requested = requested_model.map(str::to_owned);
            let policy = Arc::clone(&policy);
            let client = Arc::clone(client);
            off_the_workers(move || {
                let metadata: Vec<&str> = metadata.iter().map(String::as_str).collect();
                policy.decide_with_metadata(
                    &messages,
                    &tools,
                    &metadata,
                    requested.as_deref(),
                    &client,
                )
            })
            .await
        };
        let mut exchange = Exchange {
            request_id: Uuid::new_v4(),
            prompt_hash: audit::prompt_hash(messages, tools, state.audit_config.hash_key()),
            prompt_length: audit::prompt_length(messages, tools),
            provider: decision.provider.clone(),
            decision,
            model: String::new(),
            attempts: Vec::new(),
            policy,
            requested_model: requested_model.map(str::to_owned),
            model_api,
            started: Instant::now(),
            created_at: audit::now(),
            client_api,
        };
        let first = &exchange.decision.chain[0];
        exchange.model = exchange
            .chain_request(messages, &[], &GenerationOptions::default())
            .model_for(first, 0, first.api);
        exchange
    }

    /// What the chain sends.
    fn chain_request<'a>(
        &'a self,
        messages: &'a [ChatMessage],
        tools: &'a [ToolDefinition],
        options: &'a GenerationOptions,
    ) -> ChainRequest<'a> {
        ChainRequest {
            messages,
            tools,
            options,
            requested_model: self.requested_model.as_deref(),
            model_api: self.model_api,
            aliases: self.policy.model_aliases(),
            sensitive: self.decision.sensitive,
        }
    }

    /// Commits the request's audit event as `pending`, before any provider
    /// is called, so that a crash from here on still leaves a trace of a
    /// prompt that may have left the machine. When it cannot be committed
    /// the failure is logged and counted, and with `AUDIT_FAILURE_MODE=closed`
    /// (the default) the request ends here: `Err`, `503 audit_unavailable`,
    /// and no provider called. With `open` it goes on unaudited.
    pub(crate) async fn record_pending(&self, state: &AppState) -> Result<(), ApiError> {
        let Some(store) = &state.audit else {
            return Ok(());
        };
        let event = self.audit_record(store, AuditStatus::Pending, None, Duration::ZERO);
        let Err(error) = store.record(event).await else {
            return Ok(());
        };
        state.metrics.audit_write_failed();
        match state.audit_config.failure_mode() {
            AuditFailureMode::Closed => {
                tracing::error!(
                    request_id = %self.request_id,
                    error = %error,
                    "The pending audit event of a chat request could not be written; \
                     no provider was called (AUDIT_FAILURE_MODE=closed)."
                );
                Err(ApiError::AuditUnavailable(
                    "the audit store cannot record this request, so it was sent to no \
                     provider; try again later"
                        .to_owned(),
                ))
            }
            AuditFailureMode::Open => {
                tracing::warn!(
                    request_id = %self.request_id,
                    error = %error,
                    "The pending audit event of a chat request could not be written; \
                     going on unaudited (AUDIT_FAILURE_MODE=open)."
                );
                Ok(())
            }
        }
    }

    /// Lets the request go on to its providers, or says why not: the first
    /// provider cannot carry it ([`chain::refusal`]: `400`, nothing
    /// written), or its pending audit event cannot be committed
    /// ([`Self::record_pending`]). Validation comes first, so a refused
    /// request leaves no trace.
    pub(crate) async fn admit(
        &self,
        state: &AppState,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        options: &GenerationOptions,
    ) -> Result<(), ApiError> {
        let first = &self.decision.chain[0];
        let request = providers::ChatRequest {
            model: &self.model,
            messages,
            tools,
            options,
        };
        if let Some((field, why)) = chain::refusal(first.api, &request) {
            return Err(super::request::invalid(&field, why));
        }
        self.record_pending(state).await
    }

    /// Runs the request along the decision's chain and records what it did:
    /// the attempts, the provider that answered (or was tried last) and its
    /// model, and the metrics of each attempt, circuit and fallback.
    async fn run(
        &mut self,
        state: &AppState,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        options: &GenerationOptions,
        call: Call,
    ) -> Result<Answer, ProviderError> {
        let pool = &state.providers;
        let handle = |spec: &Arc<providers::ProviderSpec>| {
            pool.handle(spec).map_err(|e| {
                tracing::error!(provider = spec.id.as_str(), error = %e, "a provider cannot be set up");
                ProviderError::setup(&spec.id, &e)
            })
        };
        let chain = Arc::clone(&self.decision.chain);
        let request = self.chain_request(messages, tools, options);
        let outcome = chain::run(&chain, &handle, &request, call).await;
        for attempt in &outcome.attempts {
            state
                .metrics
                .provider_attempt(&attempt.provider, attempt.outcome);
        }
        // Only a failure opens a circuit: a chain served at once by its
        // first provider changes no gauge (and `/v1/metrics` refreshes them
        // all when scraped).
        if outcome.attempts.iter().any(|a| a.outcome.is_some()) {
            for spec in chain.iter() {
                if let Some(live) = pool.built(&spec.id) {
                    state.metrics.circuit(
                        &spec.id,
                        live.circuit.state() == providers::CircuitState::Open,
                    );
                }
            }
        }
        if outcome.result.is_ok() && outcome.provider != self.decision.provider {
            state
                .metrics
                .fallback(&self.decision.provider, &outcome.provider);
        }
        self.attempts = outcome.attempts;
        self.provider = outcome.provider;
        self.model = outcome.model;
        outcome.result
    }

    /// The calls made so far (a provider skipped by its open circuit is not
    /// one): `attempts` of `/v1/chat`, `x-policy-mesh-attempts`.
    pub(crate) fn calls(&self) -> usize {
        self.attempts.iter().filter(|a| a.called()).count()
    }

    /// Sends the request along its chain for a whole reply, and records the
    /// outcome ([`Self::finish`]) before returning it.
    pub(crate) async fn call(
        &mut self,
        state: &AppState,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        options: &GenerationOptions,
    ) -> Result<Reply, ProviderError> {
        let result = match self.run(state, messages, tools, options, Call::Whole).await {
            Ok(Answer::Whole(reply)) => Ok(reply),
            Ok(Answer::Stream(_)) => Err(ProviderError::unavailable("no whole reply")),
            Err(e) => Err(e),
        };
        self.finish(state, result.as_ref().err()).await;
        result
    }

    /// Sends the request along its chain for a streamed reply; it resolves
    /// once a provider's first event has arrived (nothing reaches the
    /// client before). A failure of the whole chain is recorded here; a
    /// stream's outcome is recorded by the relay that reads it, when it ends.
    pub(crate) async fn open_stream(
        &mut self,
        state: &AppState,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        options: &GenerationOptions,
    ) -> Result<ReplyStream, ProviderError> {
        let upstream = match self
            .run(state, messages, tools, options, Call::Stream)
            .await
        {
            Ok(Answer::Stream(stream)) => Ok(stream),
            Ok(Answer::Whole(reply)) => Ok(providers::whole_stream(reply)),
            Err(e) => Err(e),
        };
        if let Err(e) = &upstream {
            self.finish(state, Some(e)).await;
        }
        upstream
    }

    /// Time since the decision.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records the outcome: the audit event updated from pending (committed
    /// before this returns, so `GET /v1/audit/{id}` finds it as soon as the
    /// client has the answer), the metrics and one log line. A failed update
    /// is logged and counted; the answer is sent all the same, since the
    /// pending event already records the call.
    pub(crate) async fn finish(&self, state: &AppState, failure: Option<&ProviderError>) {
        let latency = self.elapsed();
        if let Some(store) = &state.audit {
            let status = AuditStatus::of(failure.is_none());
            let event = self.audit_record(store, status, failure, latency);
            if let Err(error) = store.record(event).await {
                state.metrics.audit_write_failed();
                tracing::error!(
                    request_id = %self.request_id,
                    error = %error,
                    "The outcome of a chat request could not be written to its audit event; \
                     the chat answer is unchanged."
                );
            }
        }
        let decision = &self.decision;
        let clients = state.clients.as_ref().map(|c| c.snapshot());
        let client = clients
            .as_ref()
            .map_or(&*decision.client, |c| c.table.label(&decision.client));
        state
            .metrics
            .decision(client, decision.rule_id(), &decision.reason);
        state.metrics.detections(decision.detections.iter());
        let status = AuditStatus::of(failure.is_none());
        state
            .metrics
            .chat_request(client, &self.provider, status, latency.as_secs_f64());
        log_chat(self, failure, latency);
    }

    /// The audit event in `status`: never the prompt or the reply, only
    /// their fingerprint. Pending, it names no attempt yet; otherwise every
    /// attempt of the chain, the serving provider's with the stream's
    /// outcome when it failed after its first event.
    fn audit_record(
        &self,
        store: &audit::AuditStore,
        status: AuditStatus,
        failure: Option<&ProviderError>,
        latency: Duration,
    ) -> AuditEvent {
        let decision = &self.decision;
        let reason_codes = decision.reason_codes();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let mut attempts: Vec<Attempt> = match status {
            AuditStatus::Pending => Vec::new(),
            _ => self
                .attempts
                .iter()
                .map(|a| {
                    Attempt::of(
                        a.provider.clone(),
                        a.outcome,
                        a.latency.as_secs_f64() * 1000.0,
                    )
                })
                .collect(),
        };
        if let (Some(failure), Some(last)) = (failure, attempts.last_mut())
            && last.outcome == AuditStatus::Success.as_str()
        {
            *last = Attempt::of(
                last.provider.clone(),
                Some(failure.category()),
                last.latency_ms,
            );
        }
        AuditEvent {
            request_id: self.request_id,
            decision: audit::decision_string(&decision.provider, &reason_codes),
            provider: self.provider.clone(),
            rule: decision.rule_id().map(str::to_owned),
            reason_codes: reason_codes.iter().map(|c| (*c).to_owned()).collect(),
            policy_version: decision.policy_version.to_string(),
            status,
            latency_ms,
            failure_category: failure.map(ProviderError::category),
            prompt_hash: self.prompt_hash.clone(),
            prompt_length: self.prompt_length,
            model: self.model.clone(),
            created_at: self.created_at,
            sensitive: decision.sensitive,
            detections: decision
                .detections
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            attempts,
            instance_id: store.instance_id(),
            client_api: Some(self.client_api),
            client: Some(decision.client.to_string()),
        }
    }
}

/// One line per chat: ids, providers and outcome, never text.
fn log_chat(exchange: &Exchange, failure: Option<&ProviderError>, latency: Duration) {
    let request_id = exchange.request_id;
    let decision = &exchange.decision;
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let rule = decision.rule_id().unwrap_or("");
    let attempts = exchange.attempts.len();
    match failure {
        None => tracing::info!(
            request_id = %request_id,
            provider = exchange.provider.as_str(),
            attempts,
            rule,
            status = "success",
            latency_ms,
            "chat request answered"
        ),
        Some(e) if e.category() == FailureCategory::Cancelled => tracing::info!(
            request_id = %request_id,
            provider = exchange.provider.as_str(),
            attempts,
            rule,
            status = "failure",
            latency_ms,
            failure_category = e.category().as_str(),
            "chat stream cancelled by the client"
        ),
        // The error is in the gateway's own words: no upstream body, key or URL.
        Some(e) => tracing::warn!(
            request_id = %request_id,
            provider = exchange.provider.as_str(),
            attempts,
            rule,
            status = "failure",
            latency_ms,
            failure_category = e.category().as_str(),
            error = %e,
            "chat request failed at the provider"
        ),
    }
}

/// The status a provider failure is answered with: 504 for a timeout, 503
/// when every provider of the chain was skipped by its open circuit, 502
/// otherwise (499, nginx's "client closed request", for a cancelled stream,
/// which no client ever reads).
pub(crate) fn failure_status(category: FailureCategory) -> StatusCode {
    match category {
        FailureCategory::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureCategory::ConnectError
        | FailureCategory::AuthError
        | FailureCategory::ClientError
        | FailureCategory::RateLimited
        | FailureCategory::ServerError
        | FailureCategory::BadResponse => StatusCode::BAD_GATEWAY,
        FailureCategory::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        FailureCategory::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_GATEWAY),
    }
}
