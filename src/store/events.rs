//! The event feed in the database: every transition the supervisor makes and every change of
//! the node's storage health, in commit order. `id` is the event's stable position (usable as
//! an SSE event id). A row's `kind` says which columns it fills (see `migrations/0004`).

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::codec::{exit_from_sql, exit_to_sql, time_from_sql, time_to_sql, unbox};
use super::{Result, Store, StoreError};
use crate::events::{Change, ChangeAction, Event, StateName};
use crate::feed::{FeedEvent, FeedKind, StorageEvent};
use crate::objstore::{Failure, FailureKind, StorageState};

/// The most rows one read returns.
pub const MAX_PAGE: u32 = 10_000;

/// An event with its row id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: FeedEvent,
}

const COLUMNS: &str = "id, at, kind, process, from_state, to_state, pid, exit_code, exit_signal, reason, change_action, change_by, change_revision, storage_state, failure_kind, failure_message, failure_fix";

impl Store {
    /// Append events in one transaction (one fsync for the batch); returns their ids in order.
    pub async fn insert_events(&self, events: &[FeedEvent]) -> Result<Vec<i64>> {
        let events = events.to_vec();
        self.call(move |conn| insert(conn, &events)).await
    }

    /// Up to `limit` events, newest first, optionally only processes matching `process_glob`
    /// (which leaves the node's own events out)
    /// (SQLite GLOB: `*`, `?`, `[...]`, case-sensitive) and only ids below `before_id` (paging).
    pub async fn recent_events(
        &self,
        limit: u32,
        process_glob: Option<&str>,
        before_id: Option<i64>,
    ) -> Result<Vec<StoredEvent>> {
        let glob = process_glob.map(str::to_string);
        let limit = check_limit(limit)?;
        self.call(move |conn| recent(conn, limit, glob.as_deref(), before_id))
            .await
    }

    /// Up to `limit` events with an id above `after_id`, oldest first: for resuming a stream.
    pub async fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        let limit = check_limit(limit)?;
        self.call(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2");
            let mut stmt = conn.prepare_cached(&sql)?;
            collect(stmt.query_map(params![after_id, limit], read_row)?)
        })
        .await
    }
}

fn check_limit(limit: u32) -> Result<i64> {
    if limit > MAX_PAGE {
        return Err(StoreError::Invalid(format!(
            "limit {limit} is above the maximum of {MAX_PAGE}; page with before_id"
        )));
    }
    Ok(i64::from(limit))
}

pub(super) fn insert(conn: &mut Connection, events: &[FeedEvent]) -> Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(events.len());
    {
        let mut process = tx.prepare_cached(
            "INSERT INTO events (at, kind, process, from_state, to_state, pid, exit_code, exit_signal,
                                 reason, change_action, change_by, change_revision)
             VALUES (?1, 'process', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut storage = tx.prepare_cached(
            "INSERT INTO events (at, kind, storage_state, failure_kind, failure_message, failure_fix)
             VALUES (?1, 'storage', ?2, ?3, ?4, ?5)",
        )?;
        for e in events {
            match e {
                FeedEvent::Process(e) => insert_process(&mut process, e)?,
                FeedEvent::Storage(e) => {
                    let f = e.failure.as_ref();
                    storage.execute(params![
                        time_to_sql(e.at)?,
                        e.state,
                        f.map(|f| f.kind),
                        f.map(|f| &f.message),
                        f.map(|f| &f.fix),
                    ])?
                }
            };
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
}

fn insert_process(stmt: &mut rusqlite::CachedStatement<'_>, e: &Event) -> Result<usize> {
    let (code, signal) = exit_to_sql(e.exit);
    Ok(stmt.execute(params![
        time_to_sql(e.at)?,
        e.process,
        e.from,
        e.to,
        e.pid,
        code,
        signal,
        e.reason,
        e.change.as_ref().map(|c| c.action),
        e.change.as_ref().and_then(|c| c.by.as_deref()),
        e.change
            .as_ref()
            .map(|c| i64::try_from(c.revision).unwrap_or(i64::MAX)),
    ])?)
}

fn recent(
    conn: &Connection,
    limit: i64,
    glob: Option<&str>,
    before_id: Option<i64>,
) -> Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
         WHERE (?1 IS NULL OR process GLOB ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    collect(stmt.query_map(params![glob, before_id, limit], read_row)?)
}

/// A row as read, before the conversions that can fail on bad data.
struct RawEvent {
    id: i64,
    at: i64,
    kind: FeedKind,
    process: Option<String>,
    from: Option<StateName>,
    to: Option<StateName>,
    pid: Option<u32>,
    code: Option<i32>,
    signal: Option<i32>,
    reason: Option<String>,
    change_action: Option<ChangeAction>,
    change_by: Option<String>,
    change_revision: Option<i64>,
    storage_state: Option<StorageState>,
    failure_kind: Option<FailureKind>,
    failure_message: Option<String>,
    failure_fix: Option<String>,
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        id: row.get(0)?,
        at: row.get(1)?,
        kind: row.get(2)?,
        process: row.get(3)?,
        from: row.get(4)?,
        to: row.get(5)?,
        pid: row.get(6)?,
        code: row.get(7)?,
        signal: row.get(8)?,
        reason: row.get(9)?,
        change_action: row.get(10)?,
        change_by: row.get(11)?,
        change_revision: row.get(12)?,
        storage_state: row.get(13)?,
        failure_kind: row.get(14)?,
        failure_message: row.get(15)?,
        failure_fix: row.get(16)?,
    })
}

/// A column the row's kind needs, or the row is corrupt.
fn needed<T>(value: Option<T>, column: &'static str, id: i64) -> Result<T> {
    value.ok_or_else(|| StoreError::Corrupt {
        column,
        value: format!("NULL in event {id}"),
    })
}

impl RawEvent {
    fn into_stored(self) -> Result<StoredEvent> {
        let (id, at) = (self.id, time_from_sql(self.at)?);
        let event = match self.kind {
            FeedKind::Process => FeedEvent::Process(Event {
                at,
                process: needed(self.process, "process", id)?,
                from: needed(self.from, "from_state", id)?,
                to: needed(self.to, "to_state", id)?,
                pid: self.pid,
                exit: exit_from_sql(self.code, self.signal)?,
                reason: self.reason,
                change: self.change_action.map(|action| Change {
                    action,
                    by: self.change_by,
                    revision: self.change_revision.unwrap_or(0).max(0) as u64,
                }),
            }),
            FeedKind::Storage => FeedEvent::Storage(StorageEvent {
                at,
                state: needed(self.storage_state, "storage_state", id)?,
                failure: self.failure_kind.map(|kind| Failure {
                    kind,
                    message: self.failure_message.unwrap_or_default(),
                    fix: self.failure_fix.unwrap_or_default(),
                }),
            }),
        };
        Ok(StoredEvent { id, event })
    }
}

fn collect(rows: impl Iterator<Item = rusqlite::Result<RawEvent>>) -> Result<Vec<StoredEvent>> {
    rows.map(|r| r.map_err(unbox)?.into_stored()).collect()
}
