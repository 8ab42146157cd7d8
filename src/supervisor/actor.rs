//! The actor: owns every process, `select!`s over commands, child exits, timers and watched
//! files, and carries out the effects its pure state machines ask for.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, watch};

use super::child::{self, Launch};
use super::logs::LogBuffer;
use super::state::{AfterStop, Effect, Input, Machine, ProcState};
use super::watch::WatchGuard;
use super::{Command, Options, ProcessInfo, Summary, SupervisorError};
use crate::config::ProcessSpec;
use crate::events::{Event, StateName};
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
}

enum Wait {
    /// Every target is down (stopped, exited, fatal).
    Down,
    /// No target is stopping any more (a restart went through).
    Settled,
}

struct Waiter {
    targets: Vec<usize>,
    until: Wait,
    reply: Box<dyn FnOnce() + Send>,
}

pub(super) struct Actor {
    opts: Options,
    rx: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    exit_tx: watch::Sender<Option<i32>>,
    summary_tx: watch::Sender<Summary>,
    procs: Vec<Proc>,
    index: HashMap<Arc<str>, usize>,
    launch_tx: mpsc::UnboundedSender<Launch>,
    launch_rx: mpsc::UnboundedReceiver<Launch>,
    watch_tx: mpsc::UnboundedSender<Arc<str>>,
    watch_rx: mpsc::UnboundedReceiver<Arc<str>>,
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
        events: broadcast::Sender<Event>,
        exit_tx: watch::Sender<Option<i32>>,
        summary_tx: watch::Sender<Summary>,
    ) -> Self {
        let (launch_tx, launch_rx) = mpsc::unbounded_channel();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
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
            let deadline = self.procs.iter().filter_map(|p| p.m.state.deadline()).min();
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
                Some(name) = self.watch_rx.recv() => self.on_watch(name),
                _ = sleep_until(deadline) => self.on_timers(),
            }
            self.progress();
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

    fn on_command(&mut self, cmd: Command) {
        if self.shutdown.is_some() {
            return self.during_shutdown(cmd);
        }
        match cmd {
            Command::Load {
                specs,
                start,
                reply,
            } => {
                let _ = reply.send(self.load(specs, start));
            }
            Command::List { pattern, reply } => {
                let _ = reply.send(
                    self.select(pattern.as_deref())
                        .map(|ix| ix.iter().map(|&i| self.info(i)).collect()),
                );
            }
            Command::Start { pattern, reply } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.pending_start.extend(ix.iter().copied());
                    ix.iter().for_each(|i| {
                        self.pending_stop.remove(i);
                    });
                    self.progress();
                    let _ = reply.send(Ok(self.names(&ix)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Stop {
                pattern,
                timeout,
                reply,
            } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.thaw_if_frozen();
                    for &i in &ix {
                        self.pending_start.remove(&i);
                        let timeout = timeout.unwrap_or(self.procs[i].spec.stop_timeout);
                        let stop = Input::Stop {
                            timeout,
                            reason: "stopped by request".into(),
                            then: AfterStop::Stay,
                        };
                        self.feed(i, stop);
                    }
                    let names = self.names(&ix);
                    self.wait(ix, Wait::Down, move || drop(reply.send(Ok(names))));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Restart { pattern, reply } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.thaw_if_frozen();
                    for &i in &ix {
                        self.restart(i, "restarted by request");
                    }
                    let names = self.names(&ix);
                    self.wait(ix, Wait::Settled, move || drop(reply.send(Ok(names))));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::StopAll { timeout, reply } => {
                self.thaw_if_frozen();
                self.stop_cap = timeout;
                self.pending_start.clear();
                self.pending_stop = (0..self.procs.len()).collect();
                let all = (0..self.procs.len()).collect();
                self.wait(all, Wait::Down, move || drop(reply.send(Ok(()))));
            }
            Command::StartAll { reply } => {
                let auto = (0..self.procs.len()).filter(|&i| self.procs[i].spec.autostart);
                self.pending_start.extend(auto);
                self.pending_stop.clear();
                let _ = reply.send(Ok(()));
            }
            Command::Freeze { frozen, reply } => {
                let groups = self.freeze(frozen);
                let _ = reply.send(Ok(groups));
            }
            Command::Logs { name, reply } => {
                let r = self
                    .index
                    .get(name.as_str())
                    .map(|&i| self.procs[i].logs.clone());
                let _ = reply.send(r.ok_or(SupervisorError::NotFound { name }));
            }
            Command::Signal { signal } => self.signal_all(signal),
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
        }
    }

    /// While shutting down, reads are still answered; changes are refused.
    fn during_shutdown(&mut self, cmd: Command) {
        match cmd {
            Command::List { pattern, reply } => {
                let _ = reply.send(
                    self.select(pattern.as_deref())
                        .map(|ix| ix.iter().map(|&i| self.info(i)).collect()),
                );
            }
            Command::Logs { name, reply } => {
                let r = self
                    .index
                    .get(name.as_str())
                    .map(|&i| self.procs[i].logs.clone());
                let _ = reply.send(r.ok_or(SupervisorError::NotFound { name }));
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
            Command::Signal { signal } => self.signal_all(signal),
            other => self.refuse(other),
        }
    }

    fn refuse(&self, cmd: Command) {
        fn e<T>() -> Result<T, SupervisorError> {
            Err(SupervisorError::ShuttingDown)
        }
        match cmd {
            Command::Load { reply, .. }
            | Command::StopAll { reply, .. }
            | Command::StartAll { reply } => drop(reply.send(e())),
            Command::Shutdown { reply } => drop(reply.send(Ok(()))),
            Command::List { reply, .. } => drop(reply.send(e())),
            Command::Start { reply, .. }
            | Command::Stop { reply, .. }
            | Command::Restart { reply, .. } => drop(reply.send(e())),
            Command::Freeze { reply, .. } => drop(reply.send(e())),
            Command::Logs { reply, .. } => drop(reply.send(e())),
            Command::Signal { .. } => {}
        }
    }

    fn load(&mut self, specs: Vec<ProcessSpec>, start: bool) -> Result<(), SupervisorError> {
        if self.loaded {
            return Err(SupervisorError::AlreadyLoaded);
        }
        self.loaded = true;
        for spec in specs {
            let name: Arc<str> = spec.name.as_str().into();
            let watch = (!spec.watch.is_empty()).then(|| {
                let base = spec
                    .cwd
                    .clone()
                    .or_else(|| std::env::current_dir().ok())
                    .unwrap_or_default();
                super::watch::watch(name.clone(), &spec.watch, &base, self.watch_tx.clone())
                    .map_err(
                        |e| tracing::warn!(process = %name, "cannot watch {:?}: {e}", spec.watch),
                    )
                    .ok()
            });
            let i = self.procs.len();
            if start && spec.autostart {
                self.pending_start.insert(i);
            }
            self.index.insert(name.clone(), i);
            self.procs.push(Proc {
                m: Machine::new(spec.restart.clone(), spec.stop_signal),
                spec: Arc::new(spec),
                name,
                logs: Arc::new(LogBuffer::default()),
                since: OffsetDateTime::now_utc(),
                reason: None,
                last_pid: None,
                _watch: watch.flatten(),
            });
        }
        self.summary_tx.send_replace(self.summary());
        Ok(())
    }

    fn on_launch(&mut self, launch: Launch) {
        match launch {
            Launch::Spawned { name, result } => {
                let Some(&i) = self.index.get(&name) else {
                    return;
                };
                let input = match result {
                    Ok(pid) => {
                        self.procs[i].last_pid = Some(pid);
                        Input::Spawned { pid }
                    }
                    Err(error) => Input::SpawnFailed { error },
                };
                self.feed(i, input);
                if let ProcState::Starting { pid, .. } = self.procs[i].m.state
                    && pid != 0
                    && self.procs[i].spec.readiness.is_none()
                {
                    self.feed(i, Input::Ready);
                }
            }
            Launch::Exited { name, pid, status } => {
                let Some(&i) = self.index.get(&name) else {
                    return;
                };
                if self.procs[i].m.state.pid() != Some(pid) {
                    return; // an earlier incarnation
                }
                let group_alive = proc::group_alive(pid);
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

    fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].m.state.deadline().is_some_and(|d| d <= now))
            .collect();
        for i in due {
            let group_alive = self.procs[i].m.state.pid().is_some_and(proc::group_alive);
            self.feed(i, Input::Timer { group_alive });
        }
    }

    fn on_watch(&mut self, name: Arc<str>) {
        if let Some(&i) = self.index.get(&name)
            && !self.procs[i].m.state.is_down()
        {
            self.restart(i, "watched file changed");
        }
    }

    fn restart(&mut self, i: usize, reason: &str) {
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
    fn feed(&mut self, i: usize, input: Input) {
        let effects =
            self.procs[i]
                .m
                .handle(input, Instant::now(), rand::random::<f64>() * 2.0 - 1.0);
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
                    let p = &self.procs[i];
                    let (stdio, forward) = (self.opts.stdio, self.opts.forward_output);
                    child::launch(
                        p.spec.clone(),
                        stdio,
                        p.logs.clone(),
                        forward,
                        self.launch_tx.clone(),
                    );
                }
                Effect::Shutdown { code } => {
                    let _ = self.exit_tx.send(Some(code));
                }
            }
        }
    }

    fn signal(&self, i: usize, sig: Signal) {
        let pid = self.procs[i].m.state.pid().or(self.procs[i].last_pid);
        if let Some(pid) = pid.filter(|&p| p != 0)
            && let Err(e) = proc::signal_group(pid, sig)
        {
            tracing::warn!(process = %self.procs[i].name, "cannot send {sig} to process group {pid}: {e}");
        }
    }

    fn emit(
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
        let pid = p.m.state.pid().filter(|&x| x != 0).or(p.last_pid);
        tracing::info!(process = %p.name, %from, %to, pid, "{reason}");
        let event = Event {
            at,
            process: p.name.to_string(),
            from,
            to,
            pid,
            exit,
            reason: Some(reason),
        };
        if let Some(tx) = &self.opts.durable_events {
            let _ = tx.send(event.clone());
        }
        let _ = self.events.send(event);
        self.summary_tx.send_replace(self.summary());
    }

    /// Start what waits for its dependencies and stop what waits for its dependants, until
    /// nothing changes; then answer the waiters that are satisfied.
    fn progress(&mut self) {
        loop {
            let startable: Vec<usize> = self
                .pending_start
                .iter()
                .copied()
                .filter(|&i| self.deps_running(i))
                .collect();
            let stoppable: Vec<usize> = self
                .pending_stop
                .iter()
                .copied()
                .filter(|&i| self.dependants_down(i))
                .collect();
            if startable.is_empty() && stoppable.is_empty() {
                break;
            }
            for i in startable {
                self.pending_start.remove(&i);
                self.feed(
                    i,
                    Input::Start {
                        reason: "starting".into(),
                    },
                );
            }
            for i in stoppable {
                self.pending_stop.remove(&i);
                let own = self.procs[i].spec.stop_timeout;
                let timeout = self.stop_cap.map_or(own, |cap| own.min(cap));
                let reason = if self.shutdown.is_some() {
                    "shutting down"
                } else {
                    "stopping all"
                };
                self.feed(
                    i,
                    Input::Stop {
                        timeout,
                        reason: reason.into(),
                        then: AfterStop::Stay,
                    },
                );
            }
        }
        let procs = &self.procs;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| {
                w.targets.iter().all(|&i| match w.until {
                    Wait::Down => procs[i].m.state.is_down(),
                    Wait::Settled => !matches!(procs[i].m.state, ProcState::Stopping { .. }),
                })
            });
        self.waiters = keep;
        for w in done {
            (w.reply)();
        }
    }

    fn deps_running(&self, i: usize) -> bool {
        let deps = &self.procs[i].spec.depends_on;
        deps.is_empty()
            || self
                .procs
                .iter()
                .filter(|p| deps.contains(&p.spec.stack))
                .all(|p| p.m.state.name() == StateName::Running)
    }

    fn dependants_down(&self, i: usize) -> bool {
        let stack = &self.procs[i].spec.stack;
        self.procs
            .iter()
            .filter(|p| p.spec.depends_on.contains(stack))
            .all(|p| p.m.state.is_down())
    }

    fn wait(&mut self, targets: Vec<usize>, until: Wait, reply: impl FnOnce() + Send + 'static) {
        self.waiters.push(Waiter {
            targets,
            until,
            reply: Box::new(reply),
        });
    }

    fn begin_shutdown(&mut self, reply: Option<super::Reply<()>>) {
        self.thaw_if_frozen();
        self.stop_cap = None;
        self.pending_start.clear();
        let replies = self.shutdown.get_or_insert_with(Vec::new);
        replies.extend(reply);
        self.pending_stop = (0..self.procs.len())
            .filter(|&i| !self.procs[i].m.state.is_down())
            .collect();
    }

    fn freeze(&mut self, frozen: bool) -> Vec<u32> {
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
        live.iter()
            .filter_map(|&i| self.procs[i].m.state.pid().filter(|&p| p != 0))
            .collect()
    }

    fn thaw_if_frozen(&mut self) {
        if self.frozen {
            self.freeze(false);
        }
    }

    fn signal_all(&self, sig: Signal) {
        for i in 0..self.procs.len() {
            if matches!(
                self.procs[i].m.state,
                ProcState::Starting { .. } | ProcState::Running { .. }
            ) {
                self.signal(i, sig);
            }
        }
    }

    fn select(&self, pattern: Option<&str>) -> Result<Vec<usize>, SupervisorError> {
        let Some(pattern) = pattern else {
            return Ok((0..self.procs.len()).collect());
        };
        let glob = glob::Pattern::new(pattern).map_err(|e| SupervisorError::BadPattern {
            pattern: pattern.into(),
            reason: e.msg.to_string(),
        })?;
        Ok((0..self.procs.len())
            .filter(|&i| glob.matches(&self.procs[i].name))
            .collect())
    }

    fn select_some(&self, pattern: &str) -> Result<Vec<usize>, SupervisorError> {
        let ix = self.select(Some(pattern))?;
        if ix.is_empty() {
            Err(SupervisorError::NoMatch {
                pattern: pattern.into(),
            })
        } else {
            Ok(ix)
        }
    }

    fn names(&self, ix: &[usize]) -> Vec<String> {
        ix.iter().map(|&i| self.procs[i].name.to_string()).collect()
    }

    fn info(&self, i: usize) -> ProcessInfo {
        let p = &self.procs[i];
        let uptime = match p.m.state {
            ProcState::Starting { since, pid } if pid != 0 => Some(since.elapsed().as_secs_f64()),
            ProcState::Running { since, .. } => Some(since.elapsed().as_secs_f64()),
            _ => None,
        };
        ProcessInfo {
            name: p.name.to_string(),
            stack: p.spec.stack.clone(),
            state: p.m.state.name(),
            pid: p.m.state.pid().filter(|&x| x != 0),
            restarts: p.m.restarts,
            uptime_s: uptime.map(|u| (u * 1000.0).round() / 1000.0),
            since: p.since,
            last_exit: p.m.last_exit,
            reason: p.reason.clone(),
        }
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.procs.len(),
            ..Summary::default()
        };
        for p in &self.procs {
            match p.m.state.name() {
                StateName::Running => s.running += 1,
                StateName::Starting => s.starting += 1,
                StateName::Stopping => s.stopping += 1,
                StateName::Stopped => s.stopped += 1,
                StateName::Backoff => s.backoff += 1,
                StateName::Exited => s.exited += 1,
                StateName::Fatal => s.failed += 1,
            }
        }
        s
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
