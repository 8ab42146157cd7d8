//! Checkpoints of the environment directory: `env_dir` ⇄ content-addressed chunks + a manifest.
//!
//! Layout in storage (keys under the environment's prefix):
//! - `chunks/<blake3 hex>`: zstd-compressed chunk (or pack of small files), shared by every
//!   checkpoint, immutable, written with put-if-absent;
//! - `checkpoints/<id>/manifest.json`: written last — a checkpoint exists exactly when its
//!   manifest does;
//! - `checkpoints/<id>/pending.json` and `gc/state.json`: the GC protocol (`protocol.rs`).
//!
//! Locally, under `state_dir`: `local.json` (file index and known chunks, `local.rs`),
//! `staging/` (changed files copied during the freeze window) and `restore-journal.json`
//! (how far a restore got, `journal.rs`, settled after a crash by `settle.rs`).
//!
//! Invariants: a failed or interrupted checkpoint leaves no manifest; a failed restore leaves
//! `env_dir` exactly as it was; after a crash during a restore `env_dir` is wholly the old
//! tree or wholly the restored one, and [`CheckpointEngine::recover`] says which; GC never deletes a chunk a manifest or a running checkpoint
//! needs. One engine per data directory; creates and restores are serialised by the engine
//! (a second one gets [`CheckpointError::Busy`]), GC may run alongside them.

mod assemble;
mod catalog;
mod chunker;
mod create;
mod error;
mod freeze;
mod gc;
mod id;
mod journal;
mod landing;
mod local;
mod manifest;
#[cfg(test)]
mod proptests;
mod protocol;
mod restore;
mod settle;
mod stage;
mod stager;
mod swap;
mod tree;
mod upload;
mod walk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use catalog::{CheckpointInfo, Retention};
pub use create::CreateRequest;
pub use error::{CheckpointError, FreezeError, Result};
pub use freeze::Freezer;
pub use gc::GcReport;
pub use id::{CheckpointId, ID_PATTERN};
pub use journal::{Interrupted, PhaseName, Settled};
pub use manifest::{ChunkHash, ChunkRef, Entry, EntryKind, FORMAT_VERSION, Manifest, Meta, Stats};
pub use restore::RestoreSummary;
pub use settle::Recovery;

use crate::config::CheckpointConfig;
use crate::objstore::DynStore;

/// What a finished checkpoint reports (the body of `POST /checkpoint`'s 201).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointSummary {
    pub id: CheckpointId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub files: u64,
    pub bytes: u64,
    pub uploaded_bytes: u64,
    pub chunks_new: u64,
    pub freeze_ms: u64,
    pub duration_ms: u64,
}

/// Tunables of the engine; [`EngineOptions::from_config`] takes them from the config file.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Parallel chunk uploads and downloads.
    pub concurrency: usize,
    /// `checkpoint.exclude` globs.
    pub exclude: Vec<String>,
    /// GC leaves unreferenced chunks younger than this alone.
    pub gc_grace: Duration,
    /// An in-progress marker or a GC claim older than this belongs to a dead process.
    pub stale_after: Duration,
    /// How long a checkpoint waits for a running GC before giving up.
    pub gc_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            concurrency: 8,
            exclude: Vec::new(),
            gc_grace: Duration::from_secs(3600),
            stale_after: Duration::from_secs(6 * 3600),
            gc_wait: Duration::from_secs(600),
        }
    }
}

impl EngineOptions {
    pub fn from_config(cfg: &CheckpointConfig) -> Self {
        EngineOptions {
            concurrency: cfg.concurrency.max(1) as usize,
            exclude: cfg.exclude.clone(),
            ..EngineOptions::default()
        }
    }
}

/// The checkpoint engine of one environment. Cheap to share behind an `Arc`.
pub struct CheckpointEngine {
    store: DynStore,
    env_dir: PathBuf,
    state_dir: PathBuf,
    opts: EngineOptions,
    excludes: walk::Excludes,
    busy: tokio::sync::Mutex<()>,
}

impl CheckpointEngine {
    /// `env_dir` is what checkpoints capture; `state_dir` holds local state and must be on the
    /// same filesystem as `env_dir` for cheap staging copies, but not inside it. Call
    /// [`CheckpointEngine::recover`] once before the first checkpoint or restore.
    pub fn new(
        store: DynStore,
        env_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        opts: EngineOptions,
    ) -> Result<Self> {
        let (env_dir, state_dir) = (env_dir.into(), state_dir.into());
        check_dirs(&env_dir, &state_dir)?;
        let excludes = walk::Excludes::new(&opts.exclude)?;
        Ok(CheckpointEngine {
            store,
            env_dir,
            state_dir,
            opts: EngineOptions {
                concurrency: opts.concurrency.max(1),
                ..opts
            },
            excludes,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    pub fn env_dir(&self) -> &Path {
        &self.env_dir
    }

    fn busy(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        self.busy.try_lock().map_err(|_| CheckpointError::Busy)
    }
}

fn check_dirs(env_dir: &Path, state_dir: &Path) -> Result<()> {
    let setup = |reason: String| Err(CheckpointError::Setup { reason });
    if !env_dir.is_absolute() || !state_dir.is_absolute() {
        return setup(format!(
            "env_dir {env_dir:?} and the state directory {state_dir:?} must be absolute paths"
        ));
    }
    if env_dir.parent().is_none() || env_dir.file_name().is_none() {
        return setup(format!(
            "env_dir {env_dir:?} must not be the root directory"
        ));
    }
    if state_dir.starts_with(env_dir) || env_dir.starts_with(state_dir) {
        return setup(format!(
            "env_dir {env_dir:?} and the state directory {state_dir:?} must not contain each other"
        ));
    }
    Ok(())
}
