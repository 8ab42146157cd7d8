//! Swapping a fully built tree into `env_dir`.
//!
//! The restored tree is built in `<parent>/.<name>.restore-staging`, beside `env_dir` so that a
//! rename can move it. The swap is one `renameat2(RENAME_EXCHANGE)` where the filesystem has
//! it: `env_dir` is the old tree or the new one at every instant. Elsewhere it is two renames
//! (`env_dir` → `.<name>.restore-aside`, staging → `env_dir`). Either way the restore journal
//! (`journal.rs`) says `swapping` with the new tree's inode before the first rename, so after a
//! crash `settle.rs` knows which tree `env_dir` is.
//!
//! After the swap the old tree is renamed to `.<name>.restore-trash-<random>` and deleted in
//! the background: deleting a large tree can take longer than the whole restore, and nothing
//! waits for it.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use super::error::{CheckpointError, Result};

/// Where the pieces of a swap live.
#[derive(Clone, Debug)]
pub struct SwapPaths {
    pub env_dir: PathBuf,
    pub staging: PathBuf,
    pub aside: PathBuf,
    /// The state directory, which holds the restore journal.
    pub state_dir: PathBuf,
}

impl SwapPaths {
    pub(super) fn trash_prefix(&self) -> PathBuf {
        let name = self
            .staging
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let base = name.trim_end_matches("staging");
        self.staging.with_file_name(format!("{base}trash-"))
    }

    /// Old trees waiting to be deleted.
    pub(super) fn trash(&self) -> Result<Vec<PathBuf>> {
        let prefix = self.trash_prefix();
        let (dir, name) = (
            prefix.parent().unwrap_or(Path::new("/")),
            prefix.file_name().unwrap_or_default(),
        );
        let name = name.to_string_lossy();
        let entries = std::fs::read_dir(dir).map_err(CheckpointError::io_at("list", dir))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(name.as_ref()))
            .map(|e| e.path())
            .collect())
    }

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
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// Put `staging` in place of `env_dir`. Returns where the old tree now is, for the caller to
/// delete (see [`remove_trash`]).
pub fn swap_in(p: &SwapPaths) -> Result<Option<PathBuf>> {
    if !exists(&p.env_dir)? {
        rename(&p.staging, &p.env_dir)?;
        sync_parent(&p.env_dir)?;
        return Ok(None);
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
            Ok(Some(to_trash(p, &p.staging)))
        }
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => swap_with_renames(p),
        Err(e) => Err(swap_error(p, e.into())),
    }
}

/// The fallback swap for filesystems without `RENAME_EXCHANGE`; the journal says `swapping`.
pub fn swap_with_renames(p: &SwapPaths) -> Result<Option<PathBuf>> {
    std::fs::rename(&p.env_dir, &p.aside).map_err(|e| swap_error(p, e))?;
    if let Err(e) = std::fs::rename(&p.staging, &p.env_dir) {
        // Put the old tree back; if even that fails, `recover` finishes the job at the next
        // start (the journal is kept while `env_dir` is missing).
        let _ = std::fs::rename(&p.aside, &p.env_dir);
        return Err(swap_error(p, e));
    }
    sync_parent(&p.env_dir)?;
    Ok(Some(to_trash(p, &p.aside)))
}

/// Rename the old tree out of the way of the next restore; if that fails, it stays where it is
/// (and is removed by [`super::settle::recover`] or the next restore).
fn to_trash(p: &SwapPaths, old: &Path) -> PathBuf {
    let trash = PathBuf::from(format!(
        "{}{:08x}",
        p.trash_prefix().display(),
        rand::random::<u32>()
    ));
    match std::fs::rename(old, &trash) {
        Ok(()) => trash,
        Err(_) => old.to_path_buf(),
    }
}

/// Delete an old tree; errors are logged (the next [`super::settle::recover`] retries).
pub fn remove_trash(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove the old tree; it is removed at the next start");
    }
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

pub(super) fn exists(path: &Path) -> Result<bool> {
    path.try_exists()
        .map_err(CheckpointError::io_at("stat", path))
}

pub(super) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(CheckpointError::io_at("rename", from))
}

pub(super) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(CheckpointError::io_at("sync", parent))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::checkpoint) fn setup() -> (tempfile::TempDir, SwapPaths) {
        let d = tempfile::tempdir().unwrap();
        let env = d.path().join("env");
        std::fs::create_dir_all(&env).unwrap();
        std::fs::write(env.join("old"), "old").unwrap();
        std::fs::create_dir_all(d.path().join("state")).unwrap();
        let p = SwapPaths::new(&env, &d.path().join("state"));
        std::fs::create_dir_all(&p.staging).unwrap();
        std::fs::write(p.staging.join("new"), "new").unwrap();
        (d, p)
    }

    pub(in crate::checkpoint) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn both_swaps_put_the_new_tree_in_place_and_leave_only_trash() {
        for two_renames in [false, true] {
            let (d, p) = setup();
            let old = if two_renames {
                swap_with_renames(&p)
            } else {
                swap_in(&p)
            };
            let old = old.unwrap().unwrap();
            assert_eq!(names(&p.env_dir), ["new"]);
            assert_eq!(names(&old), ["old"]);
            remove_trash(&old);
            assert_eq!(names(d.path()), ["env", "state"]);
        }
    }
}
