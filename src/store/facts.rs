//! Node facts: a small key/value table for things this node must remember across restarts (for
//! instance where its database is replicated).

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::codec::time_to_sql;
use super::{Result, Store, StoreError};

impl Store {
    /// The value of `key`, if set.
    pub async fn fact_get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.call(move |conn| fact_get(conn, &key)).await
    }

    /// Set `key` to `value` (replacing any earlier value).
    pub async fn fact_set(&self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        let (key, value) = (key.to_string(), value.to_string());
        self.call(move |conn| fact_set(conn, &key, &value)).await
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "fact key {key:?} must be 1-200 printable characters"
        )));
    }
    Ok(())
}

/// Read a fact on a connection the caller already holds (the writer thread).
pub fn fact_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM facts WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Write a fact on a connection the caller already holds (the writer thread).
pub fn fact_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    check_key(key)?;
    conn.execute(
        "INSERT INTO facts (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, time_to_sql(OffsetDateTime::now_utc())?],
    )?;
    Ok(())
}
