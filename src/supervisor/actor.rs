//! The actor: owns every process, `select!`s over commands, child exits, probe reports, timers
//! and watched files, and carries out the effects its pure state machines ask for. Commands are
//! in `commands.rs`, dependency order in `order.rs`, probes and start-up cleanup in `health.rs`,
//! read-only views in `view.rs`.

mod commands;
mod health;
mod order;
mod set;
mod view;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, watch};

use super::child::{self, Launch};
use super::leftovers::Earlier;
use super::state::{AfterStop, Effect, Input, Machine, ProcState};
use super::watch::WatchGuard;
use super::{Command, Options, Summary};
use crate::config::ProcessSpec;
use crate::events::{Event, StateName};
use crate::logs::LogBuffer;
use crate::probes::{ProbeResult, ProbeSpec, ProbeTask, Report};
use crate::proc;

struct Proc {
    spec: Arc<ProcessSpec>,
    name: Arc<str>,
    m: Machine,
    logs: Arc<LogBuffer>,
    /// Wall-clock time the current state was entered.
    since: OffsetDateTime,
    reason: Option<String>,
    /// Pid of the latest incarnation, kept after it exits for events.
    last_pid: Option<u32>,
    _watch: Option<WatchGuard>,
    readiness: Option<Arc<ProbeSpec>>,
    liveness: Option<Arc<ProbeSpec>>,
    /// Probe tasks of the current incarnation; dropping them stops them.
    probes: Vec<ProbeTask>,
    /// Readiness reached and not lost since (meaningful while starting or running).
    ready: bool,
    /// Result of the last liveness attempt of this incarnation.
    live_ok: Option<bool>,
    last_probe: Option<ProbeResult>,
    /// Log mark taken before the current incarnation was spawned.
    log_mark: u64,
    /// A look at the members of its group is under way (off the runtime); its deadline waits
    /// for the answer.
    group_check: bool,
}

/// The answer of a look at a stopping process's group.
struct GroupCheck {
    name: Arc<str>,
    pid: u32,
    alive: bool,
}

enum Wait {
    /// Every target is down (stopped, exited, fatal).
    Down,
    /// No target is stopping any more (a restart went through).
    Settled,
    /// Every target is running (so ready), or down, or waiting to restart: it will not become
    /// ready by itself soon.
    Up,
}

struct Waiter {
    targets: Vec<usize>,
    until: Wait,
    reply: Box<dyn FnOnce() + Send>,
}

pub(super) struct Actor {
    opts: Options,
    rx: mpsc::Receiver<Command>,
    events: broadcast::Sender<Arc<Event>>,
    exit_tx: watch::Sender<Option<i32>>,
    /// The summary, republished after every change (reading it costs no round trip).
    summary_tx: watch::Sender<Summary>,
    procs: Vec<Proc>,
    index: HashMap<Arc<str>, usize>,
    launch_tx: mpsc::UnboundedSender<Launch>,
    launch_rx: mpsc::UnboundedReceiver<Launch>,
    watch_tx: mpsc::UnboundedSender<Arc<str>>,
    watch_rx: mpsc::UnboundedReceiver<Arc<str>>,
    probe_tx: mpsc::UnboundedSender<Report>,
    probe_rx: mpsc::UnboundedReceiver<Report>,
    cleanup_tx: mpsc::UnboundedSender<Earlier>,
    cleanup_rx: mpsc::UnboundedReceiver<Earlier>,
    group_tx: mpsc::UnboundedSender<GroupCheck>,
    group_rx: mpsc::UnboundedReceiver<GroupCheck>,
    /// Start-up cleanups under way (leftovers of an earlier run being stopped): nothing starts
    /// until none is.
    cleaning: u32,
    earlier: Arc<Earlier>,
    waiters: Vec<Waiter>,
    /// Asked to start, waiting for their dependencies to be running.
    pending_start: BTreeSet<usize>,
    /// Asked to stop, waiting for their dependants to be down.
    pending_stop: BTreeSet<usize>,
    /// Cap on stop timeouts of the stop-all under way.
    stop_cap: Option<Duration>,
    frozen: bool,
    loaded: bool,
    shutdown: Option<Vec<super::Reply<()>>>,
}

impl Actor {
    pub(super) fn new(
        opts: Options,
        rx: mpsc::Receiver<Command>,
        events: broadcast::Sender<Arc<Event>>,
        exit_tx: watch::Sender<Option<i32>>,
        summary_tx: watch::Sender<Summary>,
    ) -> Self {
        let (launch_tx, launch_rx) = mpsc::unbounded_channel();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let (cleanup_tx, cleanup_rx) = mpsc::unbounded_channel();
        let (group_tx, group_rx) = mpsc::unbounded_channel();
        Actor {
            opts,
            rx,
            events,
            exit_tx,
            summary_tx,
            procs: Vec::new(),
            index: HashMap::new(),
            launch_tx,
            launch_rx,
            watch_tx,
            watch_rx,
            probe_tx,
            probe_rx,
            cleanup_tx,
            cleanup_rx,
            group_tx,
            group_rx,
            cleaning: 0,
            earlier: Arc::new(Earlier::default()),
            waiters: Vec::new(),
            pending_start: BTreeSet::new(),
            pending_stop: BTreeSet::new(),
            stop_cap: None,
            frozen: false,
            loaded: false,
            shutdown: None,
        }
    }

    pub(super) async fn run(mut self) {
        let mut handles_gone = false;
        loop {
            let deadline = self
                .procs
                .iter()
                .filter(|p| !p.group_check)
                .filter_map(|p| p.m.state.deadline())
                .min();
            tokio::select! {
                biased;
                Some(launch) = self.launch_rx.recv() => self.on_launch(launch),
                cmd = self.rx.recv(), if !handles_gone => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        handles_gone = true;
                        self.begin_shutdown(None);
                    }
                },
                Some(report) = self.probe_rx.recv() => self.on_probe(report),
                Some(earlier) = self.cleanup_rx.recv() => self.on_cleanup(earlier),
                Some(check) = self.group_rx.recv() => self.on_group_check(check),
                Some(name) = self.watch_rx.recv() => self.on_watch(name),
                _ = sleep_until(deadline) => self.on_timers(),
            }
            self.progress();
            self.publish_summary();
            if self.shutdown.is_some() && self.procs.iter().all(|p| p.m.state.is_down()) {
                for reply in self.shutdown.take().unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                break;
            }
        }
        // Answer whatever is still queued.
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            self.refuse(cmd);
        }
    }

    pub(super) fn on_launch(&mut self, launch: Launch) {
        match launch {
            Launch::Spawned { name, result } => {
                let Some(&i) = self.index.get(&name) else {
                    return;
                };
                let input = match result {
                    Ok(started) => {
                        self.procs[i].last_pid = Some(started.pid);
                        self.opened(i, started);
                        Input::Spawned { pid: started.pid }
                    }
                    Err(error) => Input::SpawnFailed { error },
                };
                self.feed(i, input);
                if let ProcState::Starting { pid: Some(_), .. } = self.procs[i].m.state
                    && self.procs[i].readiness.is_none()
                {
                    self.feed(i, Input::Ready);
                }
            }
            Launch::Exited {
                name,
                pid,
                status,
                group_alive,
            } => {
                let Some(&i) = self.index.get(&name) else {
                    return;
                };
                if let Some(ledger) = &self.opts.ledger {
                    ledger.closed(&name, pid, Some(status));
                }
                if self.procs[i].m.state.pid() != Some(pid) {
                    return; // an earlier incarnation
                }
                self.feed(
                    i,
                    Input::Exited {
                        status,
                        group_alive,
                    },
                );
            }
        }
    }

    /// Feed the processes whose deadline passed. A group that does not exist any more is known
    /// at once, and one whose stop timeout ran out gets its SIGKILL at once (harmless if only
    /// zombies are left); otherwise whether a group that still answers has a live member is
    /// looked up off the runtime (that reads `/proc`) and fed when known.
    pub(super) fn on_timers(&mut self) {
        let now = now();
        let due: Vec<usize> = (0..self.procs.len())
            .filter(|&i| !self.procs[i].group_check)
            .filter(|&i| self.procs[i].m.state.deadline().is_some_and(|d| d <= now))
            .collect();
        for i in due {
            match self.procs[i].m.state.pid() {
                Some(pid) if proc::group_exists(pid) => {
                    if self.procs[i].m.state.kill_due(now) {
                        self.feed(i, Input::Timer { group_alive: true });
                    } else {
                        self.check_group(i, pid);
                    }
                }
                _ => self.feed(i, Input::Timer { group_alive: false }),
            }
        }
    }

    fn check_group(&mut self, i: usize, pid: u32) {
        let p = &mut self.procs[i];
        p.group_check = true;
        let (name, tx) = (p.name.clone(), self.group_tx.clone());
        tokio::spawn(async move {
            let alive = proc::group_alive_async(pid).await;
            let _ = tx.send(GroupCheck { name, pid, alive });
        });
    }

    fn on_group_check(&mut self, check: GroupCheck) {
        let Some(&i) = self.index.get(&check.name) else {
            return;
        };
        self.procs[i].group_check = false;
        if self.procs[i].m.state.pid() == Some(check.pid) {
            self.feed(
                i,
                Input::Timer {
                    group_alive: check.alive,
                },
            );
        }
    }

    pub(super) fn on_watch(&mut self, name: Arc<str>) {
        if let Some(&i) = self.index.get(&name)
            && !self.procs[i].m.state.is_down()
        {
            self.restart(i, "watched file changed");
        }
    }

    pub(super) fn restart(&mut self, i: usize, reason: &str) {
        self.pending_stop.remove(&i);
        let timeout = self.procs[i].spec.stop_timeout;
        self.feed(
            i,
            Input::Stop {
                timeout,
                reason: reason.into(),
                then: AfterStop::Start,
            },
        );
    }

    /// Feed an input to process `i` and carry out the effects.
    pub(super) fn feed(&mut self, i: usize, input: Input) {
        let effects = self.procs[i]
            .m
            .handle(input, now(), rand::random::<f64>() * 2.0 - 1.0);
        for fx in effects {
            match fx {
                Effect::Transition {
                    from,
                    to,
                    reason,
                    exit,
                } => self.emit(i, from, to, reason, exit),
                Effect::Signal(sig) => self.signal(i, sig),
                Effect::Spawn => {
                    let opts = child::LaunchOptions {
                        stdio: self.opts.stdio,
                        forward: self.opts.forward_output,
                        ambient: self.opts.ambient.get(),
                        is_ours: self.is_ours(),
                    };
                    let p = &mut self.procs[i];
                    p.log_mark = p.logs.mark();
                    child::launch(p.spec.clone(), opts, p.logs.clone(), self.launch_tx.clone());
                }
                Effect::Shutdown { code } => {
                    let _ = self.exit_tx.send(Some(code));
                }
            }
        }
        self.sync_probes(i);
    }

    pub(super) fn signal(&self, i: usize, sig: Signal) {
        let state = &self.procs[i].m.state;
        if state.is_spawning() {
            return; // no group yet: the machine signals again once the spawn reports its pid
        }
        // A group whose leader just exited is signalled after the state moved on.
        let pid = state.pid().or(self.procs[i].last_pid);
        if let Some(pid) = pid
            && let Err(e) = proc::signal_group(pid, sig)
        {
            tracing::warn!(process = %self.procs[i].name, "cannot send {sig} to process group {pid}: {e}");
        }
    }

    pub(super) fn emit(
        &mut self,
        i: usize,
        from: StateName,
        to: StateName,
        reason: String,
        exit: Option<crate::events::ExitStatus>,
    ) {
        let p = &mut self.procs[i];
        let at = OffsetDateTime::now_utc();
        p.since = at;
        p.reason = Some(reason.clone());
        let pid = p.m.state.pid().or(p.last_pid);
        tracing::info!(process = %p.name, %from, %to, pid, "{reason}");
        let event = Event {
            at,
            process: p.name.to_string(),
            from,
            to,
            pid,
            exit,
            reason: Some(reason),
            change: None,
        };
        if let Some(feed) = &self.opts.feed {
            feed.publish(event.clone().into());
        }
        let _ = self.events.send(Arc::new(event));
    }

    /// Start what waits for its dependencies and stop what waits for its dependants, until
    /// nothing changes; then answer the waiters that are satisfied.
    pub(super) fn freeze(&mut self, frozen: bool) -> Vec<u32> {
        self.frozen = frozen;
        let sig = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        let live: Vec<usize> = (0..self.procs.len())
            .filter(|&i| {
                matches!(
                    self.procs[i].m.state,
                    ProcState::Starting { .. } | ProcState::Running { .. }
                )
            })
            .collect();
        live.iter().for_each(|&i| self.signal(i, sig));
        // A frozen process cannot answer its probes: they pause while it is frozen.
        (0..self.procs.len()).for_each(|i| self.sync_probes(i));
        live.iter()
            .filter_map(|&i| self.procs[i].m.state.pid())
            .collect()
    }

    pub(super) fn thaw_if_frozen(&mut self) {
        if self.frozen {
            self.freeze(false);
        }
    }

    pub(super) fn signal_all(&self, sig: Signal) {
        for i in 0..self.procs.len() {
            if matches!(
                self.procs[i].m.state,
                ProcState::Starting { .. } | ProcState::Running { .. }
            ) {
                self.signal(i, sig);
            }
        }
    }
}

/// The actor's clock: tokio's, which is the system's monotonic clock except under a paused test
/// clock, so that restart delays and stop timeouts can be tested by advancing time (the
/// deadlines in the state and the timers that wait for them read the same clock).
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wait for `deadline`. One that has passed (a restart with no delay) is due at once: the
/// runtime's timers tick in whole milliseconds, and waiting for the next tick would add up to a
/// millisecond to every restart. Each state's timer input moves its deadline past `now` or
/// leaves the state, so a due deadline cannot keep the actor spinning.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) if d <= now() => {}
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
