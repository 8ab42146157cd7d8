//! The storage-side protocol that lets garbage collection run while checkpoints are taken, on
//! this node or another one sharing the prefix. Two kinds of objects take part:
//!
//! - `checkpoints/<id>/pending.json`: written when a checkpoint starts (and rewritten just
//!   before its final check), deleted when it ends. A live marker makes GC delete nothing.
//! - `gc/state.json`: `{generation, running_since}`. GC takes it with a conditional write
//!   (generation + 1, running) *before* it lists anything, and releases it when done.
//!
//! The argument, with strongly consistent storage (S3, the local backend): a checkpoint writes
//! its marker, then reads the GC state. Either the read shows a GC that started earlier — the
//! checkpoint waits for it to end and re-lists `chunks/` once, so its known-chunks set is true
//! again — or any later GC lists `checkpoints/` after the marker exists and defers. Before the
//! manifest is written the marker is refreshed and the GC state read again; if a GC ran in
//! between (possible only if it judged the marker stale) the chunks are re-listed and the
//! checkpoint fails with `ConcurrentGc` rather than publish a manifest with holes.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{CheckpointError, Result};
use super::id::CheckpointId;
use super::manifest::ChunkHash;
use crate::objstore::{DynStore, ETag};
use crate::retry::Backoff;

pub const GC_STATE_KEY: &str = "gc/state.json";

/// Pauses between looks at a running GC.
const GC_POLL: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// The shared GC state object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcState {
    pub generation: u64,
    /// Unix seconds when the running GC started; `None` when no GC runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<i64>,
}

impl GcState {
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("GcState serialises"))
    }

    /// True if a GC runs and has not been running so long that it must have died.
    pub fn is_running(&self, now: i64, stale_after: Duration) -> bool {
        self.running_since
            .is_some_and(|s| now - s < stale_after.as_secs() as i64)
    }
}

/// Read the GC state and its version (`None` if there is no state object yet).
pub async fn read_gc_state(store: &DynStore) -> Result<(GcState, Option<ETag>)> {
    match store.get(GC_STATE_KEY).await {
        Ok(obj) => {
            let state = serde_json::from_slice(&obj.body).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "gc/state.json is unreadable; treating it as idle");
                GcState::default()
            });
            Ok((state, Some(obj.etag)))
        }
        Err(e) if e.is_not_found() => Ok((GcState::default(), None)),
        Err(e) => Err(e.into()),
    }
}

/// Wait until no GC runs (or the running one is stale); returns the generation then.
pub async fn wait_gc_idle(store: &DynStore, stale_after: Duration, max: Duration) -> Result<u64> {
    let start = tokio::time::Instant::now();
    let mut pauses = GC_POLL.delays();
    loop {
        let (state, _) = read_gc_state(store).await?;
        if !state.is_running(unix_now(), stale_after) {
            return Ok(state.generation);
        }
        if start.elapsed() >= max {
            return Err(CheckpointError::GcWaitTimeout {
                waited_s: max.as_secs(),
            });
        }
        tokio::time::sleep(pauses.next_delay()).await;
    }
}

/// Every chunk in storage, with one LIST (paged by the backend) rather than a HEAD per chunk.
pub async fn list_chunks(store: &DynStore) -> Result<HashSet<ChunkHash>> {
    let listed = store.list("chunks/").await?;
    Ok(listed
        .iter()
        .filter_map(|m| m.key.strip_prefix("chunks/").and_then(ChunkHash::from_hex))
        .collect())
}

/// The in-progress marker of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingMarker {
    pub id: CheckpointId,
    /// The local instance that writes it (see `local.rs`).
    pub instance: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

impl PendingMarker {
    pub fn key(id: &CheckpointId) -> String {
        format!("checkpoints/{id}/pending.json")
    }
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("marker serialises"))
    }
}

pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
