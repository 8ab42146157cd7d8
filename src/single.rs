//! `state-manager run -- CMD`: supervise one command as a container ENTRYPOINT. Its output goes
//! straight to ours, a change of a watched file restarts it gracefully, and when it exits on its
//! own we exit with its code (128 + signal if it was killed).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, OnExit, ProcessSpec, RestartPolicy, StackSource};
use crate::proc::Stdio3;
use crate::supervisor::{self, Options};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--stop-signal: {0}")]
    Signal(String),
    #[error("cannot become a subreaper: {0}")]
    Subreaper(std::io::Error),
}

/// The one command `run` supervises, and how (from `run`'s command line).
#[derive(Clone, Debug)]
pub struct Entrypoint {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Restart the command gracefully when one of these files changes.
    pub watch: Vec<PathBuf>,
    pub stop_timeout: Duration,
    pub restart_delay: Duration,
    /// The name of the signal that asks the command to stop, e.g. `SIGTERM`.
    pub stop_signal: String,
    pub on_exit: OnExit,
    /// Adopt and reap orphaned descendants.
    pub subreaper: bool,
}

/// The process spec `run` supervises.
pub fn spec(args: &Entrypoint) -> Result<ProcessSpec, RunError> {
    let stop_signal = config::parse_signal(&args.stop_signal).map_err(RunError::Signal)?;
    let base = PathBuf::from(&args.command[0]);
    let name: String = base
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect()
        })
        .filter(|n: &String| config::is_name(n))
        .unwrap_or_else(|| "app".into());
    let on_exit = args.on_exit;
    Ok(ProcessSpec {
        name: name.clone(),
        stack: name,
        instance: None,
        argv: args.command.clone(),
        env: Default::default(),
        env_file: None,
        cwd: None,
        user: None,
        group: None,
        source: StackSource::Inline,
        autostart: true,
        restart: RestartPolicy {
            on_exit,
            delay: args.restart_delay,
            backoff_max: args.restart_delay.max(Duration::from_secs(30)),
            reset_after: Duration::from_secs(30),
            max_restarts: None,
        },
        stop_signal,
        stop_timeout: args.stop_timeout,
        watch: args.watch.clone(),
        checkpoint_command: None,
        restore_command: None,
        depends_on: Vec::new(),
        ports: Vec::new(),
        reclaim_ports: false,
        readiness: None,
        liveness: None,
    })
}

/// Run until the command exits on its own (its code) or `shutdown` resolves (that code).
pub async fn run(args: Entrypoint, shutdown: impl Future<Output = i32>) -> Result<i32, RunError> {
    let spec = spec(&args)?;
    if args.subreaper {
        crate::proc::set_subreaper().map_err(RunError::Subreaper)?;
    }
    let options = Options {
        stdio: Stdio3::Inherit,
        forward_output: false,
        // Nothing reads the samples: `run` serves no API.
        usage_interval: None,
        ..Options::default()
    };
    let handle = supervisor::start(options);
    let forward = crate::signals::forward(handle.clone(), None);
    let mut exit = handle.exit_requested();
    let _ = handle.load(vec![Arc::new(spec)]).await;
    let code = tokio::select! {
        code = shutdown => code,
        Ok(code) = async { exit.wait_for(Option::is_some).await.map(|c| c.unwrap_or(0)) } => code,
    };
    let _ = handle.shutdown().await;
    forward.abort();
    Ok(code)
}
