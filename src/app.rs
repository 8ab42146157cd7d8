//! Wiring of the service: ordered start-up and shutdown.
//!
//! Start-up: lock the data directory → load the config (if any) → start the supervisor and the
//! webhook sinks → `pre_start` hook → load the stacks. Shutdown (on the `shutdown` future, or
//! when a process with `on_exit: shutdown` ends): stop every process, dependants first, in
//! parallel, with their timeouts → `post_stop` hook → flush the sinks → `on_shutdown` hook.

use std::future::Future;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{self, Config, ConfigError};
use crate::datadir::{self, LockError};
use crate::supervisor::{self, Options, SupervisorHandle};

/// Settings of `serve` that do not come from the config file.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub subreaper: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{path}: {source}")]
    Config { path: String, source: ConfigError },
    #[error("cannot become a subreaper: {0}")]
    Subreaper(std::io::Error),
}

/// Run the service until `shutdown` resolves with an exit code; returns the code to exit with.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = i32>,
) -> Result<i32, AppError> {
    let _lock = datadir::lock(&settings.data_dir)?;
    if settings.subreaper {
        crate::proc::set_subreaper().map_err(AppError::Subreaper)?;
    }
    let config = load_config(&settings.config_path)?;
    let handle = supervisor::start(Options::default());
    let forward = forward_signals(handle.clone());
    // Hooks around the processes' life; history sinks subscribed before the first event.
    let hooks = crate::hooks::Hooks::new(config.as_ref(), &settings.data_dir);
    let webhooks = config.as_ref().map_or(&[][..], |c| &c.webhooks[..]);
    let sinks = crate::webhooks::Sinks::start(webhooks, || handle.subscribe());
    hooks.run(crate::hooks::HookPoint::PreStart).await;
    match &config {
        Some(c) => {
            let specs = config::resolve(c, &stacks_dir(c, &settings.data_dir));
            tracing::info!(processes = specs.len(), config = %settings.config_path.display(), "configured");
            let _ = handle.load(specs).await;
        }
        None => {
            tracing::info!(config = %settings.config_path.display(), "no config file: starting unconfigured")
        }
    }
    let mut exit = handle.exit_requested();
    let code = tokio::select! {
        code = shutdown => code,
        Ok(code) = async { exit.wait_for(Option::is_some).await.map(|c| c.unwrap_or(0)) } => code,
    };
    tracing::info!(code, "shutting down");
    let _ = handle.shutdown().await;
    hooks.run(crate::hooks::HookPoint::PostStop).await;
    sinks.shutdown(crate::webhooks::SHUTDOWN_GRACE).await;
    hooks.run(crate::hooks::HookPoint::OnShutdown).await;
    forward.abort();
    Ok(code)
}

/// The config at `path`, or `None` if there is no file there.
pub fn load_config(path: &Path) -> Result<Option<Config>, AppError> {
    if !path.exists() {
        return Ok(None);
    }
    config::parse_file(path)
        .map(Some)
        .map_err(|source| AppError::Config {
            path: path.display().to_string(),
            source,
        })
}

/// Where string stacks live: `stacks_dir` from the config, else `<data_dir>/stacks`.
pub fn stacks_dir(config: &Config, data_dir: &Path) -> PathBuf {
    config
        .stacks_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("stacks"))
}

/// Forward SIGHUP, SIGUSR1 and SIGUSR2 to every supervised process group.
pub fn forward_signals(handle: SupervisorHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
        ) else {
            tracing::warn!("cannot listen for SIGHUP/SIGUSR1/SIGUSR2; they will not be forwarded");
            return;
        };
        loop {
            let sig = tokio::select! {
                Some(()) = hup.recv() => Signal::SIGHUP,
                Some(()) = usr1.recv() => Signal::SIGUSR1,
                Some(()) = usr2.recv() => Signal::SIGUSR2,
                else => break,
            };
            tracing::info!("forwarding {sig} to all processes");
            handle.signal(sig).await;
        }
    })
}

/// Resolves with the exit code for the first SIGTERM (143) or SIGINT (130). Registers the
/// handlers at once, so a signal that arrives before it is awaited is not lost.
pub fn termination() -> std::io::Result<impl Future<Output = i32>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        }
    })
}
