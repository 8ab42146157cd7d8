//! Upkeep around the sync itself: checking the generation survived a storage outage, pruning
//! old generations, the status report, and sealing the WAL at shutdown.

use time::OffsetDateTime;

use super::Shipper;
use super::upload::Pending;
use super::{Checkpoint, checkpoint, read_wal};
use crate::replication::wal::{self, WalPos, WalRead};
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
    pub async fn status(&self, error: Option<&ReplicationError>) -> ReplicationStatus {
        let pos = self.generation.as_ref().map_or(WalPos::START, |g| g.pos);
        let wal_path = self.wal_path.clone();
        let wal_tail = tokio::task::spawn_blocking(move || wal::unread_bytes(&wal_path, &pos))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
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

    /// After a final sync: truncate the WAL and return what the continuity record needs, or
    /// `None` if writes arrived after the sync (the next start then begins a new generation).
    pub async fn seal(&mut self) -> Result<Option<(String, u64, (u64, String))>, ReplicationError> {
        let Some(g) = &self.generation else {
            return Ok(None);
        };
        if !self.queue.is_empty() {
            return Ok(None);
        }
        let (pos, wal_path) = (g.pos, self.wal_path.clone());
        let (db, db_path) = (self.store.db_file().clone(), self.db_path.clone());
        let fingerprint = self
            .store
            .call(move |conn| {
                match read_wal(&wal_path, &pos, 1)? {
                    WalRead::Frames { bytes, .. } if bytes.is_empty() => {}
                    _ => return Ok(None),
                }
                if !checkpoint(conn, Checkpoint::Truncate)? {
                    return Ok(None);
                }
                let fp = files::fingerprint(&db).map_err(|source| ReplicationError::Io {
                    what: "fingerprinting",
                    path: db_path,
                    source,
                })?;
                Ok::<_, ReplicationError>(Some(fp))
            })
            .await?;
        let next_index = if g.pos.header.is_some() {
            g.index + 1
        } else {
            g.index
        };
        Ok(fingerprint.map(|fp| (g.name.clone(), next_index, fp)))
    }
}
