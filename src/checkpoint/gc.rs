//! Listing, deleting, retention and garbage collection of chunks, plus start-up recovery.
//!
//! GC follows the protocol in `protocol.rs`: claim `gc/state.json` (generation + 1) with a
//! conditional write, list `checkpoints/`, defer entirely while any live in-progress marker
//! exists, read every manifest (an unreadable one aborts the GC: what it references is
//! unknown), then delete chunks that no manifest references and that are older than
//! `gc_grace`. Packs are deleted only when no file refers to any part of them.

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CheckpointEngine;
use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::local::LocalState;
use super::manifest::{ChunkHash, EntryKind, Manifest};
use super::protocol::{GC_STATE_KEY, GcState, PendingMarker, read_gc_state, unix_now};
use super::swap::{Recovery, SwapPaths, recover};
use crate::config::CheckpointConfig;
use crate::objstore::ObjectMeta;

/// One complete checkpoint in storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub id: CheckpointId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub manifest_bytes: u64,
}

/// Which checkpoints to keep. With neither bound set every checkpoint is kept; the newest is
/// always kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_within: Option<Duration>,
}

impl Retention {
    pub fn from_config(cfg: &CheckpointConfig) -> Self {
        Retention {
            keep_last: cfg.keep_last,
            keep_within: cfg.keep_within.map(|d| d.get()),
        }
    }

    /// The checkpoints of `newest_first` that this policy lets go.
    pub fn expired(
        &self,
        newest_first: &[CheckpointInfo],
        now: OffsetDateTime,
    ) -> Vec<CheckpointId> {
        if self.keep_last.is_none() && self.keep_within.is_none() {
            return Vec::new();
        }
        let keep_last = self.keep_last.unwrap_or(0).max(1) as usize;
        newest_first
            .iter()
            .enumerate()
            .filter(|(rank, c)| {
                let young = self.keep_within.is_some_and(|w| {
                    now - c.created_at < time::Duration::try_from(w).unwrap_or(time::Duration::MAX)
                });
                *rank >= keep_last && !young
            })
            .map(|(_, c)| c.id.clone())
            .collect()
    }
}

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
    /// Every complete checkpoint, newest first (one LIST, no manifest reads).
    pub async fn list(&self) -> Result<Vec<CheckpointInfo>> {
        let mut out: Vec<CheckpointInfo> = self
            .store
            .list("checkpoints/")
            .await?
            .into_iter()
            .filter_map(|m| {
                let id = m
                    .key
                    .strip_prefix("checkpoints/")?
                    .strip_suffix("/manifest.json")?;
                let id = CheckpointId::parse(id).ok()?;
                Some(CheckpointInfo {
                    created_at: id.created_at(),
                    id,
                    manifest_bytes: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    /// The newest complete checkpoint, if any (what `"latest"` means).
    pub async fn latest(&self) -> Result<Option<CheckpointInfo>> {
        Ok(self.list().await?.into_iter().next())
    }

    /// Delete a checkpoint: its manifest first (it disappears at once), then its other objects.
    /// Its chunks go at the next GC.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let id = CheckpointId::parse(id)?;
        let key = Manifest::key(&id);
        if self.store.head(&key).await?.is_none() {
            return Err(CheckpointError::NotFound { id: id.to_string() });
        }
        self.store.delete(&key).await?;
        self.store.delete(&PendingMarker::key(&id)).await?;
        Ok(())
    }

    /// Delete the checkpoints `policy` lets go; returns their ids. Run [`Self::gc`] after.
    pub async fn apply_retention(
        &self,
        policy: &Retention,
        now: OffsetDateTime,
    ) -> Result<Vec<CheckpointId>> {
        let expired = policy.expired(&self.list().await?, now);
        for id in &expired {
            self.delete(id.as_str()).await?;
        }
        Ok(expired)
    }

    /// Delete chunks no manifest references. Safe while checkpoints run anywhere.
    pub async fn gc(&self) -> Result<GcReport> {
        let claimed = self.claim_gc().await?;
        let result = self.gc_claimed().await;
        let release = GcState {
            generation: claimed.generation,
            running_since: None,
        };
        if let Err(e) = self.store.put(GC_STATE_KEY, release.to_bytes()).await {
            tracing::warn!(error = %e, "cannot release gc/state.json; it counts as stale after a while");
        }
        result
    }

    async fn claim_gc(&self) -> Result<GcState> {
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
            Ok(_) => Ok(claimed),
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
