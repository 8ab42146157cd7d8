//! The checkpoint catalog: one row per checkpoint of env_dir, newest first. Storage is the
//! truth; [`Store::catalog_reconcile`] makes the table agree with it.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::codec::{time_from_sql, time_to_sql};
use super::{Result, Store};
use crate::checkpoint::{CheckpointId, CheckpointSummary};

/// A catalog row: the summary reported when the checkpoint was taken, and its fencing epoch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Checkpoint)]
pub struct CatalogEntry {
    #[serde(flatten)]
    pub summary: CheckpointSummary,
    pub epoch: Option<u64>,
}

const COLUMNS: &str = "id, label, created_at, files, bytes, uploaded_bytes, chunks_new, freeze_ms, duration_ms, epoch";

impl Store {
    /// Record a checkpoint (replacing a row with the same id).
    pub async fn catalog_insert(&self, entry: CatalogEntry) -> Result<()> {
        self.call(move |conn| insert(conn, &entry)).await
    }

    /// The newest `limit` checkpoints, newest first.
    pub async fn catalog_list(&self, limit: u32) -> Result<Vec<CatalogEntry>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM checkpoints ORDER BY created_at DESC, id DESC LIMIT ?1"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([limit], |r| Ok(entry(r)))?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    pub async fn catalog_get(&self, id: &str) -> Result<Option<CatalogEntry>> {
        let id = id.to_string();
        self.call(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM checkpoints WHERE id = ?1");
            conn.query_row(&sql, [&id], |r| Ok(entry(r)))
                .optional()?
                .transpose()
        })
        .await
    }

    /// Remove a checkpoint's row; whether there was one.
    pub async fn catalog_delete(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.call(move |conn| Ok(conn.execute("DELETE FROM checkpoints WHERE id = ?1", [&id])? > 0))
            .await
    }

    /// Make the catalog hold exactly the checkpoints in `present` (ids in storage): rows of
    /// checkpoints no longer stored are removed; `missing` gets the ids storage has and the
    /// catalog lacks, so the caller can add them from their manifests.
    pub async fn catalog_reconcile(&self, present: Vec<String>) -> Result<Vec<String>> {
        self.call(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let known: Vec<String> = {
                let mut stmt = tx.prepare("SELECT id FROM checkpoints")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for id in known.iter().filter(|id| !present.contains(id)) {
                tx.execute("DELETE FROM checkpoints WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(present
                .into_iter()
                .filter(|id| !known.contains(id))
                .collect())
        })
        .await
    }
}

fn insert(conn: &Connection, e: &CatalogEntry) -> Result<()> {
    let s = &e.summary;
    let sql = format!(
        "INSERT OR REPLACE INTO checkpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    );
    conn.execute(
        &sql,
        params![
            s.id.as_str(),
            s.label,
            time_to_sql(s.created_at)?,
            s.files as i64,
            s.bytes as i64,
            s.uploaded_bytes as i64,
            s.chunks_new as i64,
            s.freeze_ms as i64,
            s.duration_ms as i64,
            e.epoch.map(|x| x as i64),
        ],
    )?;
    Ok(())
}

fn entry(r: &Row<'_>) -> Result<CatalogEntry> {
    let id: String = r.get(0)?;
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok(CatalogEntry {
        summary: CheckpointSummary {
            id: CheckpointId::parse(&id).map_err(|e| super::StoreError::Invalid(e.to_string()))?,
            label: r.get(1)?,
            created_at: time_from_sql(r.get(2)?)?,
            files: n(3)?,
            bytes: n(4)?,
            uploaded_bytes: n(5)?,
            chunks_new: n(6)?,
            freeze_ms: n(7)?,
            duration_ms: n(8)?,
        },
        epoch: r.get::<_, Option<i64>>(9)?.map(|x| x.max(0) as u64),
    })
}
