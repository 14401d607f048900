//! Reload latency: the time from a policy file being saved to the new version
//! answering on `/v1/routes`, debounce included, through the real server.
//!
//! `cargo bench --bench reload_latency` (set `RELOAD_TRIALS` to change the
//! number of trials, 50 by default). Each trial saves the file the way editors
//! do (write a temporary file, rename it over), then polls `/v1/routes` every
//! millisecond until the new version serves. Prints p50, p95 and max.

use std::time::{Duration, Instant};

use policy_mesh::env::Env;
use policy_mesh::policy::{SourceFile, parse_policy};

/// A policy the size of a real one: 20 rules, 10 keywords and a pattern each.
fn policy(n: usize) -> String {
    let mut text = String::from("version: 1\ndefaults:\n  provider: local\nrules:\n");
    for r in 0..20 {
        let keywords: Vec<String> = (0..10).map(|k| format!("word-{n}-{r}-{k}")).collect();
        text.push_str(&format!(
            "  - id: rule-{r}\n    description: rule {r} of version {n}\n    when:\n      keywords: [{}]\n      patterns: ['\\b{r}-\\d{{4}}\\b']\n    route: {}\n",
            keywords.join(", "),
            if r % 2 == 0 { "local" } else { "public" },
        ));
    }
    text
}

fn version(text: &str) -> String {
    let file = SourceFile {
        path: "policies/policy.yaml".into(),
        name: "policy.yaml".into(),
        bytes: text.as_bytes().to_vec(),
    };
    parse_policy(&[file], &Env::default())
        .expect("the benchmark policy is valid")
        .version
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let trials: usize = std::env::var("RELOAD_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, policy(0)).expect("write");
        let env = Env::from_pairs([
            ("BIND_ADDR", "127.0.0.1:0"),
            ("POLICY_DIR", dir.path().to_str().expect("UTF-8 path")),
            ("RUST_LOG", "warn"),
        ]);
        let server = policy_mesh::server::start(&env).await.expect("server starts");
        let url = format!("http://{}/v1/routes", server.addr());
        let client = reqwest::Client::new();
        let mut samples = Vec::with_capacity(trials);
        for n in 1..=trials {
            let text = policy(n);
            let want = version(&text);
            let tmp = dir.path().join(".policy.yaml.tmp");
            let started = Instant::now();
            std::fs::write(&tmp, &text).expect("write");
            std::fs::rename(&tmp, &file).expect("rename");
            loop {
                let routes: serde_json::Value = client
                    .get(&url)
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("JSON");
                if routes["version"] == want.as_str() {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(10), "reload never came");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "reload latency over {trials} trials (save -> new version serving): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 95.0)),
            ms(samples[samples.len() - 1]),
        );
        server.shutdown().await.expect("clean shutdown");
    });
}
