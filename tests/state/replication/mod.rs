//! Replication of the state database against the local backend and real S3 servers (moto, and
//! s3s-fs, which checks signatures): crash and restore, point-in-time restore, storage outages,
//! retention, continuity across clean restarts, relocation and fencing.

use crate::common;

mod cases;
mod child;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::backend::Backend;
use state_manager::config::{Dur, ReplicationConfig, StorageConfig};
use state_manager::events::{Event, StateName};
use state_manager::feed::FeedEvent;
use state_manager::lease::{Clock, Fence, SystemClock};
use state_manager::objstore::{self, DynStore};
use state_manager::replication::{self, ReplicationError, restore_db};
use time::OffsetDateTime;

pub async fn open_objects(storage: &StorageConfig) -> DynStore {
    objstore::open(Some(storage), std::path::Path::new("/nonexistent"))
        .await
        .unwrap()
}

/// Replication settings for tests: a short interval, no periodic snapshot, long retention.
/// A store at `dir/s.db` replicated to `objects`.
pub async fn open_replicated(
    objects: &DynStore,
    dir: &std::path::Path,
    cfg: &ReplicationConfig,
) -> (state_manager::store::Store, replication::Replicator) {
    let (store, rep) = replication::open(&dir.join("s.db"), objects.clone(), cfg, None)
        .await
        .unwrap();
    (store, rep.expect("replication is enabled"))
}

/// The WAL cycles that stored segments belong to (the first 8 characters of their names).
pub async fn wal_cycles(objects: &DynStore) -> std::collections::BTreeSet<String> {
    objects
        .list("db/")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| m.key.split("/wal/").nth(1))
        .map(|name| name[..8].to_string())
        .collect()
}

pub fn config(interval: Duration) -> ReplicationConfig {
    ReplicationConfig {
        enabled: true,
        interval: Dur(interval),
        snapshot_interval: Dur::secs(3600),
        retention: Dur::secs(24 * 3600),
    }
}

/// Event number `n` (its process name carries `n`, so restored rows can be identified).
pub fn event(n: u64) -> FeedEvent {
    FeedEvent::Process(Event {
        at: OffsetDateTime::now_utc(),
        process: format!("p{n}"),
        from: StateName::Starting,
        to: StateName::Running,
        pid: Some(100),
        exit: None,
        reason: Some("x".repeat(200)),
        change: None,
    })
}

/// The numbers of the events in a database file.
pub async fn restored_numbers(path: PathBuf) -> Vec<u64> {
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT process FROM events ORDER BY id")
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        names.iter().map(|n| n[1..].parse().unwrap()).collect()
    })
    .await
    .unwrap()
}

/// One test per case and backend: the local directory, moto, and s3s-fs (which checks
/// signatures; every case here has one writer at a time, so its non-atomic conditional writes
/// do not matter).
macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::Backend::local()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::Backend::moto()).await;
                }
            )*
        }
        mod s3s {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::Backend::s3s()).await;
                }
            )*
        }
    };
}

per_backend!(
    kill_9_then_restore_keeps_acknowledged_commits,
    point_in_time_restore,
    retention_prunes_old_generations,
    clean_restart_continues_the_generation,
    a_database_from_another_location_is_replaced,
    many_wal_cycles_restore_exactly,
    commits_racing_syncs_are_all_shipped,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_loses_nothing() {
    cases::storage_outage_loses_nothing(Backend::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_restarted_empty_gets_a_new_generation() {
    cases::storage_restarted_empty(Backend::moto()).await;
}

/// Child side of the kill -9 case; ignored in normal runs.
#[test]
#[ignore = "run as a child process by kill_9_then_restore_keeps_acknowledged_commits"]
fn replication_child_writer() {
    child::run_if_asked();
}

#[tokio::test]
async fn a_fenced_node_writes_nothing() {
    let be = Backend::local();
    let objects = be.store("fenced").await;
    let dir = tempfile::tempdir().unwrap();
    // A fence never granted: this node does not hold the lease.
    let fence = Fence::new(Arc::new(SystemClock));
    let cfg = config(Duration::from_millis(50));
    let (store, rep) =
        replication::open(&dir.path().join("s.db"), objects.clone(), &cfg, Some(fence))
            .await
            .unwrap();
    let rep = rep.unwrap();
    store.insert_events(&[event(1)]).await.unwrap();
    let err = rep.sync_now().await.unwrap_err();
    assert!(matches!(err, ReplicationError::Fenced(_)), "{err}");
    let status = rep.status().borrow().clone();
    assert!(
        status.last_error.as_deref().unwrap_or("").contains("lease"),
        "{status:?}"
    );
    assert!(objects.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn epochs_are_stamped_into_object_names() {
    let be = Backend::local();
    let objects = be.store("epoch").await;
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::new(Arc::new(SystemClock));
    fence.grant(42, SystemClock.mono() + Duration::from_secs(3600));
    let cfg = config(Duration::from_millis(50));
    let (store, rep) =
        replication::open(&dir.path().join("s.db"), objects.clone(), &cfg, Some(fence))
            .await
            .unwrap();
    let rep = rep.unwrap();
    rep.sync_now().await.unwrap();
    store.insert_events(&[event(1)]).await.unwrap();
    rep.sync_now().await.unwrap();
    let keys: Vec<String> = objects
        .list("db/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(keys.iter().any(|k| k.contains("/wal/")), "{keys:?}");
    assert!(keys.iter().all(|k| k.contains("-e42.")), "{keys:?}");
}

#[tokio::test]
async fn disabled_replication_checkpoints_locally() {
    let be = Backend::local();
    let objects = be.store("off").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Duration::from_millis(50));
    cfg.enabled = false;
    let path = dir.path().join("s.db");
    let (store, rep) = replication::open(&path, objects.clone(), &cfg, None)
        .await
        .unwrap();
    assert!(rep.is_none());
    store.insert_events(&[event(1)]).await.unwrap();
    store.close().await.unwrap();
    assert!(
        !dir.path().join("s.db-wal").exists(),
        "closing checkpoints the WAL"
    );
    assert!(objects.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn restore_refuses_a_generation_with_a_missing_segment() {
    let be = Backend::local();
    let objects = be.store("gap").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_secs(3600));
    let (store, rep) = open_replicated(&objects, dir.path(), &cfg).await;
    rep.sync_now().await.unwrap();
    for n in 1..=3 {
        store.insert_events(&[event(n)]).await.unwrap();
        rep.sync_now().await.unwrap();
    }
    let segments: Vec<String> = objects
        .list("db/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.contains("/wal/"))
        .collect();
    assert_eq!(segments.len(), 3, "{segments:?}");
    let whole = dir.path().join("whole.db");
    restore_db(&objects, &whole, None).await.unwrap();
    assert_eq!(restored_numbers(whole).await, [1, 2, 3]);

    objects.delete(&segments[1]).await.unwrap();
    let err = restore_db(&objects, &dir.path().join("gap.db"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ReplicationError::Gap { .. }), "{err}");
    assert!(!dir.path().join("gap.db").exists(), "nothing half-restored");
}

#[tokio::test]
async fn status_reports_the_generation_and_no_lag_when_idle() {
    let be = Backend::local();
    let objects = be.store("status").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Duration::from_secs(3600));
    let (store, rep) = replication::open(&dir.path().join("s.db"), objects, &cfg, None)
        .await
        .unwrap();
    let rep = rep.unwrap();
    store.insert_events(&[event(1)]).await.unwrap();
    let before = std::time::Instant::now();
    rep.sync_now().await.unwrap();
    let status = rep.status().borrow().clone();
    assert!(status.generation.is_some(), "{status:?}");
    assert!(status.last_sync_at.is_some(), "{status:?}");
    assert_eq!((status.pending_bytes, status.lag_ms), (0, 0), "{status:?}");
    assert_eq!(status.last_error, None);
    assert!(status.synced_through.is_some_and(|t| t >= before));
    let json = serde_json::to_value(&status).unwrap();
    for field in [
        "generation",
        "last_sync_at",
        "lag_ms",
        "pending_bytes",
        "last_error",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
}
