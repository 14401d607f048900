//! The settings `serve` reads from an [`Env`], validated at start-up so that a
//! bad value stops the process with a message naming the variable: the
//! server's own ([`ServerConfig`]), logging ([`LogConfig`]), and, gathered
//! with the providers' and the audit's into [`Settings`], every variable at
//! once, which `policy-mesh check` reports too.

use std::net::SocketAddr;
use std::time::Duration;

use crate::audit::AuditConfig;
use crate::env::{ConfigError, Env};
use crate::providers::ProviderConfig;
use crate::reload::WatchMode;

/// Default listen address.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8000";
/// Default request body limit (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;
/// Default scan interval with `POLICY_WATCH=poll`.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;

/// Every setting `serve` reads, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen, the body limit, how the policy folder is watched.
    pub server: ServerConfig,
    /// `RUST_LOG` and `LOG_FORMAT`.
    pub log: LogConfig,
    /// The providers' URLs, keys, models and timeout.
    pub providers: ProviderConfig,
    /// Whether and where requests are audited.
    pub audit: AuditConfig,
}

impl Settings {
    /// Reads and validates every variable `serve` reads; `Err` names each
    /// invalid one (one error per part: server, logging, providers, audit).
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigError>> {
        match (
            ServerConfig::from_env(env),
            LogConfig::from_env(env),
            ProviderConfig::from_env(env),
            AuditConfig::from_env(env),
        ) {
            (Ok(server), Ok(log), Ok(providers), Ok(audit)) => Ok(Settings {
                server,
                log,
                providers,
                audit,
            }),
            (server, log, providers, audit) => {
                Err([server.err(), log.err(), providers.err(), audit.err()]
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }
}

/// How the gateway logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `RUST_LOG`, a tracing filter; default `info`.
    pub filter: String,
    /// `LOG_FORMAT=json`: JSON lines; else (`text`, the default) text.
    pub json: bool,
}

impl LogConfig {
    /// Reads and validates `RUST_LOG` and `LOG_FORMAT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let filter = env.get("RUST_LOG").unwrap_or("info");
        if tracing_subscriber::EnvFilter::try_new(filter).is_err() {
            return Err(ConfigError::invalid(
                "RUST_LOG",
                filter,
                "expected a log filter such as `info` or `policy_mesh=debug`",
            ));
        }
        let json = match env
            .get("LOG_FORMAT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "LOG_FORMAT",
                    other,
                    "expected `text` or `json`",
                ));
            }
        };
        Ok(LogConfig {
            filter: filter.to_owned(),
            json,
        })
    }
}

/// Validated server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `BIND_ADDR`: where to listen.
    pub bind_addr: SocketAddr,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `POLICY_WATCH` (`notify` or `poll`) and `POLICY_POLL_INTERVAL_MS`.
    pub watch: WatchMode,
}

impl ServerConfig {
    /// Reads and validates every server variable; the first invalid one is the error.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bind = env.get("BIND_ADDR").unwrap_or(DEFAULT_BIND_ADDR);
        let bind_addr = bind.trim().parse().map_err(|_| {
            ConfigError::invalid(
                "BIND_ADDR",
                bind,
                "expected an address IP:port, such as 127.0.0.1:8000",
            )
        })?;
        let max_body_bytes = match env.get("MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => positive(v).ok_or_else(|| {
                ConfigError::invalid("MAX_BODY_BYTES", v, "expected an integer > 0")
            })? as usize,
        };
        let watch = match env
            .get("POLICY_WATCH")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => WatchMode::Native,
            Some(v) if v == "notify" || v == "native" => WatchMode::Native,
            Some(v) if v == "poll" => {
                let ms = match env.get("POLICY_POLL_INTERVAL_MS") {
                    None => DEFAULT_POLL_INTERVAL_MS,
                    Some(v) => positive(v).ok_or_else(|| {
                        ConfigError::invalid(
                            "POLICY_POLL_INTERVAL_MS",
                            v,
                            "expected an integer > 0 (milliseconds)",
                        )
                    })?,
                };
                WatchMode::Poll(Duration::from_millis(ms))
            }
            Some(_) => {
                return Err(ConfigError::invalid(
                    "POLICY_WATCH",
                    env.get("POLICY_WATCH").unwrap_or_default(),
                    "expected `notify` or `poll`",
                ));
            }
        };
        Ok(ServerConfig {
            bind_addr,
            max_body_bytes,
            watch,
        })
    }
}

fn positive(v: &str) -> Option<u64> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && usize::try_from(n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("valid");
        assert_eq!(c.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.watch, WatchMode::Native);
        assert_eq!(config(&[("BIND_ADDR", "")]), Ok(c));
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("BIND_ADDR", "0.0.0.0:9000"),
            ("MAX_BODY_BYTES", "2048"),
            ("POLICY_WATCH", "poll"),
            ("POLICY_POLL_INTERVAL_MS", "250"),
        ])
        .expect("valid");
        assert_eq!(c.bind_addr.port(), 9000);
        assert_eq!(c.max_body_bytes, 2048);
        assert_eq!(c.watch, WatchMode::Poll(Duration::from_millis(250)));
        let c = config(&[("POLICY_WATCH", "poll")]).expect("valid");
        assert_eq!(
            c.watch,
            WatchMode::Poll(Duration::from_millis(DEFAULT_POLL_INTERVAL_MS))
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("BIND_ADDR", "localhost"),
            ("BIND_ADDR", "127.0.0.1"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "-5"),
            ("MAX_BODY_BYTES", "1kb"),
            ("POLICY_WATCH", "sometimes"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert_eq!(err.variable, name);
            assert!(err.to_string().starts_with(name), "{err}");
        }
        let err = config(&[("POLICY_WATCH", "poll"), ("POLICY_POLL_INTERVAL_MS", "x")])
            .expect_err("invalid");
        assert_eq!(err.variable, "POLICY_POLL_INTERVAL_MS");
    }
}
