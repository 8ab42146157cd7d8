//! Wiring of the service: ordered start-up and shutdown.
//!
//! Start-up: lock the data directory → load the config (if any) → start the supervisor and the
//! webhook sinks → `pre_start` hook → set up the environment (the node: storage, lease; it
//! starts the stacks once it owns the lease) → serve the API. Shutdown (on the `shutdown`
//! future, or when a process with `on_exit: shutdown` ends): stop accepting requests and end
//! event streams, finish in-flight requests, then hand the environment over (stop every
//! process, dependants first, in parallel, with their timeouts; final checkpoint; flush
//! replication; release the lease) → `post_stop` hook → flush the sinks → `on_shutdown` hook.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::Auth;
use crate::config::{self, Config, ConfigError};
use crate::datadir::{DataDir, LockError};
use crate::http::{self, AppState, StateParts};
use crate::service::{Service, ServiceError, ServiceOptions};
use crate::signals;
use crate::supervisor::{self, Options, SupervisorHandle};

/// Settings of `serve` that do not come from the config file.
#[derive(Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub subreaper: bool,
    /// How API requests are authenticated (keys read from the environment at start).
    pub auth: Auth,
    /// How often each process group's CPU and memory are sampled; `None`: never.
    pub usage_interval: Option<std::time::Duration>,
    /// Connections at once and how long a client may take to send a request.
    pub limits: http::listen::Limits,
    /// The state-manager binary to start the fence process from (`/proc/self/exe` in
    /// `serve`); `None`: no fence process, the processes are stopped by this one alone.
    pub fence_program: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The problem is part of the message, not a source: printed with its chain (`{:#}`) it
    /// would be listed twice.
    #[error("{path}: {problem}")]
    Config { path: String, problem: ConfigError },
    #[error("cannot become a subreaper: {0}")]
    Subreaper(std::io::Error),
    #[error("cannot set up the environment: {0}")]
    Service(#[from] ServiceError),
}

/// Warning logged at start and shown in `GET /` when the API has no authentication.
pub const INSECURE_WARNING: &str = "authentication is disabled (--insecure-no-auth): anyone who can reach the API can stop processes and change the configuration; set STATE_MANAGER_JWT_SECRET and restart";

/// Run the service, answering the API on `listener`, until `shutdown` resolves with an exit code
/// (or a process with `on_exit: shutdown` ends); returns the code to exit with.
///
/// Shutdown order: stop accepting connections and end open event streams, let in-flight requests
/// finish, then stop every process.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = i32> + Send + 'static,
) -> Result<i32, AppError> {
    let _lock = DataDir::new(&settings.data_dir).lock()?;
    if settings.subreaper {
        crate::proc::set_subreaper().map_err(AppError::Subreaper)?;
    }
    let config = load_config(&settings.config_path)?;
    let (feed, events_rx) = crate::feed::Feed::new();
    let handle = supervisor::start(Options {
        feed: Some(feed.clone()),
        usage_interval: settings.usage_interval,
        ..Options::default()
    });
    let (hup_tx, hup_rx) = mpsc::unbounded_channel();
    let forward = signals::forward(handle.clone(), Some(hup_tx));
    let service = Service::new(ServiceOptions {
        data_dir: settings.data_dir.clone(),
        config_path: settings.config_path.clone(),
        supervisor: handle.clone(),
        feed: feed.clone(),
        durable_events: events_rx,
        fence_program: settings.fence_program.clone(),
    });
    let reloads = tokio::spawn(reload_on_hup(service.clone(), hup_rx));
    // Hooks around the processes' life; history sinks subscribed before the first event.
    let hooks = crate::hooks::Hooks::new(config.as_ref(), &settings.data_dir);
    let webhooks = config.as_ref().map_or(&[][..], |c| &c.webhooks[..]);
    let sinks = crate::webhooks::Sinks::start(webhooks, || feed.subscribe());
    let mut parts = state_parts(&settings, &handle, service.clone());
    (parts.hooks, parts.webhooks) = (hooks.clone(), sinks.monitor());
    let state = AppState::new(parts);
    hooks.run(crate::hooks::HookPoint::PreStart).await;
    if let Some(c) = config {
        let applied = service.start(c).await?;
        tracing::info!(processes = applied.processes.len(), config = %settings.config_path.display(), "configured");
    } else {
        tracing::info!(config = %settings.config_path.display(), "no config file: starting unconfigured; POST /config to configure");
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let code = Arc::new(AtomicI32::new(0));
    let stop = stop_signal(shutdown, handle.clone(), state.clone(), code.clone());
    let router = http::router(state);
    crate::memory::release_startup_memory();
    http::listen::serve(listener, router, settings.limits, stop).await;
    let code = code.load(Ordering::SeqCst);
    if let Some(node) = service.node() {
        tracing::info!(code, "handing the environment over");
        node.shutdown().await;
    }
    tracing::info!(code, "stopping every process");
    let _ = handle.shutdown().await;
    hooks.run(crate::hooks::HookPoint::PostStop).await;
    sinks.shutdown(crate::webhooks::SHUTDOWN_GRACE).await;
    hooks.run(crate::hooks::HookPoint::OnShutdown).await;
    forward.abort();
    reloads.abort();
    Ok(code)
}

/// SIGHUP in `serve`: read the config file again and apply it like `PUT /config`, logging
/// the plan (a line per stack added, removed or changed) or why nothing was changed.
async fn reload_on_hup(service: Service, mut hups: mpsc::UnboundedReceiver<()>) {
    while hups.recv().await.is_some() {
        let path = service.config_path().display().to_string();
        match service.reload(None, Default::default()).await {
            Ok(plan) => {
                for name in &plan.added {
                    tracing::info!(config = %path, stack = %name, "reload: + {name} (added)");
                }
                for name in &plan.removed {
                    tracing::info!(config = %path, stack = %name, "reload: - {name} (removed)");
                }
                for c in &plan.changed {
                    let fields = c.fields.join(", ");
                    tracing::info!(config = %path, stack = %c.name, "reload: ~ {}: {fields}", c.name);
                }
                tracing::info!(
                    config = %path,
                    revision = plan.revision,
                    unchanged = plan.unchanged.len(),
                    kept = plan.kept.len(),
                    env_affected = plan.env_affected.len(),
                    "reloaded the config file on SIGHUP"
                );
            }
            Err(ServiceError::Invalid(problems)) => {
                for p in &problems {
                    tracing::error!(config = %path, field = %p.path, "reload: {}: {}", p.path, p.message);
                }
                tracing::error!(config = %path, problems = problems.len(), "the config file has problems; nothing was changed (SIGHUP)");
            }
            Err(e) => {
                tracing::error!(config = %path, "the config file was not reloaded, nothing was changed: {e}")
            }
        }
    }
}

fn state_parts(settings: &Settings, handle: &SupervisorHandle, service: Service) -> StateParts {
    let mut warnings = Vec::new();
    match &settings.auth {
        Auth::Insecure => {
            tracing::warn!("{INSECURE_WARNING}");
            warnings.push(INSECURE_WARNING.to_string());
        }
        Auth::Jwt(keys) => tracing::info!(key = %keys.source, "API requests need a bearer JWT"),
    }
    StateParts {
        supervisor: handle.clone(),
        auth: settings.auth.clone(),
        service,
        hooks: Default::default(),
        webhooks: Default::default(),
        warnings,
    }
}

/// Resolves when the service should stop (the `shutdown` future, or a process asking for it),
/// after recording the exit code and ending open event streams.
async fn stop_signal(
    shutdown: impl Future<Output = i32> + Send,
    handle: SupervisorHandle,
    state: AppState,
    out: Arc<AtomicI32>,
) {
    let mut exit = handle.exit_requested();
    let code = tokio::select! {
        code = shutdown => code,
        Ok(code) = async { exit.wait_for(Option::is_some).await.map(|c| c.unwrap_or(0)) } => code,
    };
    tracing::info!(
        code,
        "shutting down: no new requests, finishing those in flight"
    );
    out.store(code, Ordering::SeqCst);
    state.close_streams();
}

/// The config at `path`, or `None` if there is no file there.
pub fn load_config(path: &Path) -> Result<Option<Config>, AppError> {
    if !path.exists() {
        return Ok(None);
    }
    config::parse_file(path)
        .map(Some)
        .map_err(|problem| AppError::Config {
            path: path.display().to_string(),
            problem,
        })
}

/// `state-manager restore-db`: the state database from the storage of the config at
/// `config_path` (local storage lives under `data_dir`), as it was at `at` (RFC 3339; default
/// the latest), into the new file `to`.
pub async fn restore_db(
    config_path: &Path,
    data_dir: &Path,
    to: &Path,
    at: Option<&str>,
) -> anyhow::Result<crate::replication::RestoreInfo> {
    let path = config_path;
    let config = load_config(path)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no config at {}: give --config with the storage to restore from",
            path.display()
        )
    })?;
    let at = match at {
        Some(t) => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--at {t:?} is not an RFC 3339 time like 2026-11-23T12:00:00Z: {e}"
                    )
                })?,
        ),
        None => None,
    };
    let objects = crate::objstore::open(config.storage.as_ref(), data_dir).await?;
    Ok(crate::replication::restore_db(&objects, to, at).await?)
}
