//! The audit store proper: a pool over SQLite or PostgreSQL (chosen at run
//! time by `DATABASE_URL`, hence runtime queries rather than the compile-time
//! checked macros), the embedded migrations, and the batching writer that keeps
//! audit writes off the request path's critical section.
//!
//! Every write goes through one background task: it takes whatever events are
//! queued (up to [`MAX_BATCH`]), commits them in one transaction and answers
//! each caller on its own oneshot. Under load many requests share one commit
//! instead of queueing on SQLite's single writer lock one by one; each caller
//! still returns only once its own event is durable. When a batch fails, its
//! events are retried one per transaction so that one bad event (a duplicate
//! id) fails alone.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, QueryBuilder, Sqlite};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{AuditConfig, AuditDatabase, AuditError, AuditEvent};
use crate::names::{AuditStatus, ClientApi, FailureCategory, ProviderId, UnknownName};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The most events committed in one transaction.
const MAX_BATCH: usize = 256;
/// Events waiting for the writer before `record` itself waits for room.
const QUEUE_CAPACITY: usize = 4096;
/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening the store, or any query, waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a live process refreshes its row in `audit_instances`, and
/// looks for dead instances' pending events.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long an instance may stay silent before it counts as dead and its
/// pending events are marked `interrupted`.
pub const INSTANCE_TIMEOUT: Duration = Duration::from_secs(60);
/// The readiness probe writes at most this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the readiness probe waits for the store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The start of every insert; [`QueryBuilder::push_values`] adds one
/// `VALUES` tuple per event.
const INSERT: &str = "INSERT INTO audit_events (request_id, decision, provider, rule, \
     reason_codes, policy_version, status, latency_ms, failure_category, prompt_hash, \
     prompt_length, model, created_at, sensitive, detections, attempts, instance_id, \
     client_api, client) ";
/// The end of every insert: an event already stored (the pending one) is
/// replaced by the new state, all but its id and `created_at`. Both
/// databases speak this form.
const UPSERT: &str = " ON CONFLICT (request_id) DO UPDATE SET decision = excluded.decision, \
     provider = excluded.provider, rule = excluded.rule, reason_codes = excluded.reason_codes, \
     policy_version = excluded.policy_version, status = excluded.status, \
     latency_ms = excluded.latency_ms, failure_category = excluded.failure_category, \
     prompt_hash = excluded.prompt_hash, prompt_length = excluded.prompt_length, \
     model = excluded.model, sensitive = excluded.sensitive, detections = excluded.detections, \
     attempts = excluded.attempts, instance_id = excluded.instance_id, \
     client_api = excluded.client_api, client = excluded.client";
/// Events per `INSERT` statement: a whole batch, so that a batch is one
/// statement, which both databases commit atomically on its own, rather than
/// `BEGIN`, one statement per event and `COMMIT`, each a round trip to the
/// driver (for SQLite, to its worker thread). 256 rows of 19 parameters stay
/// well under the limits (SQLite 32766, PostgreSQL 65535).
const ROWS_PER_STATEMENT: usize = MAX_BATCH;
const SELECT_SQLITE: &str = "SELECT decision, provider, rule, reason_codes, policy_version, \
     status, latency_ms, failure_category, prompt_hash, prompt_length, model, created_at, \
     sensitive, detections, attempts, instance_id, client_api, client FROM audit_events \
     WHERE request_id = ?1";
const SELECT_POSTGRES: &str = "SELECT decision, provider, rule, reason_codes, policy_version, \
     status, latency_ms, failure_category, prompt_hash, prompt_length, model, created_at, \
     sensitive, detections, attempts, instance_id::text AS instance_id, client_api, \
     client FROM audit_events WHERE request_id = $1";

/// SQLite's clock in the stored form of timestamps (RFC 3339 UTC, milliseconds).
macro_rules! sqlite_now {
    ($($modifier:literal)?) => {
        concat!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now'", $(", ", $modifier,)? ")")
    };
}
/// Registers or refreshes an instance (`?1`/`$1`: its id). The database's
/// clock, so that replicas on several machines agree on who is silent.
const HEARTBEAT_SQLITE: &str = concat!(
    "INSERT INTO audit_instances (instance_id, started_at, heartbeat_at) VALUES (?1, ",
    sqlite_now!(),
    ", ",
    sqlite_now!(),
    ") ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
);
const HEARTBEAT_POSTGRES: &str = "INSERT INTO audit_instances (instance_id, started_at, \
     heartbeat_at) VALUES ($1, now(), now()) \
     ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
/// Marks `interrupted` the pending events of every instance that has not
/// heartbeat within `?1` (SQLite: a modifier such as `-60 seconds`;
/// PostgreSQL: seconds).
const SWEEP_SQLITE: &str = "UPDATE audit_events SET status = 'interrupted' WHERE status = 'pending' AND \
     (instance_id IS NULL OR instance_id NOT IN (SELECT instance_id FROM audit_instances \
     WHERE heartbeat_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)))";
const SWEEP_POSTGRES: &str = "UPDATE audit_events SET status = 'interrupted' \
     WHERE status = 'pending' AND (instance_id IS NULL OR instance_id NOT IN \
     (SELECT instance_id FROM audit_instances \
     WHERE heartbeat_at >= now() - make_interval(secs => $1)))";
/// Forgets the instances that have not heartbeat within `?1`/`$1`.
const PRUNE_SQLITE: &str = "DELETE FROM audit_instances \
     WHERE heartbeat_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)";
const PRUNE_POSTGRES: &str = "DELETE FROM audit_instances \
     WHERE heartbeat_at < now() - make_interval(secs => $1)";
/// At a clean shutdown: this instance's events still pending are
/// interrupted, and its row goes.
const RETIRE_EVENTS_SQLITE: &str = "UPDATE audit_events SET status = 'interrupted' \
     WHERE status = 'pending' AND instance_id = ?1";
const RETIRE_EVENTS_POSTGRES: &str = "UPDATE audit_events SET status = 'interrupted' \
     WHERE status = 'pending' AND instance_id = $1";
const RETIRE_INSTANCE_SQLITE: &str = "DELETE FROM audit_instances WHERE instance_id = ?1";
const RETIRE_INSTANCE_POSTGRES: &str = "DELETE FROM audit_instances WHERE instance_id = $1";

/// The audit store: cheap to clone, every clone sharing one pool and one
/// writer. See the module docs of [`crate::audit`] for the guarantees.
#[derive(Debug, Clone)]
pub struct AuditStore {
    backend: Backend,
    commands: mpsc::Sender<Command>,
    instance_id: Uuid,
    health: Arc<Health>,
}

/// Whether the store takes writes, as the last write or probe found.
#[derive(Debug, Default)]
struct Health {
    /// Why the last failed write or probe failed; `None` while writable.
    failure: Mutex<Option<String>>,
    /// When the probe last ran; held while it runs, so probes never overlap.
    last_probe: tokio::sync::Mutex<Option<Instant>>,
}

impl Health {
    fn set(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug)]
enum Command {
    Write {
        event: Box<AuditEvent>,
        done: oneshot::Sender<Result<(), AuditError>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

impl AuditStore {
    /// Opens the store `config` names and applies its migrations; `Ok(None)`
    /// when audit is off. A SQLite file and its folders are created when
    /// missing, and the file is put in WAL mode so reads never wait for the
    /// writer, with `synchronous=NORMAL`, SQLite's recommended setting for
    /// WAL: a commit is atomic and survives the process crashing, and the
    /// file is never corrupted, but a power loss or OS crash may undo the
    /// last commits. It spares an `fsync` per commit, which otherwise
    /// bounds the gateway's throughput (docs/performance.md, "Chat gateway overhead"). On PostgreSQL, replicas starting together are safe: the
    /// migrator holds an advisory lock, so migrations run once and every
    /// replica comes up. Errors name `DATABASE_URL` without its password.
    ///
    /// Must be called within a Tokio runtime: it spawns the writer task.
    pub async fn connect(config: &AuditConfig) -> Result<Option<AuditStore>, AuditError> {
        let Some(database) = config.database() else {
            return Ok(None);
        };
        let url = config.redacted_url();
        let open = |source: Box<dyn std::error::Error + Send + Sync>| AuditError::Open {
            url: url.clone(),
            source,
        };
        let migrate = |source| AuditError::Migrate {
            url: url.clone(),
            source,
        };
        let backend = match database {
            AuditDatabase::Sqlite { path } => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| open(e.into()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    // A local file: a ping before each use is a wasted round trip.
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| open(e.into()))?;
                SQLITE_MIGRATOR.run(&pool).await.map_err(migrate)?;
                Backend::Sqlite(pool)
            }
            AuditDatabase::Postgres { url: raw } => {
                let options = PgConnectOptions::from_str(raw).map_err(|e| open(e.into()))?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| open(e.into()))?;
                POSTGRES_MIGRATOR.run(&pool).await.map_err(migrate)?;
                Backend::Postgres(pool)
            }
        };
        let instance_id = Uuid::new_v4();
        // Registered before the first sweep, so the sweep never takes this
        // process for a dead one.
        backend
            .heartbeat(instance_id)
            .await
            .map_err(|e| open(e.into()))?;
        match backend.sweep().await {
            Ok(0) => {}
            Ok(interrupted) => tracing::info!(
                interrupted,
                "audit events left pending by a process that stopped are marked interrupted"
            ),
            Err(e) => return Err(open(e.into())),
        }
        let (commands, queue) = mpsc::channel(QUEUE_CAPACITY);
        let health = Arc::new(Health::default());
        let (stop_heartbeat, stopped) = oneshot::channel();
        tokio::spawn(run_heartbeat(backend.clone(), instance_id, stopped));
        tokio::spawn(run_writer(
            backend.clone(),
            queue,
            instance_id,
            Arc::clone(&health),
            stop_heartbeat,
        ));
        Ok(Some(AuditStore {
            backend,
            commands,
            instance_id,
            health,
        }))
    }

    /// This process's instance id: every event it writes carries it.
    pub fn instance_id(&self) -> Uuid {
        self.instance_id
    }

    /// For `GET /v1/ready`: `Err` with the reason while the store takes no
    /// writes. At most once per [`PROBE_INTERVAL`] it probes the store with
    /// a write it rolls back (so a full disk or a lost database shows, within
    /// 1 s); in between it answers what the last probe or write found. A
    /// failed write makes it `Err` until a probe succeeds again.
    pub async fn readiness(&self) -> Result<(), String> {
        {
            let mut last = self.health.last_probe.lock().await;
            if last.is_none_or(|at| at.elapsed() >= PROBE_INTERVAL) {
                let probe = match tokio::time::timeout(PROBE_TIMEOUT, self.backend.probe()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(AuditError::Write(Arc::new(e)).to_string()),
                    Err(_) => Some(AuditError::Timeout(PROBE_TIMEOUT).to_string()),
                };
                *last = Some(Instant::now());
                self.health.set(probe);
            }
        }
        match self.health.failure() {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Writes `event` and returns once it is committed, so that [`Self::get`]
    /// finds it from then on. An event whose request id is already stored
    /// replaces it, all but its `created_at` (the pending event's time).
    /// `created_at` is kept to the millisecond.
    ///
    /// An `Err` means the event is not stored: the caller logs it with the
    /// request id and counts it (`audit_write_failures_total`), and
    /// [`Self::readiness`] reports the failure until a probe succeeds. The
    /// store goes on serving other writes. If the caller stops waiting, the
    /// event is still written.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Write {
                event: Box::new(event),
                done,
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::WriterGone)?
    }

    /// The event of `request_id`, or `None` when there is none.
    pub async fn get(&self, request_id: Uuid) -> Result<Option<AuditEvent>, AuditError> {
        let row: Option<EventRow> = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_as(SELECT_SQLITE)
                    .bind(request_id.hyphenated().to_string())
                    .fetch_optional(pool)
                    .await
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(SELECT_POSTGRES)
                    .bind(request_id)
                    .fetch_optional(pool)
                    .await
            }
        }
        .map_err(AuditError::Read)?;
        row.map(|row| row.into_event(request_id)).transpose()
    }

    /// Stops accepting events, commits every event handed over before this
    /// call, closes the pool, and returns when all of that is done. Later
    /// [`Self::record`] calls, on any clone, fail with [`AuditError::Closed`].
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            // An Err means the writer already stopped: nothing is left to flush.
            let _ = finished.await;
        }
    }
}

/// Refreshes the instance's heartbeat and sweeps for dead instances every
/// [`HEARTBEAT_INTERVAL`], until `stop` resolves (the writer ended).
async fn run_heartbeat(backend: Backend, instance_id: Uuid, mut stop: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and connect has just done its work.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = backend.heartbeat(instance_id).await {
            tracing::warn!(error = %e, "the audit heartbeat could not be written");
            continue;
        }
        match backend.sweep().await {
            Ok(0) => {}
            Ok(interrupted) => tracing::warn!(
                interrupted,
                "audit events of a gateway process that stopped heartbeating are marked interrupted"
            ),
            Err(e) => tracing::warn!(error = %e, "the audit sweep for interrupted events failed"),
        }
    }
}

/// The writer task: drains the queue in batches until every sender is gone or
/// a shutdown has been asked for and the queue is empty; then stops the
/// heartbeat and retires the instance (its events still pending are
/// interrupted: no outcome will come for them).
async fn run_writer(
    backend: Backend,
    mut queue: mpsc::Receiver<Command>,
    instance_id: Uuid,
    health: Arc<Health>,
    stop_heartbeat: oneshot::Sender<()>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut shutdown_waiters = Vec::new();
    while queue.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut batch = Vec::with_capacity(received.len());
        for command in received.drain(..) {
            match command {
                Command::Write { event, done } => batch.push((event, done)),
                Command::Shutdown { done } => {
                    // Refuse new events; those already queued are still
                    // received, and written, before recv_many returns 0.
                    queue.close();
                    shutdown_waiters.push(done);
                }
            }
        }
        if !batch.is_empty() {
            write_batch(&backend, &health, batch).await;
        }
    }
    drop(stop_heartbeat);
    if let Err(e) = backend.retire(instance_id).await {
        tracing::warn!(error = %e, "the audit instance could not be retired");
    }
    backend.close().await;
    for done in shutdown_waiters {
        let _ = done.send(());
    }
}

type Pending = (Box<AuditEvent>, oneshot::Sender<Result<(), AuditError>>);

async fn write_batch(backend: &Backend, health: &Health, batch: Vec<Pending>) {
    let events: Vec<&AuditEvent> = batch.iter().map(|(event, _)| &**event).collect();
    let result = backend.insert(&events).await;
    drop(events);
    let failed = |e: sqlx::Error| {
        let error = AuditError::Write(Arc::new(e));
        health.set(Some(error.to_string()));
        error
    };
    match result {
        Ok(()) => {
            for (_, done) in batch {
                // The caller may have stopped waiting; the event is stored anyway.
                let _ = done.send(Ok(()));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some((_, done)) = batch.into_iter().next() {
                let _ = done.send(Err(failed(e)));
            }
        }
        Err(e) => {
            tracing::debug!(
                error = %e,
                events = batch.len(),
                "An audit batch failed; writing its events one by one."
            );
            for (event, done) in batch {
                let result = backend.insert(&[&*event]).await.map_err(failed);
                let _ = done.send(result);
            }
        }
    }
}

impl Backend {
    /// Inserts `events` in one transaction: one multi-row statement when
    /// they fit in one (always, for a batch of the writer), else several in
    /// an explicit transaction.
    async fn insert(&self, events: &[&AuditEvent]) -> Result<(), sqlx::Error> {
        let rows = events
            .iter()
            .map(|event| StoredFields::of(event).map(|fields| (*event, fields)))
            .collect::<Result<Vec<_>, _>>()?;
        match self {
            Backend::Sqlite(pool) => {
                if rows.len() <= ROWS_PER_STATEMENT {
                    sqlite_insert(&rows).build().execute(pool).await?;
                    return Ok(());
                }
                let mut tx = pool.begin().await?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    sqlite_insert(chunk).build().execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            Backend::Postgres(pool) => {
                if rows.len() <= ROWS_PER_STATEMENT {
                    postgres_insert(&rows).build().execute(pool).await?;
                    return Ok(());
                }
                let mut tx = pool.begin().await?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    postgres_insert(chunk).build().execute(&mut *tx).await?;
                }
                tx.commit().await
            }
        }
    }

    /// Registers or refreshes `instance_id`'s heartbeat.
    async fn heartbeat(&self, instance_id: Uuid) -> Result<(), sqlx::Error> {
        match self {
            Backend::Sqlite(pool) => {
                sqlx::query(HEARTBEAT_SQLITE)
                    .bind(instance_id.hyphenated().to_string())
                    .execute(pool)
                    .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query(HEARTBEAT_POSTGRES)
                    .bind(instance_id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Marks `interrupted` the pending events of instances silent for
    /// [`INSTANCE_TIMEOUT`] and forgets those instances, in one
    /// transaction; returns how many events it marked.
    async fn sweep(&self) -> Result<u64, sqlx::Error> {
        let seconds = INSTANCE_TIMEOUT.as_secs_f64();
        match self {
            Backend::Sqlite(pool) => {
                let modifier = format!("-{seconds} seconds");
                let mut tx = pool.begin().await?;
                let marked = sqlx::query(SWEEP_SQLITE)
                    .bind(&modifier)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(PRUNE_SQLITE)
                    .bind(&modifier)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(marked)
            }
            Backend::Postgres(pool) => {
                // now() is the transaction's start: one cutoff for both.
                let mut tx = pool.begin().await?;
                let marked = sqlx::query(SWEEP_POSTGRES)
                    .bind(seconds)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(PRUNE_POSTGRES)
                    .bind(seconds)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(marked)
            }
        }
    }

    /// At a clean shutdown: `instance_id`'s events still pending are
    /// interrupted and its heartbeat row goes.
    async fn retire(&self, instance_id: Uuid) -> Result<(), sqlx::Error> {
        match self {
            Backend::Sqlite(pool) => {
                let id = instance_id.hyphenated().to_string();
                let mut tx = pool.begin().await?;
                sqlx::query(RETIRE_EVENTS_SQLITE)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(RETIRE_INSTANCE_SQLITE)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(RETIRE_EVENTS_POSTGRES)
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(RETIRE_INSTANCE_POSTGRES)
                    .bind(instance_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
        }
    }

    /// Writes an event in a transaction and rolls it back: whether the store
    /// takes writes now, leaving nothing behind.
    async fn probe(&self) -> Result<(), sqlx::Error> {
        let probe = AuditEvent {
            request_id: Uuid::new_v4(),
            decision: String::new(),
            provider: ProviderId::local(),
            rule: None,
            reason_codes: Vec::new(),
            policy_version: String::new(),
            status: AuditStatus::Pending,
            latency_ms: 0.0,
            failure_category: None,
            prompt_hash: String::new(),
            prompt_length: 0,
            model: String::new(),
            created_at: Utc::now(),
            sensitive: false,
            detections: Vec::new(),
            attempts: Vec::new(),
            instance_id: Uuid::nil(),
            client_api: None,
            client: None,
        };
        let rows = [(&probe, StoredFields::of(&probe)?)];
        match self {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlite_insert(&rows).build().execute(&mut *tx).await?;
                tx.rollback().await
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                postgres_insert(&rows).build().execute(&mut *tx).await?;
                tx.rollback().await
            }
        }
    }

    async fn close(&self) {
        match self {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// One `INSERT` of `rows` for SQLite.
fn sqlite_insert(rows: &[(&AuditEvent, StoredFields)]) -> QueryBuilder<Sqlite> {
    let mut query = QueryBuilder::<Sqlite>::new(INSERT);
    query.push_values(rows, |mut b, (event, row)| {
        b.push_bind(event.request_id.hyphenated().to_string())
            .push_bind(event.decision.clone())
            .push_bind(event.provider.as_str())
            .push_bind(event.rule.clone())
            .push_bind(row.reason_codes.clone())
            .push_bind(event.policy_version.clone())
            .push_bind(event.status.as_str())
            .push_bind(event.latency_ms)
            .push_bind(event.failure_category.map(FailureCategory::as_str))
            .push_bind(event.prompt_hash.clone())
            .push_bind(row.prompt_length)
            .push_bind(event.model.clone())
            // Fixed-width UTC text, so text order is time order.
            .push_bind(row.created_at.to_rfc3339_opts(SecondsFormat::Millis, true))
            .push_bind(event.sensitive)
            .push_bind(row.detections.clone())
            .push_bind(row.attempts.clone())
            .push_bind(event.instance_id.hyphenated().to_string())
            .push_bind(event.client_api.map(ClientApi::as_str))
            .push_bind(event.client.clone());
    });
    query.push(UPSERT);
    query
}

/// One `INSERT` of `rows` for PostgreSQL.
fn postgres_insert(rows: &[(&AuditEvent, StoredFields)]) -> QueryBuilder<Postgres> {
    let mut query = QueryBuilder::<Postgres>::new(INSERT);
    query.push_values(rows, |mut b, (event, row)| {
        b.push_bind(event.request_id)
            .push_bind(event.decision.clone())
            .push_bind(event.provider.as_str())
            .push_bind(event.rule.clone())
            .push_bind(row.reason_codes.clone())
            .push_bind(event.policy_version.clone())
            .push_bind(event.status.as_str())
            .push_bind(event.latency_ms)
            .push_bind(event.failure_category.map(FailureCategory::as_str))
            .push_bind(event.prompt_hash.clone())
            .push_bind(row.prompt_length)
            .push_bind(event.model.clone())
            .push_bind(row.created_at)
            .push_bind(event.sensitive)
            .push_bind(row.detections.clone())
            .push_bind(row.attempts.clone())
            .push_bind(event.instance_id)
            .push_bind(event.client_api.map(ClientApi::as_str))
            .push_bind(event.client.clone());
    });
    query.push(UPSERT);
    query
}

/// The fields whose stored form differs from the event's.
struct StoredFields {
    /// JSON array text: one encoding both databases hold as plain text.
    reason_codes: String,
    /// JSON array text, as `reason_codes`.
    detections: String,
    /// JSON array text of the attempts' objects.
    attempts: String,
    prompt_length: i64,
    created_at: DateTime<Utc>,
}

impl StoredFields {
    fn of(event: &AuditEvent) -> Result<Self, sqlx::Error> {
        Ok(StoredFields {
            reason_codes: serde_json::to_string(&event.reason_codes)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            detections: serde_json::to_string(&event.detections)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            attempts: serde_json::to_string(&event.attempts)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            prompt_length: i64::try_from(event.prompt_length)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            created_at: event.created_at.trunc_subsecs(3),
        })
    }
}

/// A stored event as both databases return it (the id is the one asked for).
#[derive(sqlx::FromRow)]
struct EventRow {
    decision: String,
    provider: String,
    rule: Option<String>,
    reason_codes: String,
    policy_version: String,
    status: String,
    latency_ms: f64,
    failure_category: Option<String>,
    prompt_hash: String,
    prompt_length: i64,
    model: String,
    created_at: DateTime<Utc>,
    sensitive: bool,
    detections: String,
    attempts: String,
    /// Text on both databases; `NULL` for events older than instance ids.
    instance_id: Option<String>,
    client_api: Option<String>,
    client: Option<String>,
}

impl EventRow {
    fn into_event(self, request_id: Uuid) -> Result<AuditEvent, AuditError> {
        let malformed = |message: String| AuditError::Malformed {
            request_id,
            message,
        };
        let provider = ProviderId::new(&self.provider);
        let status: AuditStatus = self
            .status
            .parse()
            .map_err(|e: UnknownName| malformed(e.to_string()))?;
        let failure_category = self
            .failure_category
            .map(|c| c.parse::<FailureCategory>())
            .transpose()
            .map_err(|e| malformed(e.to_string()))?;
        let reason_codes = serde_json::from_str(&self.reason_codes)
            .map_err(|e| malformed(format!("reason_codes: {e}")))?;
        let detections = serde_json::from_str(&self.detections)
            .map_err(|e| malformed(format!("detections: {e}")))?;
        let prompt_length = u64::try_from(self.prompt_length)
            .map_err(|e| malformed(format!("prompt_length: {e}")))?;
        let attempts = serde_json::from_str(&self.attempts)
            .map_err(|e| malformed(format!("attempts: {e}")))?;
        let instance_id = self
            .instance_id
            .map(|id| Uuid::try_parse(&id))
            .transpose()
            .map_err(|e| malformed(format!("instance_id: {e}")))?
            .unwrap_or_else(Uuid::nil);
        let client_api = self
            .client_api
            .map(|api| api.parse::<ClientApi>())
            .transpose()
            .map_err(|e| malformed(e.to_string()))?;
        Ok(AuditEvent {
            request_id,
            decision: self.decision,
            provider,
            rule: self.rule,
            reason_codes,
            policy_version: self.policy_version,
            status,
            latency_ms: self.latency_ms,
            failure_category,
            prompt_hash: self.prompt_hash,
            prompt_length,
            model: self.model,
            created_at: self.created_at,
            sensitive: self.sensitive,
            detections,
            attempts,
            instance_id,
            client_api,
            client: self.client,
        })
    }
}
