//! Hot reload through the real server: every way a policy gets saved, broken
//! edits that must keep the last good policy serving, and reloads under load.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::server::{TestServer, metric, policy, version_of, write_via_rename};

#[tokio::test(flavor = "multi_thread")]
async fn write_in_place() {
    let (v1, v2) = (policy(1), policy(2));
    let t = TestServer::start(&[("a.yaml", &v1)], &[]).await;
    let before = t.routes().await;
    assert_eq!(before["version"], version_of(&[("a.yaml", &v1)]));
    std::fs::write(t.path("a.yaml"), &v2).unwrap();
    let after = t.wait_version(&version_of(&[("a.yaml", &v2)])).await;
    assert_eq!(after["reload"]["successes"], 1);
    assert_eq!(after["rules"][0]["id"], "rule-2");
    assert_ne!(after["loaded_at"], before["loaded_at"]);
    assert_eq!(after["loaded_at"], after["reload"]["last_success_at"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn write_temp_then_rename_over_repeatedly() {
    let t = TestServer::start(&[("a.yaml", &policy(0))], &[]).await;
    // More than once: watching the file itself would go silent after the first.
    for n in 1..=3 {
        write_via_rename(&t.path("a.yaml"), &policy(n));
        t.wait_version(&version_of(&[("a.yaml", &policy(n))])).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_then_recreate() {
    let t = TestServer::start(&[("a.yaml", &policy(0)), ("b.yaml", &policy(1))], &[]).await;
    for n in 2..=3 {
        std::fs::remove_file(t.path("b.yaml")).unwrap();
        t.wait_version(&version_of(&[("a.yaml", &policy(0))])).await;
        std::fs::write(t.path("b.yaml"), policy(n)).unwrap();
        t.wait_version(&version_of(&[
            ("a.yaml", &policy(0)),
            ("b.yaml", &policy(n)),
        ]))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_added_and_removed() {
    let t = TestServer::start(&[("10-a.yaml", &policy(1))], &[]).await;
    std::fs::write(t.path("20-b.yml"), policy(2)).unwrap();
    let both = t
        .wait_version(&version_of(&[
            ("10-a.yaml", &policy(1)),
            ("20-b.yml", &policy(2)),
        ]))
        .await;
    let ids: Vec<_> = both["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, ["rule-1", "rule-2"]);

    std::fs::remove_file(t.path("10-a.yaml")).unwrap();
    let last_good = version_of(&[("20-b.yml", &policy(2))]);
    t.wait_version(&last_good).await;

    // No policy file at all is a failed reload; the last good one keeps serving.
    std::fs::remove_file(t.path("20-b.yml")).unwrap();
    let failed = t.wait_error().await;
    assert_eq!(failed["version"], last_good);
    assert!(
        failed["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("no policy files"),
        "{failed:#}"
    );
    assert_eq!(t.decide("needle-2").await["policy_version"], last_good);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_configmap_symlink_swap() {
    // The layout kubelet writes: files are symlinks through `..data`, itself a
    // symlink to a timestamped folder; an update swaps `..data` atomically.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let publish = |stamp: &str, text: &str| {
        let folder = root.join(stamp);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("policy.yaml"), text).unwrap();
        symlink(stamp, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    };
    publish("..2026_11_25_10_00_00.000000001", &policy(1));
    symlink("..data/policy.yaml", root.join("policy.yaml")).unwrap();
    let folder = root.to_str().unwrap().to_owned();
    let t = TestServer::start_with(dir, &[("POLICY_DIR", folder.as_str())], &[]).await;
    assert_eq!(
        t.routes().await["version"],
        version_of(&[("policy.yaml", &policy(1))])
    );

    for n in 2..=3 {
        let old = std::fs::read_link(t.path("..data")).unwrap();
        publish(&format!("..2026_11_25_10_00_0{n}.000000001"), &policy(n));
        std::fs::remove_dir_all(t.path(old.to_str().unwrap())).unwrap();
        t.wait_version(&version_of(&[("policy.yaml", &policy(n))]))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_write_fails_and_completing_it_succeeds() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    let old = version_of(&[("a.yaml", &policy(1))]);
    let full = policy(2);
    // Cut inside the `route` key: what is there is not a valid policy.
    let cut = full.find("route:").unwrap() + 3;
    let mut file = std::fs::File::create(t.path("a.yaml")).unwrap();
    file.write_all(&full.as_bytes()[..cut]).unwrap();
    file.flush().unwrap();
    let failed = t.wait_error().await;
    assert_eq!(failed["version"], old);
    assert!(
        failed["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("a.yaml"),
        "{failed:#}"
    );
    file.write_all(&full.as_bytes()[cut..]).unwrap();
    file.flush().unwrap();
    let done = t.wait_version(&version_of(&[("a.yaml", &full)])).await;
    assert!(done["reload"]["last_error"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_writes_costs_few_reloads_and_the_last_write_wins() {
    let t = TestServer::start(&[("a.yaml", &policy(0))], &[]).await;
    let path = t.path("a.yaml");
    let writes = 1000;
    // About a second of writes, as fast as an editor's autosave or a sync tool.
    for n in 1..=writes {
        std::fs::write(&path, policy(n)).unwrap();
        if n % 10 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let done = t
        .wait_version(&version_of(&[("a.yaml", &policy(writes))]))
        .await;
    let reloads = done["reload"]["successes"].as_u64().unwrap()
        + done["reload"]["failures"].as_u64().unwrap();
    assert!(reloads >= 1);
    assert!(reloads < 250, "{reloads} reloads for {writes} writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_file_rename_over() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy(1)).unwrap();
    std::fs::write(dir.path().join("unrelated.yaml"), "not: [a policy").unwrap();
    let file_str = file.to_str().unwrap().to_owned();
    let t = TestServer::start_with(dir, &[("POLICY_FILE", file_str.as_str())], &[]).await;
    let first = t.routes().await;
    assert_eq!(first["version"], version_of(&[("policy.yaml", &policy(1))]));
    assert_eq!(first["sources"][0]["path"], file_str);
    for n in 2..=3 {
        write_via_rename(&file, &policy(n));
        t.wait_version(&version_of(&[("policy.yaml", &policy(n))]))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_mode_sees_changes() {
    let t = TestServer::start(
        &[("a.yaml", &policy(1))],
        &[("POLICY_WATCH", "poll"), ("POLICY_POLL_INTERVAL_MS", "50")],
    )
    .await;
    std::fs::write(t.path("a.yaml"), policy(2)).unwrap();
    t.wait_version(&version_of(&[("a.yaml", &policy(2))])).await;
    write_via_rename(&t.path("a.yaml"), &policy(3));
    t.wait_version(&version_of(&[("a.yaml", &policy(3))])).await;
    std::fs::write(t.path("b.yaml"), policy(4)).unwrap();
    t.wait_version(&version_of(&[
        ("a.yaml", &policy(3)),
        ("b.yaml", &policy(4)),
    ]))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_edits_keep_the_last_good_policy_until_the_next_good_one() {
    let good = policy(1);
    let t = TestServer::start(
        &[("00-base.yaml", &good), ("10-edit.yaml", &policy(2))],
        &[],
    )
    .await;
    let mut live = version_of(&[("00-base.yaml", &good), ("10-edit.yaml", &policy(2))]);
    let broken = [
        ("YAML syntax", "version: 1\nrules: [\n".to_owned()),
        (
            "unknown key",
            policy(3).replace("route: local", "rout: local"),
        ),
        ("duplicate id", policy(3).replace("rule-3", "rule-1")),
        (
            "bad regex",
            policy(3).replace("keywords: [needle-3]", "patterns: ['(unclosed']"),
        ),
    ];
    for (i, (what, text)) in broken.iter().enumerate() {
        // Saved atomically, so the only states on disk are the old and the new file.
        write_via_rename(&t.path("10-edit.yaml"), text);
        let failed = t.wait_error().await;
        assert_eq!(failed["version"], live, "{what}");
        let error = failed["reload"]["last_error"].as_str().unwrap();
        assert!(error.contains("10-edit.yaml"), "{what}: {error}");
        // The old policy still decides.
        let decision = t.decide("needle-1").await;
        assert_eq!(decision["policy_version"], live, "{what}");
        assert_eq!(decision["rule"], "rule-1", "{what}");
        let text = t.metrics().await;
        assert_eq!(
            metric(&text, "policy_last_reload_success"),
            Some(0.0),
            "{what}"
        );
        assert!(
            metric(&text, "policy_reloads_total{result=\"failure\"}").unwrap() >= (i + 1) as f64
        );

        // The next good edit clears the error.
        let fixed = policy(10 + i);
        write_via_rename(&t.path("10-edit.yaml"), &fixed);
        live = version_of(&[("00-base.yaml", &good), ("10-edit.yaml", &fixed)]);
        let ok = t.wait_version(&live).await;
        assert!(ok["reload"]["last_error"].is_null(), "{what}");
        assert_eq!(ok["reload"]["successes"], (i + 1) as u64);
        // Once the new version serves, later reloads can only find it unchanged,
        // so the counters are settled and the metrics must agree with them.
        let text = t.metrics().await;
        let routes = t.routes().await;
        assert_eq!(metric(&text, "policy_last_reload_success"), Some(1.0));
        assert_eq!(
            metric(&text, "policy_reloads_total{result=\"failure\"}"),
            routes["reload"]["failures"].as_f64()
        );
        assert_eq!(
            metric(&text, "policy_reloads_total{result=\"success\"}"),
            Some((i + 1) as f64)
        );
        assert_eq!(
            metric(&text, &format!("policy_info{{version=\"{live}\"}}")),
            Some(1.0)
        );
        assert_eq!(text.matches("policy_info{").count(), 1, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_save_is_not_counted_and_clears_an_error() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    let version = version_of(&[("a.yaml", &policy(1))]);
    write_via_rename(&t.path("a.yaml"), "version: 1\nrules: [\n");
    let failed = t.wait_error().await;
    write_via_rename(&t.path("a.yaml"), &policy(1));
    let ok = t
        .wait_routes("the error cleared", |r| r["reload"]["status"] == "ok")
        .await;
    assert_eq!(ok["version"], version);
    assert_eq!(ok["loaded_at"], failed["loaded_at"]);
    assert_eq!(ok["reload"]["successes"], 0);
    assert!(ok["reload"]["failures"].as_u64().unwrap() >= 1);
    assert!(ok["reload"]["last_error"].is_null());
    let text = t.metrics().await;
    assert_eq!(
        metric(&text, "policy_reloads_total{result=\"failure\"}"),
        ok["reload"]["failures"].as_f64()
    );
    assert_eq!(
        metric(&text, "policy_reloads_total{result=\"success\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&text, "policy_last_reload_success"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load_never_fails_a_request() {
    let t = Arc::new(TestServer::start(&[("a.yaml", &policy(0))], &[]).await);
    let written: Vec<String> = (0..=100)
        .map(|n| version_of(&[("a.yaml", &policy(n))]))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (t, stop) = (Arc::clone(&t), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = t
                    .client
                    .post(format!("{}/v1/decide", t.base))
                    .json(&serde_json::json!({"messages": [{"role": "user", "content": "x"}]}))
                    .send()
                    .await
                    .expect("request succeeds");
                assert_eq!(response.status(), 200);
                let body: serde_json::Value = response.json().await.expect("JSON body");
                seen.push(body["policy_version"].as_str().unwrap().to_owned());
            }
            seen
        }));
    }
    for (n, version) in written.iter().enumerate().skip(1) {
        write_via_rename(&t.path("a.yaml"), &policy(n));
        t.wait_version(version).await;
    }
    stop.store(true, Ordering::Relaxed);
    let allowed: HashSet<&String> = written.iter().collect();
    let mut total = 0;
    let mut distinct = HashSet::new();
    for client in clients {
        for version in client.await.expect("client finished without failing") {
            assert!(allowed.contains(&version), "unknown version {version}");
            distinct.insert(version);
            total += 1;
        }
    }
    assert!(total > 0);
    assert!(distinct.len() > 1, "the clients saw only one version");
    let routes = t.routes().await;
    assert_eq!(routes["reload"]["successes"], 100);
    assert_eq!(routes["reload"]["failures"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_the_policy_does_not_trigger_reloads() {
    // The reload itself opens every file; if that counted as a change the
    // server would reload forever. Nothing is written here, so after the first
    // swap settles `last_attempt_at` must stay put. Waiting a fixed time is the
    // only way to observe that nothing happens.
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    std::fs::write(t.path("a.yaml"), policy(2)).unwrap();
    t.wait_version(&version_of(&[("a.yaml", &policy(2))])).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let settled = t.routes().await;
    let _ = t.decide("x").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.routes().await["reload"], settled["reload"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_folder_is_watched_again_after_a_forced_reload() {
    let t = TestServer::start(&[("a.yaml", &policy(1))], &[]).await;
    let folder = t.dir.path().to_path_buf();
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.yaml"), policy(2)).unwrap();
    // The old watch ended with the old folder; a forced reload (SIGHUP) picks
    // up the new one and watches it.
    t.server.reload();
    t.wait_version(&version_of(&[("a.yaml", &policy(2))])).await;
    std::fs::write(folder.join("a.yaml"), policy(3)).unwrap();
    t.wait_version(&version_of(&[("a.yaml", &policy(3))])).await;
}

const DEFAULT_PUBLIC: &str = "version: 1\ndefaults:\n  provider: public\nrules: []\n";
const SENSITIVE: &str = "version: 1\nrules:\n  - id: private\n    sensitive: true\n    when:\n      keywords: [nightingale]\n    route: local\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_rule_missing_for_a_moment_never_lets_a_decision_go_public() {
    let files = [
        ("00-defaults.yaml", DEFAULT_PUBLIC),
        ("10-sensitive.yaml", SENSITIVE),
    ];
    let t = TestServer::start(&files, &[]).await;
    let version = version_of(&files);
    let aside = tempfile::tempdir().unwrap();
    let away = aside.path().join("10-sensitive.yaml");
    // What a `git checkout` or an `rsync` does: the file gone for a moment.
    for _ in 0..3 {
        std::fs::rename(t.path("10-sensitive.yaml"), &away).unwrap();
        let gone = std::time::Instant::now();
        let mut decisions = 0;
        while gone.elapsed() < std::time::Duration::from_millis(400) {
            let d = t.decide("the nightingale plans").await;
            assert_eq!(d["route"], "local", "{d}");
            decisions += 1;
        }
        std::fs::rename(&away, t.path("10-sensitive.yaml")).unwrap();
        assert!(decisions > 0);
    }
    assert_eq!(t.routes().await["version"], version);

    // Removed for good, it goes once the folder has been quiet for 2 s.
    std::fs::remove_file(t.path("10-sensitive.yaml")).unwrap();
    let routes = t
        .wait_routes("the sensitive rule gone", |r| {
            r["version"] == version_of(&files[..1]) && r["reload"]["status"] == "ok"
        })
        .await;
    assert_eq!(routes["rules"], serde_json::json!([]), "{routes}");
    assert_eq!(t.decide("the nightingale plans").await["route"], "public");
}
