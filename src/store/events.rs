//! Lifecycle events: every transition the supervisor makes, in commit order. `id` is the event's
//! stable position (usable as an SSE event id).

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::codec::{exit_from_sql, exit_to_sql, time_from_sql, time_to_sql, unbox};
use super::{Result, Store, StoreError};
use crate::events::{Change, ChangeAction, Event, StateName};

/// The most rows one read returns.
pub const MAX_PAGE: u32 = 10_000;

/// An event with its row id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: Event,
}

const COLUMNS: &str = "id, at, process, from_state, to_state, pid, exit_code, exit_signal, reason, change_action, change_by, change_revision";

impl Store {
    /// Append events in one transaction (one fsync for the batch); returns their ids in order.
    pub async fn insert_events(&self, events: &[Event]) -> Result<Vec<i64>> {
        let events = events.to_vec();
        self.call(move |conn| insert(conn, &events)).await
    }

    /// Up to `limit` events, newest first, optionally only processes matching `process_glob`
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

pub(super) fn insert(conn: &mut Connection, events: &[Event]) -> Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(events.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO events (at, process, from_state, to_state, pid, exit_code, exit_signal, reason,
                                 change_action, change_by, change_revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for e in events {
            let (code, signal) = exit_to_sql(e.exit);
            stmt.execute(params![
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
            ])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
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
    process: String,
    from: StateName,
    to: StateName,
    pid: Option<u32>,
    code: Option<i32>,
    signal: Option<i32>,
    reason: Option<String>,
    change_action: Option<ChangeAction>,
    change_by: Option<String>,
    change_revision: Option<i64>,
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        id: row.get(0)?,
        at: row.get(1)?,
        process: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        pid: row.get(5)?,
        code: row.get(6)?,
        signal: row.get(7)?,
        reason: row.get(8)?,
        change_action: row.get(9)?,
        change_by: row.get(10)?,
        change_revision: row.get(11)?,
    })
}

impl RawEvent {
    fn into_stored(self) -> Result<StoredEvent> {
        Ok(StoredEvent {
            id: self.id,
            event: Event {
                at: time_from_sql(self.at)?,
                process: self.process,
                from: self.from,
                to: self.to,
                pid: self.pid,
                exit: exit_from_sql(self.code, self.signal)?,
                reason: self.reason,
                change: self.change_action.map(|action| Change {
                    action,
                    by: self.change_by,
                    revision: self.change_revision.unwrap_or(0).max(0) as u64,
                }),
            },
        })
    }
}

fn collect(rows: impl Iterator<Item = rusqlite::Result<RawEvent>>) -> Result<Vec<StoredEvent>> {
    rows.map(|r| r.map_err(unbox)?.into_stored()).collect()
}
