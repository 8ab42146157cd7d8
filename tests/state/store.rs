//! The state database on real SQLite files: schema, typed queries, durability settings.

use state_manager::events::{Event, ExitStatus, StateName};
use state_manager::feed::FeedEvent;
use state_manager::store::{
    Checkpoints, LATEST_VERSION, RunEnd, RunStart, Store, StoreError, StoreOptions,
};
use time::OffsetDateTime;

fn event(process: &str, from: StateName, to: StateName, n: i64) -> Event {
    Event {
        at: OffsetDateTime::from_unix_timestamp_nanos(1_732_000_000_000_000_000 + i128::from(n))
            .unwrap(),
        process: process.to_string(),
        from,
        to,
        pid: Some(1000 + n as u32),
        exit: match n % 3 {
            0 => None,
            1 => Some(ExitStatus::Code(n as i32)),
            _ => Some(ExitStatus::Signal(9)),
        },
        reason: (n % 2 == 0).then(|| format!("reason {n}")),
        change: None,
    }
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.db");
    let store = Store::open(&path).await.unwrap();
    let (version, tables) = store
        .call(|c| {
            let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let mut stmt =
                c.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((v, names))
        })
        .await
        .unwrap();
    assert_eq!(version, LATEST_VERSION);
    assert_eq!(
        tables,
        [
            "checkpoints",
            "events",
            "facts",
            "intents",
            "process_set",
            "runs",
            "stacks"
        ]
    );
    assert!(store.integrity_check().await.unwrap().is_empty());
    store.close().await.unwrap();
    // Opening again applies nothing and keeps the version.
    let again = Store::open(&path).await.unwrap();
    assert_eq!(again.fact_get("nothing").await.unwrap(), None);
}

#[tokio::test]
async fn a_newer_database_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 7)
            .unwrap();
    }
    let err = Store::open(&path).await.unwrap_err();
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, LATEST_VERSION + 7);
            assert_eq!(*supported, LATEST_VERSION);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("schema version {}", LATEST_VERSION + 7)),
        "{msg}"
    );
    assert!(msg.contains("newer state-manager"), "{msg}");
}

#[tokio::test]
async fn events_round_trip_newest_first_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).await.unwrap();
    let events: Vec<FeedEvent> = (0..10)
        .map(|n| {
            let name = if n % 2 == 0 { "web-1" } else { "db" };
            event(name, StateName::ALL[n as usize % 7], StateName::Running, n).into()
        })
        .collect();
    let ids = store.insert_events(&events).await.unwrap();
    assert_eq!(ids.len(), 10);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let all = store.recent_events(100, None, None).await.unwrap();
    assert_eq!(all.len(), 10);
    let back: Vec<FeedEvent> = all.iter().rev().map(|s| s.event.clone()).collect();
    assert_eq!(back, events, "events must round-trip exactly, newest first");

    let web = store.recent_events(100, Some("web-*"), None).await.unwrap();
    assert_eq!(web.len(), 5);
    assert!(web.iter().all(|s| s.event.process() == Some("web-1")));

    let page = store.recent_events(3, None, Some(ids[5])).await.unwrap();
    let page_ids: Vec<i64> = page.iter().map(|s| s.id).collect();
    assert_eq!(page_ids, [ids[4], ids[3], ids[2]]);

    let after = store.events_after(ids[7], 100).await.unwrap();
    assert_eq!(after.iter().map(|s| s.id).collect::<Vec<_>>(), ids[8..]);

    assert!(matches!(
        store.recent_events(1_000_000, None, None).await,
        Err(StoreError::Invalid(_))
    ));
    store.close().await.unwrap();

    // History survives a restart.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.recent_events(100, None, None).await.unwrap(), all);
}

#[tokio::test]
async fn check_constraints_reject_unknown_states() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let err = store
        .call(|c| {
            c.execute(
                "INSERT INTO events (at, process, from_state, to_state) VALUES (0, 'p', 'asleep', 'running')",
                [],
            )
            .map_err(StoreError::from)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
}

#[tokio::test]
async fn runs_open_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let me = store
        .run_started(RunStart::for_pid("me", std::process::id(), now))
        .await
        .unwrap();
    let other = store
        .run_started(RunStart {
            process: "gone".into(),
            pid: 4_000_000,
            proc_start: Some(1),
            boot_id: None,
            started_at: now,
        })
        .await
        .unwrap();
    let open = store.open_runs().await.unwrap();
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), [me, other]);
    assert!(open[0].same_process_alive());
    assert!(!open[1].same_process_alive());

    let end = RunEnd {
        ended_at: now,
        exit: Some(ExitStatus::Signal(15)),
    };
    store.run_ended(other, end).await.unwrap();
    assert!(matches!(
        store.run_ended(other, end).await,
        Err(StoreError::Invalid(_))
    ));
    let open = store.open_runs().await.unwrap();
    assert_eq!(open.len(), 1);
    let closed = store.run(other).await.unwrap().unwrap();
    assert_eq!(closed.exit, Some(ExitStatus::Signal(15)));
    assert_eq!(closed.ended_at, Some(now));
}

#[tokio::test]
async fn facts_set_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    assert_eq!(store.fact_get("k").await.unwrap(), None);
    store.fact_set("k", "one").await.unwrap();
    store.fact_set("k", "two").await.unwrap();
    assert_eq!(store.fact_get("k").await.unwrap().as_deref(), Some("two"));
    assert!(matches!(
        store.fact_set("", "x").await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn durability_settings_and_manual_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).await.unwrap();
    let settings = store
        .call(|c| {
            let get = |p: &str| c.pragma_query_value(None, p, |r| r.get::<_, i64>(0));
            let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            Ok::<_, StoreError>((
                mode,
                [
                    get("synchronous")?,
                    get("foreign_keys")?,
                    get("wal_autocheckpoint")?,
                ],
            ))
        })
        .await
        .unwrap();
    // synchronous 2 = FULL.
    assert_eq!(settings, ("wal".to_string(), [2, 1, 0]));
    store.fact_set("k", "v").await.unwrap();
    store.close().await.unwrap();
    // Nothing checkpointed the WAL, not even closing the last connection.
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).unwrap();
    assert!(
        wal.len() > 32,
        "the WAL must keep its frames, has {}",
        wal.len()
    );

    // The auto mode (no replication) checkpoints on close.
    let auto = Store::open_with(
        &path,
        StoreOptions {
            checkpoints: Checkpoints::Auto,
        },
    )
    .await
    .unwrap();
    assert_eq!(auto.fact_get("k").await.unwrap().as_deref(), Some("v"));
    auto.close().await.unwrap();
    assert!(!dir.path().join("state.db-wal").exists());
}

#[tokio::test]
async fn a_panicking_call_does_not_kill_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let err = store
        .call(|c| -> Result<(), StoreError> {
            c.execute_batch("BEGIN; INSERT INTO facts VALUES ('p', 'v', 0);")?;
            panic!("boom")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted));
    assert_eq!(store.fact_get("p").await.unwrap(), None, "rolled back");
    store.fact_set("after", "ok").await.unwrap();
    assert!(store.integrity_check().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_checkpoint_catalog_lists_newest_first_and_reconciles_with_storage() {
    use state_manager::checkpoint::{CheckpointId, CheckpointSummary};
    use state_manager::store::CatalogEntry;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let entry = |secs: i64, label: &str| {
        let at = t0 + time::Duration::seconds(secs);
        CatalogEntry {
            summary: CheckpointSummary {
                id: CheckpointId::generate(at),
                label: Some(label.into()),
                created_at: at,
                files: 3,
                bytes: 300,
                uploaded_bytes: 100,
                chunks_new: 1,
                freeze_ms: 2,
                duration_ms: 40,
            },
            epoch: Some(4),
        }
    };
    let (a, b, c) = (entry(0, "a"), entry(10, "b"), entry(20, "c"));
    for e in [&b, &a, &c] {
        store.catalog_insert(e.clone()).await.unwrap();
    }
    let listed = store.catalog_list(10).await.unwrap();
    assert_eq!(listed, [c.clone(), b.clone(), a.clone()]);
    assert_eq!(
        store.catalog_get(a.summary.id.as_str()).await.unwrap(),
        Some(a.clone())
    );
    // Storage has b, c and one the catalog never saw; a was deleted elsewhere.
    let other = entry(30, "d").summary.id.as_str().to_string();
    let present = vec![
        b.summary.id.as_str().into(),
        c.summary.id.as_str().into(),
        other.clone(),
    ];
    assert_eq!(store.catalog_reconcile(present).await.unwrap(), [other]);
    assert_eq!(
        store.catalog_get(a.summary.id.as_str()).await.unwrap(),
        None
    );
    assert!(store.catalog_delete(b.summary.id.as_str()).await.unwrap());
    assert!(!store.catalog_delete(b.summary.id.as_str()).await.unwrap());
    assert_eq!(store.catalog_list(10).await.unwrap(), [c]);
}

/// With manual checkpoints, a commit that leaves `EARLY_SYNC_PAGES` frames in the WAL wakes
/// replication through `Store::wal_grew`, so a burst is shipped (and the WAL reset) before the
/// interval ends; commits below that size do not.
#[tokio::test]
async fn a_long_wal_wakes_replication_early() {
    use futures::FutureExt;
    use state_manager::store::EARLY_SYNC_PAGES;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).await.unwrap();
    let grew = store.wal_grew().clone();
    let frames = || {
        let len = std::fs::metadata(dir.path().join("state.db-wal")).map_or(0, |m| m.len());
        len.saturating_sub(32) / (4096 + 24)
    };
    let mut n = 0;
    let mut burst = async |until: u64| {
        while frames() < until {
            let batch: Vec<FeedEvent> = (0..50)
                .map(|_| {
                    n += 1;
                    let mut e = event("burst", StateName::Running, StateName::Exited, n);
                    e.reason = Some(format!("{n:0>3000}"));
                    e.into()
                })
                .collect();
            store.insert_events(&batch).await.unwrap();
        }
    };
    let limit = EARLY_SYNC_PAGES as u64;
    burst(limit * 3 / 4).await;
    assert!(
        grew.notified().now_or_never().is_none(),
        "woken at {} frames, below {limit}",
        frames()
    );
    burst(limit).await;
    assert!(
        grew.notified().now_or_never().is_some(),
        "not woken at {} frames",
        frames()
    );
}

/// The database and the WAL and SHM files SQLite creates beside it are 0600, also when an
/// earlier version left them 0644.
#[tokio::test]
async fn the_database_and_its_wal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = Store::open(&path).await.unwrap();
    store.fact_set("k", "v").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("state.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    store.close().await.unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = Store::open(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    again.close().await.unwrap();
}
