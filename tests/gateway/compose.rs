//! The container setup, checked without a container engine: `compose.yaml` is
//! parsed and its wiring checked (ports, addresses between services, the
//! read-only policy mount, start order on a healthy database), `.env.example`
//! documents every variable, and the `Dockerfile` builds in two stages and runs
//! as a non-root user.

use std::collections::BTreeSet;
use std::path::Path;

use policy_mesh::policy::yaml::parse_value;
use serde_json::Value;
use url::Url;

/// Every variable the gateway reads, as the configuration reference lists them.
const VARIABLES: [&str; 32] = [
    "BIND_ADDR",
    "ALLOWED_HOSTS",
    "POLICY_DIR",
    "POLICY_FILE",
    "POLICY_DEFAULT_PROVIDER",
    "POLICY_INPUT_USD_PER_1M_TOKENS",
    "POLICY_CHARS_PER_TOKEN",
    "POLICY_WATCH",
    "POLICY_POLL_INTERVAL_MS",
    "CLIENTS_FILE",
    "ALLOW_UNAUTHENTICATED",
    "LOCAL_LLM_URL",
    "LOCAL_LLM_API_KEY",
    "LOCAL_LLM_MODEL",
    "LOCAL_LLM_MODELS",
    "PUBLIC_LLM_URL",
    "PUBLIC_LLM_PROVIDER",
    "PUBLIC_LLM_API_KEY",
    "PUBLIC_LLM_MODEL",
    "PUBLIC_LLM_MODELS",
    "PROVIDER_TIMEOUT_SECONDS",
    "PUBLIC_LLM_PROXY",
    "DATABASE_URL",
    "AUDIT_ENABLED",
    "AUDIT_FAILURE_MODE",
    "AUDIT_HASH_KEY",
    "MAX_BODY_BYTES",
    "HEADER_READ_TIMEOUT_SECONDS",
    "BODY_READ_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "RUST_LOG",
    "LOG_FORMAT",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn compose() -> Value {
    match parse_value("compose.yaml", &read("compose.yaml")) {
        Ok((value, _)) => value,
        Err(errors) => panic!("compose.yaml does not parse: {errors:?}"),
    }
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_object(), "no service `{name}` in compose.yaml");
    service
}

/// A string value of a service's `environment` mapping.
fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("environment.{name} is not a string: {service}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

/// The named volume a service mounts at `target`, checked to be declared.
fn named_volume_at(compose: &Value, service: &Value, target: &str) -> String {
    let mount = strings(&service["volumes"])
        .into_iter()
        .find(|m| m.split(':').nth(1) == Some(target))
        .unwrap_or_else(|| panic!("nothing mounted at {target}: {service}"));
    let name = mount.split(':').next().unwrap_or_default().to_owned();
    assert!(
        compose["volumes"].get(&name).is_some(),
        "volume `{name}` is not declared under the top-level `volumes`"
    );
    name
}

#[test]
fn postgres_is_version_15_with_a_healthcheck_and_a_named_volume() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    assert_eq!(postgres["image"], "postgres:15");
    let test = strings(&postgres["healthcheck"]["test"]).join(" ");
    assert!(test.contains("pg_isready"), "healthcheck: {test}");
    let user = env(postgres, "POSTGRES_USER");
    let db = env(postgres, "POSTGRES_DB");
    assert!(
        test.contains(&format!("-U {user}")) && test.contains(&format!("-d {db}")),
        "the healthcheck asks for another user or database: {test}"
    );
    named_volume_at(&compose, postgres, "/var/lib/postgresql/data");
}

#[test]
fn ollama_keeps_its_models_in_a_named_volume() {
    let compose = compose();
    let ollama = service(&compose, "ollama");
    assert!(
        ollama["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ollama/ollama")),
        "image: {}",
        ollama["image"]
    );
    named_volume_at(&compose, ollama, "/root/.ollama");
}

#[test]
fn the_app_listens_on_the_published_port() {
    let compose = compose();
    let app = service(&compose, "app");
    let bind = env(app, "BIND_ADDR");
    let (ip, port) = bind.rsplit_once(':').expect("BIND_ADDR is IP:port");
    assert_eq!(ip, "0.0.0.0", "a container must listen on every interface");
    let ports = strings(&app["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p.rsplit(':').next() == Some(port) && p.split(':').count() >= 2),
        "no published port maps to the container's {port}: {ports:?}"
    );
}

#[test]
fn the_app_reaches_postgres_and_ollama_by_service_name() {
    let compose = compose();
    let app = service(&compose, "app");
    let postgres = service(&compose, "postgres");

    let database = Url::parse(env(app, "DATABASE_URL")).expect("DATABASE_URL is a URL");
    assert_eq!(database.scheme(), "postgres");
    assert_eq!(database.host_str(), Some("postgres"));
    assert_eq!(database.port(), Some(5432));
    assert_eq!(database.username(), env(postgres, "POSTGRES_USER"));
    assert_eq!(
        database.password(),
        Some(env(postgres, "POSTGRES_PASSWORD"))
    );
    assert_eq!(
        database.path(),
        format!("/{}", env(postgres, "POSTGRES_DB"))
    );

    let local = Url::parse(env(app, "LOCAL_LLM_URL")).expect("LOCAL_LLM_URL is a URL");
    let host = local.host_str().expect("LOCAL_LLM_URL has a host");
    service(&compose, host);
    assert_eq!(host, "ollama");
    assert_eq!(local.port(), Some(11434), "Ollama listens on 11434");
}

#[test]
fn the_app_starts_once_postgres_is_healthy() {
    let compose = compose();
    let app = service(&compose, "app");
    assert_eq!(
        app["depends_on"]["postgres"]["condition"], "service_healthy",
        "depends_on: {}",
        app["depends_on"]
    );
    assert!(
        service(&compose, "postgres")["healthcheck"]["test"].is_array(),
        "service_healthy needs a healthcheck on postgres"
    );
}

#[test]
fn the_policy_folder_is_mounted_read_only_where_the_app_reads_it() {
    let compose = compose();
    let app = service(&compose, "app");
    let folder = env(app, "POLICY_DIR");
    let mounts = strings(&app["volumes"]);
    let mount = mounts
        .iter()
        .find(|m| m.split(':').nth(1) == Some(folder))
        .unwrap_or_else(|| panic!("nothing mounted at POLICY_DIR {folder}: {mounts:?}"));
    let parts: Vec<&str> = mount.split(':').collect();
    assert_eq!(parts.len(), 3, "{mount}");
    assert_eq!(
        parts[2], "ro",
        "the policy mount must be read-only: {mount}"
    );
    assert!(
        root().join(parts[0]).join("00-defaults.yaml").is_file(),
        "{} is not the repository's policy folder",
        parts[0]
    );
    assert_eq!(
        env(app, "POLICY_WATCH"),
        "poll",
        "bind mounts from macOS and Windows deliver no file events"
    );
}

#[test]
fn the_app_is_built_from_the_dockerfile() {
    let compose = compose();
    let build = &service(&compose, "app")["build"];
    assert_eq!(build["context"], ".");
    let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(root().join(dockerfile).is_file(), "no {dockerfile}");
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_as_a_user() {
    let text = read("Dockerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS builder"));
    assert!(froms[1].contains("-slim"), "{}", froms[1]);
    let runtime = instructions
        .iter()
        .skip_while(|l| !l.starts_with("FROM debian"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(runtime.contains("ca-certificates"), "{runtime}");
    assert!(
        runtime.contains("COPY --from=builder /src/target/release/policy-mesh"),
        "{runtime}"
    );
    let user = runtime
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER instruction");
    assert!(!user.contains("root") && user != "USER 0", "{user}");
    assert!(runtime.contains(r#"CMD ["serve"]"#), "{runtime}");
    assert!(runtime.contains("BIND_ADDR=0.0.0.0:8000"), "{runtime}");
}

/// The variables `.env.example` assigns, each checked to follow a comment line.
fn documented() -> Vec<String> {
    let text = read(".env.example");
    let lines: Vec<&str> = text.lines().collect();
    let mut names = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!(".env.example line {}: {line}", i + 1));
        let above = if i > 0 { lines[i - 1] } else { "" };
        assert!(
            above.starts_with("# ") && above.len() > 10,
            ".env.example: {name} has no one-line meaning above it"
        );
        names.push(name.to_owned());
    }
    names
}

#[test]
fn env_example_documents_every_variable_once() {
    let names = documented();
    let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), names.len(), "a variable twice: {names:?}");
    let expected: BTreeSet<&str> = VARIABLES.into_iter().collect();
    assert_eq!(unique, expected);
}

#[test]
fn every_variable_compose_sets_is_documented() {
    let compose = compose();
    let documented = documented();
    let app = service(&compose, "app");
    let set = app["environment"].as_object().expect("a mapping");
    for name in set.keys() {
        assert!(
            documented.contains(name),
            "compose.yaml sets {name}, which .env.example does not document"
        );
    }
}
