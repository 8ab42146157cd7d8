//! Settling a restore a crash interrupted, at start-up, from the restore journal
//! (`journal.rs`) and what is on disk beside `env_dir` (`swap.rs`):
//!
//! | found at start                              | meaning                         | action            |
//! |---------------------------------------------|---------------------------------|-------------------|
//! | journal `swapping`, no `env_dir`, staging present | crashed between the renames | staging → env_dir |
//! | journal `swapping`, no `env_dir`, only aside | second rename failed, no rollback | aside → env_dir |
//! | journal `preparing`/`building`, or `swapping` and `env_dir` is not the new inode | crashed before the swap | rolled back |
//! | journal `swapped`, or `swapping` and `env_dir` is the new inode | crashed after the swap | completed |
//! | staging, aside or trash left over           | crash before or after the swap  | remove them       |
//!
//! Rolling forward between the renames is right: the staging tree was complete and synced
//! before the journal said `swapping`, and the restore had been asked for. Before `swapping`
//! the staging tree may be half built, so it is never moved into place then.

use std::path::PathBuf;

use serde::Serialize;

use super::error::{CheckpointError, Result};
use super::journal::{Interrupted, Journal, Phase, Settled, TreeId};
use super::swap::{SwapPaths, exists, rename, sync_parent};

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

#[cfg(test)]
mod tests {
    use super::super::swap::tests::{names, setup};
    use super::*;
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

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
