//! Bad input: rejected before any provider, audit event or metric, and the
//! server goes on.

use super::*;

async fn post_raw(g: &Gateway, body: Vec<u8>) -> (u16, Value) {
    let response =
        g.t.client
            .post(format!("{}/v1/chat", g.t.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_rejected_before_any_provider_audit_or_metric() {
    let g = Gateway::start(Flavor::OpenAi, &[("MAX_BODY_BYTES", "4096")]).await;
    let metrics_before = chat_metric_lines(&g.metrics().await);
    assert!(!metrics_before.is_empty());

    let deep = format!(
        r#"{{"messages":[{{"role":"user","content":"x"}}],"x":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"messages\": [".to_vec(),
            400,
            "invalid_json",
        ),
        ("empty body", Vec::new(), 400, "invalid_json"),
        (
            "invalid UTF-8",
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "lone surrogate",
            br#"{"messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
            400,
            "invalid_json",
        ),
        ("deep nesting", deep.into_bytes(), 400, "invalid_json"),
        ("not an object", b"[1]".to_vec(), 422, "invalid_request"),
        (
            "messages not a list",
            br#"{"messages":"hi"}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "empty messages",
            br#"{"messages":[]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "unknown role",
            br#"{"messages":[{"role":"tool","content":"a"}]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "content not a string",
            br#"{"messages":[{"role":"user","content":5}]}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "model not a string",
            br#"{"messages":[{"role":"user","content":"a"}],"model":3}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "over MAX_BODY_BYTES",
            format!(
                r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
                "a".repeat(5000)
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "100 000 tiny messages",
            format!(
                r#"{{"messages":[{}]}}"#,
                vec![r#"{"role":"user","content":""}"#; 100_000].join(",")
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
    ];
    let addr = g.t.server.addr().to_string();
    for (what, body, status, kind) in cases {
        // Each with Content-Length, then chunked (no Content-Length).
        for chunked in [false, true] {
            let (got, json, text) = raw_post(&addr, "/v1/chat", body.clone(), chunked).await;
            let what = format!("{what} (chunked: {chunked}): {text}");
            assert_error_shape(got, &json, status, kind, &what);
            assert_eq!(g.t.get("/v1/health").await.status(), 200, "after {what}");
        }
    }
    // The same through an HTTP client, for a body small enough to be sent whole.
    let (status, json) = post_raw(&g, br#"{"messages":[]}"#.to_vec()).await;
    assert_error_shape(status, &json, 422, "invalid_request", "reqwest");

    assert_eq!(g.public.request_count(), 0);
    assert_eq!(g.local.request_count(), 0);
    assert_eq!(g.db.count().await, 0);
    assert_eq!(chat_metric_lines(&g.metrics().await), metrics_before);
    assert_eq!(g.t.get("/v1/health").await.status(), 200);
    // And the gateway still chats.
    assert_eq!(g.chat("hello").await.status, 200);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_tiny_messages_within_the_limit_are_served() {
    let g = Gateway::start(Flavor::OpenAi, &[("MAX_BODY_BYTES", "8388608")]).await;
    let messages = vec![json!({"role": "user", "content": "x"}); 100_000];
    let answer = g.chat_json(&json!({ "messages": messages })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = g.public.single_request().json();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 100_000);
    let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
    assert_eq!(event["prompt_length"], 100_000);
    assert_eq!(g.t.get("/v1/health").await.status(), 200);
    g.finish().await;
}
