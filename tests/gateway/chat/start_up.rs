//! Start-up refused on bad provider or audit settings.

use super::*;

async fn start_error(env: &[(&str, &str)]) -> StartError {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let folder = dir.path().to_str().unwrap().to_owned();
    let mut pairs = vec![
        ("BIND_ADDR", "127.0.0.1:0"),
        ("POLICY_DIR", folder.as_str()),
    ];
    pairs.extend_from_slice(env);
    server::start(&Env::from_pairs(pairs))
        .await
        .expect_err("start-up fails")
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_fails_on_bad_provider_or_audit_settings() {
    for (name, value) in [
        ("PROVIDER_TIMEOUT_SECONDS", "soon"),
        ("LOCAL_LLM_URL", "not a url"),
        ("AUDIT_ENABLED", "maybe"),
        ("DATABASE_URL", "mysql://db/audit"),
    ] {
        let err = start_error(&[(name, value)]).await;
        assert!(err.to_string().starts_with(name), "{name}: {err}");
    }
    // A folder that cannot be made: its parent is a file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let url = format!("sqlite://{}/file/sub/audit.db", dir.path().display());
    let err = start_error(&[("DATABASE_URL", url.as_str())]).await;
    assert!(matches!(err, StartError::Audit(_)), "{err}");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    // A database that does not answer: named without its password.
    let down = closed_port_url().await.replace("http://", "");
    let url = format!("postgres://audit:pw-canary-5150@{down}/audit");
    let err = start_error(&[("DATABASE_URL", url.as_str())]).await;
    let text = err.to_string();
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(!text.contains("pw-canary-5150"), "{text}");
    assert!(!format!("{err:?}").contains("pw-canary-5150"), "{err:?}");
}

// --- The real binary: logs, secrets and the database file ----------------
#[test]
fn a_bad_database_url_exits_1_naming_the_variable_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    for url in [
        "sqlite://file/sub/audit.db".to_owned(),
        "postgres://u:pw-canary-8080@[::1/x".to_owned(),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_policy-mesh"))
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("POLICY_DIR", dir.path().join("policies"))
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("DATABASE_URL"), "{url}: {stderr}");
        assert!(!stderr.contains("pw-canary-8080"), "{stderr}");
    }
}

// --- PostgreSQL ------------------------------------------------------------
