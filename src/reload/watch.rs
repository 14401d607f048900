//! The watcher: file-system events (or SIGHUP) turned into reload requests,
//! debounced, for the reload task of [`super::LivePolicy`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use tokio::sync::mpsc;

use super::LivePolicy;

/// How long a burst of events must settle before a reload. Short, so a saved
/// change serves well within the second a reload may take (docs/hot-reload.md).
pub const DEBOUNCE: Duration = Duration::from_millis(50);

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

/// How long the folder must stay quiet before a policy that removes or
/// changes a sensitive rule is read again and applied.
pub const GUARD_QUIET: Duration = Duration::from_secs(2);

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
    spawn_watcher(
        "policy",
        Arc::new(move |guard| live.reload_guarded(guard)),
        dir,
        mode,
    )
}

/// What a watcher runs after each burst of changes: a blocking reload.
pub type Reload = Arc<dyn Fn(super::Guard) -> super::ReloadOutcome + Send + Sync>;

/// [`spawn_reloader`] for anything that reloads from files in `dir`: the
/// policy, or the clients file. `what` names it in log lines.
pub fn spawn_watcher(
    what: &'static str,
    reload: Reload,
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
            tracing::warn!(error = %e, what, "watcher error; reloading to be safe");
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
    tracing::debug!(folder = %dir.display(), ?mode, what, "watching a folder");
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
            tracing::debug!(?trigger, what, "reloading");
            // The folder itself may have been replaced, with only SIGHUP to
            // tell us: watch whatever folder is there now. Before reading it,
            // so a write landing after the read is still seen.
            guard.rewatch(&dir);
            let mut guard_mode = super::Guard::Hold;
            loop {
                let reload = Arc::clone(&reload);
                let outcome = tokio::task::spawn_blocking(move || reload(guard_mode)).await;
                match outcome {
                    Ok(super::ReloadOutcome::Held { .. }) => {
                        // Wait for the folder to be quiet for GUARD_QUIET:
                        // every change restarts the wait.
                        loop {
                            tokio::select! {
                                next = rx.recv() => if next.is_none() { return },
                                () = tokio::time::sleep(GUARD_QUIET) => break,
                            }
                        }
                        guard_mode = super::Guard::Apply;
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, what, "reload task failed");
                        break;
                    }
                }
            }
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
