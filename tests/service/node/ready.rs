//! `GET /readyz` against real nodes on the local backend: 200 only on the owner whose processes
//! are ready; 503 (problem+json, naming the role) on an owner still waiting for a readiness
//! probe, on a standby, on a node that released the lease, and on an unconfigured server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::node::{LONG, Node};

/// A process that is ready once the file `ready` exists in its cwd (the node's env_dir).
fn gated() -> Value {
    json!({"name": "web", "command": "sleep", "args": ["100000"],
           "readiness": {"exec": ["test", "-f", "ready"], "period": "100ms"}})
}

/// `GET /readyz` without a token: the status and the body.
pub async fn readyz(n: &Node) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/readyz", n.base))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status != StatusCode::OK {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    (status, r.json().await.unwrap())
}

/// Poll `/readyz` until it answers `status`; returns the body.
async fn wait_ready(n: &Node, status: StatusCode) -> Value {
    n.wait(&format!("/readyz {status}"), LONG, |n| async move {
        let (got, body) = readyz(n).await;
        (got == status).then_some(body)
    })
    .await
}

pub fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

pub async fn only_the_owner_with_ready_processes_is_ready(b: &Backend) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(da.path(), &config(b, da.path(), vec![gated()])).await;
    a.wait_role("owner").await;

    // Owner, its process started but its readiness probe failing (it stays `starting`).
    let body = wait_ready(&a, StatusCode::SERVICE_UNAVAILABLE).await;
    let node_a = a.get("/").await["lease"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail(&body).starts_with(&format!(
            "{node_a} is not ready (role owner): 1 of 1 processes"
        )),
        "{body}"
    );
    std::fs::write(a.env_dir().join("ready"), "").unwrap();
    let body = wait_ready(&a, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({"ready": true, "role": "owner", "node_id": node_a, "processes": 1, "storage": "ok"})
    );

    // A standby is not ready, and says who owns the environment.
    let bn = Node::start(db.path(), &config(b, db.path(), vec![gated()])).await;
    bn.wait_role("standby").await;
    let (status, body) = readyz(&bn).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(detail(&body).contains("(role standby)"), "{body}");
    assert!(
        detail(&body).contains(&format!("owned by {node_a}")),
        "{body}"
    );

    // Handoff: the old owner is not ready any more, the new one is once its process is (the
    // `ready` file came with the final checkpoint).
    let (code, released) = a.post("/release-lease", None).await;
    assert_eq!(code, StatusCode::OK, "{released}");
    let (status, body) = readyz(&a).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(detail(&body).contains("(role released)"), "{body}");
    let body = wait_ready(&bn, StatusCode::OK).await;
    assert_eq!(body["role"], "owner", "{body}");
    assert_ne!(body["node_id"], json!(node_a), "{body}");
    assert_eq!(readyz(&a).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

pub async fn an_unconfigured_server_is_not_ready() {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start_unconfigured(d.path()).await;
    let body = wait_ready(&n, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(detail(&body).contains("(role unconfigured)"), "{body}");
    assert_eq!(body["status"], 503, "{body}");
}
