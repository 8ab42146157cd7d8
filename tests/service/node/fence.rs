//! The fence process: a SIGSTOPped owner's processes are killed before its trust in the lease
//! ends, without its help, so a standby never runs the environment beside them.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use state_manager::lease::{LEASE_KEY, LeaseRecord};
use time::OffsetDateTime;

use super::{Backend, PREFIX, config};
use crate::common::alive;
use crate::common::node::{LONG, Node};

/// A process appending `<node> <unix ns>` to `file` every 50 ms.
pub fn writer(node: &str, file: &Path) -> Value {
    json!({"name": "writer", "command": "sh", "env": {"NODE": node, "OUT": file},
           "args": ["-c", "while :; do echo \"$NODE $(date +%s%N)\" >> \"$OUT\"; sleep 0.05; done"]})
}

/// The lines of a writers' file as (node, unix ns).
pub fn lines(file: &Path) -> Vec<(String, i128)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (node, t) = l.split_once(' ')?;
            Some((node.to_string(), t.trim().parse().ok()?))
        })
        .collect()
}

async fn lease_record(b: &Backend) -> LeaseRecord {
    let obj = b.store(PREFIX).await.get(LEASE_KEY).await.unwrap();
    LeaseRecord::decode(&obj.body).unwrap()
}

pub async fn a_stopped_owners_processes_die_before_its_trust_ends(b: &Backend) {
    let (da, db, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let file = shared.path().join("writers");
    let a = Node::spawn_binary(da.path(), &config(b, da.path(), vec![writer("a", &file)])).await;
    a.wait_role("owner").await;
    let child = a.wait_running("writer").await as u32;
    a.wait("the fence process", LONG, |n| async move {
        let s = n.try_get("/").await?;
        (s["lease"]["fence"]["pid"].is_u64() && s["lease"]["fence"]["armed"] == true).then_some(())
    })
    .await;
    let bn = Node::start(db.path(), &config(b, db.path(), vec![writer("b", &file)])).await;
    bn.wait_role("standby").await;

    let a_node = a_id(&a).await;
    let server = Pid::from_raw(a.pid().unwrap() as i32);
    kill(server, Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    while alive(child) {
        assert!(
            stopped.elapsed() < LONG,
            "the stopped owner's writer still runs"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dead = OffsetDateTime::now_utc();
    // The last record the stopped owner wrote (a renewal in flight may have landed after the
    // stop: that only moves the deadline later).
    let record = lease_record(b).await;
    assert_eq!(record.holder, a_node, "{record:?}");
    // ttl 4s, clock_skew 1s: trust ends clock_skew + ttl/10 before expires_at.
    let trust_until = record.expires_at - Duration::from_millis(1400);
    assert!(
        dead < trust_until,
        "the writer died at {dead}, after the owner's trust ended at {trust_until}"
    );

    bn.wait_role("owner").await;
    bn.wait_running("writer").await;
    let b_started = OffsetDateTime::now_utc();
    assert!(
        b_started > record.expires_at,
        "b took over before a's lease expired"
    );
    // Let b write for a while, then let a run again: it finds its trust gone and starts nothing.
    bn.wait("b's lines", LONG, |_| {
        let n = lines(&file).iter().filter(|l| l.0 == "b").count();
        async move { (n >= 5).then_some(()) }
    })
    .await;
    kill(server, Signal::SIGCONT).unwrap();
    a.wait("a to stop being the owner", LONG, |n| async move {
        let s = n.try_get("/").await?;
        (s["role"] != "owner" && s["role"] != "taking_over").then_some(s)
    })
    .await;
    let status = a.get("/").await;
    let fence = &status["lease"]["fence"];
    assert!(fence["fired"].as_u64() >= Some(1), "{status}");
    assert_eq!(fence["last_fired"]["epoch"], 1, "{status}");
    assert!(
        fence["last_fired"]["processes"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(fence["armed"], false, "{status}");
    // The firing is an event too, with the epoch and the processes killed. The node publishes
    // it once its owner task has seen the new role, which may be a moment after `GET /` shows
    // that role: wait for it, then check there is exactly one.
    let fence_events = |events: &Value| -> usize {
        events
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reason"].as_str())
            .filter(|r| r.contains("the fence process killed") && r.contains("lease epoch 1"))
            .count()
    };
    let events = a
        .wait("the fence's event", LONG, |n| async move {
            let events = n.try_get("/events?process=_environment").await?;
            (fence_events(&events) > 0).then_some(events)
        })
        .await;
    assert_eq!(fence_events(&events), 1, "{events}");
    // Some time for anything a would (wrongly) start again to write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = lines(&file);
    let last_a = all
        .iter()
        .filter(|l| l.0 == "a")
        .map(|l| l.1)
        .max()
        .unwrap();
    let first_b = all
        .iter()
        .filter(|l| l.0 == "b")
        .map(|l| l.1)
        .min()
        .unwrap();
    assert!(
        last_a < first_b,
        "a wrote at {last_a} ns, after b began at {first_b} ns"
    );
    assert!(
        last_a < (trust_until.unix_timestamp_nanos()),
        "a's last line at {last_a} ns, after its trust ended"
    );
}

async fn a_id(n: &Node) -> String {
    n.get("/").await["lease"]["node_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A process writing the epoch it was given (environment, then file) to `out`, then sleeping.
fn epoch_reporter(out: &Path) -> Value {
    json!({"name": "reporter", "command": "sh", "env": {"OUT": out},
           "args": ["-c", "echo \"$STATE_MANAGER_LEASE_EPOCH $(cat \"$STATE_MANAGER_LEASE_EPOCH_FILE\")\" > \"$OUT.tmp\"; mv \"$OUT.tmp\" \"$OUT\"; exec sleep 100000"]})
}

pub async fn the_processes_get_the_lease_epoch_and_it_grows_on_takeover(b: &Backend) {
    let (da, db, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (out_a, out_b) = (shared.path().join("a"), shared.path().join("b"));
    let a = Node::start(
        da.path(),
        &config(b, da.path(), vec![epoch_reporter(&out_a)]),
    )
    .await;
    a.wait_role("owner").await;
    let seen = crate::common::wait_for_line("a's reporter", &out_a).await;
    let record = lease_record(b).await;
    assert_eq!(seen.trim(), format!("{0} {0}", record.epoch), "env, file");
    assert_eq!(record.epoch, 1);

    let bn = Node::start(
        db.path(),
        &config(b, db.path(), vec![epoch_reporter(&out_b)]),
    )
    .await;
    bn.wait_role("standby").await;
    let (code, r) = a.post("/release-lease", None).await;
    assert_eq!(code, reqwest::StatusCode::OK, "{r}");
    bn.wait_role("owner").await;
    let seen = crate::common::wait_for_line("b's reporter", &out_b).await;
    let record = lease_record(b).await;
    assert_eq!(record.epoch, 2, "{record:?}");
    assert_eq!(seen.trim(), "2 2", "env, file");
}
