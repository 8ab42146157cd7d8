//! Logs (tail and follow), events (history and live stream), and streams ending at shutdown.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::support::{DEADLINE, Server, assert_problem, state};

const TALKERS: &str = r#"{ "stacks": [
    { "name": "talker", "command": "sh", "args": ["-c", "echo one; echo two; echo oops >&2; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"], "stop_timeout": "10s" },
    { "name": "worker", "command": "sleep 1000", "stop_timeout": "10s" }
] }"#;

/// Server-sent events read from a response, one `(event, data)` at a time.
pub struct Sse {
    resp: Response,
    buf: String,
}

impl Sse {
    pub async fn open(s: &Server, path: &str) -> Sse {
        let resp = s.call(Method::GET, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event with data, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .expect("no event within the deadline")
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until one satisfies `cond`; returns it.
    pub async fn until(&mut self, what: &str, cond: impl Fn(&str, &Value) -> bool) -> Value {
        while let Some((name, data)) = self.next().await {
            if cond(&name, &data) {
                return data;
            }
        }
        panic!("the stream ended before {what}");
    }
}

fn tick(v: &Value) -> Option<u64> {
    v["line"].as_str()?.strip_prefix("tick ")?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_tail_and_follow() {
    let s = Server::start(Some(TALKERS)).await;
    let lines = crate::common::wait_for_async("three ticks", DEADLINE, || async {
        let v = s.get_json("/processes/talker/logs?tail=1000").await;
        (v.as_array().unwrap().iter().filter_map(tick).count() >= 3).then_some(v)
    })
    .await;
    let all = lines.as_array().unwrap();
    // Each stream keeps its order; stdout and stderr are separate pipes, so not with each other.
    let stdout: Vec<&Value> = all.iter().filter(|l| l["stream"] == "stdout").collect();
    assert_eq!(stdout[0]["line"], "one");
    assert_eq!(stdout[1]["line"], "two");
    assert!(stdout[0]["at"].is_string());
    assert!(
        all.iter()
            .any(|l| l["line"] == "oops" && l["stream"] == "stderr"),
        "{lines}"
    );

    let two = s.get_json("/processes/talker/logs?tail=2").await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_problem(
        s.call(Method::GET, "/processes/talker/logs?tail=abc").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        s.call(Method::GET, "/processes/talker/logs?tail=5000")
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        s.call(Method::GET, "/processes/nobody/logs").await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let mut follow = Sse::open(&s, "/processes/talker/logs?tail=1&follow=true").await;
    let (name, first) = follow.next().await.unwrap();
    assert_eq!(name, "log");
    let first_tick = tick(&first).expect("the tail is a tick");
    let later = follow
        .until("a newer tick", |n, v| {
            n == "log" && tick(v).is_some_and(|t| t > first_tick + 1)
        })
        .await;
    assert_eq!(later["stream"], "stdout");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_history_and_live_stream() {
    let s = Server::start(Some(TALKERS)).await;
    s.wait_process("worker", "running", |p| state(p) == "running")
        .await;
    let history = s.get_json("/events?process=work*").await;
    let events = history.as_array().unwrap();
    assert!(events.iter().all(|e| e["process"] == "worker"), "{history}");
    let tos: Vec<&str> = events.iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(tos, ["starting", "running"]);
    assert!(events[1]["pid"].as_u64().is_some() && events[1]["at"].is_string());
    let one = s.get_json("/events?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_problem(
        s.call(Method::GET, "/events?limit=0").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        s.call(Method::GET, "/events?process=[").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        s.call(Method::GET, "/events?bogus=1").await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let mut live = Sse::open(&s, "/events/stream").await;
    let (code, _) = s.post_json("/processes/worker/restart").await;
    assert_eq!(code, StatusCode::OK);
    let stopping = live
        .until("worker stopping", |n, e| {
            n == "transition" && e["process"] == "worker" && e["to"] == "stopping"
        })
        .await;
    assert_eq!(stopping["from"], "running");
    live.until("worker running again", |_, e| {
        e["process"] == "worker" && e["to"] == "running"
    })
    .await;
    let after = s.get_json("/events?process=worker&limit=10").await;
    assert!(after.as_array().unwrap().len() > events.len());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_at_shutdown_and_do_not_hold_it() {
    let s = Server::start(Some(TALKERS)).await;
    s.wait_process("talker", "running", |p| state(p) == "running")
        .await;
    let mut logs = Sse::open(&s, "/processes/talker/logs?follow=true").await;
    let mut events = Sse::open(&s, "/events/stream").await;
    assert!(logs.next().await.is_some());
    let (code, _) = tokio::time::timeout(Duration::from_secs(60), s.stop())
        .await
        .expect("shutdown waited for the open streams");
    assert_eq!(code, 0);
    // Both streams are over: drain whatever was sent before the end.
    while logs.next().await.is_some() {}
    while events.next().await.is_some() {}
}
