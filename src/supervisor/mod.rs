//! The supervisor: one owner of all process state.
//!
//! Callers hold a cheap [`SupervisorHandle`] and send commands to one actor task (`actor.rs`),
//! which owns every process's [`state::Machine`], spawns children through [`crate::proc`], and
//! emits every transition as an [`Event`]. Handlers never touch processes directly.
//!
//! Health: a process with a readiness probe stays `starting` until the probe succeeds; a liveness
//! probe failing `failures` times in a row restarts it through the restart policy. Probe tasks
//! belong to one incarnation (pid) and end with it. A process starts once every process of the
//! stacks it depends on is `running` (so ready), and only after the leftovers of an earlier run
//! on the same data directory are stopped (see [`leftovers`]).

mod actor;
pub mod backoff;
mod child;
pub mod leftovers;
mod pump;
pub mod state;
mod store_ledger;
pub mod usage;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot, watch as watch_ch};

use crate::config::ProcessSpec;
use crate::events::{Change, Event, ExitStatus, Intent, Origin, StateName};
use crate::feed::Feed;
use crate::logs::LogBuffer;
use crate::ports::PortInfo;
use crate::probes::ProbeResult;
use crate::proc::Stdio3;
pub use child::read_env_file;
pub use leftovers::{OpenRun, RunLedger};
pub use store_ledger::StoreLedger;
pub use usage::{Usage, UsageTable};

/// How the supervisor is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Children's stdio: captured (serve) or inherited (single-app `run`).
    pub stdio: Stdio3,
    /// Forward captured output to our stdout/stderr prefixed with the process name.
    pub forward_output: bool,
    /// Every event is also published here (the store persists them, `GET /events` and the
    /// webhooks read them).
    pub feed: Option<Feed>,
    /// The record of running processes in the state database: leftovers of an earlier run are
    /// stopped before anything starts, and a port held by one is freed. `None`: no earlier run
    /// is known (only this run's own leftovers are recognised).
    pub ledger: Option<Arc<dyn RunLedger>>,
    /// How often each process group's CPU and memory are sampled from `/proc`; `None`: never.
    pub usage_interval: Option<Duration>,
    /// Variables every process gets on top of its own environment (the lease epoch).
    pub ambient: AmbientEnv,
}

/// Variables set for every process started from now on, over its spec's own: what the node
/// tells its processes about the environment (`STATE_MANAGER_LEASE_EPOCH`). Cheap to clone;
/// clones share the variables.
#[derive(Clone, Debug, Default)]
pub struct AmbientEnv(Arc<std::sync::RwLock<Vec<(String, String)>>>);

impl AmbientEnv {
    /// Replace the variables.
    pub fn set(&self, vars: Vec<(String, String)>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = vars;
    }

    pub fn get(&self) -> Vec<(String, String)> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stdio: Stdio3::Capture,
            forward_output: true,
            feed: None,
            ledger: None,
            usage_interval: Some(usage::DEFAULT_INTERVAL),
            ambient: AmbientEnv::default(),
        }
    }
}

/// One process as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ProcessInfo {
    pub name: String,
    pub stack: String,
    pub state: StateName,
    pub pid: Option<u32>,
    /// Restarts over the process's life.
    pub restarts: u32,
    /// Seconds since it was started, while it is up.
    pub uptime_s: Option<f64>,
    /// When it entered its current state.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub last_exit: Option<ExitStatus>,
    /// Why it is in its current state, in words.
    pub reason: Option<String>,
    /// Running and its readiness probe (if any) passing.
    pub ready: bool,
    /// Running, ready, and its last liveness probe (if any) passed.
    pub healthy: bool,
    /// The latest probe attempt, readiness or liveness (kept after the process went down, to
    /// show why).
    pub last_probe: Option<ProbeResult>,
    /// CPU and memory of its process group at the latest sample; `null` while it is not up or
    /// before it was first sampled (or when sampling is off).
    pub usage: Option<Usage>,
    /// Where its stack's spec comes from: `file` (this node's config file) or `api` (added,
    /// replaced or scaled through the API); `null` until the environment's set is loaded.
    pub origin: Option<Origin>,
    /// What the operator last asked of it, kept across restarts and takeovers: `stopped` (on
    /// purpose) or `started`; `null` when nothing was asked and `autostart` decides.
    pub intent: Option<Intent>,
}

#[cfg(test)]
impl ProcessInfo {
    /// A running process named `name` (for tests of what is built on the list).
    pub fn example(name: &str, pid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            stack: name.into(),
            state: if pid.is_some() {
                StateName::Running
            } else {
                StateName::Stopped
            },
            pid,
            restarts: 0,
            uptime_s: None,
            since: OffsetDateTime::UNIX_EPOCH,
            last_exit: None,
            reason: None,
            ready: pid.is_some(),
            healthy: pid.is_some(),
            last_probe: None,
            usage: None,
            origin: None,
            intent: None,
        }
    }
}

/// Counts by state, for `GET /`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Summary {
    pub total: usize,
    pub running: usize,
    pub starting: usize,
    pub stopping: usize,
    pub stopped: usize,
    pub backoff: usize,
    pub exited: usize,
    /// In `fatal` state.
    pub failed: usize,
    /// Running and ready (readiness probe passing).
    pub ready: usize,
    /// Running, ready and live (the `healthy` of each process).
    pub healthy: usize,
    /// Asked to start, waiting for their dependencies (or for start-up cleanup).
    pub waiting: usize,
    /// Due to start again by themselves: in backoff plus waiting.
    pub restart_queue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no process matches {pattern:?}; list them with GET /processes")]
    NoMatch { pattern: String },
    #[error("no process named {name:?}; list them with GET /processes")]
    NotFound { name: String },
    #[error("invalid pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("processes are already loaded; the configuration is applied once")]
    AlreadyLoaded,
    /// The set cannot drop or replace processes that are not down.
    #[error("{} still running; stop them first", names.join(", "))]
    StillRunning { names: Vec<String> },
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    #[error("invalid probe: {0}")]
    Probe(#[from] crate::probes::ProbeError),
}

type Reply<T> = oneshot::Sender<Result<T, SupervisorError>>;

pub(crate) enum Command {
    Load {
        specs: Vec<Arc<ProcessSpec>>,
        start: bool,
        reply: Reply<()>,
    },
    List {
        pattern: Option<String>,
        reply: Reply<Vec<ProcessInfo>>,
    },
    Start {
        pattern: String,
        reply: Reply<Vec<String>>,
    },
    Stop {
        pattern: String,
        timeout: Option<Duration>,
        reply: Reply<Vec<String>>,
    },
    Restart {
        pattern: String,
        reply: Reply<Vec<String>>,
    },
    StopAll {
        timeout: Option<Duration>,
        reply: Reply<()>,
    },
    StartAll {
        /// By process name: start it (`true`) or leave it down (`false`) whatever its
        /// `autostart` says.
        overrides: HashMap<String, bool>,
        reply: Reply<()>,
    },
    Sync {
        specs: Vec<Arc<ProcessSpec>>,
        /// Changed processes keep running with their old spec until their next start.
        defer: bool,
        reply: Reply<()>,
    },
    WaitUp {
        names: Vec<String>,
        reply: Reply<()>,
    },
    Announce {
        process: String,
        change: Change,
        reason: String,
    },
    Freeze {
        frozen: bool,
        reply: Reply<Vec<u32>>,
    },
    Logs {
        name: String,
        reply: Reply<Arc<LogBuffer>>,
    },
    Ports {
        reply: Reply<Vec<(String, u16, Option<u32>)>>,
    },
    SetLedger {
        ledger: Option<Arc<dyn RunLedger>>,
        reply: Reply<()>,
    },
    Signal {
        signal: nix::sys::signal::Signal,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A cheap, cloneable handle to the supervisor actor.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Command>,
    /// `Arc`s, for the reasons the feed's broadcast carries them (`crate::feed::Feed`).
    events: broadcast::Sender<Arc<Event>>,
    exit: watch_ch::Receiver<Option<i32>>,
    /// Counts by state, published by the actor at every change, so that reading them (every
    /// `GET /`) costs no round trip through the actor.
    summary: watch_ch::Receiver<Summary>,
    /// The latest CPU and memory sample of every process.
    usage: watch_ch::Receiver<Arc<UsageTable>>,
    ambient: AmbientEnv,
}

/// Start the supervisor actor on the current tokio runtime, with no processes yet.
pub fn start(options: Options) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(4096);
    let (exit_tx, exit) = watch_ch::channel(None);
    let (summary_tx, summary) = watch_ch::channel(Summary::default());
    let (usage_tx, usage) = watch_ch::channel(Arc::default());
    let ambient = options.ambient.clone();
    if let Some(interval) = options.usage_interval {
        tokio::spawn(usage::run(tx.downgrade(), interval, usage_tx));
    }
    tokio::spawn(actor::Actor::new(options, rx, events.clone(), exit_tx, summary_tx).run());
    SupervisorHandle {
        tx,
        events,
        exit,
        summary,
        usage,
        ambient,
    }
}

impl SupervisorHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SupervisorError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SupervisorError::ShuttingDown)?;
        rx.await.map_err(|_| SupervisorError::ShuttingDown)?
    }

    /// Take over the processes of a configuration and start those with `autostart`, each after
    /// its dependencies are up. Only once per supervisor.
    pub async fn load(&self, specs: Vec<Arc<ProcessSpec>>) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::Load {
            specs,
            start: true,
            reply,
        })
        .await
    }

    /// Take over the processes of a configuration, all `stopped`: they start with
    /// [`SupervisorHandle::start_all`] (once this node owns the environment). Only once.
    pub async fn register(&self, specs: Vec<Arc<ProcessSpec>>) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::Load {
            specs,
            start: false,
            reply,
        })
        .await
    }

    /// Processes whose names match the glob `pattern` (all when `None`), in configuration order,
    /// each with its latest CPU and memory sample.
    pub async fn list(&self, pattern: Option<&str>) -> Result<Vec<ProcessInfo>, SupervisorError> {
        let mut list = self
            .ask(|reply| Command::List {
                pattern: pattern.map(str::to_string),
                reply,
            })
            .await?;
        let usage = self.usage.borrow().clone();
        for p in &mut list {
            usage.attach(p);
        }
        Ok(list)
    }

    /// The latest CPU and memory sample of every process, and its changes (one per sample).
    /// The variables every process started from now on gets.
    pub fn ambient(&self) -> &AmbientEnv {
        &self.ambient
    }

    pub fn usage(&self) -> watch_ch::Receiver<Arc<UsageTable>> {
        self.usage.clone()
    }

    pub async fn get(&self, name: &str) -> Result<ProcessInfo, SupervisorError> {
        let all = self.list(None).await?;
        all.into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| SupervisorError::NotFound { name: name.into() })
    }

    /// Counts by state and health as of the latest change.
    pub async fn summary(&self) -> Result<Summary, SupervisorError> {
        Ok(self.summary.borrow().clone())
    }

    /// Start the matching processes (each once its dependencies run); returns their names.
    pub async fn start(&self, pattern: &str) -> Result<Vec<String>, SupervisorError> {
        self.ask(|reply| Command::Start {
            pattern: pattern.into(),
            reply,
        })
        .await
    }

    /// Stop the matching processes (in parallel); returns once all of them are down.
    pub async fn stop(
        &self,
        pattern: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<String>, SupervisorError> {
        self.ask(|reply| Command::Stop {
            pattern: pattern.into(),
            timeout,
            reply,
        })
        .await
    }

    /// Stop then start the matching processes; returns once they are started again.
    pub async fn restart(&self, pattern: &str) -> Result<Vec<String>, SupervisorError> {
        self.ask(|reply| Command::Restart {
            pattern: pattern.into(),
            reply,
        })
        .await
    }

    /// Stop every process, dependants before their dependencies; returns when all are down.
    pub async fn stop_all(&self) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::StopAll {
            timeout: None,
            reply,
        })
        .await
    }

    /// [`SupervisorHandle::stop_all`], with every stop timeout capped at `timeout` (a node that
    /// lost its lease must be down before the lease can pass to another).
    pub async fn stop_all_within(&self, timeout: Duration) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::StopAll {
            timeout: Some(timeout),
            reply,
        })
        .await
    }

    /// Start every `autostart` process again (after a restore), respecting dependencies.
    pub async fn start_all(&self) -> Result<(), SupervisorError> {
        self.start_all_with(HashMap::new()).await
    }

    /// [`SupervisorHandle::start_all`], where `overrides` says of some processes whether they
    /// start whatever their `autostart` (the operator's intent).
    pub async fn start_all_with(
        &self,
        overrides: HashMap<String, bool>,
    ) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::StartAll { overrides, reply })
            .await
    }

    /// Make the set of processes exactly `specs`, in this order: processes with the same spec
    /// are kept as they are (same pid), new ones are added stopped, and the ones dropped or
    /// changed must be down ([`SupervisorError::StillRunning`] otherwise, and nothing changes).
    /// A changed process keeps its log buffer.
    pub async fn sync(&self, specs: Vec<Arc<ProcessSpec>>) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::Sync {
            specs,
            defer: false,
            reply,
        })
        .await
    }

    /// [`SupervisorHandle::sync`], except that a process whose spec changed keeps its state,
    /// pid and probes and takes the new spec at its next start (a config reload's new global
    /// `env`); only processes dropped from the set must be down.
    pub async fn sync_deferred(&self, specs: Vec<Arc<ProcessSpec>>) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::Sync {
            specs,
            defer: true,
            reply,
        })
        .await
    }

    /// Wait until each of `names` is running (so ready), down, or in backoff; unknown names
    /// are not waited for.
    pub async fn wait_up(&self, names: Vec<String>) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::WaitUp { names, reply }).await
    }

    /// Emit an event for `change` made to `process` (its state at the time as `from` and
    /// `to`), on the same paths as transitions: history, streams, webhooks, metrics.
    pub async fn announce(&self, process: &str, change: Change, reason: String) {
        let _ = self
            .tx
            .send(Command::Announce {
                process: process.into(),
                change,
                reason,
            })
            .await;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) every live process group; returns the groups
    /// (their leaders' pids).
    pub async fn freeze(&self, frozen: bool) -> Result<Vec<u32>, SupervisorError> {
        self.ask(|reply| Command::Freeze { frozen, reply }).await
    }

    /// The log buffer of one process.
    pub async fn logs(&self, name: &str) -> Result<Arc<LogBuffer>, SupervisorError> {
        self.ask(|reply| Command::Logs {
            name: name.into(),
            reply,
        })
        .await
    }

    /// Record runs in `ledger` from now on (the state database, once it is open): leftovers of
    /// an earlier run it records are stopped first, and nothing starts until they are. `None`
    /// stops recording (before the database closes).
    pub async fn set_ledger(
        &self,
        ledger: Option<Arc<dyn RunLedger>>,
    ) -> Result<(), SupervisorError> {
        self.ask(|reply| Command::SetLedger { ledger, reply }).await
    }

    /// Every managed port (`ports` of each process) with whether it is in use and by whom.
    pub async fn ports(&self) -> Result<Vec<PortInfo>, SupervisorError> {
        let managed = self.ask(|reply| Command::Ports { reply }).await?;
        tokio::task::spawn_blocking(move || crate::ports::list(&managed))
            .await
            .map_err(|_| SupervisorError::ShuttingDown)
    }

    /// Forward a signal to every live process group.
    pub async fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = self.tx.send(Command::Signal { signal }).await;
    }

    /// Stop everything and end the actor. Idempotent.
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        match self.ask(|reply| Command::Shutdown { reply }).await {
            Err(SupervisorError::ShuttingDown) => Ok(()),
            other => other,
        }
    }

    /// Every transition as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Becomes `Some(code)` when a process with `on_exit: shutdown` ended: the supervisor should
    /// exit with that code.
    pub fn exit_requested(&self) -> watch_ch::Receiver<Option<i32>> {
        self.exit.clone()
    }
}
