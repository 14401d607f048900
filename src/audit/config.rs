//! The audit store's configuration: `AUDIT_ENABLED`, `DATABASE_URL`,
//! `AUDIT_FAILURE_MODE` and `AUDIT_HASH_KEY`, validated once at start-up, with the secrets kept out of
//! every `Debug` and message.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::env::{ConfigError, ConfigErrors, Env};
use crate::names::AuditFailureMode;

/// `DATABASE_URL` when unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/policy-mesh.db";

/// What replaces a password in a redacted URL.
const REDACTED: &str = "REDACTED";

/// Where the audit store lives.
#[derive(Clone)]
pub enum AuditDatabase {
    /// A SQLite file; relative paths are relative to the working folder.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The full URL, password included: never print it, use
        /// [`AuditConfig::redacted_url`].
        url: String,
    },
}

/// The validated audit configuration.
#[derive(Clone)]
pub struct AuditConfig {
    /// `None` when `AUDIT_ENABLED` is off: then `DATABASE_URL` is not read.
    database: Option<AuditDatabase>,
    /// The `DATABASE_URL` as given (or the default), for [`Self::redacted_url`].
    raw_url: String,
    failure_mode: AuditFailureMode,
    hash_key: Option<Vec<u8>>,
}

impl AuditConfig {
    /// Reads `AUDIT_ENABLED` (`true`/`false`/`1`/`0`, any case; default on),
    /// `DATABASE_URL` (`sqlite://PATH`, `postgres://…` or `postgresql://…`;
    /// default [`DEFAULT_DATABASE_URL`]; ignored when audit is off),
    /// `AUDIT_FAILURE_MODE` (`closed`, the default, or `open`) and
    /// `AUDIT_HASH_KEY`. `Err` names each invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigError>> {
        let mut errors = ConfigErrors::default();
        let enabled = match env.get("AUDIT_ENABLED") {
            None => true,
            Some(v) => errors.or(
                parse_bool(v).ok_or_else(|| {
                    ConfigError::invalid("AUDIT_ENABLED", v, "expected true, false, 1 or 0")
                }),
                true,
            ),
        };
        let raw_url = env
            .get("DATABASE_URL")
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        let database = if enabled {
            errors.or(parse_database_url(&raw_url).map(Some), None)
        } else {
            None
        };
        let failure_mode = match env.get("AUDIT_FAILURE_MODE") {
            None => AuditFailureMode::Closed,
            Some(v) => errors.or(
                v.to_ascii_lowercase()
                    .parse()
                    .map_err(|_: crate::names::UnknownName| {
                        ConfigError::invalid("AUDIT_FAILURE_MODE", v, "expected `closed` or `open`")
                    }),
                AuditFailureMode::Closed,
            ),
        };
        errors.into_result(AuditConfig {
            database,
            raw_url,
            failure_mode,
            hash_key: env.get("AUDIT_HASH_KEY").map(|k| k.as_bytes().to_vec()),
        })
    }

    /// A configuration with audit off.
    pub fn disabled() -> Self {
        AuditConfig {
            database: None,
            raw_url: String::new(),
            failure_mode: AuditFailureMode::Closed,
            hash_key: None,
        }
    }

    /// Whether events are written at all.
    pub fn enabled(&self) -> bool {
        self.database.is_some()
    }

    /// The database events go to; `None` when audit is off.
    pub fn database(&self) -> Option<&AuditDatabase> {
        self.database.as_ref()
    }

    /// `AUDIT_FAILURE_MODE`: whether a request whose pending event cannot be
    /// committed is refused (`closed`) or goes on unaudited (`open`).
    pub fn failure_mode(&self) -> AuditFailureMode {
        self.failure_mode
    }

    /// The key for [`super::prompt_hash`]: `AUDIT_HASH_KEY`'s bytes, when set.
    pub fn hash_key(&self) -> Option<&[u8]> {
        self.hash_key.as_deref()
    }

    /// `DATABASE_URL` with any password replaced, fit for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.raw_url)
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("enabled", &self.enabled())
            .field("database_url", &self.redacted_url())
            .field("failure_mode", &self.failure_mode)
            .field("hash_key", &self.hash_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl fmt::Debug for AuditDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditDatabase::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            AuditDatabase::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

use crate::env::parse_bool;

fn parse_database_url(raw: &str) -> Result<AuditDatabase, ConfigError> {
    let invalid = |why: String| {
        ConfigError::new(
            "DATABASE_URL",
            format!("invalid value {}: {why}", redact_url(raw)),
        )
    };
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| invalid("expected sqlite://PATH or postgres://…".to_owned()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            if rest.is_empty() {
                return Err(invalid("sqlite:// needs a file path".to_owned()));
            }
            Ok(AuditDatabase::Sqlite {
                path: PathBuf::from(rest),
            })
        }
        "postgres" | "postgresql" => {
            // Parse now so that a malformed URL fails at start-up with the
            // variable's name rather than at the first connection.
            PgConnectOptions::from_str(raw).map_err(|e| invalid(e.to_string()))?;
            Ok(AuditDatabase::Postgres {
                url: raw.to_owned(),
            })
        }
        other => Err(invalid(format!(
            "unsupported scheme {other:?}: expected sqlite://PATH or postgres://…"
        ))),
    }
}

/// `url` with the password of its user info and any `password` query
/// parameter replaced by `REDACTED`. Works on URLs that do not parse too, so
/// that an error about a malformed URL cannot leak its password.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() {
            // Fails only for URLs without a host, which carry no user info.
            let _ = parsed.set_password(Some(REDACTED));
        }
        if parsed
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("password"))
        {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    redact_unparsed(url)
}

/// Best-effort redaction of a string `url::Url` rejects: drop everything
/// between the first `:` of the user info and its last `@`, and every value
/// after a `password=`.
fn redact_unparsed(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.rfind('@');
            match authority_end.and_then(|at| rest[..at].find(':').map(|colon| (colon, at))) {
                Some((colon, at)) => {
                    format!(
                        "{scheme}://{}:{REDACTED}@{}",
                        &rest[..colon],
                        &rest[at + 1..]
                    )
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    let lower = out.to_ascii_lowercase();
    if let Some(start) = lower.find("password=") {
        let value_start = start + "password=".len();
        let value_end = out[value_start..]
            .find('&')
            .map_or(out.len(), |i| value_start + i);
        out.replace_range(value_start..value_end, REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-pw-7f3a9";

    fn config(pairs: &[(&str, &str)]) -> Result<AuditConfig, ConfigError> {
        AuditConfig::from_env(&Env::from_pairs(pairs.iter().copied())).map_err(|mut errors| {
            assert_eq!(errors.len(), 1, "{errors:?}");
            errors.remove(0)
        })
    }

    #[test]
    fn both_invalid_variables_are_named_at_once() {
        let env = Env::from_pairs([("AUDIT_ENABLED", "maybe"), ("DATABASE_URL", "mysql://x")]);
        let errors = AuditConfig::from_env(&env).expect_err("invalid");
        let variables: Vec<&str> = errors.iter().map(|e| e.variable.as_str()).collect();
        assert_eq!(variables, ["AUDIT_ENABLED", "DATABASE_URL"]);
    }

    #[test]
    fn defaults_to_sqlite_in_data_folder_enabled_unkeyed() {
        let c = config(&[]).expect("defaults are valid");
        assert!(c.enabled());
        assert!(c.hash_key().is_none());
        match c.database() {
            Some(AuditDatabase::Sqlite { path }) => {
                assert_eq!(path, &PathBuf::from("data/policy-mesh.db"))
            }
            other => panic!("expected the default SQLite file, got {other:?}"),
        }
    }

    #[test]
    fn audit_enabled_accepts_four_words_in_any_case() {
        for (v, expected) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FaLsE", false),
            ("0", false),
        ] {
            let c = config(&[("AUDIT_ENABLED", v)]).expect(v);
            assert_eq!(c.enabled(), expected, "AUDIT_ENABLED={v}");
        }
        // Empty counts as unset.
        assert!(config(&[("AUDIT_ENABLED", "")]).expect("empty").enabled());
    }

    #[test]
    fn audit_enabled_rejects_other_words_naming_the_variable() {
        for v in ["yes", "on", "2", "tru"] {
            let err = config(&[("AUDIT_ENABLED", v)]).expect_err(v).to_string();
            assert!(err.contains("AUDIT_ENABLED"), "{err}");
        }
    }

    #[test]
    fn audit_failure_mode_is_closed_unless_open_is_asked_for() {
        assert_eq!(
            config(&[]).unwrap().failure_mode(),
            AuditFailureMode::Closed
        );
        for (v, expected) in [
            ("closed", AuditFailureMode::Closed),
            ("open", AuditFailureMode::Open),
            ("OPEN", AuditFailureMode::Open),
        ] {
            let c = config(&[("AUDIT_FAILURE_MODE", v)]).expect(v);
            assert_eq!(c.failure_mode(), expected, "AUDIT_FAILURE_MODE={v}");
        }
        let err = config(&[("AUDIT_FAILURE_MODE", "ajar")])
            .expect_err("not a mode")
            .to_string();
        assert!(
            err.contains("AUDIT_FAILURE_MODE") && err.contains("`closed` or `open`"),
            "{err}"
        );
    }

    #[test]
    fn disabled_audit_ignores_database_url() {
        let c = config(&[("AUDIT_ENABLED", "false"), ("DATABASE_URL", "mysql://x")])
            .expect("DATABASE_URL is not used when audit is off");
        assert!(!c.enabled());
        assert!(c.database().is_none());
    }

    #[test]
    fn sqlite_urls_give_relative_and_absolute_paths() {
        for (url, path) in [
            ("sqlite://data/x.db", "data/x.db"),
            ("sqlite:///var/lib/pm.db", "/var/lib/pm.db"),
            ("SQLITE://audit.db", "audit.db"),
        ] {
            let c = config(&[("DATABASE_URL", url)]).expect(url);
            match c.database() {
                Some(AuditDatabase::Sqlite { path: p }) => assert_eq!(p, &PathBuf::from(path)),
                other => panic!("{url}: got {other:?}"),
            }
        }
    }

    #[test]
    fn postgres_urls_of_both_schemes_are_accepted() {
        for url in [
            "postgres://u:p@db.example:5432/audit",
            "postgresql://u@localhost/audit?sslmode=disable",
        ] {
            let c = config(&[("DATABASE_URL", url)]).expect(url);
            assert!(
                matches!(c.database(), Some(AuditDatabase::Postgres { url: u }) if u == url),
                "{url}"
            );
        }
    }

    #[test]
    fn other_urls_are_errors_naming_the_variable_without_password() {
        for url in [
            "mysql://root:canary-pw-7f3a9@localhost/db",
            "data/policy-mesh.db",
            "sqlite://",
            "postgres://u:canary-pw-7f3a9@host:notaport/db",
        ] {
            let err = config(&[("DATABASE_URL", url)]).expect_err(url).to_string();
            assert!(err.contains("DATABASE_URL"), "{err}");
            assert!(!err.contains(CANARY), "password leaked: {err}");
        }
    }

    #[test]
    fn debug_and_redacted_url_hide_secrets() {
        let c = config(&[
            (
                "DATABASE_URL",
                "postgres://audit:canary-pw-7f3a9@db.example:5432/pm",
            ),
            ("AUDIT_HASH_KEY", "canary-key-51c2"),
        ])
        .expect("valid");
        let debug = format!("{c:?} {:?}", c.database());
        assert!(!debug.contains(CANARY), "{debug}");
        assert!(!debug.contains("canary-key-51c2"), "{debug}");
        assert!(debug.contains("db.example"), "{debug}");
        assert_eq!(
            c.redacted_url(),
            "postgres://audit:REDACTED@db.example:5432/pm"
        );
        assert_eq!(c.hash_key(), Some(&b"canary-key-51c2"[..]));
    }

    #[test]
    fn redaction_covers_query_passwords_and_unparsable_urls() {
        let cases = [
            "postgres://u@h/db?password=canary-pw-7f3a9&sslmode=disable",
            "postgres://u:canary-pw-7f3a9@h:notaport/db",
            "postgres://u:canary-pw-7f3a9@@h/db",
            "postgres://u@h:bad/db?PASSWORD=canary-pw-7f3a9",
        ];
        for url in cases {
            let redacted = redact_url(url);
            assert!(!redacted.contains(CANARY), "{url} -> {redacted}");
            assert!(redacted.contains(REDACTED), "{url} -> {redacted}");
        }
        assert_eq!(
            redact_url("sqlite://data/policy-mesh.db"),
            "sqlite://data/policy-mesh.db"
        );
    }
}
