//! Handoff, checkpoint and restore over HTTP.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::{Backend, config};
use crate::common::node::{Node, tree};

/// A process that appends to a file in env_dir every 50 ms.
fn writer() -> serde_json::Value {
    json!({"name": "writer", "command": "sh", "args": ["-c", "while :; do date +%s%N >> ticks; sleep 0.05; done"]})
}

fn fill(env: &std::path::Path) {
    std::fs::create_dir_all(env.join("empty/inner")).unwrap();
    std::fs::create_dir_all(env.join("data")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(env.join("data/big.bin"), &big).unwrap();
    std::fs::write(env.join("data/secret"), "s").unwrap();
    std::fs::set_permissions(
        env.join("data/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("data/big.bin", env.join("link")).unwrap();
}

pub async fn handoff_restores_the_final_checkpoint_byte_for_byte(b: &Backend) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(da.path(), &config(b, da.path(), vec![writer()])).await;
    a.wait_role("owner").await;
    a.wait_running("writer").await;
    fill(&a.env_dir());
    let bn = Node::start(db.path(), &config(b, db.path(), vec![writer()])).await;
    bn.wait_role("standby").await;
    let status = bn.get("/").await;
    assert_eq!(
        status["lease"]["holder"],
        a.get("/").await["lease"]["node_id"],
        "{status}"
    );
    assert_eq!(status["processes"]["running"], 0);

    let (code, released) = a.post("/release-lease", None).await;
    let released_at = Instant::now();
    assert_eq!(code, StatusCode::OK, "{released}");
    assert_eq!(released["released_epoch"], 1);
    let final_id = released["final_checkpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let at_release = tree(&a.env_dir());
    assert!(
        at_release.iter().any(|(p, _)| p == "ticks"),
        "the writer wrote"
    );

    bn.wait_role("owner").await;
    let took = released_at.elapsed();
    bn.wait_running("writer").await;
    // Stop b's writer so its env_dir holds still, then compare with what a handed over.
    let (code, _) = bn.post("/processes/writer/stop", None).await;
    assert_eq!(code, StatusCode::OK);
    let mut restored = tree(&bn.env_dir());
    let mut expected = at_release.clone();
    for t in [&mut restored, &mut expected] {
        t.retain(|(p, _)| p != "ticks");
    }
    assert_eq!(restored, expected);
    let ticks_a = std::fs::read_to_string(a.env_dir().join("ticks")).unwrap();
    let ticks_b = std::fs::read_to_string(bn.env_dir().join("ticks")).unwrap();
    assert!(ticks_b.starts_with(&ticks_a), "b continued from a's ticks");
    assert!(took < Duration::from_secs(20), "handoff took {took:?}");

    let a_status = a.get("/").await;
    assert_ne!(a_status["role"], "owner");
    assert_eq!(a_status["processes"]["running"], 0);
    let listed = bn.get("/checkpoints").await;
    assert!(
        listed["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == final_id),
        "{listed}"
    );
    let (code, refused) = a.post("/release-lease", None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
}

/// A process whose hooks record `CHECKPOINT_ID`: the checkpoint hook into env_dir (so it is part
/// of the checkpoint), the restore hook outside it.
fn hooked(outside: &std::path::Path) -> serde_json::Value {
    let mut w = writer();
    w["checkpoint_command"] = json!(["sh", "-c", "echo \"$CHECKPOINT_ID\" > hooked"]);
    w["restore_command"] = json!([
        "sh",
        "-c",
        format!("echo \"$CHECKPOINT_ID\" >> {}", outside.display())
    ]);
    w
}

pub async fn restore_round_trip_with_hooks_and_undo(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let restored_log = d.path().join("restore-hook.log");
    let n = Node::start(d.path(), &config(b, d.path(), vec![hooked(&restored_log)])).await;
    n.wait_role("owner").await;
    let env = n.env_dir();
    std::fs::write(env.join("data.txt"), "v1").unwrap();
    let (code, c1) = n.post("/checkpoint", Some(json!({"label": "one"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{c1}");
    let c1_id = c1["id"].as_str().unwrap().to_string();
    assert_eq!(c1["label"], "one");
    assert!(
        c1["files"].as_u64().unwrap() >= 2 && c1["duration_ms"].is_u64(),
        "{c1}"
    );
    assert_eq!(
        std::fs::read_to_string(env.join("hooked")).unwrap().trim(),
        c1_id
    );
    assert_eq!(n.get("/").await["last_checkpoint"]["id"], c1_id.as_str());

    std::fs::write(env.join("data.txt"), "v2").unwrap();
    std::fs::write(env.join("extra"), "x").unwrap();
    let before = n.wait_running("writer").await;
    let (code, r) = n.post("/restore", Some(json!({"checkpoint": c1_id}))).await;
    assert_eq!(code, StatusCode::OK, "{r}");
    assert_eq!(r["restored"], c1_id.as_str());
    let undo = r["undo_checkpoint"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(env.join("data.txt")).unwrap(), "v1");
    assert!(!env.join("extra").exists());
    assert_eq!(
        std::fs::read_to_string(&restored_log).unwrap().trim(),
        c1_id,
        "restore hook ran with the id"
    );
    let after = n.wait_running("writer").await;
    assert_ne!(before, after, "the stacks were stopped and started again");

    let (code, r) = n.post("/restore", Some(json!({"checkpoint": undo}))).await;
    assert_eq!(code, StatusCode::OK, "{r}");
    assert_eq!(std::fs::read_to_string(env.join("data.txt")).unwrap(), "v2");
    assert_eq!(std::fs::read_to_string(env.join("extra")).unwrap(), "x");
    let info = n.get(&format!("/checkpoints/{undo}")).await;
    assert!(info["label"].as_str().unwrap().contains(&c1_id), "{info}");
    let (code, _) = n
        .send(
            reqwest::Method::DELETE,
            &format!("/checkpoints/{undo}"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = n
        .send(reqwest::Method::GET, &format!("/checkpoints/{undo}"), None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

pub async fn restore_validates_before_touching_anything(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(b, d.path(), vec![writer()])).await;
    n.wait_role("owner").await;
    let pid = n.wait_running("writer").await;
    let (code, p) = n
        .post("/restore", Some(json!({"checkpoint": "latest"})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no checkpoint yet: {p}");
    let (code, c) = n.post("/checkpoint", None).await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
    for (body, want) in [
        (
            json!({"checkpoint": "20990101T000000.000Z-00000000"}),
            StatusCode::NOT_FOUND,
        ),
        (json!({"checkpoint": "../../etc"}), StatusCode::BAD_REQUEST),
        (json!({"checkpoint": 7}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"nope": 1}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (code, p) = n.post("/restore", Some(body.clone())).await;
        assert_eq!(code, want, "{body} -> {p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    }
    let (code, p) = n.post("/restore", None).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(n.wait_running("writer").await, pid, "nothing was stopped");
    let listed = n.get("/checkpoints").await;
    assert_eq!(
        listed["checkpoints"].as_array().unwrap().len(),
        1,
        "no undo checkpoint was taken: {listed}"
    );
}

pub async fn operations_are_refused_while_one_runs_and_hooks_can_fail_them(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let gate = d.path().join("gate");
    let mut slow = writer();
    slow["checkpoint_command"] = json!([
        "sh",
        "-c",
        format!(
            "touch {g}.in; while [ ! -e {g} ]; do sleep 0.05; done; [ \"$(cat {g})\" = ok ]",
            g = gate.display()
        )
    ]);
    let n = std::sync::Arc::new(Node::start(d.path(), &config(b, d.path(), vec![slow])).await);
    n.wait_role("owner").await;
    let first = tokio::spawn({
        let n = n.clone();
        async move { n.post("/checkpoint", None).await }
    });
    let entered = format!("{}.in", gate.display());
    n.wait("the hook to start", crate::common::node::LONG, |_| {
        let e = entered.clone();
        async move { std::path::Path::new(&e).exists().then_some(()) }
    })
    .await;
    let status = n.get("/").await;
    assert_eq!(status["operation"]["kind"], "checkpoint", "{status}");
    for (path, body) in [("/checkpoint", None), ("/release-lease", None)] {
        let (code, p) = n.post(path, body).await;
        assert_eq!(code, StatusCode::CONFLICT, "{path}: {p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("checkpoint is under way"),
            "{p}"
        );
    }
    std::fs::write(&gate, "ok").unwrap();
    let (code, c) = first.await.unwrap();
    assert_eq!(code, StatusCode::CREATED, "{c}");

    // The same hook failing fails the checkpoint, with its output in the answer.
    std::fs::write(&gate, "no").unwrap();
    let (code, p) = n.post("/checkpoint", None).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("checkpoint hook of writer failed"),
        "{p}"
    );
    assert_eq!(
        n.get("/checkpoints").await["checkpoints"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

pub async fn a_corrupt_chunk_fails_the_restore(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(b, d.path(), vec![writer()])).await;
    n.wait_role("owner").await;
    std::fs::write(n.env_dir().join("precious"), vec![7u8; 600_000]).unwrap();
    let (code, c) = n.post("/checkpoint", None).await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
    let chunks = b.objects_dir(super::PREFIX).unwrap().join("chunks");
    for entry in std::fs::read_dir(&chunks).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not what was stored").unwrap();
    }
    std::fs::write(n.env_dir().join("precious"), "changed since").unwrap();
    n.post("/processes/writer/stop", None).await;
    let before = tree(&n.env_dir());
    n.post("/processes/writer/start", None).await;
    n.wait_running("writer").await;
    let (code, p) = n
        .post("/restore", Some(json!({"checkpoint": c["id"]})))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("corrupt"), "{p}");
    n.wait_running("writer").await;
    n.post("/processes/writer/stop", None).await;
    let mut after = tree(&n.env_dir());
    let mut before = before;
    for t in [&mut after, &mut before] {
        t.retain(|(p, _)| p != "ticks");
    }
    assert_eq!(after, before, "env_dir is as it was");
    let last = n.get("/").await["last_restore"].clone();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .starts_with("env_dir is unchanged: "),
        "{last}"
    );
    let events = n.get("/events?process=_environment").await;
    let told = events.as_array().unwrap().iter().any(|e| {
        let reason = e["reason"].as_str().unwrap_or("");
        reason.contains(c["id"].as_str().unwrap()) && reason.contains("corrupt")
    });
    assert!(told, "{events}");
}
