//! The audit store against real databases: SQLite in a temporary folder
//! always, and the same tests on PostgreSQL when `TEST_DATABASE_URL` names a
//! server where we may create databases (`scripts/ci-postgres.sh` starts a
//! throwaway one). Each test gets a fresh database of its own, so they run in
//! parallel. The PostgreSQL variants are `#[ignore]`d, so that a missing
//! server shows as ignored rather than passed; `.ci/run` runs them with
//! `--include-ignored`, and one run without `TEST_DATABASE_URL` fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use policy_mesh::audit::{
    Attempt, AuditConfig, AuditError, AuditEvent, AuditStore, decision_string, now, prompt_hash,
    prompt_length,
};
use policy_mesh::chat::ChatMessage;
use policy_mesh::env::Env;
use policy_mesh::names::{AuditStatus, ClientApi, FailureCategory, ProviderId};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use uuid::Uuid;

/// One test's own database, and a side door to it that bypasses the store.
struct TestDb {
    config: AuditConfig,
    target: Target,
}

enum Target {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    /// A SQLite file two missing folders deep in a fresh temporary folder.
    fn sqlite() -> TestDb {
        TestDb::sqlite_with(&[])
    }

    fn sqlite_with(extra: &[(&str, &str)]) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("deeper").join("audit.db");
        let url = format!("sqlite://{}", path.display());
        let mut pairs = vec![("DATABASE_URL", url.as_str())];
        pairs.extend_from_slice(extra);
        TestDb {
            config: AuditConfig::from_env(&Env::from_pairs(pairs)).unwrap(),
            target: Target::Sqlite { path, _dir: dir },
        }
    }

    /// A fresh database on the `TEST_DATABASE_URL` server; panics when that
    /// variable is unset (the test was asked for by `--ignored`).
    async fn postgres() -> TestDb {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "TEST_DATABASE_URL is not set \
                 (eval \"$(scripts/ci-postgres.sh)\" starts a throwaway server)"
            ),
        };
        let name = format!("pm_audit_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("TEST_DATABASE_URL accepts connections");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("TEST_DATABASE_URL may create databases");
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let pairs = [("DATABASE_URL", url.as_str())];
        TestDb {
            config: AuditConfig::from_env(&Env::from_pairs(pairs)).unwrap(),
            target: Target::Postgres {
                admin_url,
                name,
                url,
            },
        }
    }

    async fn connect(&self) -> AuditStore {
        AuditStore::connect(&self.config)
            .await
            .expect("the store opens")
            .expect("audit is enabled")
    }

    /// Runs `sql` directly on the database.
    async fn execute(&self, sql: &'static str) {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Target::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Writes the heartbeat row of instance `id` as if it had last beaten
    /// `age_seconds` ago.
    async fn heartbeat(&self, id: Uuid, age_seconds: u32) {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(
                    "INSERT INTO audit_instances (instance_id, started_at, heartbeat_at) \
                     VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2), \
                     strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2))",
                )
                .bind(id.hyphenated().to_string())
                .bind(format!("-{age_seconds} seconds"))
                .execute(&mut conn)
                .await
                .unwrap();
                conn.close().await.unwrap();
            }
            Target::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query(
                    "INSERT INTO audit_instances (instance_id, started_at, heartbeat_at) \
                     VALUES ($1, now() - make_interval(secs => $2), \
                     now() - make_interval(secs => $2))",
                )
                .bind(id)
                .bind(f64::from(age_seconds))
                .execute(&mut conn)
                .await
                .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// The one integer `sql` selects, read directly from the database.
    async fn scalar(&self, sql: &'static str) -> i64 {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Target::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    /// Every byte the database keeps, as far as a reader can see: the SQLite
    /// file with its `-wal` and `-shm` files, or every row's text on
    /// PostgreSQL.
    async fn stored_bytes(&self) -> Vec<u8> {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    if let Ok(b) = std::fs::read(&file) {
                        bytes.extend_from_slice(&b);
                    }
                }
                bytes
            }
            Target::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let text: Option<String> =
                    sqlx::query_scalar("SELECT string_agg(t::text, '|') FROM audit_events t")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                text.unwrap_or_default().into_bytes()
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite's folder goes with the value).
    async fn cleanup(self) {
        if let Target::Postgres {
            admin_url, name, ..
        } = &self.target
        {
            let mut admin = PgConnection::connect(admin_url).await.unwrap();
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

/// Runs a test body on SQLite and (an ignored test) on PostgreSQL.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TestDb::sqlite();
                super::$name(&db).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
            async fn postgres() {
                let db = super::TestDb::postgres().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    )*};
}

on_both_databases!(
    every_field_round_trips,
    json_is_exactly_the_api_field_table,
    unknown_id_is_none,
    concurrent_writes_all_land,
    failed_write_is_an_error_and_the_store_goes_on,
    prompt_and_key_are_never_stored,
    shutdown_commits_what_was_handed_over,
    the_outcome_replaces_the_pending_event_but_its_time,
    pending_events_of_dead_instances_are_interrupted_and_of_live_ones_kept,
    a_clean_shutdown_interrupts_its_own_pending_events,
    readiness_follows_the_store_probe_by_probe,
);

fn messages(contents: &[&str]) -> Vec<ChatMessage> {
    contents.iter().map(|c| ChatMessage::user(*c)).collect()
}

/// A success event decided by rule `sensitive`.
fn success_event(prompt: &[ChatMessage], key: Option<&[u8]>) -> AuditEvent {
    let reason_codes = vec!["sensitive_keyword_match".to_owned()];
    AuditEvent {
        request_id: Uuid::new_v4(),
        decision: decision_string("local", &reason_codes),
        provider: ProviderId::local(),
        rule: Some("sensitive".to_owned()),
        reason_codes,
        policy_version: "0123456789abcdef".repeat(4),
        status: AuditStatus::Success,
        latency_ms: 12.625,
        failure_category: None,
        prompt_hash: prompt_hash(prompt, &[], key),
        prompt_length: prompt_length(prompt, &[]),
        model: "llama3.2".to_owned(),
        created_at: now(),
        sensitive: true,
        detections: vec!["credit_card".to_owned(), "email".to_owned()],
        attempts: vec![Attempt::of(ProviderId::local(), None, 12.625)],
        instance_id: Uuid::new_v4(),
        client_api: Some(ClientApi::Chat),
        client: Some("team-a".to_owned()),
    }
}

/// `event` as it stands before its provider is called.
fn pending(event: &AuditEvent) -> AuditEvent {
    AuditEvent {
        status: AuditStatus::Pending,
        latency_ms: 0.0,
        failure_category: None,
        attempts: Vec::new(),
        ..event.clone()
    }
}

/// A failed default decision to the public provider.
fn failure_event() -> AuditEvent {
    let prompt = messages(&["system prompt", "héllo wörld"]);
    let reason_codes = vec!["default".to_owned()];
    AuditEvent {
        request_id: Uuid::new_v4(),
        decision: decision_string("anthropic", &reason_codes),
        provider: ProviderId::new("anthropic"),
        rule: None,
        reason_codes,
        policy_version: "fedcba9876543210".repeat(4),
        status: AuditStatus::Failure,
        latency_ms: 60000.5,
        failure_category: Some(FailureCategory::Timeout),
        prompt_hash: prompt_hash(&prompt, &[], None),
        prompt_length: prompt_length(&prompt, &[]),
        model: "claude-3-5-haiku-latest".to_owned(),
        created_at: now(),
        sensitive: false,
        detections: Vec::new(),
        attempts: vec![Attempt::of(
            ProviderId::new("anthropic"),
            Some(FailureCategory::Timeout),
            60000.5,
        )],
        instance_id: Uuid::new_v4(),
        client_api: Some(ClientApi::Anthropic),
        client: Some("team-a".to_owned()),
    }
}

async fn every_field_round_trips(db: &TestDb) {
    let store = db.connect().await;
    let success = success_event(&messages(&["hello"]), None);
    let failure = failure_event();
    store.record(success.clone()).await.unwrap();
    store.record(failure.clone()).await.unwrap();

    let got = store.get(success.request_id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&success));
    assert_eq!(
        got.unwrap().decision,
        "provider=local,reason_codes=sensitive_keyword_match"
    );
    let got = store.get(failure.request_id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&failure));
    assert_eq!(
        got.unwrap().decision,
        "provider=anthropic,reason_codes=default"
    );
    store.shutdown().await;

    // A restarted process reads what the previous one wrote.
    let reopened = db.connect().await;
    assert_eq!(
        reopened.get(success.request_id).await.unwrap(),
        Some(success)
    );
    reopened.shutdown().await;
}

async fn json_is_exactly_the_api_field_table(db: &TestDb) {
    let store = db.connect().await;
    let event = failure_event();
    store.record(event.clone()).await.unwrap();
    let got = store.get(event.request_id).await.unwrap().unwrap();
    let json = serde_json::to_value(&got).unwrap();
    let object = json.as_object().unwrap();

    let keys: HashSet<&str> = object.keys().map(String::as_str).collect();
    let expected: HashSet<&str> = [
        "request_id",
        "decision",
        "provider",
        "rule",
        "reason_codes",
        "policy_version",
        "status",
        "latency_ms",
        "failure_category",
        "prompt_hash",
        "prompt_length",
        "model",
        "created_at",
        "sensitive",
        "detections",
        "attempts",
        "instance_id",
        "client_api",
        "client",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    assert_eq!(
        json["attempts"],
        serde_json::json!([{"provider": "anthropic", "outcome": "timeout", "latency_ms": 60000.5}])
    );
    assert_eq!(json["instance_id"], event.instance_id.to_string());
    assert_eq!(json["client_api"], "anthropic");
    assert_eq!(json["client"], "team-a");
    assert_eq!(json["sensitive"], false);
    assert_eq!(json["detections"], serde_json::json!([]));

    assert_eq!(json["request_id"], event.request_id.to_string());
    assert_eq!(json["decision"], "provider=anthropic,reason_codes=default");
    assert_eq!(json["provider"], "anthropic");
    assert!(json["rule"].is_null());
    assert_eq!(json["reason_codes"], serde_json::json!(["default"]));
    assert_eq!(json["policy_version"], event.policy_version);
    assert_eq!(json["status"], "failure");
    assert_eq!(json["latency_ms"].as_f64(), Some(60000.5));
    assert_eq!(json["failure_category"], "timeout");
    let hash = json["prompt_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(json["prompt_length"].as_u64(), Some(24));
    assert_eq!(json["model"], "claude-3-5-haiku-latest");
    let created = chrono::DateTime::parse_from_rfc3339(json["created_at"].as_str().unwrap())
        .expect("created_at is RFC 3339");
    assert_eq!(created, event.created_at);
    store.shutdown().await;
}

async fn unknown_id_is_none(db: &TestDb) {
    let store = db.connect().await;
    store
        .record(success_event(&messages(&["x"]), None))
        .await
        .unwrap();
    assert_eq!(store.get(Uuid::new_v4()).await.unwrap(), None);
    store.shutdown().await;
}

async fn concurrent_writes_all_land(db: &TestDb) {
    let store = db.connect().await;
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let event = success_event(&messages(&[&format!("prompt {i}")]), None);
        ids.push(event.request_id);
        let store = store.clone();
        tasks.spawn(async move { store.record(event).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().expect("every concurrent write commits");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await, 200);
    for id in ids {
        let got = store.get(id).await.unwrap();
        assert_eq!(got.map(|e| e.request_id), Some(id));
    }
    store.shutdown().await;
}

async fn failed_write_is_an_error_and_the_store_goes_on(db: &TestDb) {
    let store = db.connect().await;
    let first = success_event(&messages(&["first"]), None);
    store.record(first.clone()).await.unwrap();

    // An event the store cannot encode is not stored.
    let unstorable = AuditEvent {
        prompt_length: u64::MAX,
        ..success_event(&messages(&["too long"]), None)
    };
    let err = store.record(unstorable.clone()).await.unwrap_err();
    assert!(matches!(err, AuditError::Write(_)), "{err:?}");

    // When it shares a batch with good events, only it fails.
    let mut tasks = tokio::task::JoinSet::new();
    let mut good = Vec::new();
    for i in 0..20 {
        let event = success_event(&messages(&[&format!("p{i}")]), None);
        good.push(event.request_id);
        let store = store.clone();
        tasks.spawn(async move { (true, store.record(event).await) });
    }
    let bad_store = store.clone();
    tasks.spawn(async move { (false, bad_store.record(unstorable).await) });
    while let Some(joined) = tasks.join_next().await {
        let (is_good, result) = joined.unwrap();
        assert_eq!(result.is_ok(), is_good, "{result:?}");
    }
    for id in good {
        assert!(store.get(id).await.unwrap().is_some());
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await, 21);

    // With the table gone, writes and reads fail with errors, not panics.
    db.execute("DROP TABLE audit_events").await;
    let lost = success_event(&messages(&["lost"]), None);
    let err = store.record(lost.clone()).await.unwrap_err();
    assert!(matches!(err, AuditError::Write(_)), "{err:?}");
    assert!(store.get(lost.request_id).await.is_err());
    assert!(store.record(lost).await.is_err());
    store.shutdown().await;
}

async fn prompt_and_key_are_never_stored(db: &TestDb) {
    let prompt_canary = format!("canary-prompt-{}", Uuid::new_v4().simple());
    let key_canary = format!("canary-key-{}", Uuid::new_v4().simple());
    let prompt = messages(&["intro", &prompt_canary]);

    // A keyed configuration on the same database.
    let keyed = AuditConfig::from_env(&Env::from_pairs([
        ("DATABASE_URL", db_url(db).as_str()),
        ("AUDIT_HASH_KEY", key_canary.as_str()),
    ]))
    .unwrap();
    let store = AuditStore::connect(&keyed).await.unwrap().unwrap();
    let keyed_event = success_event(&prompt, keyed.hash_key());
    let plain_event = success_event(&prompt, None);
    assert_ne!(keyed_event.prompt_hash, plain_event.prompt_hash);
    store.record(keyed_event.clone()).await.unwrap();
    store.record(plain_event.clone()).await.unwrap();

    // Read while the store is open, so a SQLite WAL file still holds the rows.
    let bytes = db.stored_bytes().await;
    assert!(
        contains(&bytes, keyed_event.prompt_hash.as_bytes()),
        "the search must see the stored rows"
    );
    assert!(!contains(&bytes, prompt_canary.as_bytes()), "prompt stored");
    assert!(!contains(&bytes, key_canary.as_bytes()), "key stored");
    store.shutdown().await;

    // And after the writes are checkpointed into the main file.
    let bytes = db.stored_bytes().await;
    assert!(contains(&bytes, plain_event.prompt_hash.as_bytes()));
    assert!(!contains(&bytes, prompt_canary.as_bytes()), "prompt stored");
    assert!(!contains(&bytes, key_canary.as_bytes()), "key stored");
}

async fn shutdown_commits_what_was_handed_over(db: &TestDb) {
    let store = db.connect().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let event = success_event(&messages(&[&format!("q{i}")]), None);
        let store = store.clone();
        tasks.spawn(async move { (event.request_id, store.record(event).await) });
    }
    store.shutdown().await;
    let mut committed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (id, Ok(())) => committed.push(id),
            // Handed over after the shutdown began: refused, not lost.
            (_, Err(AuditError::Closed)) => {}
            (_, Err(e)) => panic!("an event handed over before shutdown was lost: {e:?}"),
        }
    }
    let late = store
        .record(success_event(&messages(&["late"]), None))
        .await;
    assert!(matches!(late, Err(AuditError::Closed)), "{late:?}");

    let reopened = db.connect().await;
    for id in &committed {
        assert!(reopened.get(*id).await.unwrap().is_some(), "{id} lost");
    }
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_events").await,
        committed.len() as i64
    );
    reopened.shutdown().await;
}

async fn the_outcome_replaces_the_pending_event_but_its_time(db: &TestDb) {
    let store = db.connect().await;
    let done = success_event(&messages(&["hello"]), None);
    let first = pending(&done);
    store.record(first.clone()).await.unwrap();
    assert_eq!(
        store.get(done.request_id).await.unwrap(),
        Some(first.clone())
    );
    let json = serde_json::to_value(store.get(done.request_id).await.unwrap()).unwrap();
    assert_eq!(json["status"], "pending");
    assert_eq!(json["attempts"], serde_json::json!([]));

    let later = AuditEvent {
        created_at: first.created_at + chrono::Duration::seconds(5),
        ..done.clone()
    };
    store.record(later).await.unwrap();
    assert_eq!(store.get(done.request_id).await.unwrap(), Some(done));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await, 1);
    store.shutdown().await;
}

async fn pending_events_of_dead_instances_are_interrupted_and_of_live_ones_kept(db: &TestDb) {
    let first = db.connect().await;
    let prompt = messages(&["in flight"]);
    let of = |instance_id: Uuid| AuditEvent {
        instance_id,
        ..pending(&success_event(&prompt, None))
    };
    // This process's own, another live replica's (beat 5 s ago), a dead
    // one's (silent for 2 minutes), and one that never beat at all.
    let live = Uuid::new_v4();
    let dead = Uuid::new_v4();
    db.heartbeat(live, 5).await;
    db.heartbeat(dead, 120).await;
    let own = of(first.instance_id());
    let of_live = of(live);
    let of_dead = of(dead);
    let of_unknown = of(Uuid::new_v4());
    let finished = AuditEvent {
        instance_id: dead,
        ..success_event(&prompt, None)
    };
    for event in [&own, &of_live, &of_dead, &of_unknown, &finished] {
        first.record(event.clone()).await.unwrap();
    }

    // A process starting sweeps: only the dead instances' pending events go.
    let second = db.connect().await;
    assert_ne!(second.instance_id(), first.instance_id());
    let status = |event: &AuditEvent| {
        let id = event.request_id;
        let store = second.clone();
        async move { store.get(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&own).await, AuditStatus::Pending);
    assert_eq!(status(&of_live).await, AuditStatus::Pending);
    assert_eq!(status(&of_dead).await, AuditStatus::Interrupted);
    assert_eq!(status(&of_unknown).await, AuditStatus::Interrupted);
    assert_eq!(status(&finished).await, AuditStatus::Success);
    // The dead instance is forgotten; the live ones are not.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_instances").await,
        3,
        "first, second and the live replica"
    );
    // An outcome that comes after all still lands.
    first
        .record(AuditEvent {
            instance_id: dead,
            ..success_event(&prompt, None)
        })
        .await
        .unwrap();
    second.shutdown().await;
    first.shutdown().await;
}

async fn a_clean_shutdown_interrupts_its_own_pending_events(db: &TestDb) {
    let store = db.connect().await;
    let other = db.connect().await;
    let in_flight = AuditEvent {
        instance_id: store.instance_id(),
        ..pending(&success_event(&messages(&["cut"]), None))
    };
    let others = AuditEvent {
        instance_id: other.instance_id(),
        ..pending(&success_event(&messages(&["still going"]), None))
    };
    store.record(in_flight.clone()).await.unwrap();
    store.record(others.clone()).await.unwrap();
    store.shutdown().await;
    let read = |id| {
        let other = other.clone();
        async move { other.get(id).await.unwrap().unwrap().status }
    };
    assert_eq!(read(in_flight.request_id).await, AuditStatus::Interrupted);
    assert_eq!(read(others.request_id).await, AuditStatus::Pending);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_instances").await, 1);
    other.shutdown().await;
}

/// Polls `store.readiness()` until it is `Ok` (`want`) or `Err`.
async fn wait_readiness(store: &AuditStore, want: bool) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let got = store.readiness().await;
        if got.is_ok() == want {
            return got;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "readiness stayed {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn readiness_follows_the_store_probe_by_probe(db: &TestDb) {
    let store = db.connect().await;
    store.readiness().await.expect("a fresh store is ready");
    db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await;
    let reason = wait_readiness(&store, false).await.unwrap_err();
    assert!(reason.contains("audit_events"), "{reason}");
    // A failed write says so at once, before the next probe.
    db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await;
    wait_readiness(&store, true).await.unwrap();
    db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await;
    let lost = success_event(&messages(&["lost"]), None);
    assert!(store.record(lost).await.is_err());
    db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await;
    assert!(store.readiness().await.is_err(), "a write just failed");
    // The probe, not traffic, brings it back; the probe leaves no row.
    wait_readiness(&store, true).await.unwrap();
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_events").await, 0);
    store.shutdown().await;
}

fn db_url(db: &TestDb) -> String {
    match &db.target {
        Target::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        Target::Postgres { url, .. } => url.clone(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn sqlite_file_and_folders_are_created_in_wal_mode() {
    let db = TestDb::sqlite();
    let Target::Sqlite { path, .. } = &db.target else {
        unreachable!()
    };
    assert!(!path.parent().unwrap().exists());
    let store = db.connect().await;
    assert!(path.is_file(), "{} not created", path.display());

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn relative_sqlite_path_is_created_under_the_working_folder() {
    // The process's working folder is shared by every test, so use a unique
    // relative path inside the build's target folder and remove it after.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let relative = PathBuf::from("target")
        .join("audit-tests")
        .join(Uuid::new_v4().simple().to_string());
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        cwd, root,
        "cargo runs integration tests from the package root"
    );
    let config = AuditConfig::from_env(&Env::from_pairs([(
        "DATABASE_URL",
        format!("sqlite://{}/a.db", relative.display()),
    )]))
    .unwrap();
    let store = AuditStore::connect(&config).await.unwrap().unwrap();
    assert!(root.join(&relative).join("a.db").is_file());
    store.shutdown().await;
    std::fs::remove_dir_all(root.join(&relative)).unwrap();
}

#[tokio::test]
async fn disabled_audit_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never").join("audit.db");
    let config = AuditConfig::from_env(&Env::from_pairs([
        ("AUDIT_ENABLED", "FALSE"),
        (
            "DATABASE_URL",
            format!("sqlite://{}", path.display()).as_str(),
        ),
    ]))
    .unwrap();
    assert!(AuditStore::connect(&config).await.unwrap().is_none());
    assert!(!path.parent().unwrap().exists());
}

#[tokio::test]
async fn unreachable_postgres_is_an_error_naming_the_variable_without_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let config = AuditConfig::from_env(&Env::from_pairs([(
        "DATABASE_URL",
        "postgres://audit:canary-pw-0d41@127.0.0.1:1/pm",
    )]))
    .unwrap();
    let err = AuditStore::connect(&config).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("canary-pw-0d41"), "{message}");
    assert!(!format!("{err:?}").contains("canary-pw-0d41"), "{err:?}");
}

#[tokio::test]
async fn sqlite_under_a_regular_file_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let config = AuditConfig::from_env(&Env::from_pairs([(
        "DATABASE_URL",
        format!("sqlite://{}/audit.db", file.display()),
    )]))
    .unwrap();
    let err = AuditStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn postgres_replicas_starting_together_migrate_once() {
    let db = TestDb::postgres().await;
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = db.config.clone();
        starts.spawn(async move { AuditStore::connect(&config).await });
    }
    let mut stores = Vec::new();
    while let Some(joined) = starts.join_next().await {
        stores.push(joined.unwrap().expect("every replica comes up").unwrap());
    }
    let migrations =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
            })
            .count() as i64;
    assert!(migrations > 0);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .await,
        migrations
    );

    // Every replica sees what any other wrote.
    let event = success_event(&messages(&["shared"]), None);
    stores[0].record(event.clone()).await.unwrap();
    for store in &stores {
        assert_eq!(
            store.get(event.request_id).await.unwrap().as_ref(),
            Some(&event)
        );
    }
    for store in &stores {
        store.shutdown().await;
    }
    db.cleanup().await;
}
