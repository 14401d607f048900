//! The settings `serve` reads from an [`Env`], validated at start-up so that a
//! bad value stops the process with a message naming the variable: the
//! server's own ([`ServerConfig`]), logging ([`LogConfig`]), and, gathered
//! with the providers' and the audit's into [`Settings`], every variable at
//! once, which `policy-mesh check` reports too.

use std::net::SocketAddr;
use std::time::Duration;

use crate::audit::AuditConfig;
use crate::env::{ConfigError, ConfigErrors, Env};
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
    /// invalid one, part by part: server, logging, providers, audit.
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
    /// Reads and validates `RUST_LOG` and `LOG_FORMAT`; `Err` names each invalid one.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigError>> {
        let mut errors = ConfigErrors::default();
        let filter = env.get("RUST_LOG").unwrap_or("info");
        let filter = errors.or(
            match tracing_subscriber::EnvFilter::try_new(filter) {
                Ok(_) => Ok(filter.to_owned()),
                Err(_) => Err(ConfigError::invalid(
                    "RUST_LOG",
                    filter,
                    "expected a log filter such as `info` or `policy_mesh=debug`",
                )),
            },
            String::new(),
        );
        let json = errors.or(
            match env
                .get("LOG_FORMAT")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("text") => Ok(false),
                Some("json") => Ok(true),
                Some(other) => Err(ConfigError::invalid(
                    "LOG_FORMAT",
                    other,
                    "expected `text` or `json`",
                )),
            },
            false,
        );
        errors.into_result(LogConfig { filter, json })
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
    /// Reads and validates every server variable; `Err` names each invalid one.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigError>> {
        let mut errors = ConfigErrors::default();
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 8000));
        let bind = env.get("BIND_ADDR").unwrap_or(DEFAULT_BIND_ADDR);
        let bind_addr = errors.or(
            bind.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    "BIND_ADDR",
                    bind,
                    "expected an address IP:port, such as 127.0.0.1:8000",
                )
            }),
            default_addr,
        );
        let max_body_bytes = match env.get("MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => errors.or(
                positive(v).map(|n| n as usize).ok_or_else(|| {
                    ConfigError::invalid("MAX_BODY_BYTES", v, "expected an integer > 0")
                }),
                DEFAULT_MAX_BODY_BYTES,
            ),
        };
        let watch = match env
            .get("POLICY_WATCH")
            .map(|v| (v, v.trim().to_ascii_lowercase()))
        {
            None => WatchMode::Native,
            Some((_, word)) if word == "notify" || word == "native" => WatchMode::Native,
            // The interval is read only when it is used.
            Some((_, word)) if word == "poll" => {
                let ms = match env.get("POLICY_POLL_INTERVAL_MS") {
                    None => DEFAULT_POLL_INTERVAL_MS,
                    Some(v) => errors.or(
                        positive(v).ok_or_else(|| {
                            ConfigError::invalid(
                                "POLICY_POLL_INTERVAL_MS",
                                v,
                                "expected an integer > 0 (milliseconds)",
                            )
                        }),
                        DEFAULT_POLL_INTERVAL_MS,
                    ),
                };
                WatchMode::Poll(Duration::from_millis(ms))
            }
            Some((v, _)) => errors.or(
                Err(ConfigError::invalid(
                    "POLICY_WATCH",
                    v,
                    "expected `notify` or `poll`",
                )),
                WatchMode::Native,
            ),
        };
        errors.into_result(ServerConfig {
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

    fn config(pairs: &[(&str, &str)]) -> Result<ServerConfig, Vec<ConfigError>> {
        ServerConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    fn variables(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.variable.as_str()).collect()
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
            let errors = config(&[(name, value)]).expect_err(value);
            assert_eq!(variables(&errors), [name]);
            assert!(errors[0].to_string().starts_with(name), "{errors:?}");
        }
        let errors = config(&[("POLICY_WATCH", "poll"), ("POLICY_POLL_INTERVAL_MS", "x")])
            .expect_err("invalid");
        assert_eq!(variables(&errors), ["POLICY_POLL_INTERVAL_MS"]);
        // Unused unless the folder is polled.
        assert!(config(&[("POLICY_POLL_INTERVAL_MS", "x")]).is_ok());
    }

    #[test]
    fn every_invalid_variable_is_named_at_once() {
        let errors = config(&[
            ("BIND_ADDR", "localhost"),
            ("MAX_BODY_BYTES", "0"),
            ("POLICY_WATCH", "sometimes"),
        ])
        .expect_err("invalid");
        assert_eq!(
            variables(&errors),
            ["BIND_ADDR", "MAX_BODY_BYTES", "POLICY_WATCH"]
        );
        let env = Env::from_pairs([("RUST_LOG", "[[["), ("LOG_FORMAT", "xml")]);
        let errors = LogConfig::from_env(&env).expect_err("invalid");
        assert_eq!(variables(&errors), ["RUST_LOG", "LOG_FORMAT"]);
    }
}
