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
            // The client bounds the call by `total` itself; a timer of its
            // own is needed only when what is left of the budget is less.
            if left >= timeouts.total {
                return live.client.chat(request).await.map(Answer::Whole);
            }
            match tokio::time::timeout(left, live.client.chat(request)).await {
                Ok(result) => result.map(Answer::Whole),
                Err(_) => Err(ProviderError::chain_budget()),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::providers::spec::{CircuitSettings, ModelGlobs, Timeouts};
    use crate::providers::{BoxFuture, ChatProvider};

    /// A provider that answers with the outcomes of its script, in order
    /// (the last repeats), and counts its calls. Its failures ask for no
    /// wait (`Retry-After: 0`), so retries take no time.
    struct Scripted {
        outcomes: Vec<Option<FailureCategory>>,
        calls: Mutex<usize>,
    }

    impl Scripted {
        fn new(outcomes: Vec<Option<FailureCategory>>) -> Arc<Self> {
            Arc::new(Scripted {
                outcomes,
                calls: Mutex::new(0),
            })
        }

        fn calls(&self) -> usize {
            *self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    impl ChatProvider for Scripted {
        fn chat<'a>(
            &'a self,
            _request: ChatRequest<'a>,
        ) -> BoxFuture<'a, Result<Reply, ProviderError>> {
            let mut calls = self
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let outcome = self
                .outcomes
                .get(*calls)
                .or(self.outcomes.last())
                .copied()
                .flatten();
            *calls += 1;
            Box::pin(async move {
                match outcome {
                    None => Ok(Reply::text("ok")),
                    Some(category) => Err(ProviderError::new(category, "scripted failure")
                        .with_retry_after(Some(Duration::ZERO))),
                }
            })
        }
    }

    fn spec(id: &str, trust: Route, retries: u32) -> Arc<ProviderSpec> {
        Arc::new(ProviderSpec {
            id: ProviderId::new(id),
            api: Api::Ollama,
            url: "http://127.0.0.1:9".to_owned(),
            trust,
            model: format!("{id}-model"),
            models: ModelGlobs::new(Vec::new()).expect("no globs"),
            api_key_env: None,
            proxy: None,
            retries,
            timeouts: Timeouts::all(Duration::from_secs(5)),
            circuit: CircuitSettings {
                failures: 3,
                cooldown: Duration::from_secs(60),
            },
            builtin: false,
        })
    }

    /// The chain of `specs`, each served by its script.
    struct Fixture {
        chain: Vec<Arc<ProviderSpec>>,
        handles: Vec<Arc<Handle>>,
        clients: Vec<Arc<Scripted>>,
    }

    impl Fixture {
        fn new(specs: Vec<(Arc<ProviderSpec>, Vec<Option<FailureCategory>>)>) -> Self {
            let mut f = Fixture {
                chain: Vec::new(),
                handles: Vec::new(),
                clients: Vec::new(),
            };
            for (spec, script) in specs {
                let client = Scripted::new(script);
                f.handles.push(Arc::new(Handle::with_client(
                    Arc::clone(&spec),
                    Arc::clone(&client) as Arc<dyn ChatProvider>,
                )));
                f.clients.push(client);
                f.chain.push(spec);
            }
            f
        }

        async fn run(&self, sensitive: bool) -> ChainOutcome {
            let messages = [ChatMessage::user("hi")];
            let options = GenerationOptions::default();
            let request = ChainRequest {
                messages: &messages,
                tools: &[],
                options: &options,
                requested_model: None,
                model_api: None,
                aliases: &[],
                sensitive,
            };
            let handle = |spec: &Arc<ProviderSpec>| {
                self.handles
                    .iter()
                    .find(|h| h.spec.id == spec.id)
                    .cloned()
                    .ok_or_else(|| ProviderError::unavailable("no handle"))
            };
            run(&self.chain, &handle, &request, Call::Whole).await
        }
    }

    fn outcomes(o: &ChainOutcome) -> Vec<(&str, Option<FailureCategory>)> {
        o.attempts
            .iter()
            .map(|a| (a.provider.as_str(), a.outcome))
            .collect()
    }

    #[tokio::test]
    async fn each_category_retries_falls_back_or_stops_as_the_table_says() {
        use FailureCategory as F;
        for (category, retried, falls_back) in [
            (F::ConnectError, true, true),
            (F::Timeout, true, true),
            (F::ServerError, true, true),
            (F::RateLimited, true, true),
            (F::AuthError, false, true),
            (F::BadResponse, false, true),
            (F::ClientError, false, false),
        ] {
            let f = Fixture::new(vec![
                (spec("a", Route::Local, 1), vec![Some(category)]),
                (spec("b", Route::Local, 0), vec![None]),
            ]);
            let o = f.run(false).await;
            let mut expected = vec![("a", Some(category))];
            if retried {
                expected.push(("a", Some(category)));
            }
            if falls_back {
                expected.push(("b", None));
            }
            assert_eq!(outcomes(&o), expected, "{category}");
            assert_eq!(o.result.is_ok(), falls_back, "{category}");
            assert_eq!(o.provider, if falls_back { "b" } else { "a" }, "{category}");
        }
    }

    #[tokio::test]
    async fn retries_are_capped_at_two_and_a_success_ends_the_chain() {
        let f = Fixture::new(vec![
            (
                spec("a", Route::Local, 9),
                vec![Some(FailureCategory::ServerError)],
            ),
            (spec("b", Route::Local, 0), vec![None]),
        ]);
        let o = f.run(false).await;
        assert_eq!(f.clients[0].calls(), 3, "one call and two retries");
        assert_eq!(o.calls(), 4);
        let f = Fixture::new(vec![
            (
                spec("a", Route::Local, 2),
                vec![Some(FailureCategory::Timeout), None],
            ),
            (spec("b", Route::Local, 0), vec![None]),
        ]);
        let o = f.run(false).await;
        assert_eq!(
            outcomes(&o),
            [("a", Some(FailureCategory::Timeout)), ("a", None)]
        );
        assert_eq!(f.clients[1].calls(), 0);
    }

    #[tokio::test]
    async fn an_open_circuit_is_skipped_without_a_call() {
        let f = Fixture::new(vec![
            (
                spec("a", Route::Local, 0),
                vec![Some(FailureCategory::ServerError)],
            ),
            (spec("b", Route::Local, 0), vec![None]),
        ]);
        for _ in 0..3 {
            f.run(false).await;
        }
        assert_eq!(f.clients[0].calls(), 3);
        let o = f.run(false).await;
        assert_eq!(f.clients[0].calls(), 3, "skipped");
        assert_eq!(
            outcomes(&o),
            [("a", Some(FailureCategory::Unavailable)), ("b", None)]
        );
        assert_eq!(o.calls(), 1);
        // Every circuit open: unavailable, no call.
        let f = Fixture::new(vec![(
            spec("a", Route::Local, 0),
            vec![Some(FailureCategory::ServerError)],
        )]);
        for _ in 0..3 {
            f.run(false).await;
        }
        let o = f.run(false).await;
        assert_eq!(o.calls(), 0);
        let err = o.result.err().expect("no provider");
        assert_eq!(err.category(), FailureCategory::Unavailable);
    }

    fn category() -> impl Strategy<Value = Option<FailureCategory>> {
        prop_oneof![
            Just(None),
            proptest::sample::select(FailureCategory::ALL.to_vec()).prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the chain holds (a public provider slipped in by a
        /// race with a reload included) and however its providers fail, a
        /// sensitive request never calls a provider that is not local, and
        /// a request that is not sensitive is tried in order.
        #[test]
        fn a_sensitive_request_never_calls_a_public_provider(
            providers in proptest::collection::vec(
                (any::<bool>(), 0u32..3, proptest::collection::vec(category(), 1..4)),
                1..5,
            ),
            sensitive in any::<bool>(),
            runs in 1usize..4,
        ) {
            let specs = providers
                .iter()
                .enumerate()
                .map(|(i, (public, retries, script))| {
                    let trust = if *public { Route::Public } else { Route::Local };
                    (spec(&format!("p{i}"), trust, *retries), script.clone())
                })
                .collect();
            let f = Fixture::new(specs);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            for _ in 0..runs {
                let o = runtime.block_on(f.run(sensitive));
                if sensitive {
                    for attempt in &o.attempts {
                        let trust = f.chain.iter().find(|s| s.id == attempt.provider).map(|s| s.trust);
                        prop_assert_eq!(trust, Some(Route::Local));
                    }
                    if o.result.is_ok() {
                        prop_assert_eq!(o.trust, Route::Local);
                    }
                }
            }
            if sensitive {
                for (client, spec) in f.clients.iter().zip(&f.chain) {
                    if spec.trust == Route::Public {
                        prop_assert_eq!(client.calls(), 0, "{} was called", spec.id);
                    }
                }
            }
        }
    }
}
