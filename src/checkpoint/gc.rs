//! Garbage collection of chunks, and start-up recovery.
//!
//! GC follows the protocol in `protocol.rs`: claim `gc/state.json` (generation + 1) with a
//! conditional write, list `checkpoints/`, defer entirely while any live in-progress marker
//! exists, read every manifest (an unreadable one aborts the GC: what it references is
//! unknown), then delete chunks that no manifest references and that are older than
//! `gc_grace`. Packs are deleted only when no file refers to any part of them.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::CheckpointEngine;
use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::local::LocalState;
use super::manifest::{ChunkHash, EntryKind, Manifest};
use super::protocol::{GC_STATE_KEY, GcState, PendingMarker, read_gc_state, unix_now};
use super::settle::{Recovery, recover};
use super::swap::SwapPaths;
use crate::objstore::{ETag, ObjectMeta};

/// What a GC run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// A checkpoint in progress made this run delete nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_by: Option<CheckpointId>,
    pub manifests: u64,
    pub chunks_seen: u64,
    pub chunks_deleted: u64,
    pub bytes_deleted: u64,
    pub stale_markers_removed: u64,
}

impl CheckpointEngine {
    /// Delete chunks no manifest references. Safe while checkpoints run anywhere.
    pub async fn gc(&self) -> Result<GcReport> {
        let (claimed, etag) = self.claim_gc().await?;
        let result = self.gc_claimed().await;
        let release = GcState {
            generation: claimed.generation,
            running_since: None,
        };
        // Conditional: if the claim was judged stale and taken over, the newer claim stands.
        let released = self
            .store
            .put_if_match(GC_STATE_KEY, release.to_bytes(), &etag)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "cannot release gc/state.json; it counts as stale after a while");
        }
        result
    }

    async fn claim_gc(&self) -> Result<(GcState, ETag)> {
        let (state, etag) = read_gc_state(&self.store).await?;
        if let Some(since) = state
            .running_since
            .filter(|_| state.is_running(unix_now(), self.opts.stale_after))
        {
            return Err(CheckpointError::GcBusy {
                since: format!("{since} (unix time)"),
            });
        }
        let claimed = GcState {
            generation: state.generation + 1,
            running_since: Some(unix_now()),
        };
        let written = match &etag {
            Some(etag) => {
                self.store
                    .put_if_match(GC_STATE_KEY, claimed.to_bytes(), etag)
                    .await
            }
            None => {
                self.store
                    .put_if_absent(GC_STATE_KEY, claimed.to_bytes())
                    .await
            }
        };
        match written {
            Ok(etag) => Ok((claimed, etag)),
            Err(e) if e.is_precondition_failed() => Err(CheckpointError::GcBusy {
                since: "just now".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn gc_claimed(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let listed = self.store.list("checkpoints/").await?;
        let (manifests, markers): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .partition(|m| m.key.ends_with("/manifest.json"));
        let stale_before = unix_now() - self.opts.stale_after.as_secs() as i64;
        for m in markers.iter().filter(|m| m.key.ends_with("/pending.json")) {
            if m.modified_unix >= stale_before {
                report.deferred_by = marker_id(&m.key);
                tracing::info!(by = ?report.deferred_by, "GC deferred: a checkpoint is in progress");
                return Ok(report);
            }
        }
        for m in &markers {
            self.store.delete(&m.key).await?;
            report.stale_markers_removed += 1;
        }
        let referenced = self.referenced(&manifests).await?;
        report.manifests = manifests.len() as u64;
        self.sweep(&referenced, &mut report).await?;
        Ok(report)
    }

    async fn referenced(&self, manifests: &[ObjectMeta]) -> Result<HashSet<ChunkHash>> {
        let mut all = HashSet::new();
        for meta in manifests {
            let id = marker_id(&meta.key).ok_or_else(|| CheckpointError::Setup {
                reason: format!(
                    "GC stopped: {:?} is not a checkpoint manifest key",
                    meta.key
                ),
            })?;
            let body = match self.store.get(&meta.key).await {
                Ok(obj) => obj.body,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let m =
                Manifest::from_slice(&id, &body).map_err(|reason| CheckpointError::Unreadable {
                    id: format!("{id} (GC stopped, nothing deleted)"),
                    reason,
                })?;
            for e in &m.entries {
                if let EntryKind::File { chunks, .. } = &e.kind {
                    all.extend(chunks.iter().map(|c| c.hash));
                }
            }
        }
        Ok(all)
    }

    async fn sweep(&self, referenced: &HashSet<ChunkHash>, report: &mut GcReport) -> Result<()> {
        let chunks = self.store.list("chunks/").await?;
        report.chunks_seen = chunks.len() as u64;
        let young = unix_now() - self.opts.gc_grace.as_secs() as i64;
        let doomed: Vec<ObjectMeta> = chunks
            .into_iter()
            .filter(|c| {
                let hash = c.key.strip_prefix("chunks/").and_then(ChunkHash::from_hex);
                hash.is_some_and(|h| !referenced.contains(&h)) && c.modified_unix <= young
            })
            .collect();
        report.chunks_deleted = doomed.len() as u64;
        report.bytes_deleted = doomed.iter().map(|c| c.size).sum();
        futures::stream::iter(doomed)
            .map(|c| async move { self.store.delete(&c.key).await })
            .buffer_unordered(self.opts.concurrency)
            .try_collect::<()>()
            .await?;
        Ok(())
    }

    /// Call once at start, before any checkpoint or restore: finish or undo an interrupted
    /// restore swap, remove leftover staging, and remove this node's in-progress markers left
    /// by a crash (so GC is not held back until they go stale).
    pub async fn recover(&self) -> Result<Recovery> {
        let _busy = self.busy()?;
        let (paths, state_dir) = (
            SwapPaths::new(&self.env_dir, &self.state_dir),
            self.state_dir.clone(),
        );
        let (mut recovery, instance) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&state_dir)
                .map_err(CheckpointError::io_at("create", &state_dir))?;
            let staging = state_dir.join("staging");
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .map_err(CheckpointError::io_at("remove", &staging))?;
            }
            let local = LocalState::load(&state_dir);
            if !LocalState::path(&state_dir).exists() {
                local.save(&state_dir)?;
            }
            Ok::<_, CheckpointError>((recover(&paths)?, local.instance))
        })
        .await??;
        for meta in self.store.list("checkpoints/").await? {
            if !meta.key.ends_with("/pending.json") {
                continue;
            }
            let Ok(obj) = self.store.get(&meta.key).await else {
                continue;
            };
            let mine = serde_json::from_slice::<PendingMarker>(&obj.body)
                .is_ok_and(|p| p.instance == instance);
            if mine {
                self.store.delete(&meta.key).await?;
                recovery.markers_removed += 1;
            }
        }
        Ok(recovery)
    }
}

/// The id in `checkpoints/<id>/<file>`.
fn marker_id(key: &str) -> Option<CheckpointId> {
    let rest = key.strip_prefix("checkpoints/")?;
    CheckpointId::parse(rest.split('/').next()?).ok()
}
