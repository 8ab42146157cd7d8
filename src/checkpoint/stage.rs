//! The part of a checkpoint that runs inside the freeze window: walk the tree, decide per file
//! whether the index still describes it, and stage the files that changed. Small files are
//! appended to one spool file (no inode per file: creating thousands of files would dominate
//! the window); larger ones are copied with `copy_file_range`, which shares extents on
//! filesystems that can. Nothing here hashes or compresses: the window lasts as long as a walk
//! plus a copy of the changed bytes, and the upload reads the staged bytes after the writers
//! run again.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::chunker::MIN_CHUNK;
use super::error::{CheckpointError, Result};
use super::local::{IndexEntry, LocalState};
use super::manifest::{ChunkHash, ChunkRef, Meta};
use super::walk::{Excludes, FileStat, ScanKind, Scanned, scan};

/// What to do with one file.
#[derive(Debug)]
pub enum FilePlan {
    /// Unchanged since the index entry: reuse its chunks without reading.
    Reuse(IndexEntry),
    /// Read from `source` (a staged copy, or the file itself when nothing is frozen).
    Read { source: PathBuf },
    /// Its bytes are in the spool file at `offset`.
    Spooled { offset: u64, len: u64 },
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
    /// The spool of small files, if any were spooled.
    pub spool: Option<PathBuf>,
}

/// The spool's name inside the staging directory.
const SPOOL: &str = "small-files.spool";

/// Walk `env_dir` and plan every file; with `staging`, stage changed files into it.
pub fn plan(
    env_dir: &Path,
    excludes: &Excludes,
    local: &LocalState,
    staging: Option<&Path>,
) -> Result<Plan> {
    let scanned_at_ns = now_ns();
    let tree = scan(env_dir, excludes)?;
    let mut stager = staging.map(Stager::new);
    let mut files = Vec::with_capacity(tree.entries.len());
    for (n, e) in tree.entries.iter().enumerate() {
        let plan = match e.kind {
            ScanKind::File => Some(plan_file(env_dir, e, n, local, stager.as_mut())?),
            _ => None,
        };
        files.push(plan);
    }
    let spool = stager.map(Stager::finish).transpose()?.flatten();
    Ok(Plan {
        root: tree.root,
        entries: tree.entries,
        files,
        scanned_at_ns,
        spool,
    })
}

fn plan_file(
    env_dir: &Path,
    e: &Scanned,
    n: usize,
    local: &LocalState,
    stager: Option<&mut Stager>,
) -> Result<FilePlan> {
    if let Some(prev) = local.files.get(&e.path)
        && !prev.racy
        && prev.stat == e.stat
        && all_known(&prev.chunks, &local.known)
    {
        return Ok(FilePlan::Reuse(prev.clone()));
    }
    let original = env_dir.join(&e.path);
    match stager {
        None => Ok(FilePlan::Read { source: original }),
        Some(stager) => stager.stage(&original, n, e.stat.size),
    }
}

fn all_known(chunks: &[ChunkRef], known: &HashSet<ChunkHash>) -> bool {
    chunks.iter().all(|c| known.contains(&c.hash))
}

/// Copies changed files into the staging directory.
struct Stager {
    dir: PathBuf,
    spool: Option<BufWriter<File>>,
    spool_len: u64,
}

impl Stager {
    fn new(dir: &Path) -> Stager {
        Stager {
            dir: dir.to_path_buf(),
            spool: None,
            spool_len: 0,
        }
    }

    fn stage(&mut self, original: &Path, n: usize, size: u64) -> Result<FilePlan> {
        if size < MIN_CHUNK as u64
            && let Some(plan) = self.spool_small(original, size)?
        {
            return Ok(plan);
        }
        let copy = self.dir.join(n.to_string());
        match std::fs::copy(original, &copy) {
            Ok(_) => Ok(FilePlan::Read { source: copy }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FilePlan::Vanished),
            Err(err) => Err(CheckpointError::io("copy to staging", original, err)),
        }
    }

    /// Append a small file to the spool; `None` if it has grown too large to be spooled.
    fn spool_small(&mut self, original: &Path, size: u64) -> Result<Option<FilePlan>> {
        let mut data = Vec::with_capacity(size as usize);
        let read =
            File::open(original).and_then(|f| f.take(MIN_CHUNK as u64).read_to_end(&mut data));
        match read {
            Ok(_) if data.len() >= MIN_CHUNK => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some(FilePlan::Vanished));
            }
            Err(e) => return Err(CheckpointError::io("read", original, e)),
        }
        let spool_path = self.dir.join(SPOOL);
        if self.spool.is_none() {
            let f =
                File::create(&spool_path).map_err(CheckpointError::io_at("create", &spool_path))?;
            self.spool = Some(BufWriter::with_capacity(1 << 20, f));
        }
        let spool = self.spool.as_mut().expect("spool was just opened");
        spool
            .write_all(&data)
            .map_err(CheckpointError::io_at("write", &spool_path))?;
        let plan = FilePlan::Spooled {
            offset: self.spool_len,
            len: data.len() as u64,
        };
        self.spool_len += data.len() as u64;
        Ok(Some(plan))
    }

    fn finish(self) -> Result<Option<PathBuf>> {
        let Some(mut spool) = self.spool else {
            return Ok(None);
        };
        let path = self.dir.join(SPOOL);
        spool
            .flush()
            .map_err(CheckpointError::io_at("write", &path))?;
        Ok(Some(path))
    }
}

/// A file whose mtime is this close to the walk may be written again within the same timestamp
/// tick without its stat changing; its index entry is marked racy and it is read again next
/// time. (A file with an older mtime gets a new one on its next write, so ctime need not be
/// checked here.)
const RACY_NS: i64 = 2_000_000_000;

/// True if the index may trust `stat` next time as describing the content that was read.
pub fn trustworthy(stat: &FileStat, bytes_read: u64, scanned_at_ns: i64) -> bool {
    stat.size == bytes_read && stat.mtime_ns < scanned_at_ns - RACY_NS
}

pub fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stat: FileStat, hash: ChunkHash, racy: bool) -> IndexEntry {
        IndexEntry {
            stat,
            racy,
            chunks: vec![ChunkRef {
                hash,
                offset: 0,
                len: stat.size,
            }],
            content: None,
        }
    }

    #[test]
    fn unchanged_files_are_reused_and_the_others_staged() {
        let d = tempfile::tempdir().unwrap();
        let (env, staging) = (d.path().join("env"), d.path().join("staging"));
        std::fs::create_dir_all(&env).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        for name in ["same", "racy", "unknown-chunk", "new"] {
            std::fs::write(env.join(name), name).unwrap();
        }
        std::fs::write(env.join("large"), vec![1u8; MIN_CHUNK]).unwrap();
        let scanned = scan(&env, &Excludes::default()).unwrap();
        let stat = |p: &str| scanned.entries.iter().find(|e| e.path == p).unwrap().stat;
        let (known, unknown) = (ChunkHash::of(b"k"), ChunkHash::of(b"u"));
        let mut local = LocalState::default();
        local.known.insert(known);
        local
            .files
            .insert("same".into(), entry(stat("same"), known, false));
        local
            .files
            .insert("racy".into(), entry(stat("racy"), known, true));
        local.files.insert(
            "unknown-chunk".into(),
            entry(stat("unknown-chunk"), unknown, false),
        );

        let plan = plan(&env, &Excludes::default(), &local, Some(&staging)).unwrap();
        let of = |p: &str| &plan.files[plan.entries.iter().position(|e| e.path == p).unwrap()];
        assert!(matches!(of("same"), Some(FilePlan::Reuse(_))));
        for p in ["racy", "unknown-chunk", "new"] {
            assert!(matches!(of(p), Some(FilePlan::Spooled { .. })), "{p}");
        }
        assert!(
            matches!(of("large"), Some(FilePlan::Read { source }) if source.starts_with(&staging))
        );
        let spool = std::fs::read(plan.spool.unwrap()).unwrap();
        let Some(FilePlan::Spooled { offset, len }) = of("new") else {
            unreachable!()
        };
        assert_eq!(&spool[*offset as usize..][..*len as usize], b"new");

        let live = super::plan(&env, &Excludes::default(), &local, None).unwrap();
        assert!(
            live.files
                .iter()
                .flatten()
                .all(|f| !matches!(f, FilePlan::Spooled { .. }))
        );
    }
}
