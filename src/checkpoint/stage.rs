//! The part of a checkpoint that runs inside the freeze window: walk the tree, decide per file
//! whether the index still describes it, and copy the files that changed to a private staging
//! directory (`copy_file_range`, which is a reflink on filesystems that can share extents).
//! Nothing here hashes or compresses: the window lasts as long as a walk plus a copy of the
//! changed bytes, and the upload reads the staged copies after the writers run again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, Result};
use super::local::{IndexEntry, LocalState};
use super::manifest::{ChunkHash, Meta};
use super::walk::{Excludes, FileStat, ScanKind, Scanned, scan};

/// What to do with one file.
#[derive(Debug)]
pub enum FilePlan {
    /// Unchanged since the index entry: reuse its chunks without reading.
    Reuse(IndexEntry),
    /// Read from `source` (a staged copy, or the file itself when nothing is frozen).
    Read { source: PathBuf },
    /// Disappeared between the walk and the copy.
    Vanished,
}

#[derive(Debug)]
pub struct Plan {
    pub root: Meta,
    pub entries: Vec<Scanned>,
    /// One per entry; `None` for directories and symlinks.
    pub files: Vec<Option<FilePlan>>,
    /// Wall time of the walk, for the racy-entry rule of the index.
    pub scanned_at_ns: i64,
}

/// Walk `env_dir` and plan every file; with `staging`, copy changed files into it.
pub fn plan(
    env_dir: &Path,
    excludes: &Excludes,
    local: &LocalState,
    staging: Option<&Path>,
) -> Result<Plan> {
    let scanned_at_ns = now_ns();
    let tree = scan(env_dir, excludes)?;
    let mut files = Vec::with_capacity(tree.entries.len());
    for (n, e) in tree.entries.iter().enumerate() {
        let plan = match e.kind {
            ScanKind::File => Some(plan_file(env_dir, e, n, local, staging)?),
            _ => None,
        };
        files.push(plan);
    }
    Ok(Plan {
        root: tree.root,
        entries: tree.entries,
        files,
        scanned_at_ns,
    })
}

fn plan_file(
    env_dir: &Path,
    e: &Scanned,
    n: usize,
    local: &LocalState,
    staging: Option<&Path>,
) -> Result<FilePlan> {
    if let Some(prev) = local.files.get(&e.path)
        && prev.stat == e.stat
        && all_known(&prev.chunks, &local.known)
    {
        return Ok(FilePlan::Reuse(prev.clone()));
    }
    let original = env_dir.join(&e.path);
    let Some(staging) = staging else {
        return Ok(FilePlan::Read { source: original });
    };
    let copy = staging.join(n.to_string());
    match std::fs::copy(&original, &copy) {
        Ok(_) => Ok(FilePlan::Read { source: copy }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FilePlan::Vanished),
        Err(err) => Err(CheckpointError::io("copy to staging", &original, err)),
    }
}

fn all_known(chunks: &[super::manifest::ChunkRef], known: &HashSet<ChunkHash>) -> bool {
    chunks.iter().all(|c| known.contains(&c.hash))
}

/// A file whose mtime is this close to the walk may be written again within the same timestamp
/// tick without its stat changing; it is not indexed and will be read again. (A file with an
/// older mtime gets a new one on its next write, so ctime need not be checked here.)
const RACY_NS: i64 = 2_000_000_000;

/// True if the index may remember `stat` as describing the content that was read.
pub fn indexable(stat: &FileStat, bytes_read: u64, scanned_at_ns: i64) -> bool {
    stat.size == bytes_read && stat.mtime_ns < scanned_at_ns - RACY_NS
}

pub fn now_ns() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    (t.unix_timestamp_nanos()) as i64
}
