//! The live policy and its hot reload.
//!
//! Three parts, as in Vector's config watcher: a [watcher](spawn_reloader)
//! that turns file-system events (or SIGHUP) into messages, debounced; one reload
//! task that reads, validates and compiles the whole policy on a blocking
//! thread and swaps the result in with [`ArcSwap`], keeping the last good
//! policy when that fails; and request handlers that load one [`Live`]
//! snapshot per request. A snapshot holds the compiled policy together with
//! the reload status, so `version`, `loaded_at` and the `reload` fields of
//! `/v1/routes` can never disagree, and a reload never waits for requests.
//!
//! This module is the live policy and its reload task; [`watch`] is the
//! watcher that asks for reloads.

mod watch;

pub use watch::{
    DEBOUNCE, GUARD_QUIET, MAX_DEBOUNCE, Reload, Reloader, Trigger, WatchMode, spawn_reloader,
    spawn_watcher,
};

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::compiler::CompiledPolicy;
use crate::metrics::Metrics;
use crate::policy::LoadErrors;

/// Whether the last reload attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReloadStatus {
    /// The start-up load or the last reload succeeded.
    Ok,
    /// The last reload failed; the last good policy keeps serving.
    Error,
}

/// What `/v1/routes` reports under `reload`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadState {
    /// Outcome of the last attempt.
    pub status: ReloadStatus,
    /// When the last attempt (or the start-up load) finished.
    pub last_attempt_at: DateTime<Utc>,
    /// When a policy was last loaded successfully (start-up included).
    pub last_success_at: DateTime<Utc>,
    /// The error lines of the last failed attempt, joined by `\n`; cleared by the
    /// next successful attempt.
    pub last_error: Option<Arc<str>>,
    /// Reloads that swapped in a new version.
    pub successes: u64,
    /// Reloads that failed.
    pub failures: u64,
}

/// One consistent snapshot: the policy serving and how it got there.
#[derive(Debug, Clone)]
pub struct Live {
    /// The compiled policy requests are decided on.
    pub policy: Arc<CompiledPolicy>,
    /// When this version was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Reload status as of this snapshot.
    pub reload: ReloadState,
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version was swapped in.
    Swapped {
        /// The new version.
        version: String,
    },
    /// The policy still has the live version: nothing was swapped.
    Unchanged,
    /// The policy is invalid; the last good one keeps serving.
    Failed(LoadErrors),
    /// The new policy removes or changes sensitive rules (their ids here):
    /// not applied. The folder may be in the middle of a `git checkout` or
    /// an `rsync`; the watcher reads it again once it has been quiet for
    /// [`GUARD_QUIET`] and only then applies what it finds.
    Held {
        /// The ids of the live sensitive rules the new policy lacks or
        /// changes.
        sensitive_rules: Vec<String>,
    },
}

/// Whether a removal or change of sensitive rules may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Hold it: the first reading of a change.
    Hold,
    /// Apply it, with a WARN naming the rules: the folder has been quiet for
    /// [`GUARD_QUIET`] and was read again.
    Apply,
}

/// The live sensitive rules that `next` removes or changes, by id and
/// conditions (not by position: moving a rule within its file changes
/// nothing).
fn weakened_sensitive_rules(live: &CompiledPolicy, next: &CompiledPolicy) -> Vec<String> {
    // A rule without its positions: what it decides, not where it is written.
    let unplaced = |rule: &crate::policy::RuleSpec| {
        let nowhere = crate::policy::Location {
            path: Arc::from(""),
            position: crate::policy::Position { line: 0, column: 0 },
        };
        let mut rule = rule.clone();
        rule.at = nowhere.clone();
        rule.route.at = nowhere.clone();
        for item in rule
            .keywords
            .iter_mut()
            .chain(rule.patterns.iter_mut())
            .chain(rule.model.iter_mut())
            .chain(rule.detect.iter_mut())
            .chain(rule.fallback.iter_mut())
        {
            item.at = nowhere.clone();
        }
        rule
    };
    let kept: std::collections::HashMap<&str, crate::policy::RuleSpec> = next
        .policy()
        .rules
        .iter()
        .filter(|r| r.sensitive)
        .map(|r| (r.id.as_str(), unplaced(r)))
        .collect();
    live.policy()
        .rules
        .iter()
        .filter(|r| r.sensitive && kept.get(r.id.as_str()) != Some(&unplaced(r)))
        .map(|r| r.id.clone())
        .collect()
}

/// Loads and compiles the whole policy, returning every error.
pub type Loader = Box<dyn Fn() -> Result<CompiledPolicy, LoadErrors> + Send + Sync>;

/// The policy serving right now, and the means to reload it.
pub struct LivePolicy {
    current: ArcSwap<Live>,
    loader: Loader,
    metrics: Arc<Metrics>,
    /// Serializes reloads: each reads the snapshot it replaces, so two at once
    /// could lose a count.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The version only: the compiled policy may hold 100 000 keywords.
        f.debug_struct("LivePolicy")
            .field("version", &self.current.load().policy.version())
            .finish_non_exhaustive()
    }
}

impl LivePolicy {
    /// The start-up load: an invalid policy is an error (the caller exits), and
    /// nothing is counted as a reload.
    pub fn start(loader: Loader, metrics: Arc<Metrics>) -> Result<Self, LoadErrors> {
        let policy = loader()?;
        let now = Utc::now();
        metrics.policy_live(policy.version(), unix_seconds(now));
        metrics.providers_known(policy.providers().iter().map(|p| p.id.as_str()));
        let live = Live {
            policy: Arc::new(policy),
            loaded_at: now,
            reload: ReloadState {
                status: ReloadStatus::Ok,
                last_attempt_at: now,
                last_success_at: now,
                last_error: None,
                successes: 0,
                failures: 0,
            },
        };
        Ok(LivePolicy {
            current: ArcSwap::from_pointee(live),
            loader,
            metrics,
            reloading: Mutex::new(()),
        })
    }

    /// The current snapshot. Load it once per request and decide on it: a reload
    /// during the request does not affect it.
    pub fn snapshot(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Reads, validates and compiles the policy again and swaps it in when it is
    /// valid and new. Blocking: run it on a blocking thread.
    pub fn reload(&self) -> ReloadOutcome {
        self.reload_guarded(Guard::Apply)
    }

    /// [`LivePolicy::reload`], holding back a policy that removes or changes
    /// a sensitive rule unless `guard` is [`Guard::Apply`].
    pub fn reload_guarded(&self, guard: Guard) -> ReloadOutcome {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loaded = (self.loader)();
        let previous = self.current.load_full();
        let now = Utc::now();
        let old_version = previous.policy.version();
        let weakened = match &loaded {
            Ok(policy) if policy.version() != old_version => {
                weakened_sensitive_rules(&previous.policy, policy)
            }
            _ => Vec::new(),
        };
        if !weakened.is_empty() {
            if guard == Guard::Hold {
                tracing::info!(
                    sensitive_rules = %weakened.join(","),
                    "the policy folder lost or changed sensitive rules; \
                     applying only if it stays so once quiet"
                );
                return ReloadOutcome::Held {
                    sensitive_rules: weakened,
                };
            }
            tracing::warn!(
                sensitive_rules = %weakened.join(","),
                "sensitive rules removed or changed by the new policy"
            );
        }
        let (next, outcome) = match loaded {
            Ok(policy) if policy.version() == old_version => {
                tracing::debug!(version = old_version, "policy reloaded; version unchanged");
                self.metrics.reload_unchanged();
                let next = Live {
                    policy: Arc::clone(&previous.policy),
                    loaded_at: previous.loaded_at,
                    reload: ReloadState {
                        status: ReloadStatus::Ok,
                        last_attempt_at: now,
                        last_error: None,
                        ..previous.reload.clone()
                    },
                };
                (next, ReloadOutcome::Unchanged)
            }
            Ok(policy) => {
                let version = policy.version().to_owned();
                tracing::info!(
                    version = %version,
                    previous_version = old_version,
                    "policy reloaded; new version serving"
                );
                self.metrics.reload_succeeded(&version, unix_seconds(now));
                self.metrics
                    .providers_known(policy.providers().iter().map(|p| p.id.as_str()));
                let next = Live {
                    policy: Arc::new(policy),
                    loaded_at: now,
                    reload: ReloadState {
                        status: ReloadStatus::Ok,
                        last_attempt_at: now,
                        last_success_at: now,
                        last_error: None,
                        successes: previous.reload.successes + 1,
                        failures: previous.reload.failures,
                    },
                };
                (next, ReloadOutcome::Swapped { version })
            }
            Err(errors) => {
                tracing::error!(
                    errors = errors.0.len(),
                    version = old_version,
                    "policy reload failed; the last good version keeps serving"
                );
                for line in &errors.0 {
                    tracing::error!("policy reload failed: {line}");
                }
                self.metrics.reload_failed();
                let next = Live {
                    policy: Arc::clone(&previous.policy),
                    loaded_at: previous.loaded_at,
                    reload: ReloadState {
                        status: ReloadStatus::Error,
                        last_attempt_at: now,
                        last_success_at: previous.reload.last_success_at,
                        last_error: Some(errors.lines().into()),
                        successes: previous.reload.successes,
                        failures: previous.reload.failures + 1,
                    },
                };
                (next, ReloadOutcome::Failed(errors))
            }
        };
        self.current.store(Arc::new(next));
        outcome
    }
}

/// The clients file serving, and how it got there.
#[derive(Debug, Clone)]
pub struct ClientsLive {
    /// The clients admitted.
    pub table: Arc<crate::clients::ClientTable>,
    /// Reload status as of this snapshot (`status`, `last_error`, counts).
    pub reload: ReloadState,
}

/// The live clients file, swapped atomically on every valid change, the last
/// good one kept when a change is broken (or the file deleted).
#[derive(Debug)]
pub struct LiveClients {
    path: std::path::PathBuf,
    current: ArcSwap<ClientsLive>,
    reloading: Mutex<()>,
}

impl LiveClients {
    /// Reads the file at `path`: an error fails start-up.
    pub fn start(path: std::path::PathBuf) -> Result<Self, LoadErrors> {
        let table = crate::clients::load(&path)?;
        let now = Utc::now();
        Ok(LiveClients {
            path,
            current: ArcSwap::from_pointee(ClientsLive {
                table: Arc::new(table),
                reload: ReloadState {
                    status: ReloadStatus::Ok,
                    last_attempt_at: now,
                    last_success_at: now,
                    last_error: None,
                    successes: 0,
                    failures: 0,
                },
            }),
            reloading: Mutex::new(()),
        })
    }

    /// The file it reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// One consistent view: the clients and their reload status.
    pub fn snapshot(&self) -> Arc<ClientsLive> {
        self.current.load_full()
    }

    /// Reads the file again; swaps it in when it is valid and different.
    /// Blocking: run it on a blocking thread.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.current.load_full();
        let now = Utc::now();
        let (next, outcome) = match crate::clients::load(&self.path) {
            Err(errors) => {
                tracing::error!(
                    file = %self.path.display(),
                    errors = %errors,
                    "clients file reload failed; the last good one keeps serving"
                );
                let next = ClientsLive {
                    table: Arc::clone(&previous.table),
                    reload: ReloadState {
                        status: ReloadStatus::Error,
                        last_attempt_at: now,
                        last_error: Some(Arc::from(errors.to_string())),
                        failures: previous.reload.failures + 1,
                        ..previous.reload.clone()
                    },
                };
                (next, ReloadOutcome::Failed(errors))
            }
            Ok(table) if table == *previous.table => {
                let next = ClientsLive {
                    table: Arc::clone(&previous.table),
                    reload: ReloadState {
                        status: ReloadStatus::Ok,
                        last_attempt_at: now,
                        last_error: None,
                        ..previous.reload.clone()
                    },
                };
                (next, ReloadOutcome::Unchanged)
            }
            Ok(table) => {
                tracing::info!(
                    file = %self.path.display(),
                    clients = table.len(),
                    "clients file reloaded"
                );
                let next = ClientsLive {
                    table: Arc::new(table),
                    reload: ReloadState {
                        status: ReloadStatus::Ok,
                        last_attempt_at: now,
                        last_success_at: now,
                        last_error: None,
                        successes: previous.reload.successes + 1,
                        failures: previous.reload.failures,
                    },
                };
                (
                    next,
                    ReloadOutcome::Swapped {
                        version: String::new(),
                    },
                )
            }
        };
        self.current.store(Arc::new(next));
        outcome
    }
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EffectiveDefaults, LoadError, PolicySet};
    use crate::providers::Builtins;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn compiled(version: &str) -> CompiledPolicy {
        let set = PolicySet {
            sources: Vec::new(),
            rules: Vec::new(),
            defaults: EffectiveDefaults::default(),
            version: version.to_owned(),
            providers: Vec::new(),
            default_fallback: Vec::new(),
        };
        CompiledPolicy::compile(set, &Builtins::defaults()).expect("compiles")
    }

    /// A loader that returns, at each call, the next of `script` (the last one repeats).
    fn scripted(script: Vec<Result<&'static str, &'static str>>) -> Loader {
        let calls = AtomicUsize::new(0);
        Box::new(move || {
            let i = calls.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
            match script[i] {
                Ok(v) => Ok(compiled(v)),
                Err(msg) => Err(LoadErrors(vec![
                    LoadError::whole("p/a.yaml", msg),
                    LoadError::whole("p/b.yaml", "second"),
                ])),
            }
        })
    }

    #[test]
    fn start_up_failure_is_an_error() {
        let err = LivePolicy::start(scripted(vec![Err("broken")]), Arc::new(Metrics::new()))
            .expect_err("invalid policy");
        assert_eq!(err.lines(), "p/a.yaml: broken\np/b.yaml: second");
    }

    #[test]
    fn each_reload_outcome_keeps_the_last_good_policy_and_its_status() {
        let metrics = Arc::new(Metrics::new());
        let live = LivePolicy::start(
            scripted(vec![Ok("v1"), Ok("v1"), Err("bad"), Ok("v1"), Ok("v2")]),
            Arc::clone(&metrics),
        )
        .expect("valid");
        let s0 = live.snapshot();
        assert_eq!(s0.policy.version(), "v1");
        assert_eq!(s0.reload.status, ReloadStatus::Ok);
        assert_eq!(s0.reload.last_attempt_at, s0.loaded_at);
        assert_eq!(s0.reload.last_success_at, s0.loaded_at);
        assert_eq!((s0.reload.successes, s0.reload.failures), (0, 0));

        // Same version: nothing swapped, nothing counted.
        assert_eq!(live.reload(), ReloadOutcome::Unchanged);
        let s1 = live.snapshot();
        assert!(Arc::ptr_eq(&s0.policy, &s1.policy));
        assert_eq!(s1.loaded_at, s0.loaded_at);
        assert_eq!((s1.reload.successes, s1.reload.failures), (0, 0));
        assert!(s1.reload.last_attempt_at >= s0.reload.last_attempt_at);

        // Failure: last good keeps serving, every line kept.
        assert!(matches!(live.reload(), ReloadOutcome::Failed(_)));
        let s2 = live.snapshot();
        assert_eq!(s2.policy.version(), "v1");
        assert_eq!(s2.reload.status, ReloadStatus::Error);
        assert_eq!(
            s2.reload.last_error.as_deref(),
            Some("p/a.yaml: bad\np/b.yaml: second")
        );
        assert_eq!((s2.reload.successes, s2.reload.failures), (0, 1));
        assert_eq!(s2.reload.last_success_at, s0.reload.last_success_at);

        // Same version again clears the error, still not counted.
        assert_eq!(live.reload(), ReloadOutcome::Unchanged);
        let s3 = live.snapshot();
        assert_eq!(s3.reload.status, ReloadStatus::Ok);
        assert_eq!(s3.reload.last_error, None);
        assert_eq!((s3.reload.successes, s3.reload.failures), (0, 1));

        // New version: swapped and counted.
        assert_eq!(
            live.reload(),
            ReloadOutcome::Swapped {
                version: "v2".into()
            }
        );
        let s4 = live.snapshot();
        assert_eq!(s4.policy.version(), "v2");
        assert_eq!((s4.reload.successes, s4.reload.failures), (1, 1));
        assert_eq!(s4.loaded_at, s4.reload.last_success_at);
        assert_eq!(s4.loaded_at, s4.reload.last_attempt_at);

        // An old snapshot is untouched by later reloads.
        assert_eq!(s0.policy.version(), "v1");

        let text = metrics.render();
        assert!(text.contains("policy_info{version=\"v2\"} 1"), "{text}");
        assert!(!text.contains("version=\"v1\""), "{text}");
        assert!(
            text.contains("policy_reloads_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("policy_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
    }

    /// A loader that compiles, at each call, the next YAML of `script` (the
    /// last one repeats) as `policies/p.yaml`.
    fn yaml_script(script: Vec<&'static str>) -> Loader {
        let calls = AtomicUsize::new(0);
        Box::new(move || {
            let i = calls.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
            let file = crate::policy::SourceFile {
                path: Arc::from("policies/p.yaml"),
                name: "p.yaml".to_owned(),
                bytes: script[i].as_bytes().to_vec(),
            };
            crate::compile_files(&[file], &crate::env::Env::default(), &Builtins::defaults())
        })
    }

    const GUARDED: &str = "version: 1\nrules:\n  - id: private\n    sensitive: true\n    when:\n      keywords: [nightingale]\n    route: local\n  - id: cheap\n    when:\n      input_chars: { max: 10 }\n    route: public\n";

    #[test]
    fn a_policy_that_removes_or_changes_a_sensitive_rule_is_held_until_applied() {
        let moved = "# a comment moves every line\n".to_owned() + GUARDED;
        let moved: &'static str = Box::leak(moved.into_boxed_str());
        let other_rule_changed = GUARDED.replace("max: 10", "max: 20");
        let other_rule_changed: &'static str = Box::leak(other_rule_changed.into_boxed_str());
        let keyword_changed = GUARDED.replace("nightingale", "other");
        let keyword_changed: &'static str = Box::leak(keyword_changed.into_boxed_str());
        let without = "version: 1\nrules:\n  - id: cheap\n    when:\n      input_chars: { max: 10 }\n    route: public\n";
        let live = LivePolicy::start(
            yaml_script(vec![
                GUARDED,
                moved,
                other_rule_changed,
                without,
                keyword_changed,
                without,
            ]),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        // Moving the rule, or changing a rule that is not sensitive, applies
        // at once.
        assert!(matches!(
            live.reload_guarded(Guard::Hold),
            ReloadOutcome::Swapped { .. }
        ));
        assert!(matches!(
            live.reload_guarded(Guard::Hold),
            ReloadOutcome::Swapped { .. }
        ));
        let serving = live.snapshot().policy.version().to_owned();
        // Removing it, or changing its keywords, is held: the live policy
        // keeps deciding.
        assert_eq!(
            live.reload_guarded(Guard::Hold),
            ReloadOutcome::Held {
                sensitive_rules: vec!["private".to_owned()]
            }
        );
        assert_eq!(live.snapshot().policy.version(), serving);
        assert_eq!(live.snapshot().reload.successes, 2);
        assert!(matches!(
            live.reload_guarded(Guard::Hold),
            ReloadOutcome::Held { .. }
        ));
        // Once confirmed, it applies.
        assert!(matches!(
            live.reload_guarded(Guard::Apply),
            ReloadOutcome::Swapped { .. }
        ));
        assert!(
            live.snapshot()
                .policy
                .policy()
                .rules
                .iter()
                .all(|r| !r.sensitive)
        );
    }
}
