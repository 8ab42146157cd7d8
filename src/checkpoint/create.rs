//! Taking a checkpoint: marker → known-chunks check → freeze window (walk + stage changed
//! files) → read and upload new chunks → final GC check → manifest (last) → local index.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::assemble::{Header, build_manifest, new_index, referenced};
use super::error::{CheckpointError, Result};
use super::freeze::{Freezer, frozen};
use super::id::CheckpointId;
use super::local::LocalState;
use super::manifest::Manifest;
use super::protocol::{PendingMarker, list_chunks, wait_gc_idle};
use super::stage::{Plan, plan};
use super::stager::FilePlan;
use super::upload::{FileChunks, Source, ToRead, UploadStats, read_and_upload};
use super::{CheckpointEngine, CheckpointSummary};
use crate::objstore::DynStore;

/// What the caller asks for.
#[derive(Clone, Default)]
pub struct CreateRequest {
    /// Free text shown in listings, e.g. `before-upgrade` (at most 200 characters, no control
    /// characters).
    pub label: Option<String>,
    /// The lease's fencing token, stamped into the manifest.
    pub epoch: Option<u64>,
    /// Stops the writers while changed files are staged; `None` reads the live tree.
    pub freezer: Option<Arc<dyn Freezer>>,
    /// The id to use (so hooks that ran before can be told it); `None`: a new one.
    pub id: Option<CheckpointId>,
    /// Asked right before the manifest is written: the checkpoint is published only while this
    /// node still holds the lease under `epoch`.
    pub fence: Option<crate::lease::Fence>,
}

/// Everything a checkpoint in progress carries between its steps.
struct Run {
    id: CheckpointId,
    started: Instant,
    created_at: OffsetDateTime,
    staging: PathBuf,
    local: LocalState,
    gc_generation: u64,
}

impl CheckpointEngine {
    /// Take a checkpoint of `env_dir`. The checkpoint is visible (listed, restorable) only if
    /// this returns `Ok`.
    pub async fn create(&self, req: CreateRequest) -> Result<CheckpointSummary> {
        check_label(req.label.as_deref())?;
        let _busy = self.busy()?;
        let started = Instant::now();
        let created_at = OffsetDateTime::now_utc();
        let id = req
            .id
            .clone()
            .unwrap_or_else(|| CheckpointId::generate(created_at));
        let state_dir = self.state_dir.clone();
        let local = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&state_dir)
                .map_err(CheckpointError::io_at("create", &state_dir))?;
            Ok::<_, CheckpointError>(LocalState::load(&state_dir))
        })
        .await??;
        let mut run = Run {
            started,
            staging: self.state_dir.join("staging").join(id.as_str()),
            id,
            created_at,
            local,
            gc_generation: 0,
        };
        let marker = self.marker(&run);
        self.store
            .put(&PendingMarker::key(&run.id), marker.to_bytes())
            .await?;
        let mut abandoned = AbandonGuard {
            store: self.store.clone(),
            marker: PendingMarker::key(&run.id),
            staging: run.staging.clone(),
            armed: true,
        };
        let result = self.create_steps(&mut run, &req).await;
        self.finish(&run, result.is_ok()).await;
        abandoned.armed = false;
        let manifest = result?;
        tracing::info!(id = %manifest.id, files = manifest.stats.files, uploaded = manifest.stats.uploaded_bytes, "checkpoint taken");
        let mut summary = manifest.summary();
        summary.duration_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    fn marker(&self, run: &Run) -> PendingMarker {
        PendingMarker {
            id: run.id.clone(),
            instance: run.local.instance.clone(),
            started_at: run.created_at,
        }
    }

    async fn create_steps(&self, run: &mut Run, req: &CreateRequest) -> Result<Manifest> {
        run.gc_generation = self.sync_known(&mut run.local).await?;
        let (plan, freeze_ms) = frozen(req.freezer.as_ref(), self.stage(run, req)).await?;
        let (files, upload) = self.read_changed(run, &plan).await?;
        let header = Header {
            id: run.id.clone(),
            created_at: run.created_at,
            label: req.label.clone(),
            epoch: req.epoch,
        };
        let mut manifest = build_manifest(header, &plan, &files, upload, freeze_ms)?;
        manifest.stats.duration_ms = run.started.elapsed().as_millis() as u64;
        self.final_gc_check(run, &manifest).await?;
        if let Some(fence) = &req.fence {
            fence
                .check_epoch(req.epoch.unwrap_or(0))
                .map_err(|source| CheckpointError::Fenced { source })?;
        }
        let body = serde_json::to_vec(&manifest).map_err(|e| CheckpointError::Task {
            reason: format!("serialising the manifest: {e}"),
        })?;
        self.store
            .put_if_absent(&Manifest::key(&run.id), body.into())
            .await?;
        run.local.files = new_index(&plan, &files);
        run.local.known.extend(referenced(&manifest));
        Ok(manifest)
    }

    /// Make the known-chunks set true for the current GC generation; returns the generation.
    async fn sync_known(&self, local: &mut LocalState) -> Result<u64> {
        let generation =
            wait_gc_idle(&self.store, self.opts.stale_after, self.opts.gc_wait).await?;
        if local.gc_generation != Some(generation) {
            local.known = list_chunks(&self.store).await?;
            local.gc_generation = Some(generation);
        }
        Ok(generation)
    }

    /// The freeze window: walk, plan and copy changed files to staging.
    async fn stage(&self, run: &Run, req: &CreateRequest) -> Result<Plan> {
        let env_dir = self.env_dir.clone();
        let excludes = self.excludes.clone();
        let local = run.local.clone();
        let staging = req.freezer.is_some().then(|| run.staging.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = &staging {
                std::fs::create_dir_all(dir).map_err(CheckpointError::io_at("create", dir))?;
            }
            plan(&env_dir, &excludes, &local, staging.as_deref())
        })
        .await?
    }

    async fn read_changed(
        &self,
        run: &Run,
        plan: &Plan,
    ) -> Result<(HashMap<usize, FileChunks>, UploadStats)> {
        let to_read = sources(plan);
        let small_by_content = run
            .local
            .files
            .values()
            .filter_map(|e| Some((e.content?, e.chunks.first()?.clone())))
            .collect();
        let known = Arc::new(run.local.known.clone());
        let store = self.store.clone();
        read_and_upload(
            store,
            to_read,
            plan.spool.clone(),
            known,
            small_by_content,
            self.opts.concurrency,
        )
        .await
    }

    /// Refresh the marker, then make sure no GC removed what the manifest needs.
    async fn final_gc_check(&self, run: &mut Run, manifest: &Manifest) -> Result<()> {
        let marker = self.marker(run);
        self.store
            .put(&PendingMarker::key(&run.id), marker.to_bytes())
            .await?;
        let generation =
            wait_gc_idle(&self.store, self.opts.stale_after, self.opts.gc_wait).await?;
        if generation == run.gc_generation {
            return Ok(());
        }
        let present = list_chunks(&self.store).await?;
        let missing = referenced(manifest)
            .filter(|h| !present.contains(h))
            .count();
        run.local.known = present;
        run.local.gc_generation = Some(generation);
        if missing > 0 {
            return Err(CheckpointError::ConcurrentGc { missing });
        }
        Ok(())
    }

    /// Remove staging and the marker; save what was learnt about storage.
    async fn finish(&self, run: &Run, ok: bool) {
        if let Err(e) = self.store.delete(&PendingMarker::key(&run.id)).await {
            tracing::warn!(id = %run.id, error = %e, "cannot remove the in-progress marker; GC will treat it as stale later");
        }
        let (staging, state_dir, local) = (
            run.staging.clone(),
            self.state_dir.clone(),
            run.local.clone(),
        );
        let saved = tokio::task::spawn_blocking(move || {
            if staging.exists() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            local.save(&state_dir)
        })
        .await;
        if let Err(e) = saved.map_err(CheckpointError::from).and_then(|r| r) {
            tracing::warn!(error = %e, ok, "cannot save the checkpoint index; the next checkpoint reads everything");
        }
    }
}

/// Where to read each changed file from.
fn sources(plan: &Plan) -> Vec<ToRead> {
    let source = |n: usize, f: &FilePlan| match f {
        FilePlan::Read { source } => Some(Source::File {
            path: source.clone(),
            size: plan.entries[n].stat.size,
        }),
        FilePlan::Spooled { offset, len } => Some(Source::Spool {
            offset: *offset,
            len: *len,
        }),
        FilePlan::Chunked { chunks, size, new } => Some(Source::Chunked {
            chunks: chunks.clone(),
            size: *size,
            new: new.clone(),
        }),
        FilePlan::Reuse(_) | FilePlan::Vanished => None,
    };
    plan.files
        .iter()
        .enumerate()
        .filter_map(|(n, f)| {
            Some(ToRead {
                entry: n,
                source: source(n, f.as_ref()?)?,
            })
        })
        .collect()
}

/// Removes the marker and the staging copies of a checkpoint whose future was dropped midway
/// (a client that went away), so that GC is not held back by a checkpoint nobody runs.
struct AbandonGuard {
    store: DynStore,
    marker: String,
    staging: PathBuf,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.armed {
            return;
        }
        let (store, marker) = (self.store.clone(), std::mem::take(&mut self.marker));
        let staging = std::mem::take(&mut self.staging);
        rt.spawn(async move {
            if let Err(e) = store.delete(&marker).await {
                tracing::warn!(error = %e, "cannot remove the marker of an abandoned checkpoint");
            }
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(staging)).await;
        });
    }
}

fn check_label(label: Option<&str>) -> Result<()> {
    match label {
        Some(l) if l.chars().count() > 200 || l.chars().any(char::is_control) => {
            Err(CheckpointError::InvalidLabel {
                reason: "a label has at most 200 characters and no control characters",
            })
        }
        _ => Ok(()),
    }
}
