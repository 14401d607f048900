//! Which provider answers: the policy's choice, and the local-only guarantee
//! when the local model is down.

use super::*;

/// Checks one successful chat through `public` (or the local fake for a
/// sensitive prompt): the answer, the provider's request, the audit event and
/// the metrics.
async fn check_success(public: Flavor, sensitive: bool) {
    let g = Gateway::start(public, &[]).await;
    let (fake, provider, rule, reason) = match (sensitive, public) {
        (true, _) => (
            &g.local,
            "local",
            json!("sensitive"),
            "sensitive_keyword_match",
        ),
        (false, Flavor::OpenAi) => (&g.public, "openai", Value::Null, "default"),
        (false, _) => (&g.public, "anthropic", Value::Null, "default"),
    };
    fake.set_reply(["The answer ", "is 42."]);
    let prompt = if sensitive {
        SENSITIVE
    } else {
        "what is the answer?"
    };
    let body = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": prompt}
    ], "model": null});
    let answer = g.chat_json(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let b = &answer.body;
    let version = g.t.routes().await["version"].clone();
    let id = b["request_id"].as_str().unwrap().to_owned();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(answer.request_id_header.as_deref(), Some(id.as_str()));
    assert_eq!(
        *b,
        json!({"request_id": id, "provider": provider, "attempts": 1,
               "reason_codes": [reason], "rule": rule, "sensitive": sensitive, "detections": [], "policy_version": version,
               "content": "The answer is 42.", "error": null})
    );

    let sent = fake.single_request().json();
    assert_eq!(
        sent["model"],
        if sensitive { LOCAL_MODEL } else { PUBLIC_MODEL }
    );
    let other = if sensitive { &g.public } else { &g.local };
    assert_eq!(other.request_count(), 0);

    let (status, event) = g.audit(&id).await;
    assert_eq!(status, 200, "{event}");
    assert!(event["latency_ms"].as_f64().unwrap() >= 0.0, "{event}");
    let created = event["created_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).unwrap();
    let joined = format!("Be brief.\n{prompt}");
    let mut expected = json!({
        "request_id": id, "decision": format!("provider={provider},reason_codes={reason}"),
        "provider": provider, "rule": rule, "reason_codes": [reason],
        "policy_version": version, "status": "success", "failure_category": null,
        "prompt_hash": sha256_hex(&joined),
        "prompt_length": joined.chars().count() - 1,
        "model": if sensitive { LOCAL_MODEL } else { PUBLIC_MODEL },
        "sensitive": sensitive,
        "detections": [],
        "attempts": [{"provider": provider, "outcome": "success",
            "latency_ms": event["attempts"][0]["latency_ms"]}],
        "client_api": "chat",
        "client": "anonymous",
    });
    expected["latency_ms"] = event["latency_ms"].clone();
    // The call is part of the request's time.
    assert!(
        event["attempts"][0]["latency_ms"].as_f64().unwrap()
            <= event["latency_ms"].as_f64().unwrap(),
        "{event}"
    );
    expected["created_at"] = event["created_at"].clone();
    // The id of the process that wrote it.
    uuid::Uuid::try_parse(event["instance_id"].as_str().unwrap()).unwrap();
    expected["instance_id"] = event["instance_id"].clone();
    assert_eq!(event, expected);
    assert_eq!(g.db.count().await, 1);

    let text = g.metrics().await;
    assert_eq!(chat_series(&text, provider, "success"), 1.0);
    assert_eq!(chat_series(&text, provider, "failure"), 0.0);
    assert_eq!(latency_count(&text, provider), 1.0);
    let rule_label = rule.as_str().unwrap_or("");
    assert_eq!(
        metric(
            &text,
            &format!(
                "policy_decisions_total{{client=\"anonymous\",reason=\"{reason}\",rule=\"{rule_label}\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(metric(&text, "audit_write_failures_total"), Some(0.0));

    // A model named in the request is sent to a provider that serves it
    // (the public one serves any name by default) and audited; the local
    // one serves only LOCAL_LLM_MODELS, so it gets its own model.
    let answer = g
        .chat_json(
            &json!({"messages": [{"role": "user", "content": prompt}], "model": "chosen-model"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = if sensitive {
        LOCAL_MODEL
    } else {
        "chosen-model"
    };
    assert_eq!(fake.requests()[1].json()["model"], sent);
    let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
    assert_eq!(event["model"], sent);
    g.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_chat_is_answered_by_the_local_model() {
    check_success(Flavor::OpenAi, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_chat_is_answered_by_openai() {
    check_success(Flavor::OpenAi, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_chat_is_answered_by_anthropic() {
    check_success(Flavor::Anthropic, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_prompt_never_reaches_the_public_provider_when_local_is_down() {
    let down = closed_port_url().await;
    let g = Gateway::start(Flavor::OpenAi, &[("LOCAL_LLM_URL", down.as_str())]).await;
    for _ in 0..3 {
        let answer = g.chat(SENSITIVE).await;
        assert_eq!(answer.status, 502, "{}", answer.body);
        assert_eq!(answer.body["provider"], "local");
        assert_eq!(answer.body["rule"], "sensitive");
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap()
                .starts_with("connect_error: "),
            "{}",
            answer.body
        );
        let (_, event) = g.audit(answer.body["request_id"].as_str().unwrap()).await;
        assert_eq!(event["failure_category"], "connect_error");
    }
    assert_eq!(g.public.request_count(), 0);
    assert_eq!(g.public.connection_count(), 0);
    let text = g.metrics().await;
    assert_eq!(chat_series(&text, "local", "failure"), 3.0);
    assert_eq!(chat_series(&text, "openai", "success"), 0.0);
    assert_eq!(chat_series(&text, "openai", "failure"), 0.0);
    g.finish().await;
}
