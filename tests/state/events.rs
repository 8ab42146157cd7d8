//! The event feed in the state database: a database of the last schema before node events
//! migrates with its events, and storage events share the table with process events.

use state_manager::events::{Event, ExitStatus, StateName};
use state_manager::feed::{FeedEvent, StorageEvent};
use state_manager::objstore::{Failure, FailureKind, StorageState};
use state_manager::store::{LATEST_VERSION, Store, StoreError};
use time::OffsetDateTime;

fn started(process: &str) -> FeedEvent {
    FeedEvent::Process(Event {
        at: OffsetDateTime::from_unix_timestamp(1_732_000_000).unwrap(),
        process: process.to_string(),
        from: StateName::Stopped,
        to: StateName::Starting,
        pid: Some(1000),
        exit: None,
        reason: Some("starting".into()),
        change: None,
    })
}

/// A database file as a 0003 binary left it (its three migrations, an event of each shape it
/// knew) opens with this binary: migrated to the latest version, its events read back as
/// process events, and storage events go in beside them.
#[tokio::test]
async fn a_0003_database_file_migrates_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for sql in [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_checkpoints.sql"),
            include_str!("../../migrations/0003_process_set.sql"),
        ] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO events (at, process, from_state, to_state, pid, exit_code, reason)
                 VALUES (1732000000000000000, 'web-1', 'running', 'backoff', 42, 1, 'crashed');
             INSERT INTO events (at, process, from_state, to_state, change_action, change_by,
                                 change_revision)
                 VALUES (1732000000000000001, 'web-1', 'stopped', 'stopped', 'add', 'ops', 3);",
        )
        .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let version: i64 = store
        .call(|c| Ok::<i64, StoreError>(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(version, LATEST_VERSION);
    let old = store.recent_events(10, None, None).await.unwrap();
    let names: Vec<_> = old.iter().map(|s| (s.id, s.event.process())).collect();
    assert_eq!(names, [(2, Some("web-1")), (1, Some("web-1"))]);
    let FeedEvent::Process(crashed) = &old[1].event else {
        panic!("{old:?}")
    };
    assert_eq!(crashed.exit, Some(ExitStatus::Code(1)));
    let FeedEvent::Process(added) = &old[0].event else {
        panic!("{old:?}")
    };
    assert_eq!(added.change.as_ref().map(|c| c.revision), Some(3));
    let ok = FeedEvent::Storage(StorageEvent {
        at: OffsetDateTime::UNIX_EPOCH,
        state: StorageState::Ok,
        failure: None,
    });
    assert_eq!(store.insert_events(&[ok]).await.unwrap(), [3]);
}

/// The node's storage events share the table with process events: they round-trip with their
/// failure, and a filter on process names leaves them out.
#[tokio::test]
async fn storage_events_round_trip_beside_process_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let failing = FeedEvent::Storage(StorageEvent {
        at,
        state: StorageState::Failing,
        failure: Some(Failure::new(
            FailureKind::Credentials,
            "the server rejected the secret key (SignatureDoesNotMatch)",
            "check storage.secret_key",
        )),
    });
    let ok = FeedEvent::Storage(StorageEvent {
        at,
        state: StorageState::Ok,
        failure: None,
    });
    let web = started("web-1");
    let events = vec![failing, web.clone(), ok];
    store.insert_events(&events).await.unwrap();
    let all = store.recent_events(10, None, None).await.unwrap();
    let back: Vec<FeedEvent> = all.iter().rev().map(|s| s.event.clone()).collect();
    assert_eq!(back, events);
    let only = store.recent_events(10, Some("*"), None).await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].event, web);
}
