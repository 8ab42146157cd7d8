//! Readiness, liveness and dependency order with real processes and real sockets.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::supervised::start;
use state_manager::config;
use state_manager::events::{Event, StateName};
use state_manager::probes::ProbeRole;
use tokio::sync::broadcast;

const LONG: Duration = Duration::from_secs(30);

/// Events until (and including) the first matching `pred`; panics after `LONG`.
async fn until(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + LONG;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => {
                let done = pred(&e);
                seen.push(Arc::unwrap_or_clone(e));
                if done {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("event stream broke waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:#?}"),
        }
    }
}

fn is(name: &'static str, to: StateName) -> impl Fn(&Event) -> bool {
    move |e| e.process == name && e.to == to
}

#[tokio::test]
async fn a_slow_process_is_starting_until_ready_and_its_dependant_starts_after_it() {
    // db prints its "ready" line after 2 s; its exec probe reads that output on stdin.
    let (h, mut rx) = start(
        r#"{"stacks": [
            {"name": "app", "command": "sleep", "args": ["1000"], "depends_on": ["db"]},
            {"name": "db", "command": "sh", "args": ["-c", "echo booting; sleep 2; echo accepting connections; exec sleep 1000"],
             "readiness": {"exec": ["sh", "-c", "grep -q 'accepting connections'"], "period": "100ms",
                           "timeout": "5s", "start_timeout": "60s"}}]}"#,
    )
    .await;
    let first = until(&mut rx, "db starting", is("db", StateName::Starting)).await;
    assert!(first.iter().all(|e| e.process != "app"), "{first:#?}");
    // The probe cannot pass before db has printed its line, 2 s after its start.
    let db = h.get("db").await.unwrap();
    assert_eq!(
        (db.state, db.ready, db.healthy),
        (StateName::Starting, false, false)
    );
    let app = h.get("app").await.unwrap();
    assert_eq!(app.state, StateName::Stopped, "app waits for db");
    let s = h.summary().await.unwrap();
    assert_eq!(
        (s.starting, s.ready, s.waiting, s.restart_queue),
        (1, 0, 1, 1)
    );

    let to_ready = until(&mut rx, "db running", is("db", StateName::Running)).await;
    assert!(to_ready.iter().all(|e| e.process != "app"), "{to_ready:#?}");
    let running = to_ready.last().unwrap();
    let starting = first.last().unwrap();
    let waited = running.at - starting.at;
    assert!(
        waited >= time::Duration::milliseconds(1900),
        "ready after {waited}"
    );
    assert_eq!(running.reason.as_deref(), Some("ready"));

    until(&mut rx, "app starting", is("app", StateName::Starting)).await;
    until(&mut rx, "app running", is("app", StateName::Running)).await;
    let db = h.get("db").await.unwrap();
    assert!(db.ready && db.healthy, "{db:?}");
    let probe = db.last_probe.expect("a probe result");
    assert_eq!((probe.probe, probe.ok), (ProbeRole::Readiness, true));
    let s = h.summary().await.unwrap();
    assert_eq!((s.running, s.ready, s.healthy, s.waiting), (2, 2, 2, 0));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn liveness_failures_restart_the_process_and_the_event_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let alive = dir.path().join("alive");
    let json = format!(
        r#"{{"stacks": [{{"name": "l", "command": "sleep", "args": ["1000"], "restart_delay": "100ms",
            "liveness": {{"exec": ["test", "-f", "{}"], "period": "100ms", "timeout": "5s", "failures": 2}}}}]}}"#,
        alive.display()
    );
    let (h, mut rx) = start(&json).await;
    let seen = until(&mut rx, "l stopping", is("l", StateName::Stopping)).await;
    let first_pid = seen.iter().find_map(|e| e.pid).unwrap();
    let stopping = seen.last().unwrap().reason.clone().unwrap();
    assert!(
        stopping.starts_with("liveness failed 2 times in a row: exit code 1"),
        "{stopping}"
    );
    let backoff = until(&mut rx, "l backoff", is("l", StateName::Backoff)).await;
    let reason = backoff.last().unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("liveness failed 2 times") && reason.contains("restart 1 in"),
        "{reason}"
    );
    // Live from now on: the new incarnation stays up.
    std::fs::write(&alive, "").unwrap();
    let again = until(&mut rx, "l running again", is("l", StateName::Running)).await;
    let second_pid = again.last().unwrap().pid.unwrap();
    assert_ne!(first_pid, second_pid);
    let info = common::wait_for_async("a passing liveness probe", LONG, || async {
        let i = h.get("l").await.unwrap();
        let live = i
            .last_probe
            .as_ref()
            .is_some_and(|p| p.probe == ProbeRole::Liveness && p.ok);
        live.then_some(i)
    })
    .await;
    assert_eq!((info.restarts, info.healthy), (1, true));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn not_ready_within_start_timeout_counts_as_a_crash() {
    let (h, mut rx) = start(
        r#"{"stacks": [{"name": "n", "command": "sleep", "args": ["1000"], "restart_delay": "100ms", "max_restarts": 1,
            "readiness": {"log_line": "never printed", "period": "50ms", "timeout": "50ms", "start_timeout": "500ms"}}]}"#,
    )
    .await;
    let seen = until(&mut rx, "n stopping", is("n", StateName::Stopping)).await;
    let reason = seen.last().unwrap().reason.clone().unwrap();
    assert!(reason.starts_with("not ready within 500ms"), "{reason}");
    let b = until(&mut rx, "n backoff", is("n", StateName::Backoff)).await;
    assert!(
        b.last()
            .unwrap()
            .reason
            .as_ref()
            .unwrap()
            .contains("not ready within 500ms")
    );
    let f = until(&mut rx, "n fatal", is("n", StateName::Fatal)).await;
    assert!(
        f.last()
            .unwrap()
            .reason
            .as_ref()
            .unwrap()
            .contains("gave up after 1 restarts")
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_readiness_defaults_to_the_first_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = "import socket,sys,time\ntime.sleep(0.5)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(64)\nwhile True:\n    c,_=s.accept()\n    c.close()\n";
    let json = serde_json::json!({"stacks": [{"name": "t", "command": "python3",
        "args": ["-c", script, port.to_string()], "ports": [port],
        "readiness": {"tcp": true, "period": "100ms", "timeout": "1s", "start_timeout": "60s"}}]});
    let (h, mut rx) = start(&json.to_string()).await;
    until(&mut rx, "t running", is("t", StateName::Running)).await;
    let info = h.get("t").await.unwrap();
    let probe = info.last_probe.unwrap();
    assert!(probe.ok, "{probe:?}");
    assert_eq!(probe.message, format!("connected to 127.0.0.1:{port}"));
    h.shutdown().await.unwrap();
}

#[test]
fn a_dependency_cycle_is_a_config_error() {
    let err = config::parse(
        r#"{"stacks": [{"name": "a", "command": "x", "depends_on": ["c"]},
                       {"name": "b", "command": "x", "depends_on": ["a"]},
                       {"name": "c", "command": "x", "depends_on": ["b"]}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("dependency cycle: a -> c -> b -> a"), "{err}");
}
