//! Continuous replication of the state database to storage, and restore from it.
//!
//! The approach is Litestream's, simpler because the store's writer thread makes every write and
//! nothing checkpoints the WAL except replication:
//! - Every `interval`, committed WAL frames past the shipped position are read, compressed and
//!   uploaded as segment objects. The read runs beside the writer thread, which goes on
//!   committing: frames never change until the WAL is reset, and only this task resets it.
//! - The WAL is reset only when everything before the read being shipped is already in storage,
//!   in the same writer-thread call as that read (of what was committed since the last one): a
//!   frame is therefore either still in the WAL, or in storage, or in the one segment being
//!   uploaded, whose pages are also in the database file. While storage is unreachable nothing
//!   is checkpointed and the frames wait in the WAL. Running, the reset is a RESTART checkpoint
//!   (later commits reuse the file's space instead of growing a new file, which costs an fsync
//!   of metadata each); a new generation and shutdown use TRUNCATE, so the snapshot and the
//!   continuity record start from an empty WAL.
//! - A generation is a full snapshot (the database file right after a TRUNCATE checkpoint) plus
//!   the segments that follow it. A new one starts when the local database is not provably the
//!   continuation of the stored one, every `snapshot_interval`, and when the WAL was reset by
//!   someone else. Generations older than `retention` are pruned.
//! - Restore = the newest generation's snapshot + its segments in order, each frame checked
//!   against the WAL checksum chain, then `PRAGMA integrity_check`.
//!
//! Layout: see [`layout`]. Writes go through one fenced writer, which asks the lease's
//! [`Fence`](crate::lease::Fence) before each.

mod files;
pub mod layout;
mod restore;
pub mod segment;
mod shipper;
mod sidecar;
mod startup;
mod task;
pub mod wal;
mod writer;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

/// Set the local state database aside (as `<db>.<tag>`, with its WAL files) so that the next
/// [`open`] restores it from storage; returns where it went.
pub fn set_aside(db: &std::path::Path, tag: &str) -> std::io::Result<PathBuf> {
    let _ = sidecar::take(db);
    files::move_aside(db, tag)
}
pub use restore::{RestoreInfo, restore_db};
pub use segment::SegmentError;
pub use startup::{LOCATION_FACT, open};
pub use task::Replicator;
pub use wal::WalError;

use crate::store::StoreError;

/// Errors of replication and restore.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storage: {0}")]
    Storage(#[from] crate::objstore::StorageError),
    #[error(transparent)]
    Fenced(#[from] crate::lease::Fenced),
    #[error("reading the WAL {path}: {source}")]
    Wal { path: PathBuf, source: WalError },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the WAL checkpoint could not complete (another connection is reading the database); will retry"
    )]
    CheckpointBusy,
    #[error("{location} holds no database to restore{}", at.map(|t| format!(" as of {t}")).unwrap_or_default())]
    NothingToRestore {
        location: String,
        at: Option<OffsetDateTime>,
    },
    #[error("{path} already exists; restore to a new path, or move the file away first")]
    TargetExists { path: PathBuf },
    #[error("stored object {key} is damaged: {source}")]
    Corrupt { key: String, source: SegmentError },
    #[error(
        "generation {generation} is missing WAL data before {key}: {reason}; restore an earlier time or generation"
    )]
    Gap {
        generation: String,
        key: String,
        reason: &'static str,
    },
    #[error("the restored database {path} fails its integrity check: {}", problems.join("; "))]
    Integrity {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("the replication task has stopped")]
    Stopped,
}

/// What `GET /` shows about replication. Cheap to read: it is published on a watch channel after
/// every sync attempt and never touches SQLite.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplicationStatus {
    /// The generation being written.
    pub generation: Option<String>,
    /// When a sync last finished with everything read so far in storage.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    /// Age of the oldest commit not yet in storage (0 when all is shipped).
    pub lag_ms: u64,
    /// Committed bytes not yet in storage (WAL past the shipped position, and queued uploads).
    pub pending_bytes: u64,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Every commit acknowledged before this instant is in storage.
    #[serde(skip)]
    pub synced_through: Option<Instant>,
}
