//! The live providers: one client (and connection pool) and one circuit per
//! provider of the live policy, built the first time a request needs it and
//! rebuilt when a reload changes its settings. A call holds its provider's
//! [`Handle`], so a reload never disturbs a call in flight: it finishes on
//! the old client while new requests get the new one.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::config::{ProviderConfig, Secret};
use super::spec::ProviderSpec;
use super::{Anthropic, ChatProvider, Ollama, OpenAi, ProvidersError};
use crate::env::{ConfigError, Env};
use crate::names::{Api, FailureCategory, ProviderId, Route};

/// A circuit's state, as `/v1/routes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// The provider is skipped until the cooldown ends.
    Open,
    /// The cooldown is over: calls go through, and the next outcome closes
    /// or reopens the circuit.
    HalfOpen,
}

/// One provider's circuit: after `failures` consecutive retryable failures
/// it is skipped for `cooldown`; after the cooldown the next call probes it.
/// Lock-free: a call to a healthy provider reads two atomics and writes
/// nothing.
#[derive(Debug)]
pub struct Circuit {
    settings: super::spec::CircuitSettings,
    /// What `open_until` counts from.
    epoch: Instant,
    /// Consecutive retryable failures.
    failures: AtomicU32,
    /// While open (or half open): nanoseconds after `epoch` when the
    /// cooldown ends; 0 when closed.
    open_until: AtomicU64,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(settings: super::spec::CircuitSettings) -> Self {
        Circuit {
            settings,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    /// `at` as nanoseconds after the epoch, never 0 (which means closed).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> CircuitState {
        match self.open_until.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            until if self.nanos(now) < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// Whether a call may go through now: not while open.
    pub fn admits(&self) -> bool {
        // The common case, a closed circuit, without reading the clock.
        self.open_until.load(Ordering::Acquire) == 0 || self.state() != CircuitState::Open
    }

    /// Records an attempt's outcome (`None`: success). A success closes the
    /// circuit; a retryable failure counts, and opens it at the threshold or
    /// when it was the probe of a half-open circuit; any other outcome
    /// changes nothing.
    pub fn record(&self, outcome: Option<FailureCategory>) {
        self.record_at(outcome, Instant::now());
    }

    fn record_at(&self, outcome: Option<FailureCategory>, now: Instant) {
        match outcome {
            None => {
                // Written only when there is something to reset.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if self.open_until.load(Ordering::Acquire) != 0 {
                    self.open_until.store(0, Ordering::Release);
                }
            }
            Some(category) if category.is_retryable() => {
                let failures = self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                let until = self.open_until.load(Ordering::Acquire);
                let probing = until != 0 && self.nanos(now) >= until;
                if probing || failures >= self.settings.failures.max(1) {
                    let until = self.nanos(now + self.settings.cooldown);
                    self.open_until.store(until, Ordering::Release);
                }
            }
            Some(_) => {}
        }
    }
}

/// One live provider: its settings, its client and its circuit.
pub struct Handle {
    /// The settings it was built from.
    pub spec: Arc<ProviderSpec>,
    /// Its client.
    pub client: Arc<dyn ChatProvider>,
    /// Its circuit.
    pub circuit: Circuit,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("spec", &self.spec)
            .field("circuit", &self.circuit)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A provider served by `client`, for tests that need no HTTP.
    pub fn with_client(spec: Arc<ProviderSpec>, client: Arc<dyn ChatProvider>) -> Self {
        Handle {
            circuit: Circuit::new(spec.circuit),
            spec,
            client,
        }
    }
}

/// The live providers, by id.
pub struct Pool {
    config: Arc<ProviderConfig>,
    env: Env,
    handles: ArcSwap<HashMap<ProviderId, Arc<Handle>>>,
    /// Serializes builds, so that two requests do not build one provider twice.
    building: Mutex<()>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration's Debug redacts the keys.
        f.debug_struct("Pool")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Reads the provider variables of `env`; no client is built yet.
    pub fn from_env(env: &Env) -> Result<Self, ProvidersError> {
        let config = ProviderConfig::from_env(env).map_err(ProvidersError::Config)?;
        Ok(Self::new(config, env.clone()))
    }

    /// The pool of `config`; `env` holds the keys `api_key_env` names.
    pub fn new(config: ProviderConfig, env: Env) -> Self {
        Pool {
            config: Arc::new(config),
            env,
            handles: ArcSwap::from_pointee(HashMap::new()),
            building: Mutex::new(()),
        }
    }

    /// The validated settings of the built-ins (keys redacted in `Debug`).
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The live handle of `spec`: the one built before when its settings
    /// are the same, else a new one (own client, closed circuit) that
    /// replaces it for every later request.
    pub fn handle(&self, spec: &Arc<ProviderSpec>) -> Result<Arc<Handle>, ProvidersError> {
        if let Some(handle) = self.current(spec) {
            return Ok(handle);
        }
        let _building = self
            .building
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = self.current(spec) {
            return Ok(handle);
        }
        let handle = Arc::new(Handle {
            client: self.client_for(spec)?,
            circuit: Circuit::new(spec.circuit),
            spec: Arc::clone(spec),
        });
        let mut next = HashMap::clone(&self.handles.load());
        next.insert(spec.id.clone(), Arc::clone(&handle));
        self.handles.store(Arc::new(next));
        Ok(handle)
    }

    fn current(&self, spec: &Arc<ProviderSpec>) -> Option<Arc<Handle>> {
        self.handles
            .load()
            .get(&spec.id)
            .filter(|h| Arc::ptr_eq(&h.spec, spec) || *h.spec == **spec)
            .cloned()
    }

    /// The live handle of provider `id`, if one was built.
    pub fn built(&self, id: &str) -> Option<Arc<Handle>> {
        self.handles.load().get(&ProviderId::new(id)).cloned()
    }

    /// The circuit state of provider `id` (closed when it was never called).
    pub fn circuit_state(&self, id: &str) -> CircuitState {
        self.built(id)
            .map_or(CircuitState::Closed, |h| h.circuit.state())
    }

    /// Every built provider's id and whether its circuit is open.
    pub fn circuits(&self) -> Vec<(ProviderId, bool)> {
        self.handles
            .load()
            .iter()
            .map(|(id, h)| (id.clone(), h.circuit.state() == CircuitState::Open))
            .collect()
    }

    /// Calls the built-in provider `id` (`local` or the public one's id)
    /// once with `messages`, the model as [`ProviderSpec::model_for`] picks
    /// it: a client of the provider layer alone, without a policy.
    pub async fn call(
        &self,
        id: &str,
        model: Option<&str>,
        messages: &[crate::chat::ChatMessage],
    ) -> Result<super::Reply, super::ProviderError> {
        let builtins = self.config.builtins();
        let spec = [builtins.local, builtins.public]
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| {
                super::ProviderError::unavailable(format!("{id} is not a built-in provider"))
            })?;
        let spec = Arc::new(spec);
        let handle = self
            .handle(&spec)
            .map_err(|e| super::ProviderError::setup(id, &e))?;
        let model = spec.model_for(model, &[]);
        handle
            .client
            .chat(super::ChatRequest {
                model: &model,
                messages,
                tools: &[],
                options: &super::GenerationOptions::default(),
            })
            .await
    }

    /// Whether `spec` has a key (never the key).
    pub fn has_key(&self, spec: &ProviderSpec) -> bool {
        matches!(self.key_of(spec), Ok(Some(_)))
    }

    /// The key of `spec`, read from the environment; `None` when its
    /// variable is unset (or it names none).
    fn key_of(&self, spec: &ProviderSpec) -> Result<Option<Secret>, ConfigError> {
        let Some(variable) = &spec.api_key_env else {
            return Ok(None);
        };
        match (spec.builtin, variable.as_str()) {
            (true, "LOCAL_LLM_API_KEY") => Ok(self.config.local_api_key.clone()),
            (true, "PUBLIC_LLM_API_KEY") => Ok(self.config.public_api_key.clone()),
            _ => match self.env.get(variable) {
                None => Ok(None),
                Some(key) if key.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) => {
                    Ok(Some(Secret::new(key)))
                }
                Some(_) => Err(ConfigError::new(
                    variable,
                    "invalid value: a key may hold only visible ASCII characters and spaces",
                )),
            },
        }
    }

    /// A client of its own for `spec`: its own connection pool, its
    /// `connect` timeout, no redirects, and no proxy but its own.
    fn client_for(&self, spec: &ProviderSpec) -> Result<Arc<dyn ChatProvider>, ProvidersError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("policy-mesh/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(spec.timeouts.connect)
            // Never the environment's proxy variables.
            .no_proxy();
        // A provider on premises is never reached through a proxy.
        if let Some(proxy) = spec.proxy.as_ref().filter(|_| spec.trust == Route::Public) {
            // The URL was validated with the policy or the environment; the
            // message never quotes it (it may hold a password).
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|_| {
                ProvidersError::Client(format!("the proxy of {} is not a usable URL", spec.id))
            })?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| ProvidersError::Client(e.to_string()))?;
        let key = self.key_of(spec)?;
        Ok(match spec.api {
            Api::Ollama => Arc::new(Ollama::new(client, spec, key.as_ref())?),
            Api::Openai => Arc::new(OpenAi::new(client, spec, key.as_ref())?),
            Api::Anthropic => Arc::new(Anthropic::new(client, spec, key.as_ref())?),
        })
    }
}

/// How long to wait before retry `retry` (0 for the first): 100 ms, 200 ms,
/// 400 ms … with ±20 % jitter, or exactly the provider's `Retry-After` when
/// it sent one. `None`: do not retry (a `Retry-After` over 5 s).
pub fn backoff(retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
    const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
    match retry_after {
        Some(wait) if wait <= MAX_RETRY_AFTER => Some(wait),
        Some(_) => None,
        None => {
            let base = Duration::from_millis(100).saturating_mul(1 << retry.min(16));
            Some(base.mul_f64(0.8 + 0.4 * fastrand::f64()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::spec::CircuitSettings;

    fn circuit(failures: u32) -> Circuit {
        Circuit::new(CircuitSettings {
            failures,
            cooldown: Duration::from_secs(30),
        })
    }

    #[test]
    fn a_circuit_opens_after_consecutive_retryable_failures() {
        let c = circuit(3);
        let t = Instant::now();
        c.record_at(Some(FailureCategory::ServerError), t);
        c.record_at(Some(FailureCategory::Timeout), t);
        // A success resets the count; other outcomes neither count nor reset.
        c.record_at(None, t);
        c.record_at(Some(FailureCategory::ConnectError), t);
        c.record_at(Some(FailureCategory::AuthError), t);
        c.record_at(Some(FailureCategory::ClientError), t);
        c.record_at(Some(FailureCategory::RateLimited), t);
        assert_eq!(c.state_at(t), CircuitState::Closed);
        c.record_at(Some(FailureCategory::ServerError), t);
        assert_eq!(c.state_at(t), CircuitState::Open);
        assert_eq!(c.state_at(t + Duration::from_secs(29)), CircuitState::Open);
        let later = t + Duration::from_secs(30);
        assert_eq!(c.state_at(later), CircuitState::HalfOpen);
        // The probe fails: open again for a whole cooldown.
        c.record_at(Some(FailureCategory::ServerError), later);
        assert_eq!(
            c.state_at(later + Duration::from_secs(29)),
            CircuitState::Open
        );
        // The next probe succeeds: closed.
        let probe = later + Duration::from_secs(30);
        assert_eq!(c.state_at(probe), CircuitState::HalfOpen);
        c.record_at(None, probe);
        assert_eq!(c.state_at(probe), CircuitState::Closed);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        for retry in 0..3 {
            let base = 100.0 * f64::from(1u32 << retry);
            for _ in 0..50 {
                let ms = backoff(retry, None).expect("retried").as_secs_f64() * 1000.0;
                assert!(
                    ms >= base * 0.8 - 1e-9 && ms <= base * 1.2 + 1e-9,
                    "{retry}: {ms}"
                );
            }
        }
        assert_eq!(
            backoff(0, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(6))), None);
    }
}
