//! Upkeep around the sync itself: checking the generation survived a storage outage, pruning
//! old generations, and the status report.

use time::OffsetDateTime;

use super::Shipper;
use super::upload::Pending;
use crate::replication::{ReplicationError, ReplicationStatus, files, layout};

impl Shipper {
    /// After failures: if the current generation's snapshot is gone from storage (and not
    /// waiting in the queue), drop the queue and start a new generation. Everything dropped is
    /// still in the WAL or the database file, so the new snapshot holds it.
    pub(super) async fn verify_generation(&mut self) -> Result<(), ReplicationError> {
        if let Some(g) = &self.generation {
            let queued = self.queue.iter().any(
                |p| matches!(p, Pending::Snapshot { generation, .. } if *generation == g.name),
            );
            let prefix = format!("{}{}/snapshot-", layout::ROOT, g.name);
            if !queued && self.writer.objects.list(&prefix).await?.is_empty() {
                tracing::warn!(generation = %g.name,
                    "the generation vanished from storage; starting a new one");
                self.discard_queue();
                self.rotate_requested = true;
            }
        }
        self.verify_due = false;
        Ok(())
    }

    /// Delete generations that ended (the next one started) longer than `retention` ago.
    /// Failures are logged and retried at the next sync.
    pub(super) async fn prune(&mut self) {
        match self.try_prune().await {
            Ok(deleted) => {
                self.prune_due = false;
                if deleted > 0 {
                    tracing::info!(generations = deleted, "pruned old replication generations");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning old generations failed; will retry"),
        }
    }

    async fn try_prune(&mut self) -> Result<usize, ReplicationError> {
        let listing = self.writer.objects.list(layout::ROOT).await?;
        let generations = layout::generations(&listing);
        let cutoff = layout::unix_ms(OffsetDateTime::now_utc()) - self.retention.as_millis() as i64;
        let current = self.generation.as_ref().map(|g| g.name.as_str());
        let mut deleted = 0;
        for pair in generations.windows(2) {
            let (old, next) = (&pair[0], &pair[1]);
            if Some(old.name.as_str()) == current || next.start_ms > cutoff {
                continue;
            }
            // The snapshot goes first: a generation without one is never restored.
            if let Some(s) = &old.snapshot {
                self.writer.delete(&s.key).await?;
            }
            for key in &old.keys {
                self.writer.delete(key).await?;
            }
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The status after a sync attempt.
    pub fn status(&self, error: Option<&ReplicationError>) -> ReplicationStatus {
        let wal_tail = match &self.generation {
            Some(g) => files::len_or_zero(&self.wal_path).saturating_sub(g.pos.offset),
            None => files::len_or_zero(&self.wal_path),
        };
        let pending_bytes = wal_tail + self.queue.iter().map(Pending::size).sum::<u64>();
        let lag_ms = if pending_bytes == 0 {
            0
        } else {
            self.synced_through
                .unwrap_or(self.started)
                .elapsed()
                .as_millis() as u64
        };
        ReplicationStatus {
            generation: self.generation.as_ref().map(|g| g.name.clone()),
            last_sync_at: self.last_sync_at,
            lag_ms,
            pending_bytes,
            last_error: error.map(|e| e.to_string()),
            synced_through: self.synced_through,
        }
    }
}
