//! The one error type of the checkpoint subsystem. Variants carry the context a caller needs to
//! answer a request well: `NotFound` and `InvalidId` are 404/400, `Unreadable` is 422, `Busy` and
//! `GcBusy` are 409, everything else is a failure whose message names what broke and what to do.

use std::io;
use std::path::{Path, PathBuf};

use crate::objstore::StorageError;

/// An error from a freezer implementation (the supervisor's own error type, boxed).
pub type FreezeError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "invalid checkpoint id {id:?}: {reason}; ids look like 20250101T120000.123Z-1a2b3c4d (or use \"latest\")"
    )]
    InvalidId { id: String, reason: &'static str },
    #[error("checkpoint {id} not found; GET /checkpoints lists the ones that exist")]
    NotFound { id: String },
    /// The manifest exists but cannot be used; nothing was touched.
    #[error("checkpoint {id} cannot be restored: its manifest is unreadable: {reason}")]
    Unreadable { id: String, reason: String },
    #[error("a checkpoint or restore is already running; retry when it has finished")]
    Busy,
    #[error("garbage collection is already running elsewhere (started {since}); retry later")]
    GcBusy { since: String },
    #[error("invalid checkpoint.exclude pattern {pattern:?}: {reason}")]
    InvalidExclude { pattern: String, reason: String },
    #[error("invalid label: {reason}")]
    InvalidLabel { reason: &'static str },
    #[error("invalid checkpoint setup: {reason}")]
    Setup { reason: String },
    #[error(
        "the name of {path:?} in env_dir is not UTF-8; rename it or add it to checkpoint.exclude"
    )]
    NonUtf8Path { path: PathBuf },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StorageError),
    #[error("freezing the supervised processes failed: {source}")]
    Freeze { source: FreezeError },
    #[error("resuming the supervised processes failed: {source}")]
    Thaw { source: FreezeError },
    /// A chunk's bytes do not hash to its name, or do not decompress.
    #[error("chunk {hash} in storage is corrupt ({reason}); the checkpoint cannot be restored")]
    CorruptChunk { hash: String, reason: String },
    #[error("chunk {hash} is missing from storage; the checkpoint cannot be restored")]
    MissingChunk { hash: String },
    #[error("restored file {path:?} has {actual} bytes where the manifest says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    /// A garbage collection that did not see this checkpoint removed chunks it needs.
    #[error(
        "a garbage collection removed {missing} chunks this checkpoint needs; take the checkpoint again"
    )]
    ConcurrentGc { missing: usize },
    #[error(
        "a garbage collection has been running for longer than {waited_s}s; retry later or remove gc/state.json if it crashed"
    )]
    GcWaitTimeout { waited_s: u64 },
    #[error("cannot swap the restored tree into {env_dir:?}: {reason}")]
    Swap { env_dir: PathBuf, reason: String },
    #[error("internal task failed: {reason}")]
    Task { reason: String },
    /// The lease was lost (or moved to another epoch) before the manifest was written: nothing
    /// was published.
    #[error("the checkpoint was not published: {source}")]
    Fenced { source: crate::lease::Fenced },
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

impl CheckpointError {
    /// An I/O error with the operation and the path it concerned.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        CheckpointError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds a closure for `map_err` on an I/O result.
    pub(crate) fn io_at<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |e| CheckpointError::io(op, path, e)
    }

    /// True for errors a caller should report as "not found" (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CheckpointError::NotFound { .. })
    }
}

impl From<tokio::task::JoinError> for CheckpointError {
    fn from(e: tokio::task::JoinError) -> Self {
        CheckpointError::Task {
            reason: e.to_string(),
        }
    }
}
