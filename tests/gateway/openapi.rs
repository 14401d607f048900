//! The API description against the running server: `/openapi.json` is the
//! document the code builds, `/docs` works with nothing but the gateway,
//! every response the gateway sends matches the schema the document gives for
//! its path, method and status, and every operation the document describes is
//! served, answering one of the statuses it lists.

use crate::support::fake_providers::{FakeProvider, Mode};
use crate::support::server::TestServer;
use policy_mesh::server::openapi::ApiDoc;
use serde_json::{Value, json};
use utoipa::OpenApi;

const POLICY: &str = "version: 1
defaults:
  provider: public
  pricing:
    input_usd_per_1m_tokens: 2.5
rules:
  - id: sensitive
    description: Confidential prompts stay local
    when:
      keywords: [confidential, secret]
      keyword_match: word
      scope: last_user
    route: local
    reason: sensitive_keyword_match
  - id: cheap
    when:
      patterns: ['^hi']
      input_chars: { min: 1, max: 1000 }
      estimated_usd: { max: 0.5 }
      model: ['llama*', '*/llama*']
    route: local
";

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// Checks `body` against the schema the document gives for this response;
/// fails when the document has none.
fn conforms(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        schema.is_object(),
        "the document has no JSON schema for {method} {path} {status}"
    );
    matches_schema(doc, schema, body, &format!("{method} {path} {status}"));
}

/// Validates `body` against `schema`, whose `$ref`s point into the document's components.
fn matches_schema(doc: &Value, schema: &Value, body: &Value, what: &str) {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{body:#}");
}

fn error_schema() -> Value {
    json!({"$ref": "#/components/schemas/ErrorBody"})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_served_is_the_one_the_code_builds() {
    let t = TestServer::start(&[("p.yaml", POLICY)], &[]).await;
    let response = t.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_needs_nothing_but_the_gateway() {
    let t = TestServer::start(&[("p.yaml", POLICY)], &[]).await;
    // `/docs` redirects to `/docs/`; reqwest follows.
    let response = t.get("/docs").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/docs/");
    let page = response.text().await.unwrap();
    assert!(page.to_lowercase().contains("swagger"), "{page}");
    let asset = regex::Regex::new(r#"(?:src|href)="([^"]+)""#).unwrap();
    let assets: Vec<String> = asset
        .captures_iter(&page)
        .map(|c| c[1].to_owned())
        .collect();
    assert!(assets.len() >= 2, "the page loads {assets:?}");
    for asset in &assets {
        assert!(
            !asset.contains("://") && !asset.starts_with("//"),
            "the page loads {asset} from elsewhere"
        );
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let response = t.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    // The initializer points the page at our document.
    let init = t
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_match_the_documented_schemas() {
    let doc = document();
    let t = TestServer::start(&[("p.yaml", POLICY)], &[]).await;

    let health: Value = t.get("/v1/health").await.json().await.unwrap();
    conforms(&doc, "/v1/health", "get", 200, &health);

    let routes = t.routes().await;
    assert_eq!(routes["rules"].as_array().unwrap().len(), 2);
    conforms(&doc, "/v1/routes", "get", 200, &routes);
    // The schema leaves extra keys open, so check that every condition the live
    // policy reports is documented, `model` included.
    let documented = doc["components"]["schemas"]["Conditions"]["properties"]
        .as_object()
        .unwrap();
    assert!(routes["rules"][1]["conditions"]["model"].is_array());
    for rule in routes["rules"].as_array().unwrap() {
        for key in rule["conditions"].as_object().unwrap().keys() {
            assert!(
                documented.contains_key(key),
                "conditions.{key} is not documented"
            );
        }
    }

    for text in ["a secret plan", "hi there", "x"] {
        let decision = t.decide(text).await;
        conforms(&doc, "/v1/decide", "post", 200, &decision);
    }

    let post = |body: &'static str| {
        t.client
            .post(format!("{}/v1/decide", t.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = post("{not json").await.unwrap();
    assert_eq!(response.status(), 400);
    conforms(
        &doc,
        "/v1/decide",
        "post",
        400,
        &response.json().await.unwrap(),
    );
    let response = post(r#"{"messages": []}"#).await.unwrap();
    assert_eq!(response.status(), 422);
    conforms(
        &doc,
        "/v1/decide",
        "post",
        422,
        &response.json().await.unwrap(),
    );

    // Errors of paths and methods the document does not have still take the
    // documented error shape.
    let response = t.get("/v1/nowhere").await;
    assert_eq!(response.status(), 404);
    matches_schema(
        &doc,
        &error_schema(),
        &response.json().await.unwrap(),
        "404",
    );
    let response = t.get("/v1/decide").await;
    assert_eq!(response.status(), 405);
    matches_schema(
        &doc,
        &error_schema(),
        &response.json().await.unwrap(),
        "405",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_and_audit_responses_match_the_documented_schemas() {
    let doc = document();
    let local = FakeProvider::ollama().await;
    let public = FakeProvider::openai().await;
    public.set_mode(Mode::Status(500));
    let mut vars = local.env_vars();
    vars.extend(public.env_vars());
    vars.push(("PUBLIC_LLM_API_KEY".into(), "test-key".into()));
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestServer::start(&[("p.yaml", POLICY)], &env).await;
    let chat = |body: Value| {
        t.client
            .post(format!("{}/v1/chat", t.base))
            .json(&body)
            .send()
    };
    let audit = |id: String| t.client.get(format!("{}/v1/audit/{id}", t.base)).send();

    // Local, and a success.
    let response = chat(json!({"messages": [{"role": "user", "content": "a secret plan"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ok: Value = response.json().await.unwrap();
    assert_eq!(ok["request_id"], header.as_str());
    conforms(&doc, "/v1/chat", "post", 200, &ok);
    let response = audit(header).await.unwrap();
    assert_eq!(response.status(), 200);
    conforms(
        &doc,
        "/v1/audit/{request_id}",
        "get",
        200,
        &response.json().await.unwrap(),
    );

    // Public, and the provider fails.
    let response = chat(json!({"messages": [{"role": "user", "content": "x"}], "model": null}))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let failed: Value = response.json().await.unwrap();
    assert_eq!(failed["provider"], "openai");
    conforms(&doc, "/v1/chat", "post", 502, &failed);
    let response = audit(failed["request_id"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["failure_category"], "server_error");
    conforms(&doc, "/v1/audit/{request_id}", "get", 200, &event);

    // Rejected requests and unknown events.
    let response = chat(json!({"messages": [{"role": "robot", "content": "x"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    conforms(
        &doc,
        "/v1/chat",
        "post",
        422,
        &response.json().await.unwrap(),
    );
    let response = audit(uuid::Uuid::new_v4().to_string()).await.unwrap();
    assert_eq!(response.status(), 404);
    conforms(
        &doc,
        "/v1/audit/{request_id}",
        "get",
        404,
        &response.json().await.unwrap(),
    );
}

#[test]
fn a_schema_mismatch_is_caught() {
    // The check above must be able to fail: a decision without its trace, or
    // with a provider the API does not have, is refused.
    let doc = document();
    let schema = json!({"$ref": "#/components/schemas/Decision"});
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let good = json!({"provider": "local", "route": "local", "fallback": [], "rule": null,
        "client": "anonymous", "sensitive": false,
        "detections": [], "reason_codes": ["default"], "policy_version": "ab", "trace": []});
    assert!(validator.is_valid(&good));
    let mut no_trace = good.clone();
    no_trace.as_object_mut().unwrap().remove("trace");
    assert!(!validator.is_valid(&no_trace));
    let mut bad_provider = good.clone();
    bad_provider["provider"] = json!(7);
    assert!(!validator.is_valid(&bad_provider));
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_responses_match_the_documented_schemas() {
    let doc = document();
    let local = FakeProvider::ollama().await;
    let public = FakeProvider::anthropic().await;
    let mut vars = local.env_vars();
    vars.extend(public.env_vars());
    vars.push(("PUBLIC_LLM_API_KEY".into(), "test-key".into()));
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let t = TestServer::start(&[("p.yaml", POLICY)], &env).await;
    let complete = |body: Value| {
        t.client
            .post(format!("{}/v1/chat/completions", t.base))
            .json(&body)
            .send()
    };
    let user = |text: &str| json!([{"role": "user", "content": text}]);

    let response = complete(json!({"messages": user("a secret plan")}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    conforms(
        &doc,
        "/v1/chat/completions",
        "post",
        200,
        &response.json().await.unwrap(),
    );

    // Each chunk of a stream, usage chunk included, is a documented chunk.
    let response = complete(json!({"messages": user("x"), "stream": true,
                                   "stream_options": {"include_usage": true}}))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let chunk_schema = json!({"$ref": "#/components/schemas/ChatCompletionChunk"});
    let mut chunks = 0;
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data != "[DONE]" {
            chunks += 1;
            let chunk: Value = serde_json::from_str(data).unwrap();
            matches_schema(&doc, &chunk_schema, &chunk, "a stream chunk");
        }
    }
    assert!(chunks >= 3, "{text}");

    public.set_mode(Mode::Status(503));
    let response = complete(json!({"messages": user("x")})).await.unwrap();
    assert_eq!(response.status(), 502);
    conforms(
        &doc,
        "/v1/chat/completions",
        "post",
        502,
        &response.json().await.unwrap(),
    );
    let response = complete(json!({"messages": [{"role": "robot", "content": "x"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    conforms(
        &doc,
        "/v1/chat/completions",
        "post",
        400,
        &response.json().await.unwrap(),
    );

    let response = t.get("/v1/models").await;
    conforms(
        &doc,
        "/v1/models",
        "get",
        200,
        &response.json().await.unwrap(),
    );
    let response = t.get("/v1/models/policy-mesh").await;
    conforms(
        &doc,
        "/v1/models/{model}",
        "get",
        200,
        &response.json().await.unwrap(),
    );
    let response = t.get("/v1/models/unknown").await;
    assert_eq!(response.status(), 404);
    conforms(
        &doc,
        "/v1/models/{model}",
        "get",
        404,
        &response.json().await.unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served_with_a_documented_status() {
    let doc = document();
    let t = TestServer::start(&[("p.yaml", POLICY)], &[]).await;
    // Redirects are answers of their own here (`/docs` documents its 303).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{request_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{model}", "policy-mesh");
        assert!(
            !concrete.contains('{'),
            "no value for a parameter of {path}"
        );
        for (method, operation) in item.as_object().unwrap() {
            let request = match method.as_str() {
                "get" => client.get(format!("{}{concrete}", t.base)),
                // An empty object: every body is refused by its parser, after
                // routing, with a documented error.
                "post" => client
                    .post(format!("{}{concrete}", t.base))
                    .header("content-type", "application/json")
                    .body("{}"),
                other => panic!("{other} {path}: no request for this method"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("no endpoint"),
                "{method} {path} is documented but not served: {status} {body}"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .unwrap()
                    .contains_key(&status.to_string()),
                "{method} {path} answered {status}, which its operation does not list"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 17);
}
