//! One sync of the state database to storage: upload what is queued, start a generation when
//! due, then read committed WAL frames on the writer thread and upload them, checkpointing when
//! the WAL is large and everything older is already stored.
//!
//! Invariant: items leave the queue in order and only after their upload succeeded, so storage
//! always holds a prefix of the history (snapshot first, then segments without gaps).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;
use time::OffsetDateTime;

use super::fence::FencedWriter;
use super::wal::{self, WalPos, WalRead};
use super::{ReplicationError, files, layout, segment};
use crate::store::Store;

mod maintenance;
mod upload;

use upload::Pending;

/// The most WAL bytes read into one segment (whole transactions may exceed it).
const SEGMENT_CAP: u64 = 16 << 20;
/// Checkpoint once the WAL holds this much and all of it is shipped (SQLite's default is
/// 1000 pages, about the same).
const CHECKPOINT_AT: u64 = 4 << 20;

/// Where the previous run left the stored generation (from a clean shutdown's record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub generation: String,
    pub next_index: u64,
}

/// The generation being written and the read position in its current WAL cycle.
struct GenState {
    name: String,
    started: Instant,
    /// WAL cycle number within the generation (the WAL is reset between cycles).
    index: u64,
    pos: WalPos,
}

/// The replication state machine, driven by the task in `task.rs`.
pub(super) struct Shipper {
    pub store: Store,
    pub writer: FencedWriter,
    pub snapshot_interval: Duration,
    pub retention: Duration,
    db_path: PathBuf,
    wal_path: PathBuf,
    generation: Option<GenState>,
    queue: VecDeque<Pending>,
    rotate_requested: bool,
    prune_due: bool,
    /// Set by a failed sync: storage may have lost data meanwhile (an S3 server replaced by an
    /// empty one), so check the generation still has its snapshot before adding to it.
    verify_due: bool,
    synced_through: Option<Instant>,
    last_sync_at: Option<OffsetDateTime>,
    started: Instant,
}

impl Shipper {
    pub fn new(
        store: Store,
        writer: FencedWriter,
        cfg: &crate::config::ReplicationConfig,
        continuation: Option<Continuation>,
    ) -> Shipper {
        let db_path = store.path().to_path_buf();
        let generation = continuation.map(|c| GenState {
            name: c.generation,
            started: Instant::now(),
            index: c.next_index,
            pos: WalPos::START,
        });
        Shipper {
            wal_path: files::companion(&db_path, "-wal"),
            db_path,
            store,
            writer,
            snapshot_interval: cfg.snapshot_interval.get(),
            retention: cfg.retention.get(),
            generation,
            queue: VecDeque::new(),
            rotate_requested: false,
            prune_due: true,
            verify_due: false,
            synced_through: None,
            last_sync_at: None,
            started: Instant::now(),
        }
    }

    /// One full sync. Stops at the first failure; what is queued stays queued.
    pub async fn sync_once(&mut self) -> Result<(), ReplicationError> {
        let result = self.sync_inner().await;
        if result.is_err() {
            self.verify_due = true;
        }
        result
    }

    async fn sync_inner(&mut self) -> Result<(), ReplicationError> {
        if self.verify_due {
            self.verify_generation().await?;
        }
        self.drain().await?;
        if self.rotation_due() {
            self.rotate().await?;
            self.drain().await?;
        }
        if self.prune_due {
            self.prune().await;
        }
        loop {
            let more = self.read_step().await?;
            self.drain().await?;
            if self.rotate_requested {
                self.rotate().await?;
                self.drain().await?;
            }
            if !more {
                break;
            }
        }
        self.last_sync_at = Some(OffsetDateTime::now_utc());
        Ok(())
    }

    fn rotation_due(&self) -> bool {
        match &self.generation {
            None => true,
            Some(g) => self.rotate_requested || g.started.elapsed() >= self.snapshot_interval,
        }
    }

    /// Read the next committed frames into the queue. Returns whether more are waiting.
    async fn read_step(&mut self) -> Result<bool, ReplicationError> {
        let Some(generation) = &self.generation else {
            return Ok(false);
        };
        let (pos, wal_path) = (generation.pos, self.wal_path.clone());
        let may_checkpoint = self.queue.is_empty();
        let (read, read_at, reset) = self
            .store
            .call(move |conn| {
                let read_at = Instant::now();
                let read = read_wal(&wal_path, &pos, SEGMENT_CAP)?;
                let reset = match &read {
                    WalRead::Frames {
                        next, more: false, ..
                    } if may_checkpoint && next.offset >= CHECKPOINT_AT => checkpoint(conn)?,
                    _ => false,
                };
                Ok::<_, ReplicationError>((read, read_at, reset))
            })
            .await?;
        let (start, seed, bytes, next, more) = match read {
            WalRead::Discontinuity(why) => {
                tracing::warn!(
                    reason = why,
                    "WAL continuity lost; starting a new generation"
                );
                self.rotate_requested = true;
                return Ok(false);
            }
            WalRead::Frames {
                start,
                seed,
                bytes,
                next,
                more,
            } => (start, seed, bytes, next, more),
        };
        let generation = self.generation.as_mut().expect("checked above");
        if let (false, Some(header)) = (bytes.is_empty(), next.header) {
            let body = compress_segment(header, seed, bytes).await?;
            self.queue.push_back(Pending::Segment {
                generation: generation.name.clone(),
                index: generation.index,
                offset: start,
                unix_ms: layout::unix_ms(OffsetDateTime::now_utc()),
                read_at,
                body,
            });
        } else if self.queue.is_empty() {
            self.synced_through = Some(read_at);
        }
        generation.pos = next;
        if reset {
            generation.index += 1;
            generation.pos = WalPos::START;
        }
        Ok(more)
    }

    /// End the current generation (shipping its last frames) and start a new one from a
    /// snapshot of the database file taken right after a TRUNCATE checkpoint.
    async fn rotate(&mut self) -> Result<(), ReplicationError> {
        let old = match (&self.generation, self.rotate_requested) {
            (Some(g), false) => Some((g.name.clone(), g.index, g.pos)),
            _ => None,
        };
        let (wal_path, tail_pos) = (self.wal_path.clone(), old.as_ref().map(|o| o.2));
        let (tail, read_at) = self
            .store
            .call(move |conn| {
                let read_at = Instant::now();
                let tail = match tail_pos {
                    Some(pos) => Some(read_wal(&wal_path, &pos, u64::MAX)?),
                    None => None,
                };
                if !checkpoint(conn)? {
                    return Err(ReplicationError::CheckpointBusy);
                }
                Ok((tail, read_at))
            })
            .await?;
        if let (
            Some((name, index, _)),
            Some(WalRead::Frames {
                start,
                seed,
                bytes,
                next,
                ..
            }),
        ) = (old, tail)
            && let (false, Some(header)) = (bytes.is_empty(), next.header)
        {
            let body = compress_segment(header, seed, bytes).await?;
            self.queue.push_back(Pending::Segment {
                generation: name,
                index,
                offset: start,
                unix_ms: layout::unix_ms(OffsetDateTime::now_utc()),
                read_at,
                body,
            });
        }
        self.start_generation(read_at).await
    }

    /// Snapshot the (just checkpointed) database file into the queue as a new generation. The
    /// file cannot change meanwhile: only this task checkpoints, and it is busy here.
    async fn start_generation(&mut self, read_at: Instant) -> Result<(), ReplicationError> {
        let now = OffsetDateTime::now_utc();
        let name = layout::generation_name(now);
        let file = files::companion(&self.db_path, &format!("-snapshot-{name}.zst"));
        let (db, out) = (self.store.db_file().clone(), file.clone());
        let size = tokio::task::spawn_blocking(move || files::compress_file(&db, &out))
            .await
            .map_err(|_| ReplicationError::Stopped)?
            .map_err(|source| ReplicationError::Io {
                what: "snapshotting",
                path: self.db_path.clone(),
                source,
            })?;
        tracing::info!(generation = %name, compressed_bytes = size, "new replication generation");
        self.queue.push_back(Pending::Snapshot {
            generation: name.clone(),
            unix_ms: layout::unix_ms(now),
            read_at,
            file,
            size,
        });
        self.generation = Some(GenState {
            name,
            started: Instant::now(),
            index: 0,
            pos: WalPos::START,
        });
        self.rotate_requested = false;
        self.prune_due = true;
        Ok(())
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
                if !checkpoint(conn)? {
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

fn read_wal(path: &std::path::Path, pos: &WalPos, cap: u64) -> Result<WalRead, ReplicationError> {
    wal::read_committed(path, pos, cap).map_err(|source| ReplicationError::Wal {
        path: path.to_path_buf(),
        source,
    })
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: true when the WAL was fully checkpointed and emptied.
fn checkpoint(conn: &mut Connection) -> Result<bool, ReplicationError> {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(crate::store::StoreError::from)?;
    Ok(busy == 0)
}

async fn compress_segment(
    header: wal::WalHeader,
    seed: [u32; 2],
    frames: Vec<u8>,
) -> Result<Bytes, ReplicationError> {
    tokio::task::spawn_blocking(move || segment::encode(&header, seed, &frames))
        .await
        .map_err(|_| ReplicationError::Stopped)?
        .map(Bytes::from)
        .map_err(|source| ReplicationError::Io {
            what: "compressing a WAL segment of",
            path: PathBuf::from("memory"),
            source,
        })
}
