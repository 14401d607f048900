//! A failing provider: answered, audited and counted.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn each_provider_failure_is_answered_audited_and_counted() {
    let g = Gateway::start(Flavor::OpenAi, &[]).await;
    for (mode, category) in [
        (Mode::Status(401), "auth_error"),
        (Mode::Status(403), "auth_error"),
        (Mode::Status(429), "rate_limited"),
        (Mode::Status(500), "server_error"),
        (Mode::Garbage, "bad_response"),
        (Mode::MissingReply, "bad_response"),
        (Mode::Close, "connect_error"),
    ] {
        check_failure(&g, &g.public, mode, category, 502).await;
    }
    let calls = g.public.request_count();
    assert_eq!(calls, 7, "one call per chat, no retry");
    assert_eq!(g.db.count().await, 7);
    assert_eq!(g.local.request_count(), 0, "never a fallback");
    g.finish().await;

    let g = Gateway::start(Flavor::OpenAi, &[("PROVIDER_TIMEOUT_SECONDS", "1")]).await;
    check_failure(&g, &g.public, Mode::Slow, "timeout", 504).await;
    check_failure(&g, &g.local, Mode::Status(500), "server_error", 502).await;
    g.finish().await;

    // No key: auth_error without a request.
    let g = Gateway::start(Flavor::OpenAi, &[("PUBLIC_LLM_API_KEY", "")]).await;
    let answer = g.chat("hello").await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .starts_with("auth_error: "),
        "{}",
        answer.body
    );
    assert_eq!(g.public.request_count(), 0);
    g.finish().await;
}
