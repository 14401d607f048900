//! One request along its chain of providers: the first one, then each
//! fallback in order, with retries on the same provider, circuits that skip
//! a failing one, and the one rule above all others: a sensitive request is
//! never sent to a provider whose trust is not `local`.
//!
//! What each failure does follows its category: `connect_error`, `timeout`,
//! `server_error` and `rate_limited` are retried on the same provider, then
//! fall back; `auth_error` and `bad_response` fall back at once; a
//! `client_error` ends the chain (another provider would refuse the request
//! too). A stream is retried or sent elsewhere only until its first event
//! has arrived: [`run`] returns a stream only once it has one, so that
//! nothing reaches the client before the serving provider's first byte.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::pool::{Handle, backoff};
use super::spec::ProviderSpec;
use super::{ChatRequest, GenerationOptions, ProviderError, Reply, ReplyStream};
use crate::chat::{ChatMessage, ToolDefinition};
use crate::names::{Api, FailureCategory, ProviderId, Route};

/// Whether the client wants the reply whole or streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// One answer.
    Whole,
    /// A stream of events.
    Stream,
}

/// A provider's answer: whole, or a stream whose first event has arrived.
pub enum Answer {
    /// The whole reply.
    Whole(Reply),
    /// The stream, its first event included.
    Stream(ReplyStream),
}

/// One attempt of a chain: a call made, or a provider skipped because its
/// circuit is open (`unavailable`, no call).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    /// The provider.
    pub provider: ProviderId,
    /// `None`: it answered; else how it failed.
    pub outcome: Option<FailureCategory>,
    /// From the attempt's start to its outcome.
    pub latency: Duration,
}

impl Attempted {
    /// Whether a call was made (a skip by an open circuit is not one).
    pub fn called(&self) -> bool {
        self.outcome != Some(FailureCategory::Unavailable)
    }
}

/// What the chain sends, whoever serves it.
#[derive(Debug, Clone, Copy)]
pub struct ChainRequest<'a> {
    /// The messages as received.
    pub messages: &'a [ChatMessage],
    /// The tools the model may call.
    pub tools: &'a [ToolDefinition],
    /// Generation settings.
    pub options: &'a GenerationOptions,
    /// The model the client asked for.
    pub requested_model: Option<&'a str>,
    /// When set, only providers of this API may be sent the requested
    /// model (the Anthropic Messages API names Anthropic models).
    pub model_api: Option<Api>,
    /// Names that always mean the chosen provider's own model.
    pub aliases: &'a [String],
    /// Decided sensitive: only `trust: local` providers may be called.
    pub sensitive: bool,
}

impl ChainRequest<'_> {
    /// The model sent to `spec`, the `index`-th provider of a chain whose
    /// first speaks `first`: the requested name when `spec` serves it (a
    /// fallback of another API than the first never gets it), else its own.
    pub fn model_for(&self, spec: &ProviderSpec, index: usize, first: Api) -> String {
        let passes =
            (index == 0 || spec.api == first) && self.model_api.is_none_or(|api| api == spec.api);
        spec.model_for(self.requested_model.filter(|_| passes), self.aliases)
    }
}

/// Why a provider of a chain cannot carry a request, when it cannot: the
/// field at fault and why (an Ollama server cannot fetch an image by URL).
pub fn refusal(api: Api, request: &ChatRequest<'_>) -> Option<(String, &'static str)> {
    match api {
        Api::Ollama => super::ollama::refusal(request),
        Api::Anthropic => super::anthropic::refusal(request),
        Api::Openai => None,
    }
}

/// Gives a provider's live handle (its client and circuit), or why it
/// cannot be called.
pub type HandleOf<'a> =
    dyn Fn(&Arc<ProviderSpec>) -> Result<Arc<Handle>, ProviderError> + Sync + 'a;

/// How the chain ended.
pub struct ChainOutcome {
    /// The answer, or the last failure.
    pub result: Result<Answer, ProviderError>,
    /// Every attempt, in order.
    pub attempts: Vec<Attempted>,
    /// The provider that answered, or the last one tried.
    pub provider: ProviderId,
    /// Its trust.
    pub trust: Route,
    /// The model sent to it.
    pub model: String,
}

impl ChainOutcome {
    /// The calls made (skips by an open circuit are not calls).
    pub fn calls(&self) -> usize {
        self.attempts.iter().filter(|a| a.called()).count()
    }
}

/// Runs `request` along `chain` (its first provider, then its fallbacks),
/// each provider's live handle given by `handle`.
///
/// The whole chain, retries included, is bounded by the first provider's
/// `total` times the number of providers; each provider is tried at most
/// [`super::spec::MAX_RETRIES`] times more. A provider that cannot carry the
/// request ([`refusal`]) is passed over (the first one's refusal is the
/// caller's to report before the chain starts).
pub async fn run(
    chain: &[Arc<ProviderSpec>],
    handle: &HandleOf<'_>,
    request: &ChainRequest<'_>,
    call: Call,
) -> ChainOutcome {
    let Some(first) = chain.first() else {
        return ChainOutcome {
            result: Err(ProviderError::unavailable("the decision names no provider")),
            attempts: Vec::new(),
            provider: ProviderId::local(),
            trust: Route::Local,
            model: String::new(),
        };
    };
    let deadline = Instant::now()
        + first
            .timeouts
            .total
            .saturating_mul(u32::try_from(chain.len()).unwrap_or(u32::MAX));
    let mut outcome = ChainOutcome {
        result: Err(ProviderError::unavailable(
            "no provider of the chain could be called",
        )),
        attempts: Vec::new(),
        provider: first.id.clone(),
        trust: first.trust,
        model: request.model_for(first, 0, first.api),
    };
    for (index, spec) in chain.iter().enumerate() {
        // The invariant, checked before every call whatever the policy said.
        if request.sensitive && spec.trust != Route::Local {
            tracing::error!(
                provider = spec.id.as_str(),
                "a sensitive request was about to be sent to a provider that is not local; \
                 it was skipped"
            );
            continue;
        }
        let model = request.model_for(spec, index, first.api);
        let chat = ChatRequest {
            model: &model,
            messages: request.messages,
            tools: request.tools,
            options: request.options,
        };
        if index > 0 && refusal(spec.api, &chat).is_some() {
            continue;
        }
        outcome.provider = spec.id.clone();
        outcome.trust = spec.trust;
        outcome.model = model.clone();
        let live = match handle(spec) {
            Ok(live) => live,
            Err(e) => {
                outcome.attempts.push(Attempted {
                    provider: spec.id.clone(),
                    outcome: Some(e.category()),
                    latency: Duration::ZERO,
                });
                outcome.result = Err(e);
                continue;
            }
        };
        if !live.circuit.admits() {
            outcome.attempts.push(Attempted {
                provider: spec.id.clone(),
                outcome: Some(FailureCategory::Unavailable),
                latency: Duration::ZERO,
            });
            if outcome.attempts.iter().all(|a| !a.called()) {
                outcome.result = Err(ProviderError::unavailable(format!(
                    "{} is skipped: its circuit is open after repeated failures",
                    spec.id
                )));
            }
            continue;
        }
        let mut retry = 0;
        loop {
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                outcome.result = Err(ProviderError::chain_budget());
                return outcome;
            };
            let result = attempt(&live, chat, call, left).await;
            let failure = result.as_ref().err().map(ProviderError::category);
            live.circuit.record(failure);
            outcome.attempts.push(Attempted {
                provider: spec.id.clone(),
                outcome: failure,
                latency: now.elapsed(),
            });
            let error = match result {
                Ok(answer) => {
                    outcome.result = Ok(answer);
                    return outcome;
                }
                Err(error) => error,
            };
            let category = error.category();
            let wait = (category.is_retryable() && retry < spec.effective_retries())
                .then(|| backoff(retry, error.retry_after()))
                .flatten()
                .filter(|wait| Instant::now() + *wait < deadline);
            outcome.result = Err(error);
            if !category.falls_back() {
                return outcome;
            }
            match wait {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                None => break,
            }
        }
    }
    outcome
}

/// One call to `live`, bounded by `left` (what remains of the chain's
/// budget) besides the provider's own timeouts.
async fn attempt(
    live: &Handle,
    request: ChatRequest<'_>,
    call: Call,
    left: Duration,
) -> Result<Answer, ProviderError> {
    let timeouts = live.spec.timeouts;
    match call {
        Call::Whole => {
            let bound = timeouts.total.min(left);
            match tokio::time::timeout(bound, live.client.chat(request)).await {
                Ok(result) => result.map(Answer::Whole),
                Err(_) => Err(ProviderError::timed_out(bound)),
            }
        }
        Call::Stream => {
            // The status line and the first event, each within `first_byte`.
            let bound = timeouts.first_byte.min(left);
            let started = Instant::now();
            let mut stream =
                match tokio::time::timeout(bound, live.client.chat_stream(request)).await {
                    Ok(result) => result?,
                    Err(_) => return Err(ProviderError::no_first_chunk(bound)),
                };
            let rest = bound.saturating_sub(started.elapsed());
            match tokio::time::timeout(rest, stream.next()).await {
                Err(_) => Err(ProviderError::no_first_chunk(bound)),
                Ok(None) => Ok(Answer::Stream(Box::pin(futures_util::stream::empty()))),
                Ok(Some(Err(e))) => Err(e),
                Ok(Some(Ok(event))) => Ok(Answer::Stream(Box::pin(
                    futures_util::stream::once(async move { Ok(event) }).chain(stream),
                ))),
            }
        }
    }
}
