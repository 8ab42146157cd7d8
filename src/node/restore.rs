//! `POST /restore` at the node level, and how its outcome is told: `last_restore` in `GET /`
//! and one event (process [`ENVIRONMENT`]) in `GET /events`, for a restore that ran to its end
//! or failed, and for one a crash interrupted, settled at the next start.
//!
//! Order: validate (touches nothing) → journal `preparing` → undo checkpoint → stop → restore
//! (journal `building`, `swapping`, `swapped`; see `checkpoint/journal.rs`) → restore hooks →
//! start → journal removed. After a crash the next bring-up settles the journal before any
//! process starts: before the swap `env_dir` is the old tree (rolled back); after it, the
//! restored one, and the restore hooks run again (at least once) before the processes start.

use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Node, NodeError, OperationKind};
use crate::checkpoint::{CheckpointId, Interrupted, Manifest, PhaseName, Settled};
use crate::events::{Event, StateName};
use crate::feed::FeedEvent;
use crate::store::Store;

use super::ops::RestoreReport;

/// The `process` of the events about the environment as a whole (a restore's outcome, the
/// fence firing). No process can have this name: process names start with a letter or a digit.
pub const ENVIRONMENT: &str = "_environment";

/// An event of [`ENVIRONMENT`] at `at` that says `reason` (a restore's outcome, the fence
/// firing): no process changes state in it.
pub(super) fn environment_event(at: OffsetDateTime, reason: String) -> FeedEvent {
    FeedEvent::Process(Event {
        at,
        process: ENVIRONMENT.into(),
        from: StateName::Stopped,
        to: StateName::Stopped,
        pid: None,
        exit: None,
        reason: Some(reason),
        change: None,
    })
}

/// How a restore ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// `env_dir` holds the checkpoint's tree, the restore hooks ran, the processes started.
    Completed,
    /// It failed before the swap: `env_dir` is as it was; `detail` says why.
    Failed,
    /// `env_dir` holds the checkpoint's tree, but a restore hook or the start of the processes
    /// failed; `detail` says which.
    FailedAfterSwap,
    /// A crash interrupted it before the swap; at the next start `env_dir` was found whole as
    /// it was before the restore, which did not happen.
    InterruptedRolledBack,
    /// A crash interrupted it after the swap; at the next start `env_dir` was found holding the
    /// restored tree, and the rest (the restore hooks) was done before any process started.
    InterruptedCompleted,
}

/// The last restore on this node, as `GET /` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LastRestore {
    pub checkpoint: CheckpointId,
    pub outcome: RestoreOutcome,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended, or (interrupted) when it was settled at start-up.
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// Where a crash interrupted it; `null` unless it was interrupted.
    pub interrupted_in: Option<PhaseName>,
    /// What happened and what `env_dir` holds, in words.
    pub detail: String,
}

/// Why a restore failed, and whether `env_dir` already held the new tree.
struct Failure {
    error: NodeError,
    swapped: bool,
}

impl Node {
    /// Restore env_dir to checkpoint `which` (an id or `latest`). Validation comes first and
    /// touches nothing; then an undo checkpoint, stop, restore, hooks, start.
    pub async fn restore(&self, which: &str) -> Result<RestoreReport, NodeError> {
        let epoch = self.require_owner()?;
        let manifest = self.resolve(which).await?;
        let _op = self.begin(OperationKind::Restore)?;
        let started_at = OffsetDateTime::now_utc();
        self.engine.begin_restore(&manifest.id).await?;
        let result = self.restore_locked(&manifest, epoch).await;
        let (outcome, detail) = match &result {
            Ok(r) => (
                RestoreOutcome::Completed,
                format!(
                    "env_dir holds checkpoint {} ({} files); undo checkpoint {}",
                    r.restored, r.files, r.undo_checkpoint
                ),
            ),
            Err(f) if f.swapped => (
                RestoreOutcome::FailedAfterSwap,
                format!("env_dir holds checkpoint {}, but {}", manifest.id, f.error),
            ),
            Err(f) => (
                RestoreOutcome::Failed,
                format!("env_dir is unchanged: {}", f.error),
            ),
        };
        let last = LastRestore {
            checkpoint: manifest.id.clone(),
            outcome,
            started_at,
            ended_at: OffsetDateTime::now_utc(),
            interrupted_in: None,
            detail,
        };
        // Told before the journal goes: a crash in between is settled again at the next start,
        // never lost.
        self.tell_restore(self.store().await.as_ref(), last).await;
        if let Err(e) = self.engine.end_restore().await {
            tracing::warn!("cannot remove the restore journal: {e}");
        }
        result.map_err(|f| f.error)
    }

    async fn restore_locked(&self, m: &Manifest, epoch: u64) -> Result<RestoreReport, Failure> {
        let before = |error: NodeError| Failure {
            error,
            swapped: false,
        };
        let after = |error: NodeError| Failure {
            error,
            swapped: true,
        };
        let started = Instant::now();
        let label = format!("undo before restore of {}", m.id);
        let undo = self
            .checkpoint_locked(Some(label), epoch, true)
            .await
            .map_err(before)?;
        self.supervisor
            .stop_all()
            .await
            .map_err(|e| before(e.into()))?;
        let restored = match self.engine.restore_before_hooks(m).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    "restore of {} failed, env_dir unchanged; starting the stacks again: {e}",
                    m.id
                );
                self.start_stacks().await.map_err(before)?;
                return Err(before(e.into()));
            }
        };
        let hooks = self.restore_hooks(&m.id).await;
        self.start_stacks().await.map_err(after)?;
        hooks.map_err(after)?;
        Ok(RestoreReport {
            restored: restored.restored.to_string(),
            undo_checkpoint: undo.id.to_string(),
            files: restored.files,
            bytes: restored.bytes,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn restore_hooks(&self, id: &CheckpointId) -> Result<(), NodeError> {
        self.run_hooks("restore", id.as_str(), |s| s.restore_command.as_ref())
            .await
    }

    /// At bring-up, before any process starts: finish a restore a crash interrupted (its
    /// restore hooks, if it had got past the swap) and tell how it was settled.
    pub(super) async fn settle_interrupted_restore(&self, i: Interrupted, store: &Store) {
        let mut detail = format!(
            "interrupted by a crash while {}; at start-up env_dir was found holding ",
            i.phase.doing()
        );
        let outcome = match i.settled {
            Settled::RolledBack => {
                detail.push_str("the tree from before the restore: rolled back");
                RestoreOutcome::InterruptedRolledBack
            }
            Settled::Completed => {
                detail.push_str("the restored tree: completed");
                RestoreOutcome::InterruptedCompleted
            }
        };
        if i.hooks_pending {
            match self.restore_hooks(&i.checkpoint).await {
                Ok(()) => detail.push_str(", the restore hooks ran again"),
                Err(e) => detail.push_str(&format!(", but running the restore hooks again: {e}")),
            }
        }
        let hooks_pending = i.hooks_pending;
        let last = LastRestore {
            checkpoint: i.checkpoint,
            outcome,
            started_at: i.started_at,
            ended_at: OffsetDateTime::now_utc(),
            interrupted_in: Some(i.phase),
            detail,
        };
        self.tell_restore(Some(store), last).await;
        if hooks_pending && let Err(e) = self.engine.end_restore().await {
            tracing::warn!("cannot remove the restore journal: {e}");
        }
    }

    /// Log `last`, show it in `GET /` and record it as an event of [`ENVIRONMENT`].
    async fn tell_restore(&self, store: Option<&Store>, last: LastRestore) {
        let reason = format!("restore of checkpoint {}: {}", last.checkpoint, last.detail);
        match last.outcome {
            RestoreOutcome::Completed => tracing::info!("{reason}"),
            _ => tracing::warn!("{reason}"),
        }
        let event = environment_event(last.ended_at, reason);
        if let Some(store) = store
            && let Err(e) = store.insert_events(std::slice::from_ref(&event)).await
        {
            tracing::warn!("cannot record the restore's outcome as an event: {e}");
        }
        self.feed.publish_live(event);
        self.set_status(|s| s.last_restore = Some(last));
    }
}
