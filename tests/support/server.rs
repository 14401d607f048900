//! Shared helpers for the server tests: a real server on `127.0.0.1:0` over a
//! temporary policy folder, and waits on conditions with a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use policy_mesh::env::Env;
use policy_mesh::policy::{SourceFile, parse_policy};
use policy_mesh::server::{self, Server};
use serde_json::Value;

/// How long a condition may take before the test fails. Generous: a reload's
/// one second is measured by the benchmark, not asserted here.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A valid policy, distinct for each `n`.
pub fn policy(n: usize) -> String {
    format!(
        "version: 1\nrules:\n  - id: rule-{n}\n    description: version {n}\n    when:\n      keywords: [needle-{n}]\n    route: local\n    reason: reason_{n}\n"
    )
}

/// The version the library computes for these files (name, contents) in load
/// order, with no overlay.
pub fn version_of(files: &[(&str, &str)]) -> String {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(name, text)| SourceFile {
            path: format!("policies/{name}").into(),
            name: (*name).to_owned(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    parse_policy(&files, &Env::default())
        .expect("the test policy is valid")
        .version
}

/// A server started in process on a temporary policy folder, with its audit
/// store in a temporary folder of its own (`audit.db` in [`TestServer::data`])
/// unless the caller's variables say otherwise.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub client: reqwest::Client,
    pub base: String,
    /// Sent by [`TestServer::get`] (and so `routes`, `metrics`) when the
    /// server asks for client keys.
    pub admin_key: Option<String>,
}

impl TestServer {
    /// Writes `files` into a new folder and serves it (`POLICY_DIR`), with `env` added.
    pub async fn start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let folder = dir.path().to_str().unwrap().to_owned();
        Self::start_with(dir, &[("POLICY_DIR", folder.as_str())], env).await
    }

    /// Serves a folder prepared by the caller, with `source` naming it.
    pub async fn start_with(
        dir: tempfile::TempDir,
        source: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Self {
        // Not in the policy folder: the watcher would see every audit write.
        let data = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", data.path().join("audit.db").display());
        let mut pairs: Vec<(String, String)> = vec![
            ("BIND_ADDR".into(), "127.0.0.1:0".into()),
            ("DATABASE_URL".into(), database),
        ];
        pairs.extend(source.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let server = server::start(&Env::from_pairs(pairs))
            .await
            .unwrap_or_else(|e| panic!("server starts: {e}"));
        let base = format!("http://{}", server.addr());
        TestServer {
            server,
            dir,
            data,
            client: reqwest::Client::new(),
            base,
            admin_key: None,
        }
    }

    /// The default audit database file.
    pub fn db_path(&self) -> PathBuf {
        self.data.path().join("audit.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = &self.admin_key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap()
    }

    pub async fn routes(&self) -> Value {
        let response = self.get("/v1/routes").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn decide(&self, text: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/v1/decide", self.base))
            .json(&serde_json::json!({"messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/v1/metrics").await.text().await.unwrap()
    }

    /// Polls `/v1/routes` until `cond` holds; panics with the last body after
    /// [`DEADLINE`].
    pub async fn wait_routes(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let routes = self.routes().await;
            if cond(&routes) {
                return routes;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; /v1/routes: {routes:#}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `version` serves with `reload.status` ok.
    pub async fn wait_version(&self, version: &str) -> Value {
        self.wait_routes(&format!("version {version}"), |r| {
            r["version"] == version && r["reload"]["status"] == "ok"
        })
        .await
    }

    /// Waits until a reload has failed (`reload.status` error).
    pub async fn wait_error(&self) -> Value {
        self.wait_routes("a failed reload", |r| r["reload"]["status"] == "error")
            .await
    }
}

/// Writes `text` to `path` through a temporary file renamed over it, as most
/// editors and `kubectl cp` do.
pub fn write_via_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The value of one metric series in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
