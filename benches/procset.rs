//! Changing the process set of a real node (in-process, local backend) with 1,000 `sleep`
//! processes:
//!
//! - `PUT /config` with 10 of them changed → all 10 running again on their new spec, and that
//!   only those 10 pids changed;
//! - `POST /processes` latency, p50 and p99 over 200 adds (each a new `sleep`, started).
//!
//! Run: `cargo bench --bench procset`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::node::Node;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PROCESSES: usize = 1000;
const CHANGED: usize = 10;
const ADDS: usize = 200;

fn config(dir: &std::path::Path, args: impl Fn(usize) -> &'static str) -> Value {
    let stacks: Vec<Value> = (0..PROCESSES)
        .map(|i| json!({"name": format!("p{i}"), "command": "sleep", "args": [args(i)], "stop_timeout": "5s"}))
        .collect();
    json!({
        "storage": {"endpoint": format!("file://{}", dir.join("objects").display()), "key_prefix": "env-1"},
        "stacks": stacks,
    })
}

async fn pids(n: &Node) -> BTreeMap<String, Option<u64>> {
    n.get("/processes")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stack"] != Value::Null)
        .map(|p| {
            let running = p["state"] == "running";
            (
                p["name"].as_str().unwrap().to_string(),
                p["pid"].as_u64().filter(|_| running),
            )
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(d.path(), |_| "100000")).await;
    n.wait_role("owner").await;
    let before = n
        .wait("1,000 running", Duration::from_secs(300), |n| async move {
            let p = pids(n).await;
            (p.len() == PROCESSES && p.values().all(Option::is_some)).then_some(p)
        })
        .await;

    // Every 100th process gets a new argument.
    let changed = |i: usize| i.is_multiple_of(PROCESSES / CHANGED);
    let new = config(d.path(), |i| if changed(i) { "200000" } else { "100000" });
    let t = Instant::now();
    let (code, plan) = n.send(Method::PUT, "/config", Some(new)).await;
    let answered = t.elapsed();
    assert_eq!(code, StatusCode::OK, "{plan}");
    assert_eq!(plan["changed"].as_array().unwrap().len(), CHANGED, "{plan}");
    let after = n
        .wait("the 10 changed running", Duration::from_secs(300), |n| {
            let before = &before;
            async move {
                let p = pids(n).await;
                let moved = p
                    .iter()
                    .filter(|(k, v)| v.is_some() && before[*k] != **v)
                    .count();
                (moved == CHANGED).then_some(p)
            }
        })
        .await;
    let running = t.elapsed();
    let moved: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before[*k] != **v)
        .map(|(k, _)| k)
        .collect();
    let expected: Vec<String> = (0..PROCESSES)
        .filter(|i| changed(*i))
        .map(|i| format!("p{i}"))
        .collect();
    let mut moved_sorted: Vec<String> = moved.iter().map(|s| s.to_string()).collect();
    moved_sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(
        moved_sorted, expected_sorted,
        "only the 10 changed pids moved"
    );
    println!(
        "PUT /config, {PROCESSES} processes, {CHANGED} changed: answered in {} ms, all {CHANGED} running in {} ms; {} pids changed, {} untouched",
        answered.as_millis(),
        running.as_millis(),
        moved.len(),
        PROCESSES - moved.len()
    );

    let mut took = Vec::with_capacity(ADDS);
    for i in 0..ADDS {
        let spec = json!({"name": format!("added{i}"), "command": "sleep", "args": ["100000"], "stop_timeout": "5s"});
        let t = Instant::now();
        let (code, body) = n.post("/processes", Some(spec)).await;
        took.push(t.elapsed());
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "POST /processes, {ADDS} adds beside {PROCESSES} processes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(took[ADDS / 2]),
        ms(took[ADDS * 99 / 100]),
        ms(took[ADDS - 1])
    );
    n.stop().await;
}
