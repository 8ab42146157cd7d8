//! CPU and memory of each process group, sampled from /proc (every 250 ms in these servers):
//! in `GET /processes`, on `GET /events/stream?usage=true`, and in `/metrics`.

use reqwest::Method;
use serde_json::Value;

use super::streams::Sse;
use super::support::Server;

/// A busy loop, and a group of two (a sleeping child, and a leader holding 64 MiB it wrote).
const COSTLY: &str = r#"{ "stacks": [
    { "name": "spin", "command": "sh", "args": ["-c", "while :; do :; done"], "stop_timeout": "5s" },
    { "name": "hog", "command": "sh", "args": ["-c", "sleep 1000 & exec python3 -c \"import time; b = b'x' * (64 << 20); time.sleep(1000)\""], "stop_timeout": "5s" },
    { "name": "idle", "command": "sleep 1000", "autostart": false }
] }"#;

const MIB: u64 = 1024 * 1024;

fn rss(p: &Value) -> u64 {
    p["usage"]["rss_bytes"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_show_the_cpu_and_memory_of_their_whole_group() {
    let s = Server::start(Some(COSTLY)).await;
    let spin = s
        .wait_process("spin", "a measured share of a core", |p| {
            p["usage"]["cpu_percent"].as_f64().is_some_and(|c| c > 10.0)
        })
        .await;
    assert_eq!(spin["usage"]["processes"], 1, "{spin}");
    let hog = s
        .wait_process("hog", "its 64 MiB and its child", |p| {
            rss(p) >= 64 * MIB && p["usage"]["processes"] == 2
        })
        .await;
    assert!(rss(&hog) < 1024 * MIB, "{hog}");
    let idle = s.process("idle").await;
    assert_eq!(idle["usage"], Value::Null, "not started: {idle}");

    // A stopped process has no usage any more; its CPU total stays in the metrics.
    let (status, _) = s.post_json("/processes/spin/stop").await;
    assert!(status.is_success());
    s.wait_process("spin", "no usage once stopped", |p| p["usage"].is_null())
        .await;
    let r = s.call(Method::GET, "/metrics").await;
    let text = r.text().await.unwrap();
    let value = |series: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(series))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let spun = value("state_manager_process_cpu_seconds_total{process=\"spin\"}");
    assert!(spun.is_some_and(|v| v > 0.0), "{text}");
    let held = value("state_manager_process_resident_memory_bytes{process=\"hog\"}");
    assert!(held.is_some_and(|v| v >= (64 * MIB) as f64), "{text}");
    assert!(text.contains("# TYPE state_manager_process_cpu_usage_ratio gauge"));
    assert_eq!(
        value("state_manager_process_group_processes{process=\"hog\"}"),
        Some(2.0),
        "{text}"
    );
    assert!(
        !text.contains("state_manager_process_resident_memory_bytes{process=\"spin\"}"),
        "a stopped process has no memory: {text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_samples_only_when_asked() {
    let s = Server::start(Some(COSTLY)).await;
    let mut sse = Sse::open(&s, "/events/stream?usage=true&process=h*").await;
    let sample = sse
        .until("a sample with hog's memory", |name, data| {
            name == "usage" && data[0]["rss_bytes"].as_u64().is_some_and(|b| b >= 64 * MIB)
        })
        .await;
    let list = sample.as_array().unwrap();
    assert_eq!(list.len(), 1, "only the processes matching h*: {sample}");
    let hog = s.process("hog").await;
    assert_eq!(list[0]["process"], "hog");
    assert_eq!(list[0]["pid"], hog["pid"], "{sample}");
    assert!(list[0].get("cpu_percent").is_some(), "{sample}");

    // Without `usage`, a restart's transitions come and no sample among them.
    let mut plain = Sse::open(&s, "/events/stream?process=hog").await;
    let (status, _) = s.post_json("/processes/hog/restart").await;
    assert!(status.is_success());
    let mut names = Vec::new();
    while let Some((name, data)) = plain.next().await {
        names.push(name);
        if data["to"] == "running" {
            break;
        }
    }
    assert!(names.iter().all(|n| n == "transition"), "{names:?}");
    s.stop().await;
}
