//! The audit trail: one event per chat under concurrency, audit off, unknown
//! ids, a failed write in both failure modes, and the same on PostgreSQL.

use super::*;

async fn check_concurrent(g: &Gateway) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = g.t.client.clone();
        let url = format!("{}/v1/chat", g.t.base);
        let prompt = if i % 2 == 0 {
            format!("{SENSITIVE} {i}")
        } else {
            format!("question {i}")
        };
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["request_id"].as_str().unwrap().to_owned()
        });
    }
    let mut ids = HashSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(g.db.count().await, 200);
    assert_eq!(g.db.ids().await, ids);
    let text = g.metrics().await;
    assert_eq!(chat_series(&text, "local", "success"), 100.0);
    assert_eq!(chat_series(&text, "openai", "success"), 100.0);
    assert_eq!(g.local.request_count() + g.public.request_count(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_chats_make_two_hundred_audit_events() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    check_concurrent(&g).await;
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_audit_off_nothing_is_written_and_events_are_not_found() {
    let g = Gateway::start(Flavor::OpenAi, &[("AUDIT_ENABLED", "false")]).await;
    let answer = g.chat("hello").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap();
    let (status, body) = g.audit(id).await;
    assert_error_shape(status, &body, 404, "not_found", "audit off");
    assert!(!g.t.db_path().exists());
    assert_eq!(std::fs::read_dir(g.t.data.path()).unwrap().count(), 0);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_audit_ids_are_not_found() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    for id in [
        Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        "%FF".to_owned(),
    ] {
        let (status, body) = g.audit(&id).await;
        assert_error_shape(status, &body, 404, "not_found", &id);
    }
    g.finish().await;
}

/// Renames the audit table away (`away`) or back, as a lost disk or a
/// broken database would make every write fail.
async fn move_audit_table(g: &Gateway, away: bool) {
    let Db::Sqlite(path) = &g.db else {
        unreachable!()
    };
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let sql = if away {
        "ALTER TABLE audit_events RENAME TO audit_events_away"
    } else {
        "ALTER TABLE audit_events_away RENAME TO audit_events"
    };
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

/// `GET /v1/ready` until its status is `want`.
async fn wait_ready(g: &Gateway, want: u16) -> Value {
    let start = Instant::now();
    loop {
        let response = g.t.get("/v1/ready").await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "/v1/ready stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_audit_failure_mode_open_a_failed_write_leaves_the_answer_unchanged() {
    let g = Gateway::start(Flavor::OpenAi, &[("AUDIT_FAILURE_MODE", "open")]).await;
    assert_eq!(
        metric(&g.metrics().await, "audit_write_failures_total"),
        Some(0.0)
    );
    assert_eq!(g.chat("first").await.status, 200);
    move_audit_table(&g, true).await;

    g.public.set_reply(["still here"]);
    let answer = g.chat("second").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["content"], "still here");
    assert_eq!(answer.body["error"], Value::Null);
    let text = g.metrics().await;
    // The pending write and the outcome both failed.
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(2.0));
    assert_eq!(chat_series(&text, "openai", "success"), 2.0);
    // Open mode does not gate readiness on the store.
    wait_ready(&g, 200).await;
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_pending_event_cannot_be_written_no_provider_is_called() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    assert_eq!(wait_ready(&g, 200).await, json!({"status": "ready"}));
    move_audit_table(&g, true).await;

    // Local and public prompts alike, through both APIs, streamed or not.
    for prompt in [SENSITIVE, "a public question"] {
        let answer = g.chat(prompt).await;
        assert_error_shape(
            answer.status,
            &answer.body,
            503,
            "audit_unavailable",
            prompt,
        );
        for stream in [false, true] {
            let response =
                g.t.client
                    .post(format!("{}/v1/chat/completions", g.t.base))
                    .json(&json!({"messages": [{"role": "user", "content": prompt}],
                        "stream": stream}))
                    .send()
                    .await
                    .unwrap();
            assert_eq!(response.status(), 503, "{prompt} stream={stream}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["type"], "api_error", "{body}");
            assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
        }
    }
    assert_eq!(g.local.request_count(), 0, "the local model was called");
    assert_eq!(
        g.public.request_count(),
        0,
        "the public provider was called"
    );
    let text = g.metrics().await;
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(6.0));
    assert_eq!(chat_series(&text, "openai", "success"), 0.0);
    assert_eq!(chat_series(&text, "local", "success"), 0.0);
    let body = wait_ready(&g, 503).await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(body["reason"].as_str().unwrap().contains("audit"), "{body}");

    // Once the store takes writes again, the probe makes the gateway ready
    // and requests are served and audited.
    move_audit_table(&g, false).await;
    wait_ready(&g, 200).await;
    let answer = g.chat(SENSITIVE).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (status, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "success");
    assert_eq!(event["attempts"][0]["provider"], "local", "{event}");
    assert_eq!(g.db.count().await, 1);
    assert_eq!(g.local.request_count(), 1);
    assert_eq!(g.public.request_count(), 0);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn on_postgres_successes_and_failures_are_audited() {
    let db = Db::postgres().await;
    let g = Gateway::start_on(Flavor::OpenAi, Some(db), &[]).await;
    let answer = g.chat(SENSITIVE).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap();
    let (status, event) = g.audit(id).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "success");
    assert_eq!(event["rule"], "sensitive");
    assert_eq!(event["prompt_hash"], sha256_hex(SENSITIVE));
    assert_eq!(event["model"], LOCAL_MODEL);
    check_failure(&g, &g.public, Mode::Status(503), "server_error", 502).await;
    assert_eq!(g.db.count().await, 2);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL (eval \"$(scripts/ci-postgres.sh)\" starts one)"]
async fn on_postgres_two_hundred_concurrent_chats_make_two_hundred_events() {
    let db = Db::postgres().await;
    let g = Gateway::start_on(Flavor::OpenAi, Some(db), &[]).await;
    check_concurrent(&g).await;
    g.finish().await;
}
