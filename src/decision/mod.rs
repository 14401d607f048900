//! The decision: which provider a chat request goes to, and why.
//!
//! [`CompiledPolicy::decide`] runs the policy language's rule chain
//! (docs/policy-guide.md): rules in evaluation order (sensitive rules first),
//! each rule's conditions in the fixed order `keywords`, `patterns`,
//! `input_chars`, `estimated_usd`, `model`, the first rule whose conditions all
//! hold wins, else the default. [`CompiledPolicy::explain`] does the same and also
//! records why each rule tried held or not, for `/v1/decide`; both share one
//! implementation so they cannot disagree.
//!
//! Keywords and patterns are matched with one scan per message for all rules: the
//! shared automaton and regex set mark, in two bitsets sized to the rule count,
//! every rule with a match, and the chain then only reads bits. The scan runs the
//! first time a rule needs it, so a policy whose first rule holds on length alone
//! never normalizes the input. The requested model is matched the same way, once,
//! by the shared glob set into a third bitset, the first time a rule needs it; a
//! request without a model sets no bit, so no `model` condition holds. Bitsets,
//! the normalization buffer and the buffer of matching glob ids live in a
//! thread-local scratch space so that a decision does not allocate for them.

use std::cell::RefCell;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use utoipa::openapi::schema::RefBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::chat::{ChatMessage, ToolDefinition, text_units};
use crate::compiler::{CompiledPolicy, CompiledRule, KeywordMatcher, Outcome, RuleBits};
use crate::detect::{self, DetectorSet};
use crate::names::{Detector, ProviderId, Route};
use crate::normalize::{self, normalize_general, normalize_into};
use crate::policy::{CharBounds, UsdBounds};
use crate::providers::ProviderSpec;

/// Where a chat request goes and why. Strings are shared with the compiled policy,
/// so making or cloning a decision does not copy them.
///
/// Serializes as `{"provider", "route", "rule", "sensitive", "reason_codes",
/// "policy_version"}`;
/// the measured `input_chars` and `estimated_usd` are for callers (audit, logs) and
/// are not part of that object.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The trust of the first provider: `local` or `public`.
    pub route: Route,
    /// The first provider's id.
    pub provider: ProviderId,
    /// The providers tried in order: the first, then the fallbacks.
    pub chain: Arc<[Arc<ProviderSpec>]>,
    /// The id of the rule that held; `None` for the default decision.
    pub rule: Option<Arc<str>>,
    /// The calling client's id (`anonymous` on a gateway without clients).
    pub client: Arc<str>,
    /// The reason code: the rule's reason, or `default`.
    pub reason: Arc<str>,
    /// Version of the policy that decided.
    pub policy_version: Arc<str>,
    /// Made by a sensitive rule: the request never goes to a provider that is
    /// not local.
    pub sensitive: bool,
    /// The detectors of the deciding rule that found something (empty on a
    /// default decision or a rule without `detect`).
    pub detections: DetectorSet,
    /// Unicode scalar values of the raw contents of every message.
    pub input_chars: u64,
    /// Estimated cost of the input on the public provider; `None` without a price.
    pub estimated_usd: Option<f64>,
}

impl Decision {
    /// The reason codes as the API reports them: exactly one code.
    pub fn reason_codes(&self) -> [&str; 1] {
        [&self.reason]
    }

    /// The rule id, or `None` for the default decision.
    pub fn rule_id(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// Whether no rule held.
    pub fn is_default(&self) -> bool {
        self.rule.is_none()
    }

    /// The ids of the providers tried after the first, in order.
    pub fn fallback(&self) -> impl Iterator<Item = &str> {
        self.chain.iter().skip(1).map(|p| p.id.as_str())
    }

    fn serialize_fields<S: SerializeStruct>(&self, s: &mut S) -> Result<(), S::Error> {
        s.serialize_field("provider", &self.provider)?;
        s.serialize_field("route", &self.route)?;
        s.serialize_field("fallback", &self.fallback().collect::<Vec<_>>())?;
        s.serialize_field("rule", &self.rule.as_deref())?;
        s.serialize_field("client", &*self.client)?;
        s.serialize_field("sensitive", &self.sensitive)?;
        s.serialize_field("detections", &self.detections.names())?;
        s.serialize_field("reason_codes", &self.reason_codes())?;
        s.serialize_field("policy_version", &*self.policy_version)
    }

    /// The schema of what [`Self::serialize_fields`] writes, field by field,
    /// added to `object`.
    fn schema_fields(object: ObjectBuilder) -> ObjectBuilder {
        object
            .property(
                "provider",
                reference::<ProviderId>("The provider the request would go to first."),
            )
            .required("provider")
            .property(
                "route",
                reference::<Route>("The first provider's trust: `local` or `public`."),
            )
            .required("route")
            .property(
                "fallback",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(ProviderId::name()))
                    .description(Some(
                        "The providers tried, in order, when the first fails (empty: none).",
                    )),
            )
            .required("fallback")
            .property(
                "rule",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "The id of the rule that decided; `null` on a default decision.",
                    )),
            )
            .property(
                "client",
                ObjectBuilder::new().schema_type(Type::String).description(Some(
                    "The calling client's id (`anonymous` on a gateway without a clients file).",
                )),
            )
            .required("client")
            .property(
                "sensitive",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some(
                        "Whether a sensitive rule decided: then the request stays local.",
                    )),
            )
            .required("sensitive")
            .property(
                "detections",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(Detector::name()))
                    .description(Some(
                        "The detectors of the deciding rule that found something, sorted by\n\
                         name; empty on a default decision.",
                    )),
            )
            .required("detections")
            .property(
                "reason_codes",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("Exactly one code: the rule's reason, or `default`.")),
            )
            .required("reason_codes")
            .property(
                "policy_version",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The policy version (SHA-256 hex) that decided.")),
            )
            .required("policy_version")
    }
}

/// A reference to the schema of `T`, described.
fn reference<T: ToSchema>(description: &str) -> RefOr<Schema> {
    RefBuilder::new()
        .ref_location_from_schema_name(T::name())
        .description(Some(description))
        .into()
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Decision", 10)?;
        self.serialize_fields(&mut s)?;
        s.end()
    }
}

/// A condition of a rule, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No keyword occurs in the messages in scope.
    Keywords,
    /// No pattern matches a message in scope.
    Patterns,
    /// No detector finds anything in the messages in scope.
    Detect,
    /// The input length is outside the bounds.
    InputChars,
    /// The estimated cost is outside the bounds (or there is no price).
    EstimatedUsd,
    /// No glob matches the requested model, or the request names no model.
    Model,
    /// No glob matches the calling client's id.
    Client,
    /// The request has an image and the rule wants none, or the other way round.
    HasImages,
}

/// How one rule fared in a decision.
#[derive(Debug, Clone, PartialEq, Eq, ToSchema)]
#[schema(as = TraceStep)]
pub struct TraceEntry {
    /// The rule id.
    #[schema(value_type = String)]
    pub rule: Arc<str>,
    /// Whether all its conditions held.
    pub held: bool,
    /// The first condition that failed, in checking order; `null` when it held.
    pub failed_condition: Option<Condition>,
}

impl Serialize for TraceEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("TraceEntry", 3)?;
        s.serialize_field("rule", &*self.rule)?;
        s.serialize_field("held", &self.held)?;
        s.serialize_field("failed_condition", &self.failed_condition)?;
        s.end()
    }
}

/// A decision with the trace of every rule tried, in order, up to the one that
/// held (every rule when none did).
///
/// Serializes as the `POST /v1/decide` body: the decision's fields, then `trace`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The decision, identical to what [`CompiledPolicy::decide`] returns.
    pub decision: Decision,
    /// One entry per rule evaluated.
    pub trace: Vec<TraceEntry>,
}

impl Serialize for Explanation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Explanation", 8)?;
        self.decision.serialize_fields(&mut s)?;
        s.serialize_field("trace", &self.trace)?;
        s.end()
    }
}

/// The schema of what [`Explanation`]'s `serialize` writes.
impl PartialSchema for Explanation {
    fn schema() -> RefOr<Schema> {
        Decision::schema_fields(
            ObjectBuilder::new()
                .description(Some("`POST /v1/decide`: the decision and the rules tried.")),
        )
        .property(
            "trace",
            ArrayBuilder::new()
                .items(Ref::from_schema_name(TraceEntry::name()))
                .description(Some(
                    "One entry per rule evaluated, in order, up to the rule that held\n\
                     (every rule when none did).",
                )),
        )
        .required("trace")
        .into()
    }
}

/// Named `Decision` in the API description: the decision, with its trace.
impl ToSchema for Explanation {
    fn name() -> std::borrow::Cow<'static, str> {
        "Decision".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProviderId::name().into(), ProviderId::schema()));
        schemas.push((Route::name().into(), Route::schema()));
        schemas.push((TraceEntry::name().into(), TraceEntry::schema()));
        TraceEntry::schemas(schemas);
    }
}

/// The detectors of `rule` that found something in the messages it looks at.
fn detections(rule: &CompiledRule, scratch: &Scratch) -> DetectorSet {
    match scratch.found {
        Some((all, last_user)) if !rule.detectors.is_empty() => {
            let found = if rule.last_user_only { last_user } else { all };
            found.intersection(rule.detectors)
        }
        _ => DetectorSet::EMPTY,
    }
}

/// Per-thread buffers reused by every decision.
#[derive(Debug, Default)]
struct Scratch {
    keyword_hits: RuleBits,
    pattern_hits: RuleBits,
    model_hits: RuleBits,
    /// The ids of the globs matching the model.
    glob_ids: Vec<usize>,
    text: String,
    /// The strict forms of the message being scanned.
    strict: normalize::Strict,
    /// What the detectors found in every message, and in the last user
    /// message; `None` until a rule needs it.
    found: Option<(DetectorSet, DetectorSet)>,
    /// Whether any message of the request has an image.
    has_images: bool,
    /// The calling client's id.
    client: Option<Arc<str>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Which normalization the scan uses. Both give the same text; `General` exists so
/// tests can show that decisions do not depend on the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Normalization {
    /// [`normalize_into`], with its ASCII fast path.
    Fast,
    /// [`normalize_general`], the straight pipeline.
    #[cfg_attr(not(test), allow(dead_code))]
    General,
}

impl CompiledPolicy {
    /// Decides where `messages` go. `model` is the model the client asked for
    /// (`None`: the request names none), which `model` conditions look at.
    /// Deterministic: the same messages, model and policy always give the same
    /// decision.
    pub fn decide(&self, messages: &[ChatMessage], model: Option<&str>) -> Decision {
        self.evaluate(
            messages,
            &[],
            &[],
            model,
            &crate::clients::anonymous(),
            Normalization::Fast,
            None,
        )
    }

    /// [`CompiledPolicy::decide`] for a request that also forwards `tools`
    /// (each read as a unit of scope `all`, counted in input chars, after
    /// the messages) and `metadata`: text the provider receives besides the
    /// messages (the requested `model`, `user`, `stop` sequences). The
    /// keywords and patterns of rules of scope `all` read the metadata;
    /// detectors, `input_chars` and the prompt hash do not.
    pub fn decide_with_metadata(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        metadata: &[&str],
        model: Option<&str>,
        client: &Arc<str>,
    ) -> Decision {
        self.evaluate(
            messages,
            tools,
            metadata,
            model,
            client,
            Normalization::Fast,
            None,
        )
    }

    /// Decides where `messages` asking for `model` go and says, rule by rule, why.
    pub fn explain(&self, messages: &[ChatMessage], model: Option<&str>) -> Explanation {
        self.explain_for(messages, model, &crate::clients::anonymous())
    }

    /// [`CompiledPolicy::explain`] for a request from `client`.
    pub fn explain_for(
        &self,
        messages: &[ChatMessage],
        model: Option<&str>,
        client: &Arc<str>,
    ) -> Explanation {
        let mut trace = Vec::new();
        let decision = self.evaluate(
            messages,
            &[],
            &[],
            model,
            client,
            Normalization::Fast,
            Some(&mut trace),
        );
        Explanation { decision, trace }
    }

    /// The rule chain. `trace`, when given, receives one entry per rule tried.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn evaluate(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        metadata: &[&str],
        model: Option<&str>,
        client: &Arc<str>,
        normalization: Normalization,
        trace: Option<&mut Vec<TraceEntry>>,
    ) -> Decision {
        let mut trace = trace;
        // The scratch space is only unavailable while the thread is being torn
        // down, or if a decision were ever made from inside another: then use a
        // fresh one rather than fail.
        let reused = SCRATCH.try_with(|cell| {
            cell.try_borrow_mut().ok().map(|mut scratch| {
                self.run(
                    messages,
                    tools,
                    metadata,
                    model,
                    client,
                    normalization,
                    trace.as_deref_mut(),
                    &mut scratch,
                )
            })
        });
        match reused {
            Ok(Some(decision)) => decision,
            _ => self.run(
                messages,
                tools,
                metadata,
                model,
                client,
                normalization,
                trace,
                &mut Scratch::default(),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        metadata: &[&str],
        model: Option<&str>,
        client: &Arc<str>,
        normalization: Normalization,
        mut trace: Option<&mut Vec<TraceEntry>>,
        scratch: &mut Scratch,
    ) -> Decision {
        scratch.client = Some(Arc::clone(client));
        let input_chars: u64 = text_units(messages, tools)
            .map(|u| u.text.chars().count() as u64)
            .sum();
        let estimated_usd = self
            .price
            .map(|price| input_chars as f64 / self.chars_per_token / 1_000_000.0 * price);
        let mut scanned = false;
        let mut model_matched = false;
        scratch.found = None;
        scratch.has_images = messages.iter().any(|m| !m.images.is_empty());
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.detectors.is_empty() && scratch.found.is_none() {
                scratch.found = Some(self.run_detectors(messages, tools));
            }
            if rule.model && !model_matched {
                self.match_model(model, scratch);
                model_matched = true;
            }
            if (rule.keywords || rule.patterns) && !scanned {
                self.scan(messages, tools, metadata, normalization, scratch);
                scanned = true;
                if trace.is_none() {
                    if !model_matched {
                        self.match_model(model, scratch);
                    }
                    if scratch.found.is_none()
                        && !(self.detect_all.is_empty() && self.detect_last_user.is_empty())
                    {
                        scratch.found = Some(self.run_detectors(messages, tools));
                    }
                    // Nothing to record: go straight to the rules whose keyword,
                    // pattern and model conditions hold.
                    return self.first_candidate(index, scratch, input_chars, estimated_usd);
                }
            }
            let failed = self.first_failed(index, scratch, input_chars, estimated_usd);
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(TraceEntry {
                    rule: rule.id.clone(),
                    held: failed.is_none(),
                    failed_condition: failed,
                });
            }
            if failed.is_none() {
                return self.decision(
                    &rule.outcome,
                    Some(&rule.id),
                    detections(rule, scratch),
                    input_chars,
                    estimated_usd,
                    scratch,
                );
            }
        }
        self.decision(
            &self.default,
            None,
            DetectorSet::EMPTY,
            input_chars,
            estimated_usd,
            scratch,
        )
    }

    /// What the policy's detectors find: in every text unit (for rules with
    /// `scope: all`) and in the last user message (for `scope: last_user`).
    fn run_detectors(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> (DetectorSet, DetectorSet) {
        let mut all = DetectorSet::EMPTY;
        let mut last = DetectorSet::EMPTY;
        for unit in text_units(messages, tools) {
            let is_last_user = unit.last_user;
            let mut wanted = self.detect_all;
            if is_last_user {
                wanted = wanted.union(self.detect_last_user);
            }
            if wanted.is_empty() {
                continue;
            }
            let found = detect::detect(&normalize::for_detectors(&unit.text), wanted);
            all = all.union(found);
            if is_last_user {
                last = found;
            }
        }
        (all, last)
    }

    /// The first condition of rule `index` that fails, in checking order, once the
    /// scan (if the rule needs it) has run.
    #[inline]
    fn first_failed(
        &self,
        index: usize,
        scratch: &Scratch,
        input_chars: u64,
        estimated_usd: Option<f64>,
    ) -> Option<Condition> {
        let rule = self.rules.get(index)?;
        if rule.keywords && !scratch.keyword_hits.get(index) {
            Some(Condition::Keywords)
        } else if rule.patterns && !scratch.pattern_hits.get(index) {
            Some(Condition::Patterns)
        } else if !rule.detectors.is_empty() && detections(rule, scratch).is_empty() {
            Some(Condition::Detect)
        } else if !rule
            .input_chars
            .is_none_or(|b| chars_within(b, input_chars))
        {
            Some(Condition::InputChars)
        } else if !rule
            .estimated_usd
            .is_none_or(|b| estimated_usd.is_some_and(|usd| usd_within(b, usd)))
        {
            Some(Condition::EstimatedUsd)
        } else if rule.model && !scratch.model_hits.get(index) {
            Some(Condition::Model)
        } else if let Some(globs) = &rule.client
            && !scratch
                .client
                .as_deref()
                .is_some_and(|client| globs.is_match(client))
        {
            Some(Condition::Client)
        } else if rule
            .has_images
            .is_some_and(|want| want != scratch.has_images)
        {
            Some(Condition::HasImages)
        } else {
            None
        }
    }

    /// The decision of the rule chain from rule `from` on, after the scan and the
    /// model match: only the rules whose keyword, pattern and model conditions
    /// hold (or that have none) are looked at, found 64 at a time in the bitsets,
    /// so a long chain of keyword rules that did not match costs a few word
    /// operations.
    fn first_candidate(
        &self,
        from: usize,
        scratch: &Scratch,
        input_chars: u64,
        estimated_usd: Option<f64>,
    ) -> Decision {
        for w in from / 64..self.needs_keywords.words() {
            let keywords_hold = !self.needs_keywords.word(w) | scratch.keyword_hits.word(w);
            let patterns_hold = !self.needs_patterns.word(w) | scratch.pattern_hits.word(w);
            let model_holds = !self.needs_model.word(w) | scratch.model_hits.word(w);
            let mut candidates = keywords_hold & patterns_hold & model_holds;
            if w == from / 64 {
                candidates &= u64::MAX << (from % 64);
            }
            while candidates != 0 {
                let index = w * 64 + candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                // Bits past the last rule are set; the chain ends there.
                let Some(rule) = self.rules.get(index) else {
                    break;
                };
                if self
                    .first_failed(index, scratch, input_chars, estimated_usd)
                    .is_none()
                {
                    return self.decision(
                        &rule.outcome,
                        Some(&rule.id),
                        detections(rule, scratch),
                        input_chars,
                        estimated_usd,
                        scratch,
                    );
                }
            }
        }
        self.decision(
            &self.default,
            None,
            DetectorSet::EMPTY,
            input_chars,
            estimated_usd,
            scratch,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        outcome: &Outcome,
        rule: Option<&Arc<str>>,
        detections: DetectorSet,
        input_chars: u64,
        estimated_usd: Option<f64>,
        scratch: &Scratch,
    ) -> Decision {
        let client = scratch
            .client
            .clone()
            .unwrap_or_else(crate::clients::anonymous);
        Decision {
            detections,
            route: outcome.route,
            provider: outcome.provider.clone(),
            chain: Arc::clone(&outcome.chain),
            rule: rule.cloned(),
            client,
            reason: outcome.reason.clone(),
            policy_version: self.version.clone(),
            sensitive: outcome.sensitive,
            input_chars,
            estimated_usd,
        }
    }

    /// Marks the rules with a glob matching `model`; none when there is no model
    /// (or no rule has a `model` condition).
    fn match_model(&self, model: Option<&str>, scratch: &mut Scratch) {
        let Scratch {
            model_hits,
            glob_ids,
            ..
        } = scratch;
        model_hits.reset(self.rules.len());
        if let (Some(matcher), Some(model)) = (&self.models, model) {
            matcher.scan(model, glob_ids, model_hits);
        }
    }

    /// Normalizes each message that some rule looks at, once, and runs the keyword
    /// automaton and the regex set over it, marking the rules that match.
    fn scan(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        metadata: &[&str],
        normalization: Normalization,
        scratch: &mut Scratch,
    ) {
        scratch.keyword_hits.reset(self.rules.len());
        scratch.pattern_hits.reset(self.rules.len());
        for unit in text_units(messages, tools) {
            self.scan_text(&unit.text, unit.last_user, normalization, scratch);
        }
        // The request's metadata (`model`, `user`, `stop`) leaves with it: the
        // rules of scope `all` read it as well.
        for text in metadata {
            self.scan_text(text, false, normalization, scratch);
        }
        // One huge request must not pin its size in every thread for good.
        if scratch.text.capacity() > MAX_RETAINED_BUFFER {
            scratch.text = String::new();
        }
        scratch.strict.shrink(MAX_RETAINED_BUFFER);
    }

    /// Normalizes one text unit, once, and marks the rules whose keywords or
    /// patterns match it.
    fn scan_text(
        &self,
        content: &str,
        is_last_user: bool,
        normalization: Normalization,
        scratch: &mut Scratch,
    ) {
        let Scratch {
            keyword_hits,
            pattern_hits,
            text: buffer,
            strict,
            ..
        } = scratch;
        let keywords = wanted(&self.keywords, is_last_user);
        let strict_keywords = wanted(&self.strict_keywords, is_last_user);
        let patterns = self
            .patterns
            .as_ref()
            .filter(|p| p.targets.wants(is_last_user));
        if keywords.is_none() && strict_keywords.is_none() && patterns.is_none() {
            return;
        }
        let text = normalized(content, normalization, buffer);
        if let Some(k) = keywords {
            k.scan(text, is_last_user, keyword_hits);
        }
        if let Some(p) = patterns {
            p.scan(text, is_last_user, pattern_hits);
        }
        if let Some(k) = strict_keywords {
            strict.normalize(text);
            k.scan(strict.plain(), is_last_user, keyword_hits);
            if let Some(joined) = strict.joined() {
                k.scan(joined, is_last_user, keyword_hits);
            }
        }
    }
}

/// `matcher`, when it needs to see a message that is (or is not) the last user
/// message.
fn wanted(matcher: &Option<KeywordMatcher>, is_last_user: bool) -> Option<&KeywordMatcher> {
    matcher.as_ref().filter(|k| k.targets.wants(is_last_user))
}

/// Largest normalization buffer kept between decisions.
const MAX_RETAINED_BUFFER: usize = 256 << 10;

/// The normalized form of `raw`, written into `buffer`.
fn normalized<'a>(raw: &'a str, normalization: Normalization, buffer: &'a mut String) -> &'a str {
    buffer.clear();
    match normalization {
        // For ASCII, copying and lowercasing in bulk is cheaper than first looking
        // for an uppercase letter byte by byte.
        Normalization::Fast if raw.is_ascii() => {
            buffer.push_str(raw);
            buffer.make_ascii_lowercase();
        }
        Normalization::Fast => normalize_into(raw, buffer),
        Normalization::General => *buffer = normalize_general(raw),
    }
    buffer
}

fn chars_within(bounds: CharBounds, chars: u64) -> bool {
    bounds.min.is_none_or(|min| chars >= min) && bounds.max.is_none_or(|max| chars <= max)
}

fn usd_within(bounds: UsdBounds, usd: f64) -> bool {
    bounds.min.is_none_or(|min| usd >= min) && bounds.max.is_none_or(|max| usd <= max)
}

#[cfg(test)]
mod tests;
