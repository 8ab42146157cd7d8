//! Storage health as events: `GET /events` gets one `storage` event when storage starts
//! failing (with the failure's kind, sentence and fix), one when the kind changes, and one
//! when it works again — never one per failed request; the same on the live stream
//! (`event: storage`) and at a webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Json, Router, extract::State, routing::post};
use serde_json::Value;

use super::{Backend, config};
use crate::common::node::Node;
use crate::common::s3s::SECRET_KEY;

/// The `storage` events of `GET /events`, oldest first.
pub async fn storage_events(node: &Node) -> Vec<Value> {
    let events = node.get("/events?limit=10000").await;
    let all = events.as_array().expect("GET /events is an array");
    all.iter()
        .filter(|e| e["kind"] == "storage")
        .cloned()
        .collect()
}

/// `events` as they would be without the test's restarts of the server: a request that meets
/// the moment between kill and listen fails as `unreachable`, and the next one that works
/// ends it. Those events are taken out, and an `ok` that then follows no failure.
pub fn without_restarts(events: Vec<Value>) -> Vec<Value> {
    let mut kept: Vec<Value> = Vec::new();
    for e in events {
        if e["failure"]["kind"] == "unreachable" {
            continue;
        }
        let after_failure = kept.last().is_some_and(|k| k["state"] == "failing");
        if e["state"] == "ok" && !after_failure {
            continue;
        }
        kept.push(e);
    }
    kept
}

/// Wait until `GET /events` holds `n` storage events (without restarts); returns them.
pub async fn wait_storage_events(node: &Node, n: usize) -> Vec<Value> {
    node.wait(
        &format!("{n} storage events"),
        Duration::from_secs(20),
        |node| async move {
            let events = without_restarts(storage_events(node).await);
            (events.len() >= n).then_some(events)
        },
    )
    .await
}

/// Every event POSTed to a webhook receiver on a loopback port.
type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver; returns its URL and what it got.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let keep = |State(got): State<Received>, Json(batch): Json<Vec<Value>>| async move {
        got.lock().unwrap().extend(batch);
    };
    let app = Router::new()
        .route("/hook", post(keep))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, got)
}

/// The data of the next `event: storage` of a server-sent event stream.
async fn next_storage_sse(stream: &mut reqwest::Response, buf: &mut String) -> Value {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: storage") {
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                return serde_json::from_str(data.expect("data of the event")).unwrap();
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk());
        let chunk = chunk.await.expect("an event within 30 s").unwrap();
        buf.push_str(std::str::from_utf8(&chunk.expect("the stream goes on")).unwrap());
    }
}

/// Requests that failed in a row, as `GET /` counts them.
async fn failed_requests(node: &Node) -> u64 {
    let h = node.get("/").await["storage_health"].clone();
    h["failed_requests"]
        .as_u64()
        .unwrap_or_else(|| panic!("{h}"))
}

/// The server knows another secret than the node's: one `storage` event of kind
/// `credentials`, none more however many requests fail, and one `ok` once the server takes the
/// node's secret (kept in the history the node's database takes over). A webhook gets the same.
pub async fn a_wrong_secret_is_one_event_and_its_fix_another(b: &mut Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, hooked) = receiver().await;
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["webhooks"] = serde_json::json!([{"url": url, "batch_interval": "100ms"}]);
    let node = Node::start(dir.path(), &cfg).await;
    let events = wait_storage_events(&node, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["state"], "failing", "{e}");
    assert_eq!(e["failure"]["kind"], "credentials", "{e}");
    let message = e["failure"]["message"].as_str().unwrap();
    assert!(message.contains("SignatureDoesNotMatch"), "{e}");
    assert!(
        e["failure"]["fix"].as_str().unwrap().contains("secret_key"),
        "{e}"
    );
    assert!(e["at"].is_string() && e.get("process").is_none(), "{e}");
    assert!(
        !e.to_string().contains(SECRET_KEY),
        "no secret in events: {e}"
    );

    // The lease is polled every 300 ms: wait for more failed requests, then count again.
    let seen = failed_requests(&node).await;
    node.wait(
        "five more failed requests",
        Duration::from_secs(30),
        |n| async move { (failed_requests(n).await >= seen + 5).then_some(()) },
    )
    .await;
    let events = storage_events(&node).await;
    assert_eq!(events.len(), 1, "no event per failed request: {events:?}");
    let filtered = node.get("/events?process=*").await;
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "process"),
        "a process filter leaves the node's events out: {filtered}"
    );

    let mut live = node.stream("/events/stream").await;
    let mut buf = String::new();
    let Backend::S3s(s3s) = b else { unreachable!() };
    s3s.restart_with_secret(SECRET_KEY);
    let mut streamed = next_storage_sse(&mut live, &mut buf).await;
    while streamed["state"] != "ok" {
        assert_eq!(
            streamed["failure"]["kind"], "unreachable",
            "a restart: {streamed}"
        );
        streamed = next_storage_sse(&mut live, &mut buf).await;
    }
    assert!(
        streamed.get("kind").is_none(),
        "the SSE event name says the kind, the data does not: {streamed}"
    );
    node.wait_role("owner").await;
    let events = wait_storage_events(&node, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["failure"]["kind"], "credentials", "{events:?}");
    assert_eq!(events[1]["state"], "ok", "{events:?}");
    assert!(events[1].get("failure").is_none(), "{events:?}");
    assert_eq!(
        events[1]["at"], streamed["at"],
        "the streamed event is the stored one"
    );
    let hooked = node
        .wait(
            "both storage events at the webhook",
            Duration::from_secs(20),
            |_| {
                let got = hooked.clone();
                async move {
                    let got = got.lock().unwrap();
                    let storage: Vec<Value> = got
                        .iter()
                        .filter(|e| e["kind"] == "storage")
                        .cloned()
                        .collect();
                    (storage.len() >= 2).then_some(storage)
                }
            },
        )
        .await;
    let same: Vec<&Value> = events.iter().collect();
    assert_eq!(
        hooked.iter().collect::<Vec<_>>(),
        same,
        "the webhook got what GET /events has"
    );
    node.stop().await;
}
