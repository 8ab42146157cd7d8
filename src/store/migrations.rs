//! Schema migrations: the SQL files in `migrations/`, embedded at build time and applied in order,
//! each in its own transaction together with the `user_version` it brings the database to.
//!
//! Invariant: `MIGRATIONS[i]` has version `i + 1`; files are never edited once released, only
//! added.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError};

/// One schema step.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_checkpoints",
        sql: include_str!("../../migrations/0002_checkpoints.sql"),
    },
    Migration {
        version: 3,
        name: "0003_process_set",
        sql: include_str!("../../migrations/0003_process_set.sql"),
    },
    Migration {
        version: 4,
        name: "0004_node_events",
        sql: include_str!("../../migrations/0004_node_events.sql"),
    },
];

/// The schema version this binary writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Bring the database to [`LATEST_VERSION`], or refuse one that is newer.
pub(super) fn apply(conn: &Connection, path: &Path) -> Result<()> {
    let found = user_version(conn)?;
    if found > LATEST_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: LATEST_VERSION,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        apply_one(conn, m).map_err(|source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        })?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

pub(super) fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

fn apply_one(conn: &Connection, m: &Migration) -> rusqlite::Result<()> {
    // BEGIN IMMEDIATE: take the write lock before reading anything, so the step is all or nothing.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let step = conn
        .execute_batch(m.sql)
        .and_then(|()| conn.pragma_update(None, "user_version", m.version));
    match step {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StateName;
    use crate::feed::FeedKind;
    use crate::objstore::FailureKind;

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn state_check_constraint_lists_every_state_name() {
        for sql in [MIGRATIONS[0].sql, MIGRATIONS[3].sql] {
            for n in StateName::ALL {
                assert!(sql.contains(&format!("'{}'", n.as_str())), "{n} missing");
            }
        }
    }

    #[test]
    fn node_events_check_constraints_list_every_word() {
        let sql = MIGRATIONS[3].sql;
        let words = FeedKind::ALL.map(FeedKind::as_str).into_iter();
        let words = words.chain(FailureKind::ALL.map(FailureKind::as_str));
        for w in words.chain(["ok", "failing"]) {
            assert!(sql.contains(&format!("'{w}'")), "{w} missing");
        }
    }

    /// A database as a 0003 binary left it, with an event of each shape it knew.
    fn database_at_0003() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for m in &MIGRATIONS[..3] {
            apply_one(&conn, m).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO events (id, at, process, from_state, to_state, pid, exit_code, reason)
                 VALUES (7, 1, 'web-1', 'running', 'backoff', 42, 1, 'crashed');
             INSERT INTO events (id, at, process, from_state, to_state, change_action,
                                 change_by, change_revision)
                 VALUES (8, 2, 'web-1', 'stopped', 'stopped', 'add', 'ops', 3);",
        )
        .unwrap();
        assert_eq!(user_version(&conn).unwrap(), 3);
        conn
    }

    #[test]
    fn a_0003_database_keeps_its_events_and_takes_storage_events() {
        let mut conn = database_at_0003();
        apply(&conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
        let rows: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT id, kind, process, change_action FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (7, "process".into(), "web-1".into(), None),
                (8, "process".into(), "web-1".into(), Some("add".into())),
            ]
        );
        let storage = crate::feed::FeedEvent::Storage(crate::feed::StorageEvent {
            at: time::OffsetDateTime::UNIX_EPOCH,
            state: crate::objstore::StorageState::Failing,
            failure: Some(crate::objstore::Failure::new(
                FailureKind::Credentials,
                "rejected",
                "fix the key",
            )),
        });
        let ids = super::super::events::insert(&mut conn, &[storage]).unwrap();
        assert_eq!(ids, [9], "ids go on from the old rows");
        // The CHECKs hold: a storage row names no process; a failing one carries its failure.
        for bad in [
            "INSERT INTO events (at, kind, process, storage_state) VALUES (1, 'storage', 'x', 'ok')",
            "INSERT INTO events (at, kind, storage_state) VALUES (1, 'storage', 'failing')",
            "INSERT INTO events (at, kind, storage_state) VALUES (1, 'storage', 'unknown')",
            "INSERT INTO events (at, kind, process, from_state, to_state) VALUES (1, 'node', 'x', 'running', 'running')",
            "INSERT INTO events (at, process, from_state) VALUES (1, 'x', 'running')",
        ] {
            let e = conn.execute(bad, []).unwrap_err();
            assert!(e.to_string().contains("CHECK"), "{bad}: {e}");
        }
    }

    #[test]
    fn applies_to_an_empty_database_and_is_idempotent() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
        apply(&conn, Path::new(":memory:")).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('events', 'runs', 'facts')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 3);
    }

    #[test]
    fn refuses_a_newer_database() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let err = apply(&conn, Path::new("x.db")).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found, .. } if found == LATEST_VERSION + 1));
    }
}
