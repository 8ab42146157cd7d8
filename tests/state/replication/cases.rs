//! The replication cases, each run against the local backend and against moto.

use std::path::Path;
use std::time::{Duration, Instant};

use state_manager::replication::{self, LOCATION_FACT, ReplicationError, Replicator, restore_db};
use state_manager::store::{Store, StoreError};
use time::OffsetDateTime;

use super::child::Writer;
use super::common::{wait_for, wait_for_async};
use super::{Backend, config, event, open_replicated, restored_numbers, wal_cycles};

/// Generous bound for anything that waits on replication on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

async fn numbers(store: &Store) -> Vec<u64> {
    store
        .call(|c| {
            let mut stmt = c.prepare("SELECT process FROM events ORDER BY id")?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(names.iter().map(|n| n[1..].parse().unwrap()).collect())
        })
        .await
        .unwrap()
}

async fn insert(store: &Store, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        store.insert_events(&[event(n)]).await.unwrap();
    }
}

fn remove_local(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-replication.json"] {
        let mut p = db.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

pub async fn kill_9_then_restore_keeps_acknowledged_commits(be: Backend) {
    const SLACK: Duration = Duration::from_secs(2);
    let interval = Duration::from_millis(250);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut writer = Writer::spawn(&db, &be.storage("crash"), interval);
    let seen = writer.seen.clone();
    wait_for(
        "the writer to run for 3 s with a sync reported",
        PATIENCE,
        || {
            let s = seen.lock().unwrap();
            let span = match (s.acks.first(), s.acks.last()) {
                (Some(a), Some(b)) => b.1 - a.1,
                _ => Duration::ZERO,
            };
            (span > Duration::from_secs(3) && s.synced.is_some()).then_some(())
        },
    );
    let killed_at = writer.kill_9();
    let (acks, synced) = {
        let s = seen.lock().unwrap();
        (s.acks.clone(), s.synced.unwrap())
    };

    remove_local(&db);
    let objects = be.store("crash").await;
    let (store, _rep) = replication::open(&db, objects, &config(interval), None)
        .await
        .unwrap();
    let restored = numbers(&store).await;
    assert!(store.integrity_check().await.unwrap().is_empty());
    let max = restored.last().copied().unwrap_or(0);
    assert_eq!(
        restored,
        (1..=max).collect::<Vec<_>>(),
        "a prefix of history, no holes"
    );
    assert!(
        max >= synced,
        "reported synced through {synced}, restored {max}"
    );
    let old_enough = acks
        .iter()
        .filter(|(_, at)| *at + interval + SLACK < killed_at)
        .map(|(n, _)| *n)
        .max()
        .unwrap_or(0);
    assert!(
        max >= old_enough,
        "acknowledged more than {interval:?} + {SLACK:?} before the kill: {old_enough}, restored {max}"
    );
    assert!(
        old_enough > 0,
        "the writer ran long enough to test something"
    );
    eprintln!(
        "acknowledged {}, reported synced {synced}, old enough {old_enough}, restored {max}",
        acks.len()
    );
}

pub async fn point_in_time_restore(be: Backend) {
    let objects = be.store("pitr").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_millis(50));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    let before_everything = OffsetDateTime::now_utc() - time::Duration::hours(1);
    insert(&store, 1..=10).await;
    rep.sync_now().await.unwrap();
    let t = OffsetDateTime::now_utc();
    wait_for("the clock to move past t", PATIENCE, || {
        (OffsetDateTime::now_utc() - t > time::Duration::milliseconds(5)).then_some(())
    });
    insert(&store, 11..=20).await;
    rep.sync_now().await.unwrap();

    let at_t = dir.path().join("at-t.db");
    let info = restore_db(&objects, &at_t, Some(t)).await.unwrap();
    assert!(info.restored_through <= t);
    assert_eq!(
        restored_numbers(at_t.clone()).await,
        (1..=10).collect::<Vec<_>>()
    );

    let latest = dir.path().join("latest.db");
    restore_db(&objects, &latest, None).await.unwrap();
    assert_eq!(
        restored_numbers(latest.clone()).await,
        (1..=20).collect::<Vec<_>>()
    );

    let err = restore_db(
        &objects,
        &dir.path().join("early.db"),
        Some(before_everything),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ReplicationError::NothingToRestore { .. }),
        "{err}"
    );
    let err = restore_db(&objects, &latest, None).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::TargetExists { .. }),
        "{err}"
    );
}

pub async fn retention_prunes_old_generations(be: Backend) {
    let objects = be.store("retention").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Duration::from_millis(50));
    cfg.snapshot_interval = state_manager::config::Dur::millis(300);
    cfg.retention = state_manager::config::Dur::secs(1);
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    rep.sync_now().await.unwrap();
    let first = rep.status().borrow().generation.clone().unwrap();
    let mut n = 0;
    wait_for_async("the first generation to be pruned", PATIENCE, || {
        n += 1;
        let (store, rep, objects, first) = (&store, &rep, &objects, &first);
        async move {
            store.insert_events(&[event(n)]).await.unwrap();
            rep.sync_now().await.unwrap();
            let left = objects.list(&format!("db/{first}/")).await.unwrap();
            left.is_empty().then_some(())
        }
    })
    .await;
    let generation = rep.status().borrow().generation.clone().unwrap();
    assert_ne!(generation, first);
    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=n).collect::<Vec<_>>()
    );
}

pub async fn clean_restart_continues_the_generation(be: Backend) {
    let objects = be.store("restart").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let cfg = config(Duration::from_millis(50));
    let (store, rep) = replication::open(&db, objects.clone(), &cfg, None)
        .await
        .unwrap();
    let rep = rep.unwrap();
    insert(&store, 1..=5).await;
    rep.shutdown().await.unwrap();
    let generation = rep.status().borrow().generation.clone().unwrap();
    store.close().await.unwrap();
    assert!(dir.path().join("s.db-replication.json").is_file());
    let leftover = dir.path().join("s.db-snapshot-crashed.zst");
    std::fs::write(&leftover, b"left by a crash").unwrap();

    let (store, rep) = replication::open(&db, objects.clone(), &cfg, None)
        .await
        .unwrap();
    assert!(
        !leftover.exists(),
        "leftover snapshot files are removed at start"
    );
    let rep = rep.unwrap();
    insert(&store, 6..=10).await;
    rep.sync_now().await.unwrap();
    assert_eq!(rep.status().borrow().generation.as_ref(), Some(&generation));
    let snapshots = objects.list("db/").await.unwrap();
    let snapshots = snapshots
        .iter()
        .filter(|m| m.key.contains("/snapshot-"))
        .count();
    assert_eq!(snapshots, 1, "a clean restart needs no new snapshot");

    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=10).collect::<Vec<_>>()
    );
}

pub async fn a_database_from_another_location_is_replaced(be: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_millis(50));
    let (a, b, c) = (
        be.store("loc-a").await,
        be.store("loc-b").await,
        be.store("loc-c").await,
    );
    let run = |path: std::path::PathBuf, objects, range| {
        let cfg = cfg.clone();
        async move {
            let (store, rep) = replication::open(&path, objects, &cfg, None).await.unwrap();
            insert(&store, range).await;
            rep.unwrap().shutdown().await.unwrap();
            store.close().await.unwrap();
        }
    };
    run(dir.path().join("other.db"), b.clone(), 100..=102).await;
    let db = dir.path().join("s.db");
    run(db.clone(), a.clone(), 1..=3).await;

    // Pointed at b, which holds a database: the local one (of a) is moved aside, b's restored.
    let (store, rep) = replication::open(&db, b.clone(), &cfg, None).await.unwrap();
    assert_eq!(numbers(&store).await, [100, 101, 102]);
    assert_eq!(
        store.fact_get(LOCATION_FACT).await.unwrap(),
        Some(b.describe())
    );
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("s.db.moved-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    rep.unwrap().shutdown().await.unwrap();
    store.close().await.unwrap();

    // Pointed at an empty location: the local database is kept and replicated there.
    let (store, rep) = replication::open(&db, c.clone(), &cfg, None).await.unwrap();
    let rep: Replicator = rep.unwrap();
    assert_eq!(numbers(&store).await, [100, 101, 102]);
    rep.sync_now().await.unwrap();
    let restored = dir.path().join("from-c.db");
    restore_db(&c, &restored, None).await.unwrap();
    assert_eq!(restored_numbers(restored).await, [100, 101, 102]);
}

/// moto frozen (SIGSTOP): requests hang and fail; writes go on; once it thaws, all is shipped.
pub async fn storage_outage_loses_nothing(be: Backend) {
    let objects = be.store("outage").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_millis(100));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    insert(&store, 1..=5).await;
    rep.sync_now().await.unwrap();

    be.moto_server().pause();
    insert(&store, 6..=50).await;
    let written = Instant::now();
    let mut status = rep.status();
    let failing = tokio::time::timeout(PATIENCE, status.wait_for(|s| s.last_error.is_some()))
        .await
        .expect("a sync fails while storage is down")
        .unwrap()
        .clone();
    assert!(failing.pending_bytes > 0, "{failing:?}");
    be.moto_server().resume();

    tokio::time::timeout(PATIENCE, rep.wait_synced(written))
        .await
        .expect("replication catches up once storage is back")
        .unwrap();
    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=50).collect::<Vec<_>>()
    );
}

/// moto killed and started again empty on the same port: the vanished generation is noticed
/// and a new one holds everything.
pub async fn storage_restarted_empty(mut be: Backend) {
    let objects = be.store("restarted").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_millis(100));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    insert(&store, 1..=5).await;
    rep.sync_now().await.unwrap();
    let first = rep.status().borrow().generation.clone();

    be.moto_server_mut().stop();
    insert(&store, 6..=20).await;
    assert!(rep.sync_now().await.is_err(), "storage is down");
    assert!(rep.status().borrow().last_error.is_some());
    be.moto_server_mut().restart();

    let written = Instant::now();
    tokio::time::timeout(PATIENCE, rep.wait_synced(written))
        .await
        .expect("replication recovers once storage is back")
        .unwrap();
    assert_ne!(rep.status().borrow().generation, first);
    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=20).collect::<Vec<_>>()
    );
}

/// Enough writes to fill the WAL several times: replication checkpoints (RESTART) between syncs
/// and the restore crosses WAL cycles.
pub async fn many_wal_cycles_restore_exactly(be: Backend) {
    let objects = be.store("cycles").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_secs(3600));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    rep.sync_now().await.unwrap();
    for batch in 0..30u64 {
        let events: Vec<_> = (1..=1000).map(|i| event(batch * 1000 + i)).collect();
        store.insert_events(&events).await.unwrap();
        rep.sync_now().await.unwrap();
    }
    let cycles = wal_cycles(&objects).await;
    assert!(
        cycles.len() >= 3,
        "the WAL was reset between syncs: {cycles:?}"
    );
    let wal_len = std::fs::metadata(dir.path().join("s.db-wal"))
        .unwrap()
        .len();
    assert!(
        wal_len < 64 << 20,
        "the WAL is reused, not grown: {wal_len}"
    );
    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=30_000).collect::<Vec<_>>()
    );
}

/// The WAL is read beside the writer, which goes on committing; the reset happens with writes
/// held. Commits racing every read and reset still all reach storage, in order, exactly once.
pub async fn commits_racing_syncs_are_all_shipped(be: Backend) {
    let objects = be.store("racing").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_secs(3600));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    rep.sync_now().await.unwrap();
    const COMMITS: u64 = 6_000;
    let writer = tokio::spawn({
        let store = store.clone();
        async move { insert(&store, 1..=COMMITS).await }
    });
    let mut syncs = 0;
    while !writer.is_finished() {
        rep.sync_now().await.unwrap();
        syncs += 1;
    }
    writer.await.unwrap();
    rep.sync_now().await.unwrap();
    let cycles = wal_cycles(&objects).await;
    assert!(
        cycles.len() >= 3 && syncs >= 10,
        "the WAL was read and reset while commits ran: {syncs} syncs, cycles {cycles:?}"
    );
    let restored = dir.path().join("r.db");
    restore_db(&objects, &restored, None).await.unwrap();
    assert_eq!(
        restored_numbers(restored).await,
        (1..=COMMITS).collect::<Vec<_>>()
    );
}
