//! One sync of the state database to storage: upload what is queued, start a generation when
//! due, then read committed WAL frames (beside the writer, which goes on committing) and upload
//! them; when the WAL is large and all of it is stored, read what came meanwhile and reset the
//! WAL in one call on the writer thread.
//!
//! Invariant: items leave the queue in order and only after their upload succeeded, so storage
//! always holds a prefix of the history (snapshot first, then segments without gaps).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;
use time::OffsetDateTime;

use super::wal::{self, WalPos, WalRead};
use super::writer::FencedWriter;
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

/// When frames were read: the instant (for "synced through": every commit acknowledged before it
/// is in the read) and the wall clock (named in the segment, for point-in-time restore: every
/// commit in the read happened before it). On the writer thread both are taken before the read,
/// as nothing commits during it; beside the writer, the instant before and the wall clock after.
#[derive(Clone, Copy)]
struct ReadAt {
    instant: Instant,
    wall: OffsetDateTime,
}

impl ReadAt {
    fn now() -> ReadAt {
        ReadAt {
            instant: Instant::now(),
            wall: OffsetDateTime::now_utc(),
        }
    }
}

/// Where the WAL is read.
#[derive(Clone, Copy)]
enum Reader {
    /// On a blocking thread, while the store goes on committing.
    Beside,
    /// On the store's writer thread, which may then reset the WAL.
    Writer,
}

/// Frames read from the WAL, on their way into the queue.
struct SegmentRead {
    generation: String,
    index: u64,
    start: u64,
    seed: [u32; 2],
    header: wal::WalHeader,
    bytes: Vec<u8>,
    read_at: ReadAt,
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
            let more = self.read_step(Reader::Beside).await?;
            self.drain().await?;
            if self.rotate_requested {
                self.rotate().await?;
                self.drain().await?;
            }
            if !more {
                break;
            }
        }
        if self.reset_due() {
            // What was committed during the reads above, and the reset, with writes held.
            self.read_step(Reader::Writer).await?;
            self.drain().await?;
        }
        self.last_sync_at = Some(OffsetDateTime::now_utc());
        Ok(())
    }

    /// Whether the WAL is worth resetting: everything read is in storage and the WAL is long.
    fn reset_due(&self) -> bool {
        self.queue.is_empty()
            && !self.rotate_requested
            && self
                .generation
                .as_ref()
                .is_some_and(|g| g.pos.offset >= CHECKPOINT_AT)
    }

    fn rotation_due(&self) -> bool {
        match &self.generation {
            None => true,
            Some(g) => self.rotate_requested || g.started.elapsed() >= self.snapshot_interval,
        }
    }

    /// Read the next committed frames into the queue. Returns whether more are waiting.
    ///
    /// [`Reader::Beside`] reads while the store goes on writing: committed frames never change
    /// until the WAL is reset, which only this task asks for, and a frame being written fails its
    /// checksum, so the read ends at the last whole transaction. [`Reader::Writer`] reads on the
    /// writer thread and, when that reaches the end of the WAL with nothing else unshipped, resets
    /// the WAL in the same call, so no commit can fall between the read and the reset.
    async fn read_step(&mut self, reader: Reader) -> Result<bool, ReplicationError> {
        let Some(generation) = &self.generation else {
            return Ok(false);
        };
        let (name, index, pos) = (generation.name.clone(), generation.index, generation.pos);
        let wal_path = self.wal_path.clone();
        let (read, read_at, reset) = match reader {
            Reader::Beside => tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let read = read_wal(&wal_path, &pos, SEGMENT_CAP)?;
                // Commits may land while the file is read: name the segment after the read.
                let read_at = ReadAt {
                    instant: started,
                    wall: OffsetDateTime::now_utc(),
                };
                Ok::<_, ReplicationError>((read, read_at, false))
            })
            .await
            .map_err(|_| ReplicationError::Stopped)??,
            Reader::Writer => {
                let may_checkpoint = self.queue.is_empty();
                self.store
                    .call(move |conn| {
                        let read_at = ReadAt::now();
                        let read = read_wal(&wal_path, &pos, SEGMENT_CAP)?;
                        let reset = match &read {
                            WalRead::Frames {
                                next, more: false, ..
                            } if may_checkpoint && next.offset >= CHECKPOINT_AT => {
                                checkpoint(conn, Checkpoint::Restart)?
                            }
                            _ => false,
                        };
                        Ok::<_, ReplicationError>((read, read_at, reset))
                    })
                    .await?
            }
        };
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
        if let Some(g) = self.generation.as_mut() {
            g.pos = if reset { next.restarted() } else { next };
            g.index += u64::from(reset);
        }
        match (bytes.is_empty(), next.header) {
            (false, Some(header)) => {
                let segment = SegmentRead {
                    generation: name,
                    index,
                    start,
                    seed,
                    header,
                    bytes,
                    read_at,
                };
                self.enqueue_segment(segment).await?;
            }
            _ if self.queue.is_empty() => self.synced_through = Some(read_at.instant),
            _ => {}
        }
        Ok(more)
    }

    /// Compress frames into the queue. If that fails they exist nowhere else in order (the
    /// position moved past them), so the generation cannot continue: start a new one.
    async fn enqueue_segment(&mut self, s: SegmentRead) -> Result<(), ReplicationError> {
        match compress_segment(s.header, s.seed, s.bytes).await {
            Ok(body) => {
                self.queue.push_back(Pending::Segment {
                    generation: s.generation,
                    index: s.index,
                    offset: s.start,
                    unix_ms: layout::unix_ms(s.read_at.wall),
                    read_at: s.read_at.instant,
                    body,
                });
                Ok(())
            }
            Err(e) => {
                self.rotate_requested = true;
                Err(e)
            }
        }
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
                let read_at = ReadAt::now();
                let tail = match tail_pos {
                    Some(pos) => Some(read_wal(&wal_path, &pos, u64::MAX)?),
                    None => None,
                };
                if !checkpoint(conn, Checkpoint::Truncate)? {
                    return Err(ReplicationError::CheckpointBusy);
                }
                Ok((tail, read_at))
            })
            .await?;
        // The WAL is reset: the old position means nothing any more, whatever happens next.
        self.rotate_requested = true;
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
            let segment = SegmentRead {
                generation: name,
                index,
                start,
                seed,
                header,
                bytes,
                read_at,
            };
            self.enqueue_segment(segment).await?;
        }
        self.start_generation(read_at.instant).await
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
}

pub(super) fn read_wal(
    path: &std::path::Path,
    pos: &WalPos,
    cap: u64,
) -> Result<WalRead, ReplicationError> {
    wal::read_committed(path, pos, cap).map_err(|source| ReplicationError::Wal {
        path: path.to_path_buf(),
        source,
    })
}

/// How a checkpoint resets the WAL.
#[derive(Clone, Copy)]
pub(super) enum Checkpoint {
    /// The next write starts over at the beginning of the WAL file, reusing its space: cheaper
    /// for every later commit than growing a new file. Used while running.
    Restart,
    /// The WAL file is emptied: a clean boundary for a snapshot and at shutdown.
    Truncate,
}

/// `PRAGMA wal_checkpoint(RESTART|TRUNCATE)`: true when every frame was checkpointed and the WAL
/// reset (false when another connection's read kept it from completing).
pub(super) fn checkpoint(
    conn: &mut Connection,
    mode: Checkpoint,
) -> Result<bool, ReplicationError> {
    let sql = match mode {
        Checkpoint::Restart => "PRAGMA wal_checkpoint(RESTART)",
        Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let busy: i64 = conn
        .query_row(sql, [], |r| r.get(0))
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
