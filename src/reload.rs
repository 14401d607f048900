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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use tokio::sync::mpsc;

use crate::compiler::CompiledPolicy;
use crate::metrics::Metrics;
use crate::policy::LoadErrors;

/// How long a burst of events must settle before a reload. Short, so a saved
/// change serves well within the second a reload may take (docs/hot-reload.md).
pub const DEBOUNCE: Duration = Duration::from_millis(50);

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
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loaded = (self.loader)();
        let previous = self.current.load_full();
        let now = Utc::now();
        let old_version = previous.policy.version();
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

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// How the policy folder is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// The operating system's notifications (inotify, FSEvents, …).
    Native,
    /// Scanning the folder at this interval, comparing contents: for network
    /// file systems that send no notifications.
    Poll(Duration),
}

/// Why a reload was asked for (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A change in the watched folder.
    FileChange,
    /// SIGHUP, or a caller asking.
    Signal,
}

/// While writes keep coming, reload at least this often, so a file rewritten
/// continuously still serves its latest complete state.
pub const MAX_DEBOUNCE: Duration = Duration::from_millis(250);

/// Whether a file-system event may be a change. Reading is not: the reload
/// itself opens and reads every file, and inotify reports that (`IN_OPEN`,
/// `IN_CLOSE_NOWRITE`), so counting reads would reload forever. Every other
/// kind counts, whatever the entry's name: a ConfigMap update only renames
/// `..data`, and editors write through temporary names.
fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    !matches!(
        event.kind,
        EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write)
    )
}

/// Keeps the watcher running; dropping it stops the watcher.
enum WatchGuard {
    Native(RecommendedWatcher),
    Poll(#[allow(dead_code)] PollWatcher),
}

impl WatchGuard {
    /// Watches the folder again when it was deleted and created anew, since
    /// its watch ended with the old folder. For a folder still watched this
    /// changes nothing (inotify returns the same watch), so it is safe after
    /// every reload. Polling needs nothing: each scan looks the path up again.
    fn rewatch(&mut self, dir: &std::path::Path) {
        if let WatchGuard::Native(watcher) = self
            && dir.is_dir()
            && let Err(e) = notify::Watcher::watch(watcher, dir, RecursiveMode::NonRecursive)
        {
            tracing::warn!(folder = %dir.display(), error = %e, "cannot watch the policy folder");
        }
    }
}

/// The handle of a running reloader: ask for reloads, and stop it by dropping
/// the handle (or with [`Reloader::stop`]).
#[derive(Debug)]
pub struct Reloader {
    trigger: mpsc::Sender<Trigger>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Reloader {
    /// Asks for a reload. Requests arriving while one is pending coalesce into it.
    pub fn request(&self, trigger: Trigger) {
        let _ = self.trigger.try_send(trigger);
    }

    /// A sender that asks for reloads, for signal handlers.
    pub fn sender(&self) -> mpsc::Sender<Trigger> {
        self.trigger.clone()
    }

    /// Stops the watcher and waits for the reload task to end.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Starts watching `dir` (non-recursively: every entry, hidden ones included,
/// so a ConfigMap's `..data` swap is seen) and reloading `live` after each
/// burst of changes settles for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`] after
/// its first event). Needs a tokio runtime.
pub fn spawn_reloader(
    live: Arc<LivePolicy>,
    dir: PathBuf,
    mode: WatchMode,
) -> Result<Reloader, notify::Error> {
    // Bounded, and `try_send` from the watcher thread: when the channel is full
    // a reload is already due, so dropping the event loses nothing.
    let (tx, mut rx) = mpsc::channel::<Trigger>(64);
    let events = tx.clone();
    let handler = move |result: notify::Result<notify::Event>| match result {
        Ok(event) if !is_change(&event) => {}
        Ok(_) => {
            let _ = events.try_send(Trigger::FileChange);
        }
        Err(e) => {
            // An error (such as a lost event queue) may hide a change: reload anyway.
            tracing::warn!(error = %e, "policy watcher error; reloading to be safe");
            let _ = events.try_send(Trigger::FileChange);
        }
    };
    let guard = match mode {
        WatchMode::Native => {
            let mut watcher = notify::recommended_watcher(handler)?;
            notify::Watcher::watch(&mut watcher, &dir, RecursiveMode::NonRecursive)?;
            WatchGuard::Native(watcher)
        }
        WatchMode::Poll(interval) => {
            let config = notify::Config::default()
                .with_poll_interval(interval)
                .with_compare_contents(true);
            let mut watcher = PollWatcher::new(handler, config)?;
            notify::Watcher::watch(&mut watcher, &dir, RecursiveMode::NonRecursive)?;
            WatchGuard::Poll(watcher)
        }
    };
    tracing::debug!(folder = %dir.display(), ?mode, "watching the policy folder");
    let task = tokio::spawn(async move {
        // The guard lives as long as this task: aborting the task drops it and
        // stops the watcher.
        let mut guard = guard;
        while let Some(first) = rx.recv().await {
            let mut trigger = first;
            let burst = tokio::time::Instant::now();
            // Debounce: wait until the folder has been quiet for DEBOUNCE.
            loop {
                let quiet = tokio::time::sleep(DEBOUNCE);
                let cap = tokio::time::sleep_until(burst + MAX_DEBOUNCE);
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(t) => {
                            if t == Trigger::Signal {
                                trigger = t;
                            }
                        }
                        None => return,
                    },
                    () = quiet => break,
                    () = cap => break,
                }
            }
            tracing::debug!(?trigger, "reloading the policy");
            let live = Arc::clone(&live);
            if let Err(e) = tokio::task::spawn_blocking(move || live.reload()).await {
                tracing::error!(error = %e, "policy reload task failed");
            }
            // The folder itself may have been replaced, with only SIGHUP to
            // tell us: watch whatever folder is there now.
            guard.rewatch(&dir);
        }
    });
    Ok(Reloader {
        trigger: tx,
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Provider;
    use crate::policy::{EffectiveDefaults, LoadError, PolicySet};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn compiled(version: &str) -> CompiledPolicy {
        let set = PolicySet {
            sources: Vec::new(),
            rules: Vec::new(),
            defaults: EffectiveDefaults::default(),
            version: version.to_owned(),
        };
        CompiledPolicy::compile(set, Provider::Openai).expect("compiles")
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
    fn reload_outcomes_follow_the_spec() {
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

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, Event, EventKind, ModifyKind, RenameMode,
        };
        let change = |kind| is_change(&Event::new(kind));
        assert!(!change(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!change(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!change(EventKind::Access(AccessKind::Read)));
        assert!(change(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(change(EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(change(EventKind::Create(CreateKind::Any)));
        assert!(change(EventKind::Any));
        assert!(change(EventKind::Other));
    }
}
