//! The upload queue: what was read or snapshotted and is waiting for storage, uploaded strictly
//! in order.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;

use super::Shipper;
use crate::replication::{ReplicationError, layout};

/// An item waiting for storage.
pub(super) enum Pending {
    Segment {
        generation: String,
        index: u64,
        offset: u64,
        unix_ms: i64,
        read_at: Instant,
        body: Bytes,
    },
    Snapshot {
        generation: String,
        unix_ms: i64,
        read_at: Instant,
        file: PathBuf,
        size: u64,
    },
}

impl Pending {
    pub(super) fn read_at(&self) -> Instant {
        match self {
            Pending::Segment { read_at, .. } | Pending::Snapshot { read_at, .. } => *read_at,
        }
    }
    pub(super) fn size(&self) -> u64 {
        match self {
            Pending::Segment { body, .. } => body.len() as u64,
            Pending::Snapshot { size, .. } => *size,
        }
    }
}

impl Shipper {
    /// Upload queued items in order, each removed only once stored.
    pub(super) async fn drain(&mut self) -> Result<(), ReplicationError> {
        while let Some(item) = self.queue.front() {
            match item {
                Pending::Segment {
                    generation,
                    index,
                    offset,
                    unix_ms,
                    body,
                    ..
                } => {
                    let key = |e| layout::segment_key(generation, *index, *offset, *unix_ms, e);
                    self.writer.put(key, body.clone()).await?;
                }
                Pending::Snapshot {
                    generation,
                    unix_ms,
                    file,
                    ..
                } => {
                    let key = |e| layout::snapshot_key(generation, *unix_ms, e);
                    self.writer.put_file(key, file).await?;
                    let _ = std::fs::remove_file(file);
                }
            }
            if let Some(done) = self.queue.pop_front() {
                self.synced_through = Some(done.read_at());
            }
        }
        Ok(())
    }

    /// Remove snapshot files that will never be uploaded (at shutdown).
    pub fn discard_queue(&mut self) {
        for item in self.queue.drain(..) {
            if let Pending::Snapshot { file, .. } = item {
                let _ = std::fs::remove_file(file);
            }
        }
    }
}
