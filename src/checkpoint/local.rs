//! Local state kept under the checkpoint state directory (`<state_dir>/local.json`):
//!
//! - the file index: for each file of the last checkpoint or restore, its [`FileStat`] and chunk
//!   list, so an unchanged file is never read again;
//! - the known-chunks set: chunks known to be in storage as of GC generation `gc_generation`
//!   (see `gc.rs`); a chunk in the set is not uploaded again;
//! - this node's `instance` id, written into in-progress markers so that a restart can clear
//!   the markers its predecessor left behind.
//!
//! The file is only an accelerator: a missing or unreadable one means "read everything, trust
//! nothing", never a wrong checkpoint. It is written atomically (temp, fsync, rename, fsync dir).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CheckpointError, Result};
use super::manifest::{ChunkHash, ChunkRef};
use super::walk::FileStat;

const VERSION: u32 = 1;
const FILE_NAME: &str = "local.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub stat: FileStat,
    /// The file was modified too close to the walk for its stat to be trusted next time; the
    /// entry still serves to find an identical small file's existing slice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub racy: bool,
    pub chunks: Vec<ChunkRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ChunkHash>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalState {
    version: u32,
    pub instance: String,
    /// GC generation at which `known` was last checked against storage; `None`: never.
    pub gc_generation: Option<u64>,
    pub known: HashSet<ChunkHash>,
    pub files: HashMap<String, IndexEntry>,
}

impl Default for LocalState {
    fn default() -> Self {
        LocalState {
            version: VERSION,
            instance: format!("{:016x}", rand::random::<u64>()),
            gc_generation: None,
            known: HashSet::new(),
            files: HashMap::new(),
        }
    }
}

impl LocalState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Load the state; a missing, corrupt or older file gives a fresh state (with a warning).
    pub fn load(state_dir: &Path) -> LocalState {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LocalState::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the checkpoint index; starting afresh");
                return LocalState::default();
            }
        };
        match serde_json::from_slice::<LocalState>(&bytes) {
            Ok(s) if s.version == VERSION => s,
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "checkpoint index is unreadable or old; starting afresh");
                LocalState::default()
            }
        }
    }

    /// Write the state atomically.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let body = serde_json::to_vec(self).map_err(|e| CheckpointError::Task {
            reason: format!("serialising the checkpoint index: {e}"),
        })?;
        write_atomic(&Self::path(state_dir), &body)
    }
}

/// Write `path` atomically (see [`crate::durable`]).
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    crate::durable::write_file(path, body).map_err(CheckpointError::io_at("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_survives_corruption() {
        let d = tempfile::tempdir().unwrap();
        let mut s = LocalState::default();
        s.known.insert(ChunkHash::of(b"x"));
        s.gc_generation = Some(3);
        s.save(d.path()).unwrap();
        let back = LocalState::load(d.path());
        assert_eq!(back.instance, s.instance);
        assert_eq!(back.known, s.known);
        std::fs::write(LocalState::path(d.path()), b"{garbage").unwrap();
        let fresh = LocalState::load(d.path());
        assert!(fresh.known.is_empty() && fresh.gc_generation.is_none());
    }
}
