//! Unplanned changes of owner: a killed owner, a partitioned owner, a lost disk.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use super::{Backend, config};
use crate::common::node::{LONG, Node};

fn sleeper() -> serde_json::Value {
    json!({"name": "sleeper", "command": "sleep", "args": ["100000"]})
}

fn expires_at(status: &serde_json::Value) -> OffsetDateTime {
    rfc3339(&status["lease"]["expires_at"])
}

fn rfc3339(v: &serde_json::Value) -> OffsetDateTime {
    let t = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
}

pub async fn a_killed_owner_is_taken_over_after_the_ttl_and_never_before(b: &Backend) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::spawn_binary(da.path(), &config(b, da.path(), vec![sleeper()])).await;
    a.wait_role("owner").await;
    let a_child = a.wait_running("sleeper").await;
    std::fs::write(a.env_dir().join("state"), "from a").unwrap();
    let (code, c) = a.post("/checkpoint", None).await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
    let bn = Node::start(db.path(), &config(b, db.path(), vec![sleeper()])).await;
    bn.wait_role("standby").await;

    let last_seen = expires_at(&a.get("/").await);
    a.kill();
    // The killed supervisor's child dies with it (PDEATHSIG).
    bn.wait("a's child to die", LONG, |_| async move {
        (!std::path::Path::new(&format!("/proc/{a_child}")).exists()).then_some(())
    })
    .await;
    loop {
        let status = bn.get("/").await;
        if status["role"] == "owner" {
            break;
        }
        assert!(
            OffsetDateTime::now_utc() < last_seen + time::Duration::seconds(30),
            "no takeover: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took_over = OffsetDateTime::now_utc();
    assert!(
        took_over >= last_seen,
        "taken at {took_over}, before the lease a held expired at {last_seen}"
    );
    bn.wait_running("sleeper").await;
    assert_eq!(
        std::fs::read_to_string(bn.env_dir().join("state")).unwrap(),
        "from a"
    );
    assert_eq!(bn.get("/").await["lease"]["epoch"], 2);
}

pub async fn a_partitioned_owner_stops_in_time(b: &Backend) {
    let moto = b.moto_server();
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(b, d.path(), vec![sleeper()])).await;
    n.wait_role("owner").await;
    let child = n.wait_running("sleeper").await;
    moto.pause();
    let status = n.get("/").await;
    let trusted_until = rfc3339(&status["lease"]["trusted_until"]);
    assert!(trusted_until < expires_at(&status), "{status}");
    n.wait("the stacks to stop", LONG, |n| async move {
        let p = n.try_get("/processes/sleeper").await?;
        (p["state"] == "stopped").then_some(())
    })
    .await;
    let stopped = OffsetDateTime::now_utc();
    // Stopped by the owner itself, before its trust ended (and the fence would have fired).
    assert!(
        stopped < trusted_until,
        "stacks stopped at {stopped}, after the owner's trust ended at {trusted_until}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists()
            || crate::common::zombie(child as u32)
    );
    n.wait("the node to give the lease up", LONG, |n| async move {
        let s = n.try_get("/").await?;
        (s["role"] != "owner" && s["role"] != "taking_over").then_some(())
    })
    .await;
    moto.resume();
    // Back in touch with storage, it takes the environment again and starts its stacks.
    n.wait_role("owner").await;
    n.wait_running("sleeper").await;
}

pub async fn the_state_database_survives_a_kill_and_the_loss_of_the_disk(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let crasher = json!({"name": "crasher", "command": "sh", "args": ["-c", "sleep 0.1; exit 3"], "restart_delay": "50ms", "max_restarts": 5});
    let cfg = config(b, d.path(), vec![crasher, sleeper()]);
    let mut n = Node::spawn_binary(d.path(), &cfg).await;
    n.wait_role("owner").await;
    n.wait("crasher to give up", LONG, |n| async move {
        let p = n.try_get("/processes/crasher").await?;
        (p["state"] == "fatal").then_some(())
    })
    .await;
    let events = n.get("/events?process=crasher&limit=1000").await;
    let before = events.as_array().unwrap().len();
    assert!(before >= 15, "{events}");
    // Wait until replication has shipped everything committed so far.
    n.wait("replication to catch up", LONG, |n| async move {
        let r = n.try_get("/").await?["replication"].clone();
        (r["lag_ms"] == 0 && r["pending_bytes"] == 0 && r["last_sync_at"].is_string()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    n.kill();
    for f in std::fs::read_dir(d.path()).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state.db")
        {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let n = Node::spawn_binary(d.path(), &cfg).await;
    n.wait_role("owner").await;
    let events = n.get("/events?process=crasher&limit=1000").await;
    let after = events.as_array().unwrap();
    assert!(
        after.len() >= before,
        "{} events before, {} after: {events}",
        before,
        after.len()
    );
    assert!(after.iter().any(|e| e["to"] == "fatal"), "{events}");
    assert_eq!(
        n.get("/").await["lease"]["epoch"],
        2,
        "a new tenure after the kill"
    );
}

pub async fn a_restart_on_the_same_data_dir_reclaims_at_once_and_a_twin_waits(b: &Backend) {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_id = |d: &std::path::Path| {
        let mut c = config(b, d, vec![sleeper()]);
        c["node_id"] = json!("twin");
        c
    };
    let mut a = Node::spawn_binary(d1.path(), &with_id(d1.path())).await;
    a.wait_role("owner").await;
    a.wait_running("sleeper").await;
    a.kill();
    // The same data directory: its own lease, taken at once with the next epoch.
    let restarted = std::time::Instant::now();
    let mut a = Node::spawn_binary(d1.path(), &with_id(d1.path())).await;
    a.wait(
        "the restarted node to own the lease",
        LONG,
        |n| async move {
            let s = n.try_get("/").await?;
            (s["lease"]["holder"] == "twin" && s["role"] != "standby" && s["lease"]["epoch"] == 2)
                .then_some(())
        },
    )
    .await;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the restart took {took:?} to own the lease"
    );
    a.wait_running("sleeper").await;
    assert_eq!(a.get("/").await["last_takeover"]["kept_local_state"], true);

    // A twin: the same node_id on another data directory waits for the lease to expire.
    let last_seen = expires_at(&a.get("/").await);
    a.kill();
    let twin = Node::start(d2.path(), &with_id(d2.path())).await;
    while OffsetDateTime::now_utc() < last_seen {
        let s = twin.get("/").await;
        assert!(
            s["role"] != "owner" && s["role"] != "taking_over",
            "the twin took the lease before it expired at {last_seen}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    twin.wait_role("owner").await;
    assert_eq!(twin.get("/").await["lease"]["epoch"], 3);
}
