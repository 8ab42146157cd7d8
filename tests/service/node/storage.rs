//! Storage that explains itself: a node whose storage fails shows the failure's kind, sentence
//! and fix in `GET /` (and `/metrics`, `/healthz`, `/readyz`) within moments, and clears it
//! once storage works again. A standby's `/readyz` gives failing storage as its reason; the
//! owner stays ready while it holds the lease.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::ready::{detail, readyz};
use super::{Backend, config};
use crate::common::node::Node;

/// Storage health as `GET /` shows it, once it is in `state` (and of `kind` when failing).
pub(super) async fn wait_health(node: &Node, state: &str, kind: Option<&str>) -> Value {
    let what = format!("storage_health {state} {kind:?}");
    node.wait(&what, Duration::from_secs(20), |n| async move {
        let h = n.get("/").await["storage_health"].clone();
        let kind_ok = kind.is_none_or(|k| h["failure"]["kind"] == k);
        (h["state"] == state && kind_ok).then_some(h)
    })
    .await
}

/// A node started on `cfg`, once it owns the environment and its storage works.
pub(super) async fn owner_with_storage_ok(dir: &std::path::Path, cfg: &Value) -> Node {
    let node = Node::start(dir, cfg).await;
    node.wait_role("owner").await;
    wait_health(&node, "ok", None).await;
    node
}

async fn storage_up(node: &Node) -> String {
    let (_, text) = node.send(reqwest::Method::GET, "/metrics", None).await;
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .find(|l| l.starts_with("state_manager_storage_up "))
        .unwrap_or_default()
        .to_string()
}

pub async fn an_unreachable_endpoint_shows_and_clears(b: &mut Backend) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &config(b, dir.path(), vec![])).await;
    node.wait_role("owner").await;
    wait_health(&node, "ok", None).await;
    assert_eq!(storage_up(&node).await, "state_manager_storage_up 1");

    b.moto_server_mut().stop();
    let h = wait_health(&node, "failing", Some("unreachable")).await;
    let message = h["failure"]["message"].as_str().unwrap();
    assert!(message.contains("connection refused"), "{h}");
    assert!(message.contains("127.0.0.1"), "{h}");
    assert!(
        h["failure"]["fix"]
            .as_str()
            .unwrap()
            .contains("storage.endpoint"),
        "{h}"
    );
    assert_eq!(storage_up(&node).await, "state_manager_storage_up 0");
    let (_, metrics) = node.send(reqwest::Method::GET, "/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("state_manager_storage_error{kind=\"unreachable\"} 1"),
        "{metrics}"
    );

    b.moto_server_mut().restart();
    let h = wait_health(&node, "ok", None).await;
    assert!(h["failure"].is_null(), "{h}");
    node.stop().await;
}

pub async fn a_missing_bucket_shows_and_clears_when_created(b: &Backend) {
    let moto = b.moto_server();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["storage"]["bucket"] = "not-made-yet".into();
    let node = Node::start(dir.path(), &cfg).await;
    let h = wait_health(&node, "failing", Some("no_such_bucket")).await;
    assert!(
        h["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("\"not-made-yet\""),
        "{h}"
    );
    assert!(
        h["failure"]["fix"]
            .as_str()
            .unwrap()
            .contains("storage.bucket"),
        "{h}"
    );
    let status = node.get("/").await;
    assert_eq!(
        status["role"], "standby",
        "a standby that cannot read the lease: {status}"
    );

    moto.create_bucket("not-made-yet");
    wait_health(&node, "ok", None).await;
    node.wait_role("owner").await;
    node.stop().await;
}

/// The server knows another secret than the node's config: `credentials` with the sentence;
/// once the server takes the node's secret, it clears and the node starts up as the owner.
pub async fn a_wrong_secret_shows_and_clears(b: &mut Backend) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &config(b, dir.path(), vec![])).await;
    let h = wait_health(&node, "failing", Some("credentials")).await;
    let message = h["failure"]["message"].as_str().unwrap();
    assert!(message.contains("SignatureDoesNotMatch"), "{h}");
    assert!(message.contains("secret key is wrong"), "{h}");
    let fix = h["failure"]["fix"].as_str().unwrap();
    assert!(
        fix.contains("storage.access_key/secret_key in the config"),
        "{h}"
    );
    let status = node.get("/").await;
    assert_eq!(status["role"], "standby", "{status}");
    let secret = crate::common::s3s::SECRET_KEY;
    assert!(
        !status.to_string().contains(secret),
        "no secret in status: {status}"
    );
    let (code, body) = readyz(&node).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let why = detail(&body);
    assert!(
        why.contains("is not ready (role standby): storage is failing (credentials): "),
        "{body}"
    );
    assert!(
        why.contains("SignatureDoesNotMatch") && why.contains("fix: "),
        "{body}"
    );
    assert!(!why.contains(secret), "{body}");
    let (_, health) = node.send(reqwest::Method::GET, "/healthz", None).await;
    assert_eq!(
        (&health["storage"], &health["storage_failure"]),
        (&"failing".into(), &"credentials".into()),
        "{health}"
    );

    let Backend::S3s(s3s) = b else { unreachable!() };
    s3s.restart_with_secret(secret);
    wait_health(&node, "ok", None).await;
    node.wait_role("owner").await;
    ready_with_storage_ok(&node).await;
    node.stop().await;
}

/// `/readyz` is 200 with `storage` ok and no `storage_failure`.
async fn ready_with_storage_ok(node: &Node) {
    let (code, body) = readyz(node).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["storage"], "ok", "{body}");
    assert!(body.get("storage_failure").is_none(), "{body}");
}

/// The owner's storage starts refusing its signature: it stays ready, with `storage` failing
/// and the sentence in the body, while its lease (30 s here) is valid; ready with `storage`
/// ok once the server takes its secret again.
pub async fn an_owner_stays_ready_while_its_storage_fails(b: &mut Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(b, dir.path(), vec![]);
    cfg["lease"]["ttl"] = "30s".into();
    let node = owner_with_storage_ok(dir.path(), &cfg).await;
    ready_with_storage_ok(&node).await;

    let Backend::S3s(s3s) = b else { unreachable!() };
    s3s.restart_with_secret("the-servers-other-secret");
    wait_health(&node, "failing", Some("credentials")).await;
    let (code, body) = readyz(&node).await;
    assert_eq!(code, StatusCode::OK, "the owner stays ready: {body}");
    assert_eq!(body["storage"], "failing", "{body}");
    let failure = body["storage_failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("storage is failing (credentials): "),
        "{body}"
    );
    assert_eq!(node.get("/").await["role"], "owner");

    s3s.restart_with_secret(crate::common::s3s::SECRET_KEY);
    wait_health(&node, "ok", None).await;
    ready_with_storage_ok(&node).await;
    node.stop().await;
}
