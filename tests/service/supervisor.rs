//! The supervisor with real processes: restarts, backoff, fatal, stop escalation, process groups,
//! instances, glob selection, dependency order and watched files.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::supervised::start;
use common::{alive, wait_for_async};
use state_manager::events::{Event, ExitStatus, StateName};
use state_manager::supervisor::{self, SupervisorHandle};
use tokio::sync::broadcast;

const LONG: Duration = Duration::from_secs(30);

/// The next event matching `pred`, or panic after `LONG`.
async fn next_event(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return Arc::unwrap_or_clone(e),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream broke waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn running(name: &'static str) -> impl Fn(&Event) -> bool {
    move |e| e.process == name && e.to == StateName::Running
}

async fn pid_of(h: &SupervisorHandle, name: &str) -> u32 {
    h.get(name).await.unwrap().pid.expect("a pid")
}

/// Pids whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                    Some(rest.first()? != &"Z" && rest.get(2)?.parse::<u32>().ok()? == pgid)
                })
                == Some(true)
        })
        .collect()
}

#[tokio::test]
async fn crash_is_restarted_after_the_delay_with_a_new_pid() {
    let (h, mut rx) =
        start(r#"{"stacks": [{"name": "c", "command": "sleep", "args": ["1000"], "restart_delay": "300ms"}]}"#).await;
    next_event(&mut rx, "c running", running("c")).await;
    let pid = pid_of(&h, "c").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let crashed = Instant::now();
    let backoff = next_event(&mut rx, "c backoff", |e| e.to == StateName::Backoff).await;
    assert_eq!(backoff.exit, Some(ExitStatus::Signal(9)));
    next_event(&mut rx, "c running again", running("c")).await;
    assert!(
        crashed.elapsed() >= Duration::from_millis(270),
        "restarted after {:?}",
        crashed.elapsed()
    );
    let info = h.get("c").await.unwrap();
    assert_ne!(info.pid, Some(pid));
    assert_eq!(info.restarts, 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn backoff_grows_then_resets_after_a_long_run() {
    // Crashes at once for its first 3 runs, then runs 600 ms (longer than backoff_reset_after).
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let json = format!(
        r#"{{"stacks": [{{"name": "b", "command": "sh", "args": ["-c",
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 4 ] && sleep 0.6; exit 1"],
            "restart_delay": "100ms", "backoff_max": "10s", "backoff_reset_after": "500ms"}}]}}"#,
        c = count.display()
    );
    let (h, mut rx) = start(&json).await;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let e = next_event(&mut rx, "backoff", |e| e.to == StateName::Backoff).await;
        let reason = e.reason.unwrap();
        let d = reason.rsplit(" in ").next().unwrap();
        delays.push(humantime::parse_duration(d).unwrap_or_else(|_| panic!("{reason}")));
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert!((90..=110).contains(&ms[0]), "{ms:?}");
    assert!((180..=220).contains(&ms[1]), "{ms:?}");
    assert!((360..=440).contains(&ms[2]), "{ms:?}");
    assert!(
        (90..=110).contains(&ms[3]),
        "reset after the long run: {ms:?}"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn max_restarts_leads_to_fatal() {
    let (h, mut rx) = start(
        r#"{"stacks": [{"name": "f", "command": "sh", "args": ["-c", "exit 4"], "restart_delay": "10ms", "max_restarts": 2}]}"#,
    )
    .await;
    let e = next_event(&mut rx, "fatal", |e| e.to == StateName::Fatal).await;
    assert!(e.reason.unwrap().contains("gave up after 2 restarts"));
    let info = h.get("f").await.unwrap();
    assert_eq!(
        (info.state, info.restarts, info.last_exit),
        (StateName::Fatal, 2, Some(ExitStatus::Code(4)))
    );
    assert_eq!(h.summary().await.unwrap().failed, 1);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_stop_timeout_with_its_children() {
    let (h, mut rx) = start(
        r#"{"stacks": [{"name": "stubborn", "command": "sh",
            "args": ["-c", "trap '' TERM; sleep 1000 & sleep 1000 & while :; do sleep 0.05; done"], "stop_timeout": "700ms"}]}"#,
    )
    .await;
    next_event(&mut rx, "running", running("stubborn")).await;
    let pid = pid_of(&h, "stubborn").await;
    let members = wait_for_async("grandchildren", LONG, || async {
        let m = group_members(pid);
        (m.len() >= 3).then_some(m)
    })
    .await;
    let t = Instant::now();
    h.stop("stubborn", None).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "stopped after {:?}",
        t.elapsed()
    );
    let info = h.get("stubborn").await.unwrap();
    assert_eq!(
        (info.state, info.last_exit),
        (StateName::Stopped, Some(ExitStatus::Signal(9)))
    );
    let left: Vec<_> = members.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "survivors of the group: {left:?}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn instances_expand_and_globs_select() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"stacks": [
            {{"name": "web", "instances": 3, "command": "sh",
              "args": ["-c", "echo $STATE_MANAGER_INSTANCE > {d}/web-{{instance}}; exec sleep 1000"]}},
            {{"name": "worker", "command": "sleep", "args": ["1000"]}}]}}"#,
        d = dir.path().display()
    );
    let (h, _rx) = start(&json).await;
    for i in 1..=3 {
        let f = dir.path().join(format!("web-{i}"));
        let got = wait_for_async("instance file", LONG, || async {
            std::fs::read_to_string(&f).ok().filter(|s| !s.is_empty())
        })
        .await;
        assert_eq!(got.trim(), i.to_string());
    }
    let names: Vec<_> = h
        .list(Some("web-*"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    // A child can write its file before the supervisor hears that its spawn returned.
    wait_for_async("every process running", LONG, || async {
        let all = h.list(None).await.unwrap();
        all.iter()
            .all(|p| p.state == StateName::Running)
            .then_some(())
    })
    .await;
    let stopped = h
        .stop("web-[12]", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(stopped, ["web-1", "web-2"]);
    let states: Vec<_> = h
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.state))
        .collect();
    assert_eq!(
        states,
        [
            ("web-1".to_string(), StateName::Stopped),
            ("web-2".to_string(), StateName::Stopped),
            ("web-3".to_string(), StateName::Running),
            ("worker".to_string(), StateName::Running)
        ]
    );
    assert!(matches!(
        h.stop("nope-*", None).await,
        Err(supervisor::SupervisorError::NoMatch { .. })
    ));
    assert!(matches!(
        h.list(Some("[")).await,
        Err(supervisor::SupervisorError::BadPattern { .. })
    ));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn dependants_start_after_and_stop_before_their_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order");
    let json = format!(
        r#"{{"stacks": [
            {{"name": "app", "command": "sh", "depends_on": ["db"],
              "args": ["-c", "trap 'echo stop app >> {l}; exit 0' TERM; echo start app >> {l}; while :; do sleep 0.05; done"]}},
            {{"name": "db", "command": "sh",
              "readiness": {{"log_line": "^ready$", "period": "50ms", "timeout": "1s", "start_timeout": "60s"}},
              "args": ["-c", "trap 'sleep 0.2; echo stop db >> {l}; exit 0' TERM; echo start db >> {l}; echo ready; while :; do sleep 0.05; done"]}}]}}"#,
        l = log.display()
    );
    let (h, mut rx) = start(&json).await;
    next_event(&mut rx, "app running", running("app")).await;
    wait_for_async("both started", LONG, || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.lines().count() == 2)
    })
    .await;
    h.stop_all().await.unwrap();
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["start db", "start app", "stop app", "stop db"]
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_request_gives_a_new_pid() {
    let (h, mut rx) =
        start(r#"{"stacks": [{"name": "r", "command": "sleep", "args": ["1000"]}]}"#).await;
    next_event(&mut rx, "running", running("r")).await;
    let before = pid_of(&h, "r").await;
    assert_eq!(h.restart("r").await.unwrap(), ["r"]);
    next_event(&mut rx, "running again", running("r")).await;
    let after = h.get("r").await.unwrap();
    assert_ne!(after.pid, Some(before));
    assert_eq!(after.restarts, 1);
    assert!(!alive(before));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_watched_file_replaced_by_rename_restarts_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, "v1").unwrap();
    let json = format!(
        r#"{{"stacks": [{{"name": "w", "command": "sleep", "args": ["1000"], "watch": ["{}"], "stop_timeout": "5s"}}]}}"#,
        conf.display()
    );
    let (h, mut rx) = start(&json).await;
    next_event(&mut rx, "running", running("w")).await;
    let first = pid_of(&h, "w").await;
    let tmp = dir.path().join("app.conf.new");
    std::fs::write(&tmp, "v2").unwrap();
    std::fs::rename(&tmp, &conf).unwrap();
    let e = next_event(&mut rx, "stopping for the change", |e| {
        e.to == StateName::Stopping
    })
    .await;
    assert_eq!(e.reason.as_deref(), Some("watched file changed"));
    next_event(&mut rx, "running again", running("w")).await;
    // Let any further (wrong) change notification arrive, then count restarts.
    tokio::time::sleep(supervisor::watch::DEBOUNCE * 4).await;
    let info = h.get("w").await.unwrap();
    assert_eq!(info.restarts, 1);
    assert_ne!(info.pid, Some(first));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn spawn_failure_names_the_program_and_is_fatal() {
    let (h, mut rx) =
        start(r#"{"stacks": [{"name": "ghost", "command": "/no/such/binary"}]}"#).await;
    let e = next_event(&mut rx, "fatal", |e| e.to == StateName::Fatal).await;
    assert!(e.reason.unwrap().contains("/no/such/binary"));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn freeze_stops_and_thaw_resumes_the_process_group() {
    let (h, mut rx) =
        start(r#"{"stacks": [{"name": "z", "command": "sleep", "args": ["1000"]}]}"#).await;
    next_event(&mut rx, "running", running("z")).await;
    let pid = pid_of(&h, "z").await;
    let state = |pid: u32| {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        s.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(h.freeze(true).await.unwrap(), [pid]);
    wait_for_async("stopped (T)", LONG, || async {
        (state(pid) == "T").then_some(())
    })
    .await;
    h.freeze(false).await.unwrap();
    wait_for_async("resumed (S)", LONG, || async {
        (state(pid) == "S").then_some(())
    })
    .await;
    h.shutdown().await.unwrap();
}

/// A shell starts each command with `vfork`; a group SIGSTOP that reaches the child before its
/// exec leaves the shell in state D until SIGCONT. The freezer must count it as stopped rather
/// than wait for it (it used to give up after 10 s and fail the checkpoint).
#[tokio::test]
async fn freezer_counts_a_shell_held_in_vfork_as_stopped() {
    use state_manager::checkpoint::Freezer;
    use state_manager::node::freezer::SupervisorFreezer;

    let (h, mut rx) = start(
        r#"{"stacks": [{"name": "sh", "command": "sh", "args": ["-c", "while :; do /bin/true; done"]}]}"#,
    )
    .await;
    next_event(&mut rx, "running", running("sh")).await;
    let freezer = SupervisorFreezer::new(h.clone());
    for round in 0..200 {
        let t = Instant::now();
        freezer
            .freeze()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "round {round}: {:?}",
            t.elapsed()
        );
        freezer.thaw().await.unwrap();
    }
    h.shutdown().await.unwrap();
}

/// Restart backoff in paused time (STYLE §6): the clock moves only when every task waits on a
/// timer, so the waits between a crash and the next start are exactly the ones the actor chose.
/// They double from `restart_delay` up to `backoff_max` (each within the 10 % jitter, none above
/// the cap), the process is fatal after `max_restarts`, and none of it is waited for in real
/// time. No usage sampler runs: while a child runs (in real time) the paused clock jumps to the
/// next timer, and a periodic one would count as uptime until the backoff resets; the reset is
/// also set to its maximum for any timer left.
#[tokio::test(start_paused = true)]
async fn restart_backoff_doubles_to_its_cap_in_paused_time() {
    let real = Instant::now();
    let (h, mut rx) = common::supervised::start_with(
        r#"{"stacks": [{"name": "c", "command": "sh", "args": ["-c", "exit 1"],
            "restart_delay": "1s", "backoff_max": "8s", "backoff_reset_after": "1d",
            "max_restarts": 5}]}"#,
        supervisor::Options {
            forward_output: false,
            usage_interval: None,
            ..supervisor::Options::default()
        },
    )
    .await;
    let mut waits = Vec::new();
    let mut backoff_at = None;
    loop {
        // No timeout here: under a paused clock it would be the next timer and fire at once.
        let e = rx.recv().await.expect("the event stream");
        match e.to {
            StateName::Backoff => backoff_at = Some(tokio::time::Instant::now()),
            StateName::Starting => waits.extend(backoff_at.take().map(|t| t.elapsed())),
            StateName::Fatal => break,
            _ => {}
        }
    }
    let nominal = [1.0, 2.0, 4.0, 8.0, 8.0];
    assert_eq!(waits.len(), nominal.len(), "{waits:?}");
    for (wait, n) in waits.iter().zip(nominal) {
        let s = wait.as_secs_f64();
        assert!((0.9 * n..=1.1 * n).contains(&s) && s <= 8.0, "{waits:?}");
    }
    let virtual_total: Duration = waits.iter().sum();
    assert!(
        real.elapsed() < virtual_total / 2,
        "{:?} of real time for {virtual_total:?} of backoff",
        real.elapsed()
    );
    assert_eq!(h.get("c").await.unwrap().state, StateName::Fatal);
    h.shutdown().await.unwrap();
}
