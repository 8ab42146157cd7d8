//! The catalog in storage: listing complete checkpoints (one LIST, ids carry their time),
//! deleting one (manifest first, so it disappears at once), and retention.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CheckpointEngine;
use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::manifest::Manifest;
use super::protocol::PendingMarker;
use crate::config::CheckpointConfig;

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
}
