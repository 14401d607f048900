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
/// Default time a client has to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
/// Default time a request body may take to arrive.
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 30;
/// Default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
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
    /// `ALLOWED_HOSTS`: the hosts the `Host` header may name.
    pub allowed_hosts: AllowedHosts,
    /// Whether `ALLOWED_HOSTS` was set (start-up explains the default when
    /// it was not and the address is not loopback).
    pub allowed_hosts_set: bool,
    /// `HEADER_READ_TIMEOUT_SECONDS` and `MAX_CONNECTIONS`.
    pub connection_limits: super::ConnectionLimits,
    /// `BODY_READ_TIMEOUT_SECONDS`: the time a request body may take.
    pub body_read_timeout: Duration,
    /// `CLIENTS_FILE`: the clients file; `None`: no key is asked for.
    pub clients_file: Option<std::path::PathBuf>,
    /// `ALLOW_UNAUTHENTICATED`: whether an open gateway may listen on an
    /// address that is not loopback.
    pub allow_unauthenticated: bool,
}

impl ServerConfig {
    /// The body limits [`super::app`] applies.
    pub fn body_limits(&self) -> super::request::BodyLimits {
        super::request::BodyLimits {
            max_bytes: self.max_body_bytes,
            read_timeout: self.body_read_timeout,
        }
    }
}

/// The host names a request's `Host` header may name (port ignored): a
/// defence against DNS rebinding, where a page on another site reaches a
/// gateway on the visitor's machine under its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `*`: any host.
    Any,
    /// Only these, lowercase, IPv6 addresses in brackets.
    Only(Vec<String>),
}

impl AllowedHosts {
    /// The default while requests carry no client key: the loopback names.
    pub fn loopback() -> Self {
        AllowedHosts::Only(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
        ])
    }

    /// `ALLOWED_HOSTS`: comma-separated names, `*` for any.
    fn parse(value: &str) -> Result<Self, ConfigError> {
        let mut names = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Ok(AllowedHosts::Any);
            }
            let normalized = normalize_host(name);
            if normalized.is_empty()
                || normalized.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
            {
                return Err(ConfigError::invalid(
                    "ALLOWED_HOSTS",
                    value,
                    "expected host names separated by commas, or *",
                ));
            }
            names.push(normalized);
        }
        if names.is_empty() {
            return Err(ConfigError::invalid(
                "ALLOWED_HOSTS",
                value,
                "expected host names separated by commas, or *",
            ));
        }
        Ok(AllowedHosts::Only(names))
    }

    /// Whether a `Host` header (or an HTTP/2 authority) of `host` is served.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            AllowedHosts::Any => true,
            AllowedHosts::Only(names) => {
                // On every request: compared without allocating. A Host
                // header writes an IPv6 address in brackets, as the names
                // are stored.
                let host = strip_port(host.trim()).trim_end_matches('.');
                names.iter().any(|n| n.eq_ignore_ascii_case(host))
            }
        }
    }
}

/// `host` without a `:port`: `[::1]:8000` is `[::1]`, `a:80` is `a`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        // One colon: a port. More: a bare IPv6 address.
        Some((name, _)) if !name.contains(':') => name,
        _ => host,
    }
}

/// Lowercase, without a trailing dot; a bare IPv6 address in brackets.
fn normalize_host(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    }
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
        // Without client keys (none exist yet) the default is the loopback
        // names, whatever the address: a server deployment names its hosts.
        let allowed_hosts_set = env.get("ALLOWED_HOSTS").is_some();
        let allowed_hosts = match env.get("ALLOWED_HOSTS") {
            None => AllowedHosts::loopback(),
            Some(v) => errors.or(AllowedHosts::parse(v), AllowedHosts::loopback()),
        };
        let header_read_timeout = errors.or(
            seconds(
                env,
                "HEADER_READ_TIMEOUT_SECONDS",
                DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
            ),
            Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
        );
        let body_read_timeout = errors.or(
            seconds(
                env,
                "BODY_READ_TIMEOUT_SECONDS",
                DEFAULT_BODY_READ_TIMEOUT_SECONDS,
            ),
            Duration::from_secs(DEFAULT_BODY_READ_TIMEOUT_SECONDS),
        );
        let max_connections = match env.get("MAX_CONNECTIONS") {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(v) => errors.or(
                positive(v)
                    .filter(|&n| n <= 1 << 20)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "MAX_CONNECTIONS",
                            v,
                            "expected an integer > 0 and at most 1048576",
                        )
                    }),
                DEFAULT_MAX_CONNECTIONS,
            ),
        };
        let allow_unauthenticated = match env.get("ALLOW_UNAUTHENTICATED") {
            None => false,
            Some(v) => errors.or(
                crate::env::parse_bool(v).ok_or_else(|| {
                    ConfigError::invalid("ALLOW_UNAUTHENTICATED", v, "expected true, false, 1 or 0")
                }),
                false,
            ),
        };
        errors.into_result(ServerConfig {
            clients_file: env.get("CLIENTS_FILE").map(std::path::PathBuf::from),
            allow_unauthenticated,
            bind_addr,
            max_body_bytes,
            watch,
            allowed_hosts,
            allowed_hosts_set,
            connection_limits: super::ConnectionLimits {
                header_read_timeout,
                max_connections,
            },
            body_read_timeout,
        })
    }
}

/// A duration variable in seconds (`0.5` allowed), > 0 and at most an hour.
fn seconds(env: &Env, variable: &str, default: u64) -> Result<Duration, ConfigError> {
    let Some(v) = env.get(variable) else {
        return Ok(Duration::from_secs(default));
    };
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            ConfigError::invalid(
                variable,
                v,
                "expected a number of seconds > 0 and at most 3600",
            )
        })
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
    fn connection_limits_have_defaults_and_refuse_nonsense() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.connection_limits.header_read_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(c.connection_limits.max_connections, 4096);
        let c = config(&[
            ("HEADER_READ_TIMEOUT_SECONDS", "0.5"),
            ("MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(
            c.connection_limits.header_read_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.connection_limits.max_connections, 8);
        for (variable, bad) in [
            ("HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("HEADER_READ_TIMEOUT_SECONDS", "-1"),
            ("HEADER_READ_TIMEOUT_SECONDS", "NaN"),
            ("BODY_READ_TIMEOUT_SECONDS", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "many"),
        ] {
            let errors = config(&[(variable, bad)]).unwrap_err();
            assert_eq!(variables(&errors), [variable], "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_default_to_loopback_and_ignore_port_and_case() {
        let c = config(&[("BIND_ADDR", "0.0.0.0:8000")]).unwrap();
        assert_eq!(c.allowed_hosts, AllowedHosts::loopback());
        assert!(!c.allowed_hosts_set);
        let hosts = &c.allowed_hosts;
        for ok in [
            "localhost",
            "LOCALHOST:8000",
            "127.0.0.1:80",
            "[::1]:8000",
            "[::1]",
            "localhost.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.2",
            "[::2]:8000",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let c = config(&[("ALLOWED_HOSTS", " gateway.internal, ::1 ,Example.COM")]).unwrap();
        assert!(c.allowed_hosts_set);
        assert!(c.allowed_hosts.allows("gateway.internal:8443"));
        assert!(c.allowed_hosts.allows("example.com"));
        assert!(c.allowed_hosts.allows("[::1]:1"));
        assert!(!c.allowed_hosts.allows("localhost"));
        let any = config(&[("ALLOWED_HOSTS", "*")]).unwrap();
        assert!(any.allowed_hosts.allows("anything.example"));
        for bad in [",", "a b", "http://x/"] {
            let errors = config(&[("ALLOWED_HOSTS", bad)]).unwrap_err();
            assert_eq!(variables(&errors), ["ALLOWED_HOSTS"], "{bad}");
        }
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
