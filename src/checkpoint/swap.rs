//! Swapping a fully built tree into `env_dir`, and settling a swap a crash interrupted.
//!
//! The restored tree is built in `<parent>/.<name>.restore-staging`, beside `env_dir` so that a
//! rename can move it. The swap is one `renameat2(RENAME_EXCHANGE)` where the filesystem has
//! it: `env_dir` is the old tree or the new one at every instant. Elsewhere it is two renames
//! (`env_dir` → `.<name>.restore-aside`, staging → `env_dir`). Either way the restore journal
//! (`journal.rs`) says `swapping` with the new tree's inode before the first rename, so after a
//! crash [`recover`] knows which tree `env_dir` is and settles the restore:
//!
//! | found at start                              | meaning                         | action            |
//! |---------------------------------------------|---------------------------------|-------------------|
//! | journal, no `env_dir`, staging present      | crashed between the renames     | staging → env_dir |
//! | journal, no `env_dir`, only aside           | second rename failed, no rollback | aside → env_dir |
//! | journal `preparing`/`building`, or `swapping` and `env_dir` is not the new inode | crashed before the swap | rolled back |
//! | journal `swapped`, or `swapping` and `env_dir` is the new inode | crashed after the swap | completed |
//! | staging, aside or trash left over           | crash before or after the swap  | remove them       |
//!
//! Rolling forward between the renames is right: the staging tree was complete and synced
//! before the journal said `swapping`, and the restore had been asked for.
//!
//! After the swap the old tree is renamed to `.<name>.restore-trash-<random>` and deleted in
//! the background: deleting a large tree can take longer than the whole restore, and nothing
//! waits for it.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use serde::Serialize;

use super::error::{CheckpointError, Result};
use super::journal::{Interrupted, Journal, Phase, Settled, TreeId};

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
    fn trash_prefix(&self) -> PathBuf {
        let name = self
            .staging
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let base = name.trim_end_matches("staging");
        self.staging.with_file_name(format!("{base}trash-"))
    }

    /// Old trees waiting to be deleted.
    fn trash(&self) -> Result<Vec<PathBuf>> {
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
    /// The restore a crash interrupted, and how it was settled.
    pub restore: Option<Interrupted>,
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
/// (and is removed by [`recover`] or the next restore).
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

/// Delete an old tree; errors are logged (the next [`recover`] retries).
pub fn remove_trash(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove the old tree; it is removed at the next start");
    }
}

/// Settle a restore a crash interrupted (see the module header) and remove leftovers. The
/// journal is removed, except that it stays at `swapped` while restore hooks are pending.
/// Blocking.
pub fn recover(p: &SwapPaths) -> Result<Recovery> {
    let mut r = Recovery::default();
    let journal = Journal::read(&p.state_dir)?;
    // Only a swap can have left `env_dir` missing; before it, staging may be half built.
    let swapping = match &journal {
        Some(Ok(j)) => matches!(j.phase, Phase::Swapping { .. }),
        Some(Err(_)) => true,
        None => false,
    };
    if swapping && !exists(&p.env_dir)? {
        if exists(&p.staging)? {
            rename(&p.staging, &p.env_dir)?;
            r.completed_swap = true;
        } else if exists(&p.aside)? {
            rename(&p.aside, &p.env_dir)?;
            r.rolled_back = true;
        }
        sync_parent(&p.env_dir)?;
    }
    match journal {
        Some(Ok(mut j)) => {
            let interrupted = settle(&j, TreeId::of(&p.env_dir)?);
            if interrupted.hooks_pending {
                j.write(&p.state_dir, Phase::Swapped)?;
            }
            r.restore = Some(interrupted);
        }
        Some(Err(why)) => {
            tracing::warn!("unreadable restore journal ({why}); env_dir is kept as found");
        }
        None => {}
    }
    let mut leftovers = vec![p.staging.clone(), p.aside.clone()];
    leftovers.extend(p.trash()?);
    for dir in leftovers {
        if exists(&dir)? {
            std::fs::remove_dir_all(&dir).map_err(CheckpointError::io_at("remove", &dir))?;
            r.removed.push(dir);
        }
    }
    if r.restore.as_ref().is_none_or(|i| !i.hooks_pending) {
        Journal::remove(&p.state_dir)?;
    }
    Ok(r)
}

/// Which tree `env_dir` (now `env_tree`) is, by the journal's phase and the new tree's inode.
fn settle(j: &Journal, env_tree: Option<TreeId>) -> Interrupted {
    let completed = match j.phase {
        Phase::Preparing | Phase::Building => false,
        Phase::Swapping { new_tree } => env_tree == Some(new_tree),
        Phase::Swapped => true,
    };
    Interrupted {
        checkpoint: j.checkpoint.clone(),
        phase: j.phase.name(),
        settled: match completed {
            true => Settled::Completed,
            false => Settled::RolledBack,
        },
        hooks_pending: completed && j.hooks,
        started_at: j.started_at,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, SwapPaths) {
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

    fn names(dir: &Path) -> Vec<String> {
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

    /// The journal a restore of the tree in staging writes at `phase` (`swapping` names it).
    fn journal(p: &SwapPaths, phase: &str, hooks: bool) -> Journal {
        let id = crate::checkpoint::CheckpointId::generate(time::OffsetDateTime::now_utc());
        let mut j = Journal::new(id, hooks);
        let phase = match phase {
            "building" => Phase::Building,
            "swapping" => Phase::Swapping {
                new_tree: TreeId::of(&p.staging).unwrap().unwrap(),
            },
            _ => Phase::Swapped,
        };
        j.write(&p.state_dir, phase).unwrap();
        j
    }

    fn settled(r: &Recovery) -> (Settled, bool) {
        let i = r.restore.as_ref().unwrap();
        (i.settled, i.hooks_pending)
    }

    #[test]
    fn recover_rolls_an_interrupted_two_rename_swap_forward() {
        let (d, p) = setup();
        journal(&p, "swapping", false);
        std::fs::rename(&p.env_dir, &p.aside).unwrap();
        let r = recover(&p).unwrap();
        assert!(r.completed_swap && !r.rolled_back);
        assert_eq!(settled(&r), (Settled::Completed, false));
        assert_eq!(names(&p.env_dir), ["new"]);
        assert_eq!(names(d.path()), ["env", "state"]);
        assert!(!Journal::path(&p.state_dir).exists());
    }

    #[test]
    fn recover_rolls_back_when_only_the_old_tree_is_left() {
        let (d, p) = setup();
        journal(&p, "swapping", false);
        std::fs::rename(&p.env_dir, &p.aside).unwrap();
        std::fs::remove_dir_all(&p.staging).unwrap();
        let r = recover(&p).unwrap();
        assert!(r.rolled_back && !r.completed_swap);
        assert_eq!(settled(&r), (Settled::RolledBack, false));
        assert_eq!(names(&p.env_dir), ["old"]);
        assert_eq!(names(d.path()), ["env", "state"]);
    }

    #[test]
    fn the_inode_tells_whether_an_exchange_happened_before_the_crash() {
        for exchanged in [false, true] {
            let (d, p) = setup();
            journal(&p, "swapping", true);
            if exchanged {
                renameat2(
                    AT_FDCWD,
                    &p.staging,
                    AT_FDCWD,
                    &p.env_dir,
                    RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
            }
            let r = recover(&p).unwrap();
            let want = match exchanged {
                true => ((Settled::Completed, true), "new"),
                false => ((Settled::RolledBack, false), "old"),
            };
            assert_eq!(
                (settled(&r), names(&p.env_dir)),
                (want.0, vec![want.1.to_string()])
            );
            assert_eq!(names(d.path()), ["env", "state"]);
            assert_eq!(
                Journal::path(&p.state_dir).exists(),
                exchanged,
                "kept for the hooks"
            );
        }
    }

    #[test]
    fn a_half_built_tree_is_never_moved_into_a_missing_env_dir() {
        let (d, p) = setup();
        journal(&p, "building", true);
        std::fs::remove_dir_all(&p.env_dir).unwrap();
        let r = recover(&p).unwrap();
        assert_eq!(settled(&r), (Settled::RolledBack, false));
        assert!(!r.completed_swap && !p.env_dir.exists());
        assert_eq!(names(d.path()), ["state"]);
    }

    #[test]
    fn recover_without_a_journal_only_removes_leftovers() {
        let (d, p) = setup();
        std::fs::create_dir_all(format!("{}0badf00d", p.trash_prefix().display())).unwrap();
        let r = recover(&p).unwrap();
        assert_eq!(r.removed.len(), 2);
        assert_eq!(names(&p.env_dir), ["old"]);
        assert_eq!(names(d.path()), ["env", "state"]);
    }
}
