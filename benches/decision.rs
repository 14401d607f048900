//! Decision and compile benchmarks for `docs/performance.md`.
//!
//! Policies are generated deterministically: distinct pseudo-random word-like
//! keywords spread over the rules, none of them in the inputs, so every decision
//! scans the whole input and tries every rule before the default. Run with
//! `cargo bench --bench decision`.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use policy_mesh::chat::ChatMessage;
use policy_mesh::compiler::CompiledPolicy;
use policy_mesh::normalize::normalize;
use policy_mesh::policy::{
    EffectiveDefaults, KeywordMatch, Located, Location, PolicySet, Position, RuleSpec, Scope,
};

const KEYWORD_COUNTS: [usize; 4] = [10, 1_000, 10_000, 100_000];
const RULE_COUNTS: [usize; 2] = [10, 1_000];
const INPUT_BYTES: usize = 2048;

/// SplitMix64: a fixed seed gives the same policy on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` distinct lowercase words of 6 to 12 letters built from syllables.
fn keywords(count: usize) -> Vec<String> {
    const ONSETS: &[&str] = &[
        "b", "br", "c", "ch", "d", "dr", "f", "g", "gl", "h", "j", "k", "kr", "l", "m", "n", "p",
        "pl", "qu", "r", "s", "sk", "st", "t", "tr", "v", "w", "x", "z",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "y", "ae", "ou"];
    let mut rng = Rng(0x5EED_2026);
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let target = 6 + rng.below(7);
        let mut word = String::new();
        while word.len() < target {
            word.push_str(ONSETS[rng.below(ONSETS.len())]);
            word.push_str(VOWELS[rng.below(VOWELS.len())]);
        }
        word.truncate(target);
        if seen.insert(word.clone()) {
            out.push(word);
        }
    }
    out
}

fn at(line: usize) -> Location {
    Location {
        path: Arc::from("policies/bench.yaml"),
        position: Position { line, column: 1 },
    }
}

/// `keywords` spread round-robin over `rules` rules; a rule left without one
/// shares another's, so that every rule has a keyword condition.
fn policy(keyword_count: usize, rule_count: usize) -> PolicySet {
    let words = keywords(keyword_count);
    let mut per_rule: Vec<Vec<Located<String>>> = vec![Vec::new(); rule_count];
    for (i, w) in words.iter().enumerate() {
        per_rule[i % rule_count].push(Located {
            value: w.clone(),
            at: at(i + 1),
        });
    }
    let rules = per_rule
        .into_iter()
        .enumerate()
        .map(|(i, mut kws)| {
            if kws.is_empty() {
                kws.push(Located {
                    value: words[i % words.len()].clone(),
                    at: at(i + 1),
                });
            }
            RuleSpec {
                id: format!("rule-{i}"),
                description: None,
                route: Located::unplaced("local".to_owned()),
                fallback: Vec::new(),
                reason: format!("reason-{i}"),
                sensitive: false,
                at: at(i + 1),
                keywords: kws,
                keyword_normalization: Default::default(),
                keyword_match: if i % 2 == 0 {
                    KeywordMatch::Substring
                } else {
                    KeywordMatch::Word
                },
                patterns: Vec::new(),
                detect: Vec::new(),
                detectors: policy_mesh::detect::DetectorSet::EMPTY,
                scope: Scope::All,
                input_chars: None,
                estimated_usd: None,
                model: Vec::new(),
                client: Vec::new(),
                has_images: None,
            }
        })
        .collect();
    PolicySet {
        sources: Vec::new(),
        rules,
        defaults: EffectiveDefaults::default(),
        providers: Vec::new(),
        default_fallback: Vec::new(),
        version: "0".repeat(64),
    }
}

/// About `INPUT_BYTES` bytes of `seed` repeated, cut at a character boundary.
fn repeat_to(seed: &str) -> String {
    let mut text = String::with_capacity(INPUT_BYTES + 64);
    while text.len() < INPUT_BYTES {
        text.push_str(seed);
    }
    let mut end = INPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn ascii_input() -> String {
    repeat_to(
        "Please summarize the attached quarterly report for the board. Focus on revenue, \
         churn and hiring; keep it under 300 words, use bullet points where it helps, and \
         flag anything that looks unusual (e.g. one-off costs). Thanks! ",
    )
}

fn mixed_input() -> String {
    repeat_to(
        "Résumé de la réunion au café: naïve façade, Ünïcödé. Привет, как дела сегодня? \
         Καλημέρα κόσμε, τι κάνεις; 今天的会议记录请整理一下。東京で会いましょう。 \
         🎉🚀👍🏽 Straße, Größe. ",
    )
}

fn config(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("decision");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group
}

fn bench_decision(c: &mut Criterion) {
    let inputs = [("ascii", ascii_input()), ("mixed", mixed_input())];
    let mut group = config(c);
    for rules in RULE_COUNTS {
        for count in KEYWORD_COUNTS {
            let compiled = CompiledPolicy::compile(
                policy(count, rules),
                &policy_mesh::providers::Builtins::defaults(),
            )
            .expect("compiles");
            for (name, input) in &inputs {
                let messages = [ChatMessage::user(input.clone())];
                // Keep the comparison honest: the input must reach the default.
                assert!(
                    compiled.decide(&messages, None).rule.is_none(),
                    "{name} matched"
                );
                group.throughput(Throughput::Bytes(input.len() as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("{name}/{rules}-rules"), count),
                    &messages,
                    |b, m| b.iter(|| compiled.decide(black_box(m), black_box(None))),
                );
            }
        }
    }
    group.finish();
}

/// The same decisions with one more rule that runs every built-in detector
/// (`detect: [pii, secrets]`), tried first as a sensitive rule is: the cost
/// of the prefilter and of the detectors it lets through, on prose that holds
/// no match; with every keyword `strict` (the default) and, to compare, every
/// keyword `standard`.
fn bench_detect(c: &mut Criterion) {
    use policy_mesh::policy::KeywordNormalization;
    let inputs = [("ascii", ascii_input()), ("mixed", mixed_input())];
    let mut group = c.benchmark_group("decision_detect");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (normalization_name, normalization) in [
        ("strict", KeywordNormalization::Strict),
        ("standard", KeywordNormalization::Standard),
    ] {
        for count in [10, 10_000, 100_000] {
            let mut set = policy(count, 10);
            for rule in &mut set.rules {
                rule.keyword_normalization = normalization;
            }
            let mut guard = set.rules[0].clone();
            guard.id = "detected".to_owned();
            guard.keywords = Vec::new();
            guard.sensitive = true;
            guard.detectors = policy_mesh::names::Detector::ALL.into_iter().collect();
            set.rules.insert(0, guard);
            let compiled =
                CompiledPolicy::compile(set, &policy_mesh::providers::Builtins::defaults())
                    .expect("compiles");
            for (name, input) in &inputs {
                let messages = [ChatMessage::user(input.clone())];
                assert!(
                    compiled.decide(&messages, None).rule.is_none(),
                    "{name} matched"
                );
                group.throughput(Throughput::Bytes(input.len() as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("{normalization_name}/{name}/all-detectors"), count),
                    &messages,
                    |b, m| b.iter(|| compiled.decide(black_box(m), black_box(None))),
                );
            }
        }
    }
    group.finish();
}

/// The detectors alone on each input: every detector asked for, the
/// prefilter deciding which run.
fn bench_detectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("detect");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let all: policy_mesh::detect::DetectorSet =
        policy_mesh::names::Detector::ALL.into_iter().collect();
    for (name, input) in [("ascii", ascii_input()), ("mixed", mixed_input())] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(BenchmarkId::new("all-detectors", name), |b| {
            b.iter(|| {
                let text = policy_mesh::normalize::for_detectors(black_box(&input));
                policy_mesh::detect::detect(&text, all)
            })
        });
        group.bench_function(BenchmarkId::new("for-detectors", name), |b| {
            b.iter(|| policy_mesh::normalize::for_detectors(black_box(&input)).len())
        });
    }
    group.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (name, input) in [("ascii", ascii_input()), ("mixed", mixed_input())] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| b.iter(|| normalize(black_box(&input)).len()));
        // The strict steps on top of the standard ones, in reused buffers.
        let standard = normalize(&input).into_owned();
        let mut strict = policy_mesh::normalize::Strict::default();
        group.bench_function(BenchmarkId::new("strict", name), |b| {
            b.iter(|| {
                strict.normalize(black_box(&standard));
                strict.plain().len() + strict.joined().map_or(0, str::len)
            })
        });
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8))
        .sample_size(10);
    for rules in RULE_COUNTS {
        let set = policy(100_000, rules);
        group.bench_function(BenchmarkId::new(format!("{rules}-rules"), 100_000), |b| {
            b.iter_batched(
                || set.clone(),
                |set| {
                    CompiledPolicy::compile(set, &policy_mesh::providers::Builtins::defaults())
                        .expect("compiles")
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_decision,
    bench_detect,
    bench_detectors,
    bench_normalize,
    bench_compile
);
criterion_main!(benches);
