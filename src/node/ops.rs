//! What operators ask of the environment: checkpoint, list/inspect/delete checkpoints, release
//! and acquire the lease (restore is in `restore.rs`). Each runs under the node's operation lock.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

use super::catalog::entry_of;
use super::{Node, NodeError, OperationKind, freezer::SupervisorFreezer, owner};
use crate::checkpoint::{CheckpointId, CheckpointSummary, CreateRequest, Manifest, Retention};
use crate::config::ProcessSpec;
use crate::lease::{LeaseError, Tenure};
use crate::store::CatalogEntry;

/// Longest a checkpoint or restore hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// The body of `POST /restore`'s 200.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RestoreReport {
    pub restored: String,
    pub undo_checkpoint: String,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// The body of `POST /release-lease`'s 200.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReleaseReport {
    pub released_epoch: u64,
    pub final_checkpoint: Option<CheckpointSummary>,
    /// Milliseconds of each step: stop, checkpoint, flush, release.
    pub timings: super::Timings,
}

impl Node {
    /// Take a checkpoint of env_dir: hooks first, then the engine, then the catalog.
    pub async fn checkpoint(&self, label: Option<String>) -> Result<CheckpointSummary, NodeError> {
        let epoch = self.require_owner()?;
        let _op = self.begin(OperationKind::Checkpoint)?;
        let summary = self.checkpoint_locked(label, epoch, true).await?;
        self.after_checkpoint().await;
        Ok(summary)
    }

    pub(super) async fn checkpoint_locked(
        &self,
        label: Option<String>,
        epoch: u64,
        freeze: bool,
    ) -> Result<CheckpointSummary, NodeError> {
        let id = CheckpointId::generate(time::OffsetDateTime::now_utc());
        self.run_hooks("checkpoint", id.as_str(), |s| s.checkpoint_command.as_ref())
            .await?;
        let freezer = (freeze && self.config().checkpoint.freeze).then(|| {
            Arc::new(SupervisorFreezer::new(self.supervisor.clone()))
                as Arc<dyn crate::checkpoint::Freezer>
        });
        let req = CreateRequest {
            label,
            epoch: Some(epoch),
            freezer,
            id: Some(id),
            fence: Some(self.lease.fence()),
        };
        let summary = self.engine.create(req).await?;
        if let Some(store) = self.store().await {
            store
                .catalog_insert(CatalogEntry {
                    summary: summary.clone(),
                    epoch: Some(epoch),
                })
                .await?;
        }
        self.set_status(|s| s.last_checkpoint = Some(summary.clone()));
        Ok(summary)
    }

    /// Retention and garbage collection after a checkpoint, in the background.
    async fn after_checkpoint(&self) {
        let retention = Retention::from_config(&self.config().checkpoint);
        if retention == Retention::default() {
            return;
        }
        let (engine, store) = (self.engine.clone(), self.store().await);
        tokio::spawn(async move {
            match engine
                .apply_retention(&retention, time::OffsetDateTime::now_utc())
                .await
            {
                Ok(deleted) => {
                    if let Some(store) = &store {
                        for id in &deleted {
                            let _ = store.catalog_delete(id.as_str()).await;
                        }
                    }
                    if !deleted.is_empty()
                        && let Err(e) = engine.gc().await
                    {
                        tracing::warn!("checkpoint garbage collection: {e}");
                    }
                }
                Err(e) => tracing::warn!("checkpoint retention: {e}"),
            }
        });
    }

    /// Checkpoints, newest first (from the catalog while the database is open here, else from
    /// storage).
    pub async fn checkpoints(&self, limit: u32) -> Result<Vec<CatalogEntry>, NodeError> {
        if let Some(store) = self.store().await {
            return Ok(store.catalog_list(limit).await?);
        }
        let mut out = Vec::new();
        for info in self.engine.list().await?.into_iter().take(limit as usize) {
            let manifest = self.engine.load_manifest(info.id.as_str()).await?;
            out.push(entry_of(&manifest));
        }
        Ok(out)
    }

    /// One checkpoint; `NotFound` when storage has no such checkpoint.
    pub async fn checkpoint_info(&self, id: &str) -> Result<CatalogEntry, NodeError> {
        if let Some(store) = self.store().await
            && let Some(e) = store.catalog_get(id).await?
        {
            return Ok(e);
        }
        Ok(entry_of(&self.engine.load_manifest(id).await?))
    }

    pub async fn delete_checkpoint(&self, id: &str) -> Result<(), NodeError> {
        self.require_owner()?;
        let _op = self.begin(OperationKind::CheckpointDeletion)?;
        self.engine.delete(id).await?;
        if let Some(store) = self.store().await {
            store.catalog_delete(id).await?;
        }
        Ok(())
    }

    pub(super) async fn resolve(&self, which: &str) -> Result<Manifest, NodeError> {
        if which == "latest" {
            let latest = self.engine.latest().await?.ok_or(NodeError::NoCheckpoint)?;
            return Ok(self.engine.load_manifest(latest.id.as_str()).await?);
        }
        Ok(self.engine.load_manifest(which).await?)
    }

    /// Hand the environment over: stop the stacks, take a final checkpoint (unless asked not
    /// to), flush replication, close the database, release the lease. The node stays standby
    /// until `POST /acquire-lease`.
    pub async fn release(&self, final_checkpoint: bool) -> Result<ReleaseReport, NodeError> {
        let epoch = self.require_owner()?;
        let _op = self.begin(OperationKind::Release)?;
        let mut timings = super::Timings::start();
        self.supervisor.stop_all().await?;
        timings.lap("stop");
        let checkpoint = match final_checkpoint {
            true => Some(
                self.checkpoint_locked(Some("final before release".into()), epoch, false)
                    .await?,
            ),
            false => None,
        };
        timings.lap("checkpoint");
        if let Some(db) = self.db.read().await.as_ref()
            && let Some(r) = &db.replicator
        {
            self.persist.flush().await;
            r.sync_now().await?;
        }
        owner::close_db(self).await;
        timings.lap("flush");
        self.set_status(|s| s.up = false);
        let outcome = self.lease.release().await?;
        timings.lap("release");
        tracing::info!(
            epoch = outcome.released_epoch,
            ?timings,
            "released the lease"
        );
        Ok(ReleaseReport {
            released_epoch: outcome.released_epoch,
            final_checkpoint: checkpoint,
            timings,
        })
    }

    /// Take the lease (after a release, or as a standby without `auto_acquire`).
    pub async fn acquire(&self) -> Result<Tenure, LeaseError> {
        self.lease.acquire().await
    }

    /// Run the `checkpoint` or `restore` hook of every process that has one, with
    /// `CHECKPOINT_ID` set. A failure (or timeout) fails the operation with the hook's output.
    pub(super) async fn run_hooks(
        &self,
        what: &str,
        id: &str,
        command: impl Fn(&ProcessSpec) -> Option<&Vec<String>>,
    ) -> Result<(), NodeError> {
        for spec in &self.current_specs() {
            let Some(argv) = command(spec) else { continue };
            let opts = crate::proc::RunOptions {
                env: vec![
                    ("CHECKPOINT_ID".into(), id.into()),
                    ("STATE_MANAGER_PROCESS".into(), spec.name.clone()),
                ],
                cwd: spec.cwd.clone(),
                stdin: None,
                timeout: HOOK_TIMEOUT,
            };
            let fail = |detail: String| {
                NodeError::Hook(format!("the {what} hook of {} failed: {detail}", spec.name))
            };
            let out = crate::proc::run(argv, opts)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !out.status.success() {
                let output = format!("{}{}", out.stdout, out.stderr);
                return Err(fail(format!("{}; output: {}", out.status, output.trim())));
            }
        }
        Ok(())
    }
}

/// Take a checkpoint every `every` while this node owns the environment.
pub(super) async fn scheduled(node: Weak<Node>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { break };
        if !node.is_up() {
            continue;
        }
        match node.checkpoint(Some("scheduled".into())).await {
            Ok(s) => tracing::info!(id = %s.id, "scheduled checkpoint taken"),
            Err(NodeError::Busy { .. } | NodeError::NotOwner { .. }) => {}
            Err(e) => {
                tracing::warn!("scheduled checkpoint failed: {e}");
                node.set_status(|s| s.last_error = Some(format!("scheduled checkpoint: {e}")));
            }
        }
    }
}
