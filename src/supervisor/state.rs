//! The pure per-process state machine: `handle(input) -> effects`, checked against a table of
//! allowed transitions. No processes, no clocks, no I/O — the actor feeds it inputs with the
//! current time and a jitter draw, and carries out the effects.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::backoff;
use crate::config::{OnExit, RestartPolicy};
use crate::events::{ExitStatus, StateName};

/// A process state with the data that belongs to it.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcState {
    Stopped,
    /// Being spawned (`pid: None` until the spawn reports it), then spawned and not yet ready.
    Starting {
        pid: Option<u32>,
        since: Instant,
    },
    Running {
        pid: u32,
        since: Instant,
    },
    /// Stop signal sent; SIGKILL to the group at `kill_at`. `deadline` is the next wake-up: the
    /// kill, or a check whether the group is empty once the leader is gone. `pid: None`: the
    /// stop was asked while the spawn was under way; the group is signalled once it has a pid.
    Stopping {
        pid: Option<u32>,
        since: Instant,
        kill_at: Instant,
        deadline: Instant,
        leader_exit: Option<ExitStatus>,
    },
    /// Waiting to restart.
    Backoff {
        until: Instant,
    },
    /// Exited on its own and left down by policy.
    Exited {
        status: ExitStatus,
    },
    /// Gave up: too many restarts in a row, or it cannot be started at all.
    Fatal {
        reason: String,
    },
}

impl ProcState {
    pub fn name(&self) -> StateName {
        match self {
            ProcState::Stopped => StateName::Stopped,
            ProcState::Starting { .. } => StateName::Starting,
            ProcState::Running { .. } => StateName::Running,
            ProcState::Stopping { .. } => StateName::Stopping,
            ProcState::Backoff { .. } => StateName::Backoff,
            ProcState::Exited { .. } => StateName::Exited,
            ProcState::Fatal { .. } => StateName::Fatal,
        }
    }

    /// The leader of the current incarnation's process group, once it is spawned.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ProcState::Starting { pid, .. } | ProcState::Stopping { pid, .. } => *pid,
            ProcState::Running { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// A spawn is under way: there is no process (nor group) to signal or probe yet.
    pub fn is_spawning(&self) -> bool {
        matches!(
            self,
            ProcState::Starting { pid: None, .. } | ProcState::Stopping { pid: None, .. }
        )
    }

    /// Down and not coming back by itself.
    pub fn is_down(&self) -> bool {
        matches!(
            self,
            ProcState::Stopped | ProcState::Exited { .. } | ProcState::Fatal { .. }
        )
    }

    /// Whether the wake-up due at `now` is the stop timeout running out, when the group gets
    /// SIGKILL whatever it holds: no need to look first whether a live member is left.
    pub fn kill_due(&self, now: Instant) -> bool {
        matches!(self, ProcState::Stopping { kill_at, deadline, .. } if deadline == kill_at && now >= *kill_at)
    }

    /// When the actor must wake up for this process, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            ProcState::Stopping { deadline, .. } => Some(*deadline),
            ProcState::Backoff { until } => Some(*until),
            _ => None,
        }
    }
}

/// Whether `from → to` is a legal transition.
pub fn allowed(from: StateName, to: StateName) -> bool {
    use StateName::*;
    matches!(
        (from, to),
        (Stopped | Exited | Fatal | Backoff, Starting)
            | (Starting, Running | Stopping | Backoff | Exited | Fatal)
            | (Running, Stopping | Backoff | Exited | Fatal)
            | (Stopping, Stopped | Backoff | Exited | Fatal)
            | (Backoff, Stopped | Fatal)
            | (Exited | Fatal, Stopped)
    )
}

/// What happens once a stopping process is down.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterStop {
    /// Stay stopped (operator stop, shutdown).
    Stay,
    /// Start again (operator restart, watched file changed).
    Start,
    /// Treat as a crash and apply the restart policy (liveness failure, start timeout).
    Recover(String),
}

/// Something that happened to a process.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Start it (autostart, operator). Resets the restart count.
    Start {
        reason: String,
    },
    /// The spawn succeeded.
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        error: String,
    },
    /// Readiness reached (immediately when there is no readiness probe).
    Ready,
    /// The leader exited. `group_alive`: members of its process group are still there.
    Exited {
        status: ExitStatus,
        group_alive: bool,
    },
    Stop {
        timeout: Duration,
        reason: String,
        then: AfterStop,
    },
    /// A deadline of the state passed. `group_alive` as for `Exited`.
    Timer {
        group_alive: bool,
    },
}

/// What the actor must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Spawn,
    /// Send a signal to the process group.
    Signal(Signal),
    Transition {
        from: StateName,
        to: StateName,
        reason: String,
        exit: Option<ExitStatus>,
    },
    /// Stop everything and exit the supervisor with this code (`on_exit: shutdown`).
    Shutdown {
        code: i32,
    },
}

/// How often a stopping process whose leader is gone is checked for group members left.
pub const GROUP_POLL: Duration = Duration::from_millis(20);

/// One process's machine.
#[derive(Clone, Debug)]
pub struct Machine {
    pub state: ProcState,
    pub policy: RestartPolicy,
    pub stop_signal: Signal,
    /// Consecutive restarts since the last reset (drives backoff and `max_restarts`).
    pub attempt: u32,
    /// Restarts over the process's life (shown to operators).
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    after_stop: AfterStop,
}

impl Machine {
    pub fn new(policy: RestartPolicy, stop_signal: Signal) -> Self {
        Machine {
            state: ProcState::Stopped,
            policy,
            stop_signal,
            attempt: 0,
            restarts: 0,
            last_exit: None,
            after_stop: AfterStop::Stay,
        }
    }

    /// Apply `input` at time `now`; `jitter` is a draw in `[-1, 1]` for the backoff.
    pub fn handle(&mut self, input: Input, now: Instant, jitter: f64) -> Vec<Effect> {
        let mut fx = Vec::new();
        match (self.state.clone(), input) {
            (s, Input::Start { reason }) => self.start(&s, reason, now, &mut fx),
            (ProcState::Starting { since, .. }, Input::Spawned { pid }) => {
                self.state = ProcState::Starting {
                    pid: Some(pid),
                    since,
                };
            }
            // Asked to stop while its spawn was under way: now there is a group to signal.
            (
                ProcState::Stopping {
                    pid: None,
                    since,
                    kill_at,
                    deadline,
                    leader_exit,
                },
                Input::Spawned { pid },
            ) => {
                self.state = ProcState::Stopping {
                    pid: Some(pid),
                    since,
                    kill_at,
                    deadline,
                    leader_exit,
                };
                fx.push(Effect::Signal(self.stop_signal));
            }
            (ProcState::Stopping { pid: None, .. }, Input::SpawnFailed { error }) => {
                self.after_stop = AfterStop::Stay;
                self.go(
                    ProcState::Stopped,
                    format!("stopped; it had failed to start: {error}"),
                    None,
                    &mut fx,
                );
            }
            (
                ProcState::Starting {
                    pid: Some(pid),
                    since,
                },
                Input::Ready,
            ) => self.go(
                ProcState::Running { pid, since },
                "ready".into(),
                None,
                &mut fx,
            ),
            (ProcState::Starting { .. }, Input::SpawnFailed { error }) => self.go(
                ProcState::Fatal {
                    reason: error.clone(),
                },
                format!("cannot start: {error}"),
                None,
                &mut fx,
            ),
            (
                ProcState::Starting { since, .. } | ProcState::Running { since, .. },
                Input::Exited {
                    status,
                    group_alive,
                },
            ) => {
                if group_alive {
                    fx.push(Effect::Signal(Signal::SIGKILL));
                }
                self.last_exit = Some(status);
                self.crashed(
                    status,
                    now.saturating_duration_since(since),
                    format!("{status}"),
                    now,
                    jitter,
                    &mut fx,
                );
            }
            (
                ProcState::Stopping {
                    pid,
                    since,
                    kill_at,
                    ..
                },
                Input::Exited {
                    status,
                    group_alive,
                },
            ) => {
                self.last_exit = Some(status);
                if group_alive {
                    let deadline = kill_at.min(now + GROUP_POLL);
                    let leader_exit = Some(status);
                    self.state = ProcState::Stopping {
                        pid,
                        since,
                        kill_at,
                        deadline,
                        leader_exit,
                    };
                } else {
                    self.stopped(status, since, now, jitter, &mut fx);
                }
            }
            (
                ProcState::Stopping {
                    pid,
                    since,
                    kill_at,
                    leader_exit,
                    ..
                },
                Input::Timer { group_alive },
            ) => {
                if let (Some(status), false) = (leader_exit, group_alive) {
                    self.stopped(status, since, now, jitter, &mut fx);
                } else {
                    if group_alive && now >= kill_at {
                        fx.push(Effect::Signal(Signal::SIGKILL));
                    }
                    // Until the group is empty (or the leader's exit arrives), look again soon.
                    let deadline = if now >= kill_at {
                        now + GROUP_POLL
                    } else if leader_exit.is_none() && group_alive {
                        kill_at
                    } else {
                        kill_at.min(now + GROUP_POLL)
                    };
                    self.state = ProcState::Stopping {
                        pid,
                        since,
                        kill_at,
                        deadline,
                        leader_exit,
                    };
                }
            }
            (ProcState::Backoff { until }, Input::Timer { .. }) if now >= until => {
                self.spawn("restarting".into(), now, &mut fx)
            }
            (
                ProcState::Starting { pid, .. },
                Input::Stop {
                    timeout,
                    reason,
                    then,
                },
            ) => self.begin_stop(pid, timeout, reason, then, now, &mut fx),
            (
                ProcState::Running { pid, .. },
                Input::Stop {
                    timeout,
                    reason,
                    then,
                },
            ) => self.begin_stop(Some(pid), timeout, reason, then, now, &mut fx),
            // A later request wins: stop during a restart stays stopped, restart during a stop starts.
            (ProcState::Stopping { .. }, Input::Stop { then, .. })
                if !matches!(then, AfterStop::Recover(_)) =>
            {
                self.after_stop = then;
            }
            (ProcState::Backoff { .. }, Input::Stop { reason, then, .. }) => match then {
                AfterStop::Start => self.spawn(reason, now, &mut fx),
                _ => self.go(ProcState::Stopped, reason, None, &mut fx),
            },
            (
                ProcState::Exited { .. } | ProcState::Fatal { .. } | ProcState::Stopped,
                Input::Stop {
                    then: AfterStop::Start,
                    reason,
                    ..
                },
            ) => self.start(&self.state.clone(), reason, now, &mut fx),
            _ => {} // stale timer, duplicate request: nothing to do
        }
        fx
    }

    /// Signal the group (once it has a pid) and wait up to `timeout` before SIGKILL.
    fn begin_stop(
        &mut self,
        pid: Option<u32>,
        timeout: Duration,
        reason: String,
        then: AfterStop,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        self.after_stop = then;
        fx.push(Effect::Signal(self.stop_signal));
        let kill_at = now + timeout;
        let st = ProcState::Stopping {
            pid,
            since: now,
            kill_at,
            deadline: kill_at,
            leader_exit: None,
        };
        self.go(st, reason, None, fx);
    }

    fn start(&mut self, s: &ProcState, reason: String, now: Instant, fx: &mut Vec<Effect>) {
        match s {
            ProcState::Stopped
            | ProcState::Exited { .. }
            | ProcState::Fatal { .. }
            | ProcState::Backoff { .. } => {
                self.attempt = 0;
                self.spawn(reason, now, fx);
            }
            ProcState::Stopping { .. } => self.after_stop = AfterStop::Start,
            ProcState::Starting { .. } | ProcState::Running { .. } => {}
        }
    }

    /// Ask the actor to spawn; the state is `starting` without a pid until `Spawned`.
    fn spawn(&mut self, reason: String, now: Instant, fx: &mut Vec<Effect>) {
        let to = ProcState::Starting {
            pid: None,
            since: now,
        };
        self.go(to, reason, None, fx);
        fx.push(Effect::Spawn);
    }

    fn stopped(
        &mut self,
        status: ExitStatus,
        since: Instant,
        now: Instant,
        jitter: f64,
        fx: &mut Vec<Effect>,
    ) {
        match std::mem::replace(&mut self.after_stop, AfterStop::Stay) {
            AfterStop::Stay => self.go(
                ProcState::Stopped,
                format!("stopped ({status})"),
                Some(status),
                fx,
            ),
            AfterStop::Start => {
                self.go(
                    ProcState::Stopped,
                    format!("stopped ({status})"),
                    Some(status),
                    fx,
                );
                self.attempt = 0;
                self.restarts += 1;
                self.spawn("restarting on request".into(), now, fx);
            }
            AfterStop::Recover(why) => self.crashed(
                status,
                now.saturating_duration_since(since),
                why,
                now,
                jitter,
                fx,
            ),
        }
    }

    /// The process went down on its own (or was recovered): apply `on_exit` and the policy.
    fn crashed(
        &mut self,
        status: ExitStatus,
        uptime: Duration,
        why: String,
        now: Instant,
        jitter: f64,
        fx: &mut Vec<Effect>,
    ) {
        match self.policy.on_exit {
            OnExit::Ignore => self.go(
                ProcState::Exited { status },
                format!("exited ({why})"),
                Some(status),
                fx,
            ),
            OnExit::Shutdown => {
                self.go(
                    ProcState::Exited { status },
                    format!("exited ({why}); shutting down"),
                    Some(status),
                    fx,
                );
                fx.push(Effect::Shutdown {
                    code: status.shell_code(),
                });
            }
            OnExit::Restart => {
                let attempt = backoff::next_attempt(&self.policy, self.attempt, uptime);
                if backoff::exhausted(&self.policy, attempt) {
                    let reason = format!("{why}; gave up after {} restarts in a row", attempt - 1);
                    self.go(
                        ProcState::Fatal {
                            reason: reason.clone(),
                        },
                        reason,
                        Some(status),
                        fx,
                    );
                    return;
                }
                self.attempt = attempt;
                self.restarts += 1;
                let delay = backoff::delay(&self.policy, attempt, jitter);
                let reason = format!(
                    "{why}; restart {attempt} in {}",
                    humantime::format_duration(round_ms(delay))
                );
                self.go(
                    ProcState::Backoff { until: now + delay },
                    reason,
                    Some(status),
                    fx,
                );
            }
        }
    }

    fn go(
        &mut self,
        to: ProcState,
        reason: String,
        exit: Option<ExitStatus>,
        fx: &mut Vec<Effect>,
    ) {
        let from = self.state.name();
        debug_assert!(
            allowed(from, to.name()),
            "illegal transition {from} -> {}",
            to.name()
        );
        fx.push(Effect::Transition {
            from,
            to: to.name(),
            reason,
            exit,
        });
        self.state = to;
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
