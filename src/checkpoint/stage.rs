//! The part of a checkpoint that runs inside the freeze window: walk the tree, decide per file
//! whether the index still describes it, and stage the files that changed (`stager.rs`).
//! Nothing here compresses or uploads: that happens after the writers run again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::Result;
use super::local::LocalState;
use super::manifest::{ChunkHash, ChunkRef, Meta};
use super::stager::{FilePlan, Stager};
use super::walk::{Excludes, FileStat, ScanKind, Scanned, scan};

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

/// Walk `env_dir` and plan every file; with `staging`, stage changed files into it.
pub fn plan(
    env_dir: &Path,
    excludes: &Excludes,
    local: &LocalState,
    staging: Option<&Path>,
) -> Result<Plan> {
    let scanned_at_ns = now_ns();
    let tree = scan(env_dir, excludes)?;
    let mut stager = staging.map(|dir| Stager::new(dir, &local.known));
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
    let seen_before = local.files.contains_key(&e.path);
    match stager {
        None => Ok(FilePlan::Read { source: original }),
        Some(stager) => stager.stage(&original, n, e.stat.size, seen_before),
    }
}

fn all_known(chunks: &[ChunkRef], known: &HashSet<ChunkHash>) -> bool {
    chunks.iter().all(|c| known.contains(&c.hash))
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
    use crate::checkpoint::chunker::MIN_CHUNK;
    use crate::checkpoint::local::IndexEntry;

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
        std::fs::write(env.join("large-edited"), vec![2u8; MIN_CHUNK]).unwrap();
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
        let edited = entry(stat("large-edited"), unknown, false);
        local.files.insert("large-edited".into(), edited);
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
        let Some(FilePlan::Chunked { chunks, size, new }) = of("large-edited") else {
            panic!(
                "a modified large file is cut in place: {:?}",
                of("large-edited")
            );
        };
        assert_eq!((*size, chunks.len(), new.len()), (MIN_CHUNK as u64, 1, 1));
        let spool = std::fs::read(plan.spool.unwrap()).unwrap();
        assert_eq!(
            &spool[new[0].offset as usize..][..MIN_CHUNK],
            &[2u8; MIN_CHUNK][..]
        );
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
