//! Tests of WAL reading and applying against real SQLite databases; [`open`] and [`insert`]
//! make WALs for the segment tests too.

use super::*;
use rusqlite::Connection;
use rusqlite::config::DbConfig;
use std::fs::OpenOptions;

pub(in crate::replication) fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .unwrap();
    c
}

pub(in crate::replication) fn insert(c: &Connection, from: i64, to: i64) {
    c.execute_batch("BEGIN").unwrap();
    for i in from..to {
        c.execute("INSERT INTO t VALUES (?1, randomblob(300))", [i])
            .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

fn frames(read: WalRead) -> (Vec<u8>, WalPos, bool) {
    match read {
        WalRead::Frames {
            bytes, next, more, ..
        } => (bytes, next, more),
        WalRead::Discontinuity(why) => panic!("unexpected discontinuity: {why}"),
    }
}

fn count(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn frames_applied_to_a_snapshot_reproduce_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = (dir.path().join("a.db"), dir.path().join("a.db-wal"));
    let c = open(&db);
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();

    insert(&c, 0, 50);
    let (first, pos, more) = frames(read_committed(&wal, &WalPos::START, u64::MAX).unwrap());
    assert!(!first.is_empty() && !more);
    insert(&c, 50, 60);
    let (second, pos2, _) = frames(read_committed(&wal, &pos, u64::MAX).unwrap());
    assert!(!second.is_empty());
    let (none, _, _) = frames(read_committed(&wal, &pos2, u64::MAX).unwrap());
    assert!(none.is_empty(), "nothing new after the last read");

    let page_size = pos.header.unwrap().page_size;
    let f = OpenOptions::new().write(true).open(&copy).unwrap();
    apply_frames(&f, page_size, &first).unwrap();
    apply_frames(&f, page_size, &second).unwrap();
    drop(f);
    assert_eq!(count(&copy), 60);
}

#[test]
fn a_frame_for_page_zero_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    let mut frames = vec![1u8; 2 * (FRAME_HEADER_LEN + 4096)];
    frames[..4].copy_from_slice(&1u32.to_be_bytes());
    let second = FRAME_HEADER_LEN + 4096;
    frames[second..second + 4].copy_from_slice(&0u32.to_be_bytes());
    let err = apply_frames(&f, 4096, &frames).unwrap_err();
    assert!(err.to_string().contains("frame 1 names page 0"), "{err}");
    drop(f);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![7u8; 4096],
        "nothing written"
    );
}

#[test]
fn reads_stop_at_commit_boundaries_under_a_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = (dir.path().join("a.db"), dir.path().join("a.db-wal"));
    let c = open(&db);
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    for i in 0..20 {
        insert(&c, i * 10, i * 10 + 10);
    }
    let mut pos = WalPos::START;
    let mut reads = 0;
    loop {
        let (bytes, next, more) = frames(read_committed(&wal, &pos, 8192).unwrap());
        if let Some(h) = next.header {
            assert_eq!(bytes.len() % h.frame_len(), 0);
            if !bytes.is_empty() {
                let last = &bytes[bytes.len() - h.frame_len()..];
                assert_ne!(be32(last, 4), 0, "a read ends with a commit frame");
            }
        }
        pos = next;
        reads += 1;
        if !more {
            break;
        }
    }
    assert!(reads > 2, "the cap splits the WAL into several reads");
    assert_eq!(pos.offset, std::fs::metadata(&wal).unwrap().len());
}

#[test]
fn a_wal_reset_is_a_discontinuity() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = (dir.path().join("a.db"), dir.path().join("a.db-wal"));
    let c = open(&db);
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    let (_, pos, _) = frames(read_committed(&wal, &WalPos::START, u64::MAX).unwrap());
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert!(matches!(
        read_committed(&wal, &pos, u64::MAX).unwrap(),
        WalRead::Discontinuity(_)
    ));
    insert(&c, 0, 1);
    assert!(matches!(
        read_committed(&wal, &pos, u64::MAX).unwrap(),
        WalRead::Discontinuity(_)
    ));
}

#[test]
fn after_a_restart_checkpoint_only_new_frames_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = (dir.path().join("a.db"), dir.path().join("a.db-wal"));
    let c = open(&db);
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    insert(&c, 0, 20);
    let (_, pos, _) = frames(read_committed(&wal, &WalPos::START, u64::MAX).unwrap());
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let restarted = pos.restarted();

    // The old header and frames are still in the file: not a new cycle.
    let (none, same, _) = frames(read_committed(&wal, &restarted, u64::MAX).unwrap());
    assert!(none.is_empty());
    assert_eq!(same, restarted);
    assert_eq!(unread_bytes(&wal, &restarted).unwrap(), 0);

    insert(&c, 20, 22);
    let unread = unread_bytes(&wal, &restarted).unwrap();
    let (fresh, next, _) = frames(read_committed(&wal, &restarted, u64::MAX).unwrap());
    assert_eq!(unread, fresh.len() as u64);
    assert_ne!(next.header.unwrap().salt, pos.header.unwrap().salt);
    assert!(
        fresh.len() < 20 * 4096,
        "only the new transaction, not the stale frames"
    );
    let f = OpenOptions::new().write(true).open(&copy).unwrap();
    apply_frames(&f, next.header.unwrap().page_size, &fresh).unwrap();
    drop(f);
    assert_eq!(count(&copy), 22);
    assert_eq!(unread_bytes(&wal, &next).unwrap(), 0);
}
