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
mod tests {
    use super::*;

    fn policy(on_exit: OnExit, max: Option<u32>) -> RestartPolicy {
        RestartPolicy {
            on_exit,
            delay: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            reset_after: Duration::from_secs(30),
            max_restarts: max,
        }
    }

    fn transitions(fx: &[Effect]) -> Vec<(StateName, StateName)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Transition { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    fn running(m: &mut Machine, now: Instant) {
        m.handle(Input::Start { reason: "t".into() }, now, 0.0);
        m.handle(Input::Spawned { pid: 42 }, now, 0.0);
        m.handle(Input::Ready, now, 0.0);
        assert_eq!(m.state.name(), StateName::Running);
    }

    fn crash(m: &mut Machine, now: Instant) -> Vec<Effect> {
        m.handle(
            Input::Exited {
                status: ExitStatus::Code(1),
                group_alive: false,
            },
            now,
            0.0,
        )
    }

    #[test]
    fn table_rejects_nonsense() {
        use StateName::*;
        assert!(allowed(Running, Backoff));
        assert!(!allowed(Stopped, Running));
        assert!(!allowed(Backoff, Running));
        assert!(!allowed(Fatal, Running));
        for s in StateName::ALL {
            assert!(!allowed(s, s), "{s} -> {s}");
        }
    }

    #[test]
    fn crash_backs_off_exponentially_then_goes_fatal() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, Some(3)), Signal::SIGTERM);
        running(&mut m, t0);
        let mut waits = Vec::new();
        let mut now = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            crash(&mut m, now);
            let ProcState::Backoff { until } = m.state else {
                panic!("{:?}", m.state)
            };
            waits.push(until - now);
            let fx = m.handle(Input::Timer { group_alive: false }, until, 0.0);
            assert!(fx.contains(&Effect::Spawn));
            m.handle(Input::Spawned { pid: 43 }, until, 0.0);
            m.handle(Input::Ready, until, 0.0);
            now = until + Duration::from_secs(1);
        }
        assert_eq!(
            waits,
            [
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        let fx = crash(&mut m, now);
        assert_eq!(transitions(&fx), [(StateName::Running, StateName::Fatal)]);
        assert_eq!(m.restarts, 3);
    }

    #[test]
    fn long_uptime_resets_backoff() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        m.attempt = 3;
        crash(&mut m, t0 + Duration::from_secs(60));
        assert_eq!(
            m.state,
            ProcState::Backoff {
                until: t0 + Duration::from_secs(61)
            }
        );
    }

    #[test]
    fn early_timer_does_not_restart() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        crash(&mut m, t0);
        assert!(
            m.handle(Input::Timer { group_alive: false }, t0, 0.0)
                .is_empty()
        );
    }

    #[test]
    fn stop_signals_then_kills_the_group_at_the_deadline() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGINT);
        running(&mut m, t0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "api".into(),
            then: AfterStop::Stay,
        };
        let fx = m.handle(stop, t0, 0.0);
        assert!(fx.contains(&Effect::Signal(Signal::SIGINT)));
        assert_eq!(m.state.deadline(), Some(t0 + Duration::from_secs(2)));
        let fx = m.handle(
            Input::Timer { group_alive: true },
            t0 + Duration::from_secs(2),
            0.0,
        );
        assert_eq!(fx, [Effect::Signal(Signal::SIGKILL)]);
        let fx = m.handle(
            Input::Exited {
                status: ExitStatus::Signal(9),
                group_alive: false,
            },
            t0,
            0.0,
        );
        assert_eq!(
            transitions(&fx),
            [(StateName::Stopping, StateName::Stopped)]
        );
    }

    #[test]
    fn stop_waits_for_grandchildren_left_in_the_group() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "api".into(),
            then: AfterStop::Stay,
        };
        m.handle(stop, t0, 0.0);
        let fx = m.handle(
            Input::Exited {
                status: ExitStatus::Code(0),
                group_alive: true,
            },
            t0,
            0.0,
        );
        assert!(fx.is_empty() && m.state.name() == StateName::Stopping);
        assert_eq!(
            m.state.deadline(),
            Some(t0 + GROUP_POLL),
            "checks the group again soon"
        );
        let fx = m.handle(Input::Timer { group_alive: true }, t0 + GROUP_POLL, 0.0);
        assert!(fx.is_empty(), "no SIGKILL before the stop timeout: {fx:?}");
        let fx = m.handle(
            Input::Timer { group_alive: true },
            t0 + Duration::from_secs(2),
            0.0,
        );
        assert_eq!(fx, [Effect::Signal(Signal::SIGKILL)]);
        let fx = m.handle(
            Input::Timer { group_alive: false },
            t0 + Duration::from_secs(3),
            0.0,
        );
        assert_eq!(
            transitions(&fx),
            [(StateName::Stopping, StateName::Stopped)]
        );
    }

    #[test]
    fn a_group_that_empties_soon_after_the_leader_stops_promptly() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(90),
            reason: "api".into(),
            then: AfterStop::Stay,
        };
        m.handle(stop, t0, 0.0);
        m.handle(
            Input::Exited {
                status: ExitStatus::Signal(15),
                group_alive: true,
            },
            t0,
            0.0,
        );
        let fx = m.handle(Input::Timer { group_alive: false }, t0 + GROUP_POLL, 0.0);
        assert_eq!(
            transitions(&fx),
            [(StateName::Stopping, StateName::Stopped)]
        );
    }

    #[test]
    fn restart_request_stops_then_starts() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "watch".into(),
            then: AfterStop::Start,
        };
        m.handle(stop, t0, 0.0);
        let fx = m.handle(
            Input::Exited {
                status: ExitStatus::Signal(15),
                group_alive: false,
            },
            t0,
            0.0,
        );
        assert!(fx.contains(&Effect::Spawn));
        assert_eq!(
            transitions(&fx),
            [
                (StateName::Stopping, StateName::Stopped),
                (StateName::Stopped, StateName::Starting)
            ]
        );
        assert_eq!(m.restarts, 1);
    }

    #[test]
    fn on_exit_shutdown_and_ignore() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Shutdown, None), Signal::SIGTERM);
        running(&mut m, t0);
        let fx = m.handle(
            Input::Exited {
                status: ExitStatus::Code(3),
                group_alive: false,
            },
            t0,
            0.0,
        );
        assert!(fx.contains(&Effect::Shutdown { code: 3 }));
        let mut m = Machine::new(policy(OnExit::Ignore, None), Signal::SIGTERM);
        running(&mut m, t0);
        crash(&mut m, t0);
        assert_eq!(
            m.state,
            ProcState::Exited {
                status: ExitStatus::Code(1)
            }
        );
    }

    #[test]
    fn recover_applies_the_restart_policy() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        running(&mut m, t0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "liveness failed".into(),
            then: AfterStop::Recover("liveness failed 3 times".into()),
        };
        m.handle(stop, t0, 0.0);
        let fx = m.handle(
            Input::Exited {
                status: ExitStatus::Signal(15),
                group_alive: false,
            },
            t0,
            0.0,
        );
        match &fx[..] {
            [
                Effect::Transition {
                    to: StateName::Backoff,
                    reason,
                    ..
                },
            ] => {
                assert!(reason.contains("liveness failed 3 times"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stop_during_the_spawn_signals_once_the_pid_is_known() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        m.handle(Input::Start { reason: "t".into() }, t0, 0.0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "api".into(),
            then: AfterStop::Stay,
        };
        let fx = m.handle(stop, t0, 0.0);
        assert!(
            fx.contains(&Effect::Signal(Signal::SIGTERM)),
            "signal for pid 0 is skipped by the actor"
        );
        let fx = m.handle(Input::Spawned { pid: 77 }, t0, 0.0);
        assert_eq!(fx, [Effect::Signal(Signal::SIGTERM)]);
        assert_eq!(m.state.pid(), Some(77));
    }

    #[test]
    fn spawn_failure_is_fatal_and_start_retries() {
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        m.handle(Input::Start { reason: "t".into() }, t0, 0.0);
        m.handle(
            Input::SpawnFailed {
                error: "no such file".into(),
            },
            t0,
            0.0,
        );
        assert!(matches!(m.state, ProcState::Fatal { .. }));
        let fx = m.handle(
            Input::Start {
                reason: "again".into(),
            },
            t0,
            0.0,
        );
        assert!(fx.contains(&Effect::Spawn));
    }

    #[test]
    fn the_spawning_phase_has_no_pid_until_the_spawn_reports_one() {
        use StateName::*;
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        let fx = m.handle(Input::Start { reason: "t".into() }, t0, 0.0);
        assert_eq!(transitions(&fx), [(Stopped, Starting)]);
        assert!(fx.contains(&Effect::Spawn));
        assert!(m.state.is_spawning());
        assert_eq!(m.state.pid(), None);
        assert!(
            m.handle(Input::Ready, t0, 0.0).is_empty(),
            "nothing can be ready before it exists"
        );
        assert_eq!(m.handle(Input::Spawned { pid: 42 }, t0, 0.0), []);
        assert!(!m.state.is_spawning());
        assert_eq!(m.state.pid(), Some(42));
        let fx = m.handle(Input::Ready, t0, 0.0);
        assert_eq!(transitions(&fx), [(Starting, Running)]);
    }

    #[test]
    fn a_stop_during_a_spawn_that_fails_ends_stopped() {
        use StateName::*;
        let t0 = Instant::now();
        let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
        m.handle(Input::Start { reason: "t".into() }, t0, 0.0);
        let stop = Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "api".into(),
            then: AfterStop::Start,
        };
        m.handle(stop, t0, 0.0);
        assert!(m.state.is_spawning() && m.state.name() == Stopping);
        let fx = m.handle(Input::SpawnFailed { error: "no".into() }, t0, 0.0);
        assert_eq!(transitions(&fx), [(Stopping, Stopped)]);
        assert!(
            !fx.contains(&Effect::Spawn),
            "a failed spawn is not retried"
        );
        assert!(!m.state.is_spawning());
    }

    /// Every input in every state the machine can reach (from stopped, a few steps deep, with
    /// each restart policy) moves only along the table, and a process is spawning exactly
    /// when it is starting or stopping without a pid.
    #[test]
    fn every_reachable_state_and_input_keeps_to_the_table() {
        let stop = |then| Input::Stop {
            timeout: Duration::from_secs(2),
            reason: "t".into(),
            then,
        };
        let exited = |group_alive| Input::Exited {
            status: ExitStatus::Code(1),
            group_alive,
        };
        let inputs = [
            Input::Start { reason: "t".into() },
            Input::Spawned { pid: 7 },
            Input::SpawnFailed { error: "e".into() },
            Input::Ready,
            exited(false),
            exited(true),
            stop(AfterStop::Stay),
            stop(AfterStop::Start),
            stop(AfterStop::Recover("r".into())),
            Input::Timer { group_alive: false },
            Input::Timer { group_alive: true },
        ];
        let t0 = Instant::now();
        let mut seen = std::collections::BTreeSet::new();
        for on_exit in [OnExit::Restart, OnExit::Ignore, OnExit::Shutdown] {
            let mut level = vec![Machine::new(policy(on_exit, Some(1)), Signal::SIGTERM)];
            for depth in 1..=4u32 {
                let now = t0 + Duration::from_secs(10 * u64::from(depth));
                let mut next = Vec::new();
                for m in &level {
                    for input in &inputs {
                        let mut m = m.clone();
                        for (from, to) in transitions(&m.handle(input.clone(), now, 0.0)) {
                            assert!(allowed(from, to), "{from} -> {to}");
                        }
                        let spawning = matches!(
                            m.state,
                            ProcState::Starting { pid: None, .. }
                                | ProcState::Stopping { pid: None, .. }
                        );
                        assert_eq!(m.state.is_spawning(), spawning, "{:?}", m.state);
                        seen.insert((m.state.name().to_string(), spawning));
                        next.push(m);
                    }
                }
                level = next;
            }
        }
        for name in StateName::ALL {
            assert!(seen.contains(&(name.to_string(), false)), "{name}");
        }
        for name in [StateName::Starting, StateName::Stopping] {
            assert!(
                seen.contains(&(name.to_string(), true)),
                "{name} while spawning"
            );
        }
    }
}
