//! The environment's process set and the operator's intent: the stacks in order (each with
//! where it came from and its spec as the config file writes it), what the operator last asked
//! of each process, and the revision that every change increments.
//!
//! Invariants:
//! - The set is seeded once (from the config file); after that only changes touch it, each in
//!   one `BEGIN IMMEDIATE` transaction that also increments the revision, so two changes are
//!   ordered by their revisions and never lose one another.
//! - A change given an expected revision applies only if the set is still at it.
//! - Specs are stored as the JSON text the config uses; this module does not interpret them.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::codec::time_to_sql;
use super::{Result, Store, StoreError};
pub use crate::events::{Intent, Origin};

/// One stack of the set.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredStack {
    pub name: String,
    pub origin: Origin,
    /// The stack as JSON text, as a config file's `stacks` entry.
    pub spec: String,
}

/// The whole set as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSet {
    pub revision: u64,
    pub stacks: Vec<StoredStack>,
    /// File stacks removed through the API: the config file does not bring them back.
    pub removed: Vec<String>,
    /// By process name (an instance, e.g. `web-2`).
    pub intents: BTreeMap<String, Intent>,
}

/// One change of the set or of intents.
#[derive(Clone, Debug)]
pub enum SetChange {
    /// Record `intent` for each of `processes`.
    Intents {
        processes: Vec<String>,
        intent: Intent,
    },
    /// Append a stack; its name must be new (a removed file stack of that name is forgotten).
    Add(StoredStack),
    /// Remove a stack and forget the intents of its `processes`. A stack of the config file is
    /// kept as removed (`tombstone`), so that the file does not bring it back.
    Remove {
        stack: String,
        processes: Vec<String>,
        tombstone: bool,
    },
    /// Replace the spec (and origin) of a stack, at the same position, and forget the intents
    /// of the processes it no longer has (`dropped`). A stack of the file's not stored yet is
    /// inserted.
    Replace {
        stack: StoredStack,
        dropped: Vec<String>,
    },
    /// A reload of the config file: its stacks (`file`, origin `file`) replace the file's
    /// stacks as recorded, at the end of the set; stacks of origin `api` and the file stacks
    /// removed through the API stay; the intents of the processes gone (`dropped`) are
    /// forgotten.
    Reload {
        file: Vec<StoredStack>,
        dropped: Vec<String>,
    },
}

impl Store {
    /// The set, or `None` if it was never seeded.
    pub async fn process_set(&self) -> Result<Option<ProcessSet>> {
        self.call(|conn| load(conn)).await
    }

    /// Seed the set with `stacks` at revision 1, unless it was seeded already; returns the set
    /// as stored and whether this call seeded it.
    pub async fn seed_process_set(&self, stacks: Vec<StoredStack>) -> Result<(ProcessSet, bool)> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(set) = load(&tx)? {
                return Ok((set, false));
            }
            let now = time_to_sql(OffsetDateTime::now_utc())?;
            tx.execute(
                "INSERT INTO process_set (id, revision, updated_at) VALUES (1, 1, ?1)",
                [now],
            )?;
            for (position, s) in stacks.iter().enumerate() {
                insert_stack(&tx, s, position as i64, 1, now)?;
            }
            let set = load(&tx)?.ok_or(StoreError::Closed)?;
            tx.commit()?;
            Ok((set, true))
        })
        .await
    }

    /// Apply `change` and increment the revision, in one transaction; returns the new revision.
    /// With `expected`, refuses ([`StoreError::RevisionMismatch`]) unless the set is at it.
    pub async fn change_process_set(
        &self,
        change: SetChange,
        expected: Option<u64>,
    ) -> Result<u64> {
        self.call(move |conn| apply(conn, &change, expected)).await
    }
}

fn apply(conn: &mut Connection, change: &SetChange, expected: Option<u64>) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: Option<i64> = tx
        .query_row("SELECT revision FROM process_set WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let found = found.ok_or_else(|| {
        StoreError::Invalid(
            "the process set was never seeded; bring the environment up first".into(),
        )
    })? as u64;
    if let Some(expected) = expected
        && expected != found
    {
        return Err(StoreError::RevisionMismatch { expected, found });
    }
    let revision = found + 1;
    let now = time_to_sql(OffsetDateTime::now_utc())?;
    let rev = revision as i64;
    match change {
        SetChange::Intents { processes, intent } => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO intents (process, intent, revision, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (process) DO UPDATE SET intent = excluded.intent,
                     revision = excluded.revision, updated_at = excluded.updated_at",
            )?;
            for p in processes {
                stmt.execute(params![p, intent, rev, now])?;
            }
        }
        SetChange::Add(stack) => {
            tx.execute(
                "DELETE FROM stacks WHERE name = ?1 AND removed = 1",
                [&stack.name],
            )?;
            let next: i64 = tx.query_row(
                "SELECT coalesce(max(position) + 1, 0) FROM stacks",
                [],
                |r| r.get(0),
            )?;
            insert_stack(&tx, stack, next, rev, now)?;
        }
        SetChange::Remove {
            stack,
            processes,
            tombstone,
        } => {
            tx.execute("DELETE FROM stacks WHERE name = ?1", [stack])?;
            if *tombstone {
                let next: i64 = tx.query_row(
                    "SELECT coalesce(max(position) + 1, 0) FROM stacks",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO stacks (name, position, origin, spec, removed, revision, updated_at)
                     VALUES (?1, ?2, 'file', ?3, 1, ?4, ?5)",
                    params![stack, next, format!("{stack:?}"), rev, now],
                )?;
            }
            let mut stmt = tx.prepare_cached("DELETE FROM intents WHERE process = ?1")?;
            for p in processes {
                stmt.execute([p])?;
            }
        }
        SetChange::Replace { stack, dropped } => {
            let changed = tx.execute(
                "UPDATE stacks SET spec = ?2, origin = ?3, removed = 0, revision = ?4,
                     updated_at = ?5
                 WHERE name = ?1",
                params![stack.name, stack.spec, stack.origin, rev, now],
            )?;
            if changed == 0 {
                // A stack of the owner's file that the database did not record yet.
                let next: i64 = tx.query_row(
                    "SELECT coalesce(max(position) + 1, 0) FROM stacks",
                    [],
                    |r| r.get(0),
                )?;
                insert_stack(&tx, stack, next, rev, now)?;
            }
            let mut stmt = tx.prepare_cached("DELETE FROM intents WHERE process = ?1")?;
            for p in dropped {
                stmt.execute([p])?;
            }
        }
        SetChange::Reload { file, dropped } => {
            tx.execute(
                "DELETE FROM stacks WHERE origin = 'file' AND removed = 0",
                [],
            )?;
            let next: i64 = tx.query_row(
                "SELECT coalesce(max(position) + 1, 0) FROM stacks",
                [],
                |r| r.get(0),
            )?;
            for (k, s) in file.iter().enumerate() {
                insert_stack(&tx, s, next + k as i64, rev, now)?;
            }
            let mut stmt = tx.prepare_cached("DELETE FROM intents WHERE process = ?1")?;
            for p in dropped {
                stmt.execute([p])?;
            }
        }
    }
    tx.execute(
        "UPDATE process_set SET revision = ?1, updated_at = ?2 WHERE id = 1",
        params![rev, now],
    )?;
    tx.commit()?;
    Ok(revision)
}

fn insert_stack(
    conn: &Connection,
    s: &StoredStack,
    position: i64,
    revision: i64,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO stacks (name, position, origin, spec, revision, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.name, position, s.origin, s.spec, revision, now],
    )?;
    Ok(())
}

fn load(conn: &Connection) -> Result<Option<ProcessSet>> {
    let revision: Option<i64> = conn
        .query_row("SELECT revision FROM process_set WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(revision) = revision else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT name, origin, spec FROM stacks WHERE removed = 0 ORDER BY position",
    )?;
    let stacks = stmt
        .query_map([], |r| {
            Ok(StoredStack {
                name: r.get(0)?,
                origin: r.get(1)?,
                spec: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(super::codec::unbox)?;
    let mut stmt = conn.prepare_cached("SELECT name FROM stacks WHERE removed = 1")?;
    let removed = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let mut stmt = conn.prepare_cached("SELECT process, intent FROM intents")?;
    let intents = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<BTreeMap<String, Intent>>>()
        .map_err(super::codec::unbox)?;
    Ok(Some(ProcessSet {
        revision: revision as u64,
        stacks,
        removed,
        intents,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(name: &str) -> StoredStack {
        StoredStack {
            name: name.into(),
            origin: Origin::File,
            spec: format!(r#"{{"name": "{name}", "command": "sleep 1"}}"#),
        }
    }

    #[test]
    fn words_match_the_check_constraints() {
        let sql = include_str!("../../migrations/0003_process_set.sql");
        for o in Origin::ALL {
            assert!(sql.contains(&format!("'{}'", o.as_str())), "{o:?}");
        }
        for i in Intent::ALL {
            assert!(sql.contains(&format!("'{}'", i.as_str())), "{i:?}");
        }
        for a in crate::events::ChangeAction::ALL {
            assert!(sql.contains(&format!("'{}'", a.as_str())), "{a:?}");
        }
    }

    #[tokio::test]
    async fn seeded_once_then_changed_revision_by_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db")).await.unwrap();
        assert_eq!(store.process_set().await.unwrap(), None);
        let (set, seeded) = store
            .seed_process_set(vec![stack("a"), stack("b")])
            .await
            .unwrap();
        assert!(seeded);
        assert_eq!(set.revision, 1);
        let (again, seeded) = store.seed_process_set(vec![stack("z")]).await.unwrap();
        assert!(!seeded, "a second seed must not replace the set");
        assert_eq!(again, set);

        let stop = SetChange::Intents {
            processes: vec!["a".into()],
            intent: Intent::Stopped,
        };
        assert_eq!(
            store
                .change_process_set(stop.clone(), Some(1))
                .await
                .unwrap(),
            2
        );
        let err = store.change_process_set(stop, Some(1)).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::RevisionMismatch {
                    expected: 1,
                    found: 2
                }
            ),
            "{err}"
        );
        let add = SetChange::Add(StoredStack {
            origin: Origin::Api,
            ..stack("c")
        });
        assert_eq!(
            store.change_process_set(add.clone(), None).await.unwrap(),
            3
        );
        assert!(
            store.change_process_set(add, None).await.is_err(),
            "a name is added once"
        );
        let rm = SetChange::Remove {
            stack: "a".into(),
            processes: vec!["a".into()],
            tombstone: true,
        };
        assert_eq!(store.change_process_set(rm, None).await.unwrap(), 4);
        let replace = SetChange::Replace {
            stack: StoredStack {
                spec: r#"{"name": "b", "command": "sleep 2"}"#.into(),
                ..stack("b")
            },
            dropped: Vec::new(),
        };
        assert_eq!(store.change_process_set(replace, None).await.unwrap(), 5);

        let set = store.process_set().await.unwrap().unwrap();
        assert_eq!(
            set.revision, 5,
            "a failed change leaves the revision as it was"
        );
        assert!(set.stacks[0].spec.contains("sleep 2"), "{:?}", set.stacks);
        let names: Vec<_> = set
            .stacks
            .iter()
            .map(|s| (s.name.as_str(), s.origin))
            .collect();
        assert_eq!(names, [("b", Origin::File), ("c", Origin::Api)]);
        assert!(set.intents.is_empty(), "{:?}", set.intents);
        assert_eq!(set.removed, ["a"], "a file stack removed is remembered");

        let reload = SetChange::Reload {
            file: vec![stack("d")],
            dropped: vec!["b".into()],
        };
        assert_eq!(store.change_process_set(reload, Some(5)).await.unwrap(), 6);
        let set = store.process_set().await.unwrap().unwrap();
        let names: Vec<_> = set
            .stacks
            .iter()
            .map(|s| (s.name.as_str(), s.origin))
            .collect();
        assert_eq!(
            names,
            [("c", Origin::Api), ("d", Origin::File)],
            "the file's stacks are replaced, the API's kept"
        );
        assert_eq!(set.removed, ["a"], "a reload keeps what the API removed");
    }
}
