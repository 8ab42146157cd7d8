//! Walking `env_dir`: every directory, regular file and symlink, without following symlinks,
//! leaving out `checkpoint.exclude` matches, parents before children in name order.
//!
//! Exclude patterns are globs (`*`, `?`, `[..]`, `**`). A pattern without `/` matches an entry's
//! name at any depth (`*.log`, `cache`); a pattern with `/` matches the whole relative path
//! (`var/tmp/**`). An excluded directory is skipped with everything below it. Sockets, FIFOs and
//! devices cannot be restored from bytes and are skipped with a warning.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use glob::{MatchOptions, Pattern};
use walkdir::WalkDir;

use super::error::{CheckpointError, Result};
use super::manifest::Meta;

/// Compiled `checkpoint.exclude` patterns.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    by_name: Vec<Pattern>,
    by_path: Vec<Pattern>,
}

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut ex = Excludes::default();
        for p in patterns {
            let compiled = Pattern::new(p.trim_start_matches('/')).map_err(|e| {
                CheckpointError::InvalidExclude {
                    pattern: p.clone(),
                    reason: e.msg.to_string(),
                }
            })?;
            if p.contains('/') {
                ex.by_path.push(compiled);
            } else {
                ex.by_name.push(compiled);
            }
        }
        Ok(ex)
    }

    pub fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.by_name.iter().any(|p| p.matches_with(name, MATCH))
            || self.by_path.iter().any(|p| p.matches_with(rel, MATCH))
    }
}

/// What the walk saw of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanKind {
    Dir,
    File,
    Symlink(String),
}

/// The identity of a file's content for the local index: if all of these are unchanged, the
/// content is taken to be unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

#[derive(Clone, Debug)]
pub struct Scanned {
    pub path: String,
    pub kind: ScanKind,
    pub meta: Meta,
    pub stat: FileStat,
}

/// The whole tree.
#[derive(Debug)]
pub struct Scan {
    pub root: Meta,
    pub entries: Vec<Scanned>,
}

/// Walk `env_dir`. Blocking; run it off the async runtime.
pub fn scan(env_dir: &Path, excludes: &Excludes) -> Result<Scan> {
    let root_md =
        std::fs::symlink_metadata(env_dir).map_err(CheckpointError::io_at("stat", env_dir))?;
    if !root_md.is_dir() {
        return Err(CheckpointError::Setup {
            reason: format!("env_dir {env_dir:?} is not a directory"),
        });
    }
    let mut entries = Vec::new();
    let walker = WalkDir::new(env_dir)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !is_excluded(env_dir, e.path(), excludes));
    for item in walker {
        let entry = item.map_err(|e| walk_error(env_dir, e))?;
        if let Some(s) = scanned(env_dir, &entry)? {
            entries.push(s);
        }
    }
    Ok(Scan {
        root: meta_of(&root_md),
        entries,
    })
}

fn is_excluded(env_dir: &Path, path: &Path, excludes: &Excludes) -> bool {
    match path.strip_prefix(env_dir).ok().and_then(Path::to_str) {
        Some(rel) => excludes.matches(rel),
        None => false,
    }
}

fn walk_error(env_dir: &Path, e: walkdir::Error) -> CheckpointError {
    let path = e.path().unwrap_or(env_dir).to_path_buf();
    let source = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
    CheckpointError::io("walk", &path, source)
}

fn scanned(env_dir: &Path, entry: &walkdir::DirEntry) -> Result<Option<Scanned>> {
    let path = entry.path();
    let rel = path
        .strip_prefix(env_dir)
        .ok()
        .and_then(Path::to_str)
        .ok_or_else(|| CheckpointError::NonUtf8Path {
            path: path.to_path_buf(),
        })?;
    let md = entry.metadata().map_err(|e| walk_error(env_dir, e))?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        ScanKind::Dir
    } else if ft.is_file() {
        ScanKind::File
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(CheckpointError::io_at("readlink", path))?;
        let target = target
            .to_str()
            .ok_or_else(|| CheckpointError::NonUtf8Path {
                path: path.to_path_buf(),
            })?
            .to_string();
        ScanKind::Symlink(target)
    } else {
        tracing::warn!(path = %path.display(), "skipping a socket, FIFO or device in env_dir");
        return Ok(None);
    };
    Ok(Some(Scanned {
        path: rel.to_string(),
        kind,
        meta: meta_of(&md),
        stat: stat_of(&md),
    }))
}

pub fn meta_of(md: &std::fs::Metadata) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        uid: md.uid(),
        gid: md.gid(),
    }
}

pub fn stat_of(md: &std::fs::Metadata) -> FileStat {
    FileStat {
        size: md.len(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        ino: md.ino(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_anywhere_and_paths_from_the_root() {
        let ex = Excludes::new(&["*.log".into(), "var/tmp/**".into(), "cache".into()]).unwrap();
        assert!(ex.matches("a.log"));
        assert!(ex.matches("x/y/a.log"));
        assert!(ex.matches("var/tmp/z"));
        assert!(!ex.matches("x/var/tmp/z"));
        assert!(ex.matches("deep/cache"));
        assert!(!ex.matches("cached"));
        assert!(matches!(
            Excludes::new(&["[".into()]),
            Err(CheckpointError::InvalidExclude { .. })
        ));
    }

    #[test]
    fn scan_lists_parents_first_and_skips_excluded_subtrees() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("skip/inner")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("../nowhere", d.path().join("a/l")).unwrap();
        let s = scan(d.path(), &Excludes::new(&["skip".into()]).unwrap()).unwrap();
        let paths: Vec<&str> = s.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/f", "a/l"]);
        assert_eq!(s.entries[3].kind, ScanKind::Symlink("../nowhere".into()));
    }
}
