//! Swapping a fully built tree into `env_dir`, and recovering from a crash in the middle.
//!
//! The restored tree is built in `<parent>/.<name>.restore-staging`, beside `env_dir` so that a
//! rename can move it. The swap is one `renameat2(RENAME_EXCHANGE)` where the filesystem has
//! it: `env_dir` is the old tree or the new one at every instant. Elsewhere it is two renames
//! (`env_dir` → `.<name>.restore-aside`, staging → `env_dir`) recorded in
//! `<state_dir>/restore-journal.json` first. After a crash, [`recover`] finishes the job:
//!
//! | found at start                          | meaning                        | action            |
//! |-----------------------------------------|--------------------------------|-------------------|
//! | journal, no `env_dir`, staging present  | crashed between the renames    | staging → env_dir |
//! | journal, no `env_dir`, only aside       | second rename failed, no rollback | aside → env_dir |
//! | staging or aside left over              | crash before or after the swap | remove them       |
//!
//! Rolling forward is right in the first case: the staging tree was complete and synced before
//! the journal was written, and the restore had been asked for.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use serde::Serialize;

use super::error::{CheckpointError, Result};
use super::local::write_atomic;

/// Where the pieces of a swap live.
#[derive(Clone, Debug)]
pub struct SwapPaths {
    pub env_dir: PathBuf,
    pub staging: PathBuf,
    pub aside: PathBuf,
    pub journal: PathBuf,
}

impl SwapPaths {
    pub fn new(env_dir: &Path, state_dir: &Path) -> Self {
        let parent = env_dir.parent().unwrap_or(Path::new("/"));
        let name = env_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        SwapPaths {
            env_dir: env_dir.to_path_buf(),
            staging: parent.join(format!(".{name}.restore-staging")),
            aside: parent.join(format!(".{name}.restore-aside")),
            journal: state_dir.join("restore-journal.json"),
        }
    }
}

/// What [`recover`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// An interrupted swap was completed: `env_dir` now holds the restored tree.
    pub completed_swap: bool,
    /// An interrupted swap was undone: `env_dir` holds the tree from before the restore.
    pub rolled_back: bool,
    /// Leftover directories that were removed.
    pub removed: Vec<PathBuf>,
    /// In-progress markers of this node's interrupted checkpoints that were removed.
    pub markers_removed: usize,
}

/// Put `staging` in place of `env_dir`; the old tree is deleted afterwards.
pub fn swap_in(p: &SwapPaths) -> Result<()> {
    if !exists(&p.env_dir)? {
        rename(&p.staging, &p.env_dir)?;
        return sync_parent(&p.env_dir);
    }
    match renameat2(
        AT_FDCWD,
        &p.staging,
        AT_FDCWD,
        &p.env_dir,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => {
            sync_parent(&p.env_dir)?;
            remove_quietly(&p.staging);
            Ok(())
        }
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => swap_with_renames(p),
        Err(e) => Err(swap_error(p, e.into())),
    }
}

/// The fallback swap for filesystems without `RENAME_EXCHANGE`.
pub fn swap_with_renames(p: &SwapPaths) -> Result<()> {
    let journal = format!(
        "{{\"phase\":\"swapping\",\"env_dir\":{:?},\"staging\":{:?},\"aside\":{:?}}}",
        p.env_dir, p.staging, p.aside
    );
    write_atomic(&p.journal, journal.as_bytes())?;
    if let Err(e) = std::fs::rename(&p.env_dir, &p.aside) {
        let _ = std::fs::remove_file(&p.journal);
        return Err(swap_error(p, e));
    }
    if let Err(e) = std::fs::rename(&p.staging, &p.env_dir) {
        if std::fs::rename(&p.aside, &p.env_dir).is_ok() {
            let _ = std::fs::remove_file(&p.journal);
        }
        return Err(swap_error(p, e));
    }
    sync_parent(&p.env_dir)?;
    std::fs::remove_file(&p.journal).map_err(CheckpointError::io_at("remove", &p.journal))?;
    remove_quietly(&p.aside);
    Ok(())
}

/// Finish or undo an interrupted swap and remove leftovers. Blocking.
pub fn recover(p: &SwapPaths) -> Result<Recovery> {
    let mut r = Recovery::default();
    let journal = exists(&p.journal)?;
    if journal && !exists(&p.env_dir)? {
        if exists(&p.staging)? {
            rename(&p.staging, &p.env_dir)?;
            r.completed_swap = true;
        } else if exists(&p.aside)? {
            rename(&p.aside, &p.env_dir)?;
            r.rolled_back = true;
        }
        sync_parent(&p.env_dir)?;
    }
    for dir in [&p.staging, &p.aside] {
        if exists(dir)? {
            std::fs::remove_dir_all(dir).map_err(CheckpointError::io_at("remove", dir))?;
            r.removed.push(dir.clone());
        }
    }
    if journal {
        std::fs::remove_file(&p.journal).map_err(CheckpointError::io_at("remove", &p.journal))?;
    }
    Ok(r)
}

fn swap_error(p: &SwapPaths, e: std::io::Error) -> CheckpointError {
    let hint = match e.raw_os_error() {
        Some(libc::EBUSY) => {
            "; env_dir is a mount point: set storage.env_dir to a directory inside the volume"
        }
        Some(libc::EXDEV) => {
            "; env_dir and its parent are on different filesystems: set storage.env_dir to a directory inside the volume"
        }
        _ => "",
    };
    CheckpointError::Swap {
        env_dir: p.env_dir.clone(),
        reason: format!("{e}{hint}"),
    }
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists()
        .map_err(CheckpointError::io_at("stat", path))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(CheckpointError::io_at("rename", from))
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(CheckpointError::io_at("sync", parent))
}

fn remove_quietly(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove the old tree; it is removed at the next start");
    }
}
