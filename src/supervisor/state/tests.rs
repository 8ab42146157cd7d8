//! The machine's transitions and effects, input by input, without processes or clocks.

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

fn stop_after(secs: u64, reason: &str, then: AfterStop) -> Input {
    Input::Stop {
        timeout: Duration::from_secs(secs),
        reason: reason.into(),
        then,
    }
}

fn exited(status: ExitStatus, group_alive: bool) -> Input {
    Input::Exited {
        status,
        group_alive,
    }
}

fn timer(group_alive: bool) -> Input {
    Input::Timer { group_alive }
}

/// A machine with the default test policy, running since the instant returned.
fn running_machine() -> (Instant, Machine) {
    let t0 = Instant::now();
    let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGTERM);
    running(&mut m, t0);
    (t0, m)
}

fn running(m: &mut Machine, now: Instant) {
    m.handle(Input::Start { reason: "t".into() }, now, 0.0);
    m.handle(Input::Spawned { pid: 42 }, now, 0.0);
    m.handle(Input::Ready, now, 0.0);
    assert_eq!(m.state.name(), StateName::Running);
}

fn crash(m: &mut Machine, now: Instant) -> Vec<Effect> {
    m.handle(exited(ExitStatus::Code(1), false), now, 0.0)
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
        let fx = m.handle(timer(false), until, 0.0);
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
    let (t0, mut m) = running_machine();
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
    let (t0, mut m) = running_machine();
    crash(&mut m, t0);
    assert!(m.handle(timer(false), t0, 0.0).is_empty());
}

#[test]
fn stop_signals_then_kills_the_group_at_the_deadline() {
    let t0 = Instant::now();
    let mut m = Machine::new(policy(OnExit::Restart, None), Signal::SIGINT);
    running(&mut m, t0);
    let fx = m.handle(stop_after(2, "api", AfterStop::Stay), t0, 0.0);
    assert!(fx.contains(&Effect::Signal(Signal::SIGINT)));
    assert_eq!(m.state.deadline(), Some(t0 + Duration::from_secs(2)));
    let kill_at = t0 + Duration::from_secs(2);
    assert!(!m.state.kill_due(kill_at - Duration::from_millis(1)));
    assert!(
        m.state.kill_due(kill_at),
        "the kill needs no look at the group first"
    );
    let fx = m.handle(timer(true), kill_at, 0.0);
    assert_eq!(fx, [Effect::Signal(Signal::SIGKILL)]);
    assert!(
        !m.state.kill_due(kill_at + GROUP_POLL),
        "after the kill, wake-ups look whether the group is empty"
    );
    let fx = m.handle(exited(ExitStatus::Signal(9), false), t0, 0.0);
    assert_eq!(
        transitions(&fx),
        [(StateName::Stopping, StateName::Stopped)]
    );
}

#[test]
fn stop_waits_for_grandchildren_left_in_the_group() {
    let (t0, mut m) = running_machine();
    m.handle(stop_after(2, "api", AfterStop::Stay), t0, 0.0);
    let fx = m.handle(exited(ExitStatus::Code(0), true), t0, 0.0);
    assert!(fx.is_empty() && m.state.name() == StateName::Stopping);
    assert_eq!(
        m.state.deadline(),
        Some(t0 + GROUP_POLL),
        "checks the group again soon"
    );
    let fx = m.handle(timer(true), t0 + GROUP_POLL, 0.0);
    assert!(fx.is_empty(), "no SIGKILL before the stop timeout: {fx:?}");
    let fx = m.handle(timer(true), t0 + Duration::from_secs(2), 0.0);
    assert_eq!(fx, [Effect::Signal(Signal::SIGKILL)]);
    let fx = m.handle(timer(false), t0 + Duration::from_secs(3), 0.0);
    assert_eq!(
        transitions(&fx),
        [(StateName::Stopping, StateName::Stopped)]
    );
}

#[test]
fn a_group_that_empties_soon_after_the_leader_stops_promptly() {
    let (t0, mut m) = running_machine();
    m.handle(stop_after(90, "api", AfterStop::Stay), t0, 0.0);
    m.handle(exited(ExitStatus::Signal(15), true), t0, 0.0);
    let fx = m.handle(timer(false), t0 + GROUP_POLL, 0.0);
    assert_eq!(
        transitions(&fx),
        [(StateName::Stopping, StateName::Stopped)]
    );
}

#[test]
fn restart_request_stops_then_starts() {
    let (t0, mut m) = running_machine();
    m.handle(stop_after(2, "watch", AfterStop::Start), t0, 0.0);
    let fx = m.handle(exited(ExitStatus::Signal(15), false), t0, 0.0);
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
    let fx = m.handle(exited(ExitStatus::Code(3), false), t0, 0.0);
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
    let (t0, mut m) = running_machine();
    m.handle(
        stop_after(
            2,
            "liveness failed",
            AfterStop::Recover("liveness failed 3 times".into()),
        ),
        t0,
        0.0,
    );
    let fx = m.handle(exited(ExitStatus::Signal(15), false), t0, 0.0);
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
    let fx = m.handle(stop_after(2, "api", AfterStop::Stay), t0, 0.0);
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
    m.handle(stop_after(2, "api", AfterStop::Start), t0, 0.0);
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
    let stop = |then| stop_after(2, "t", then);
    let exited = |group_alive| exited(ExitStatus::Code(1), group_alive);
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
        timer(false),
        timer(true),
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
