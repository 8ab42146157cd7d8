//! Processes over HTTP: list and inspect, a killed child restarted with its count shown, stop,
//! start and restart by pattern, the stop timeout override, and pattern errors.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::{SLEEPERS, Server, assert_problem, state};

fn pid(p: &Value) -> i32 {
    p["pid"].as_i64().expect("a pid") as i32
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filter_and_inspect() {
    let s = Server::start(Some(SLEEPERS)).await;
    let all = s.get_json("/processes").await;
    assert_eq!(names(&all), ["web-1", "web-2", "web-3", "worker"]);
    let webs = s.get_json("/processes?pattern=web-*").await;
    assert_eq!(names(&webs), ["web-1", "web-2", "web-3"]);
    let p = s
        .wait_process("web-2", "running", |p| state(p) == "running")
        .await;
    for key in ["name", "state", "pid", "restarts", "uptime_s", "last_exit"] {
        assert!(p.get(key).is_some(), "{key} missing: {p}");
    }
    assert!(pid(&p) > 0);
    assert_problem(
        s.call(Method::GET, "/processes/nope").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        s.call(Method::GET, "/processes?pattern=[").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_restarted_and_counted() {
    let s = Server::start(Some(SLEEPERS)).await;
    let before = s
        .wait_process("worker", "running", |p| state(p) == "running")
        .await;
    assert_eq!(before["restarts"], 0);
    kill(Pid::from_raw(pid(&before)), Signal::SIGKILL).unwrap();
    let after = s
        .wait_process("worker", "running again", |p| {
            state(p) == "running" && p["restarts"] == 1
        })
        .await;
    assert_ne!(pid(&after), pid(&before));
    assert_eq!(after["last_exit"], json!({"signal": 9}));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_restart_by_pattern() {
    let s = Server::start(Some(SLEEPERS)).await;
    for n in ["web-1", "web-2", "web-3", "worker"] {
        s.wait_process(n, "running", |p| state(p) == "running")
            .await;
    }
    let worker = s.process("worker").await;

    let (code, body) = s.post_json("/processes/web-*/stop").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["processes"], json!(["web-1", "web-2", "web-3"]));
    // Stop answers once they are down.
    for p in s
        .get_json("/processes?pattern=web-*")
        .await
        .as_array()
        .unwrap()
    {
        assert_eq!(state(p), "stopped", "{p}");
    }
    assert_eq!(
        pid(&s.process("worker").await),
        pid(&worker),
        "worker untouched"
    );

    let (code, body) = s.post_json("/processes/web-%5B1-3%5D/start").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["processes"], json!(["web-1", "web-2", "web-3"]));
    for n in ["web-1", "web-2", "web-3"] {
        s.wait_process(n, "running", |p| state(p) == "running")
            .await;
    }

    let (code, body) = s.post_json("/processes/worker/restart").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["processes"], json!(["worker"]));
    let again = s
        .wait_process("worker", "running", |p| state(p) == "running")
        .await;
    assert_ne!(pid(&again), pid(&worker));

    let (code, _) = s.post_json("/processes/db-*/stop").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let r = s.call(Method::POST, "/processes/%5B/restart").await;
    let body = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("pattern"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_can_be_overridden_per_request() {
    // Ignores SIGTERM; its configured stop timeout is long.
    let config = r#"{ "stacks": [ { "name": "stubborn", "command": "sh", "args": ["-c", "trap '' TERM; echo ignoring TERM; while :; do sleep 1; done"], "stop_timeout": "10m" } ] }"#;
    let s = Server::start(Some(config)).await;
    // Wait for the trap to be set, not just for the process to be up.
    crate::common::wait_for_async("the trap to be set", super::support::DEADLINE, || async {
        let logs = s.get_json("/processes/stubborn/logs").await;
        (logs[0]["line"] == "ignoring TERM").then_some(())
    })
    .await;
    let bad = s
        .call(Method::POST, "/processes/stubborn/stop?timeout=soon")
        .await;
    let body = assert_problem(bad, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("timeout"),
        "{body}"
    );
    assert_eq!(state(&s.process("stubborn").await), "running");

    let started = Instant::now();
    let (code, body) = s.post_json("/processes/stubborn/stop?timeout=200ms").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let p = s.process("stubborn").await;
    assert_eq!(state(&p), "stopped");
    assert_eq!(p["last_exit"], json!({"signal": 9}), "{p}");
    s.stop().await;
}
