//! The restore journal, `<state_dir>/restore-journal.json`: which checkpoint is being restored
//! and how far the restore got, so that a restart after a crash (kill -9, power cut) knows
//! whether `env_dir` holds the old tree or the restored one and says so.
//!
//! Each phase is written atomically (`durable.rs`) *before* the step it names, so the journal
//! never claims less than what may have happened:
//!
//! | phase       | written before                               | `env_dir` after a crash here      |
//! |-------------|----------------------------------------------|-----------------------------------|
//! | `preparing` | the undo checkpoint and stopping processes   | the old tree                      |
//! | `building`  | the new tree is built in staging             | the old tree                      |
//! | `swapping`  | the swap (names the new tree's inode)        | old or new: the inode tells       |
//! | `swapped`   | the restore hooks and the start of processes | the new tree                      |
//!
//! The journal is removed when the restore has ended (or failed with `env_dir` as it was).
//! `swapping` carries the device and inode of the staging directory: a rename keeps them, so
//! after a crash `env_dir`'s inode says which tree it is without reading a file of it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::local::write_atomic;

pub const FILE_NAME: &str = "restore-journal.json";

/// A directory's identity, kept across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeId {
    pub dev: u64,
    pub ino: u64,
}

impl TreeId {
    /// The identity of the directory at `path`, `None` if there is none.
    pub fn of(path: &Path) -> Result<Option<TreeId>> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => Ok(Some(TreeId {
                dev: md.dev(),
                ino: md.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CheckpointError::io("stat", path, e)),
        }
    }
}

/// How far a restore got (see the table in the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Preparing,
    Building,
    Swapping { new_tree: TreeId },
    Swapped,
}

/// The name of a [`Phase`], as the API shows where an interrupted restore stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// Taking the undo checkpoint or stopping the processes.
    Preparing,
    /// Building the restored tree beside `env_dir`.
    Building,
    /// Swapping the restored tree into place.
    Swapping,
    /// Running the restore hooks and starting the processes.
    Swapped,
}

impl Phase {
    pub fn name(self) -> PhaseName {
        match self {
            Phase::Preparing => PhaseName::Preparing,
            Phase::Building => PhaseName::Building,
            Phase::Swapping { .. } => PhaseName::Swapping,
            Phase::Swapped => PhaseName::Swapped,
        }
    }
}

impl PhaseName {
    /// What the restore was doing, in words.
    pub fn doing(self) -> &'static str {
        match self {
            PhaseName::Preparing => "taking the undo checkpoint and stopping the processes",
            PhaseName::Building => "building the restored tree",
            PhaseName::Swapping => "swapping the restored tree into env_dir",
            PhaseName::Swapped => "running the restore hooks and starting the processes",
        }
    }
}

/// How a restore the server did not live to finish was settled at the next start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// `env_dir` holds the tree from before the restore; the restore did not happen.
    RolledBack,
    /// `env_dir` holds the restored tree; what was left of the restore is done at start-up.
    Completed,
}

/// A restore interrupted by a crash, as [`crate::checkpoint::CheckpointEngine::recover`] found
/// and settled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interrupted {
    pub checkpoint: CheckpointId,
    /// Where it stopped.
    pub phase: PhaseName,
    pub settled: Settled,
    /// The restore hooks had not finished: the journal stays at `swapped` until the caller
    /// has run them and calls `end_restore`.
    pub hooks_pending: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// The journal's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub checkpoint: CheckpointId,
    #[serde(flatten)]
    pub phase: Phase,
    /// The restore hooks run after the swap (a restore asked for by an operator; a takeover's
    /// restore has none).
    #[serde(default)]
    pub hooks: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

impl Journal {
    pub fn new(checkpoint: CheckpointId, hooks: bool) -> Journal {
        Journal {
            checkpoint,
            phase: Phase::Preparing,
            hooks,
            started_at: OffsetDateTime::now_utc(),
        }
    }

    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Record `phase` durably. Blocking.
    pub fn write(&mut self, state_dir: &Path, phase: Phase) -> Result<()> {
        self.phase = phase;
        let body = serde_json::to_vec(self).expect("the journal serialises");
        write_atomic(&Self::path(state_dir), &body)
    }

    /// What a crashed restore left, if anything. `Err(text)` for a journal that cannot be read
    /// (from an older version or damaged by hand): the caller falls back to what it finds on
    /// disk. Blocking.
    pub fn read(state_dir: &Path) -> Result<Option<std::result::Result<Journal, String>>> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(body) => Ok(Some(
                serde_json::from_slice(&body).map_err(|e| format!("{}: {e}", path.display())),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CheckpointError::io("read", &path, e)),
        }
    }

    /// The restore has ended: forget it. Blocking.
    pub fn remove(state_dir: &Path) -> Result<()> {
        let path = Self::path(state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                crate::durable::sync_dir(&path).map_err(CheckpointError::io_at("sync", &path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CheckpointError::io("remove", &path, e)),
        }
    }
}

impl super::CheckpointEngine {
    /// Record that a restore of `id` with restore hooks begins, before its undo checkpoint and
    /// the stop of the processes: a crash from here on is reported by the next
    /// [`super::CheckpointEngine::recover`]. End it with [`super::CheckpointEngine::end_restore`].
    pub async fn begin_restore(&self, id: &CheckpointId) -> Result<()> {
        let (state_dir, id) = (self.state_dir.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            Journal::new(id, true).write(&state_dir, Phase::Preparing)
        })
        .await?
    }

    /// The journal of this restore at `building`: the one [`CheckpointEngine::begin_restore`]
    /// started for `id`, or a new one.
    pub(super) async fn journal_building(&self, id: &CheckpointId, hooks: bool) -> Result<Journal> {
        let (state_dir, id) = (self.state_dir.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let mut j = match Journal::read(&state_dir)? {
                Some(Ok(j)) if j.checkpoint == id && j.phase == Phase::Preparing => j,
                _ => Journal::new(id, hooks),
            };
            j.hooks = hooks;
            j.write(&state_dir, Phase::Building)?;
            Ok(j)
        })
        .await?
    }

    /// The restore begun by [`super::CheckpointEngine::begin_restore`] (or left with hooks
    /// pending by a crash) has ended, whichever way: forget it.
    pub async fn end_restore(&self) -> Result<()> {
        let state_dir = self.state_dir.clone();
        tokio::task::spawn_blocking(move || Journal::remove(&state_dir)).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_and_a_foreign_journal_is_reported() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Journal::read(d.path()).unwrap(), None);
        let id = CheckpointId::generate(OffsetDateTime::now_utc());
        let mut j = Journal::new(id, true);
        let new_tree = TreeId::of(d.path()).unwrap().unwrap();
        for phase in [
            Phase::Preparing,
            Phase::Building,
            Phase::Swapping { new_tree },
            Phase::Swapped,
        ] {
            j.write(d.path(), phase).unwrap();
            assert_eq!(Journal::read(d.path()).unwrap(), Some(Ok(j.clone())));
        }
        std::fs::write(Journal::path(d.path()), r#"{"phase":"swapping"}"#).unwrap();
        assert!(matches!(Journal::read(d.path()).unwrap(), Some(Err(_))));
        Journal::remove(d.path()).unwrap();
        Journal::remove(d.path()).unwrap();
        assert_eq!(Journal::read(d.path()).unwrap(), None);
    }
}
