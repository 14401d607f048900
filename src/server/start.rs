//! The gateway's start-up and shutdown: [`start`] reads the configuration,
//! builds the provider clients, loads the policy, binds, opens the audit
//! store, starts the reloader and serves in the background (tests start it on
//! `127.0.0.1:0`); [`run`] is the binary's entry: logging, a runtime, signals,
//! exit status.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{AppState, LogConfig, Settings, app};
use crate::audit::{AuditError, AuditStore};
use crate::env::{ConfigError, Env};
use crate::metrics::Metrics;
use crate::policy::{LoadErrors, PolicySource};
use crate::providers::{Pool, ProvidersError};
use crate::reload::{LiveClients, LivePolicy, Reloader, Trigger};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration variables are invalid: one line each.
    #[error("{}", ConfigError::lines(.0))]
    Config(Vec<ConfigError>),
    /// The HTTP client of the providers cannot be built.
    #[error(transparent)]
    Providers(#[from] ProvidersError),
    /// The audit store cannot be opened or migrated (the message names
    /// `DATABASE_URL` without its password).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The policy is invalid: every error line.
    #[error("{0}")]
    Policy(LoadErrors),
    /// The clients file cannot be read or is invalid: every error line.
    #[error("{0}")]
    Clients(LoadErrors),
    /// No clients file, and an address other than loopback.
    #[error(
        "BIND_ADDR {addr} is not a loopback address and CLIENTS_FILE is not set: anyone who \
         can reach the port could spend the cloud key and read the audit. Set CLIENTS_FILE \
         (`policy-mesh keys new` makes a key), or ALLOW_UNAUTHENTICATED=true to serve open"
    )]
    Unauthenticated {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The listen address cannot be bound.
    #[error("BIND_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The policy folder (or the clients file's) cannot be watched.
    #[error("cannot watch the folder {folder}: {source}")]
    Watch {
        /// The folder.
        folder: String,
        /// Why.
        source: notify::Error,
    },
}

/// A running server: its address, its live policy, and the means to stop it.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    live: Arc<LivePolicy>,
    reloader: Reloader,
    clients_reloader: Option<Reloader>,
    audit: Option<AuditStore>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The address it listens on (the real port when `BIND_ADDR` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live policy.
    pub fn live(&self) -> &Arc<LivePolicy> {
        &self.live
    }

    /// Asks for a reload, as SIGHUP does.
    pub fn reload(&self) {
        self.reloader.request(Trigger::Signal);
        if let Some(clients) = &self.clients_reloader {
            clients.request(Trigger::Signal);
        }
    }

    /// Stops accepting connections, lets requests in flight finish, stops the
    /// watcher, and commits every audit event handed over.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = (&mut self.serving)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.reloader.stop().await;
        if let Some(clients) = self.clients_reloader.take() {
            clients.stop().await;
        }
        if let Some(audit) = &self.audit {
            audit.shutdown().await;
        }
        served
    }
}

/// Starts the gateway with the configuration in `env`: reads `BIND_ADDR`,
/// `MAX_BODY_BYTES`, `POLICY_WATCH`, the provider and audit variables, loads
/// the policy (invalid: an error with every line), binds, opens and migrates
/// the audit store, watches the policy folder and serves in the background.
pub async fn start(env: &Env) -> Result<Server, StartError> {
    let settings = Settings::from_env(env).map_err(StartError::Config)?;
    start_with(env, settings).await
}

/// [`start`] with settings already read from `env`.
async fn start_with(env: &Env, settings: Settings) -> Result<Server, StartError> {
    let Settings {
        server: config,
        providers,
        audit: audit_config,
        log: _,
    } = settings;
    // Validated once, here: every reload resolves `local` and `public` to them.
    let builtins = providers.builtins();
    for (variable, url) in &providers.stripped_urls {
        tracing::info!(
            variable = *variable,
            url = %url,
            "the URL ends with its API's path prefix; it was removed (the gateway adds the \
             whole path)"
        );
    }
    if !providers.ignored_proxy_variables.is_empty() {
        tracing::info!(
            variables = %providers.ignored_proxy_variables.join(","),
            "proxy variables of the environment are ignored: the local model is never \
             reached through a proxy; set PUBLIC_LLM_PROXY for the public provider"
        );
    }
    if !config.allowed_hosts_set && !config.bind_addr.ip().is_loopback() {
        tracing::warn!(
            address = %config.bind_addr,
            "ALLOWED_HOSTS is not set: only requests naming localhost, 127.0.0.1 or [::1] \
             are served (421 otherwise); set ALLOWED_HOSTS to the names clients use"
        );
    }
    let clients = match &config.clients_file {
        Some(path) => {
            let live = LiveClients::start(path.clone()).map_err(StartError::Clients)?;
            tracing::info!(
                file = %path.display(),
                clients = live.snapshot().table.len(),
                "authentication is on: every endpoint but health, readiness and the pages needs a client key"
            );
            Some(Arc::new(live))
        }
        None if !config.bind_addr.ip().is_loopback() && !config.allow_unauthenticated => {
            return Err(StartError::Unauthenticated {
                addr: config.bind_addr,
            });
        }
        None => {
            tracing::warn!(
                "authentication is off (CLIENTS_FILE is not set): whoever reaches the port may \
                 chat through the cloud key, read the audit and see the policy"
            );
            None
        }
    };
    let providers = Arc::new(Pool::new(providers, env.clone()));
    let source = PolicySource::from_env(env);
    let metrics = Arc::new(Metrics::new());
    let loader_env = env.clone();
    let loader_source = source.clone();
    let loader: crate::reload::Loader =
        Box::new(move || crate::load_compiled(&loader_source, &loader_env, &builtins));
    let live_metrics = Arc::clone(&metrics);
    let live = tokio::task::spawn_blocking(move || LivePolicy::start(loader, live_metrics))
        .await
        .map_err(|e| {
            StartError::Policy(crate::policy::LoadError::whole("policy", e.to_string()).into())
        })?
        .map_err(StartError::Policy)?;
    let live = Arc::new(live);
    for spec in live.snapshot().policy.providers() {
        tracing::info!(
            provider = spec.id.as_str(),
            api = spec.api.as_str(),
            trust = spec.trust.as_str(),
            url = %spec.shown_url(),
            model = spec.model.as_str(),
            key_set = providers.has_key(spec),
            "provider"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.bind_addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind_addr,
        source,
    })?;
    // After binding, so that a taken address fails before any file is made.
    let audit = AuditStore::connect(&audit_config).await?;
    match &audit {
        Some(_) => tracing::info!(
            database = %audit_config.redacted_url(),
            "audit store ready"
        ),
        None => tracing::info!("audit is off (AUDIT_ENABLED=false)"),
    }
    let folder = source.watch_dir();
    let reloader =
        match crate::reload::spawn_reloader(Arc::clone(&live), folder.clone(), config.watch) {
            Ok(reloader) => reloader,
            Err(source) => {
                if let Some(audit) = &audit {
                    audit.shutdown().await;
                }
                return Err(StartError::Watch {
                    folder: folder.display().to_string(),
                    source,
                });
            }
        };
    let clients_reloader = match &clients {
        None => None,
        Some(live_clients) => {
            let folder = live_clients
                .path()
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf();
            let reload_clients = Arc::clone(live_clients);
            let reload: crate::reload::Reload = Arc::new(move |_| reload_clients.reload());
            match crate::reload::spawn_watcher("clients", reload, folder.clone(), config.watch) {
                Ok(reloader) => Some(reloader),
                Err(source) => {
                    if let Some(audit) = &audit {
                        audit.shutdown().await;
                    }
                    return Err(StartError::Watch {
                        folder: folder.display().to_string(),
                        source,
                    });
                }
            }
        }
    };
    let router = app(
        AppState {
            live: Arc::clone(&live),
            metrics,
            clients,
            providers,
            audit: audit.clone(),
            audit_config: Arc::new(audit_config),
            allowed_hosts: Arc::new(config.allowed_hosts.clone()),
        },
        config.body_limits(),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let limits = config.connection_limits;
    let serving = tokio::spawn(super::serve::serve(listener, router, limits, async move {
        let _ = rx.await;
    }));
    tracing::info!(
        address = %addr,
        version = live.snapshot().policy.version(),
        policy = %source.path().display(),
        "policy-mesh listening on {addr}"
    );
    Ok(Server {
        addr,
        live,
        reloader,
        clients_reloader,
        audit,
        shutdown: Some(tx),
        serving,
    })
}

/// Sets up logging from `RUST_LOG` (default `info`) and `LOG_FORMAT` (`json`
/// for JSON lines, otherwise text). A second call changes nothing.
pub fn init_tracing(log: &LogConfig) {
    // Validated by `LogConfig::from_env`; `info` only if that was bypassed.
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = log.json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never in files or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // `try_init` fails only when a subscriber is already set (tests, embedding).
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the gateway until SIGINT/SIGTERM; returns the process exit status
/// (1 when start-up fails: invalid policy or configuration, address in use).
pub fn run(env: Env) -> ExitCode {
    let settings = match Settings::from_env(&env) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("{}", ConfigError::lines(&errors));
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match start_with(&env, settings).await {
            Ok(server) => server,
            Err(e) => {
                // Every line of a policy error, each on its own line.
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        #[cfg(unix)]
        let hangups = forward_sighup(&server);
        shutdown_signal().await;
        tracing::info!("shutting down");
        #[cfg(unix)]
        if let Some(task) = hangups {
            task.abort();
        }
        match server.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGHUP forces a reload.
#[cfg(unix)]
fn forward_sighup(server: &Server) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on signal is off");
            return None;
        }
    };
    let reload = server.reloader.sender();
    Some(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the policy");
            let _ = reload.try_send(Trigger::Signal);
        }
    }))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
