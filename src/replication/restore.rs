//! Restore the state database from storage: the chosen generation's snapshot, then its WAL
//! segments in order (each verified against the checksum chain and for continuity), into a temp
//! file that must pass `PRAGMA integrity_check` before it is renamed into place.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::layout::{self, Generation, SegmentRef};
use super::segment::{self, Segment};
use super::wal::{self, HEADER_LEN};
use super::{ReplicationError, files};
use crate::objstore::DynStore;

/// Segments fetched ahead while earlier ones are applied.
const PREFETCH: usize = 4;

/// What a restore produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoreInfo {
    pub generation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub snapshot_at: OffsetDateTime,
    /// Time of the last applied segment (the snapshot's when there is none).
    #[serde(with = "time::serde::rfc3339")]
    pub restored_through: OffsetDateTime,
    pub segments: usize,
    /// Size of the restored database file.
    pub bytes: u64,
}

/// Restore the database as of `at` (default: the latest state in storage) to the new file `to`.
/// For `state-manager restore-db --to PATH [--at TIME]`.
pub async fn restore_db(
    objects: &DynStore,
    to: &Path,
    at: Option<OffsetDateTime>,
) -> Result<RestoreInfo, ReplicationError> {
    if to.exists() {
        return Err(ReplicationError::TargetExists {
            path: to.to_path_buf(),
        });
    }
    restore_into(objects, to, at).await
}

/// Restore to `to`, replacing any stale WAL files beside it. `to` itself must not exist.
pub(super) async fn restore_into(
    objects: &DynStore,
    to: &Path,
    at: Option<OffsetDateTime>,
) -> Result<RestoreInfo, ReplicationError> {
    let listing = objects.list(layout::ROOT).await?;
    let generations = layout::generations(&listing);
    let at_ms = at.map(layout::unix_ms).unwrap_or(i64::MAX);
    let Some(generation) = generations
        .iter()
        .rev()
        .find(|g| g.snapshot.as_ref().is_some_and(|s| s.unix_ms <= at_ms))
    else {
        return Err(ReplicationError::NothingToRestore {
            location: objects.describe(),
            at,
        });
    };
    let tmp = files::companion(to, ".restoring");
    let result = restore_generation(objects, generation, at_ms, &tmp).await;
    let info = match result {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(files::companion(&tmp, ".zst"));
            let _ = files::remove_wal_files(&tmp);
            return Err(e);
        }
    };
    let (tmp2, to2) = (tmp.clone(), to.to_path_buf());
    blocking(move || install(&tmp2, &to2)).await?;
    tracing::info!(generation = %info.generation, segments = info.segments, bytes = info.bytes,
        to = %to.display(), "restored the state database");
    Ok(info)
}

async fn restore_generation(
    objects: &DynStore,
    generation: &Generation,
    at_ms: i64,
    tmp: &Path,
) -> Result<RestoreInfo, ReplicationError> {
    let Some(snapshot) = &generation.snapshot else {
        return Err(ReplicationError::NothingToRestore {
            location: objects.describe(),
            at: None,
        });
    };
    let page_size = download_snapshot(objects, &snapshot.key, tmp).await?;
    // Segments are in replay order and their times rise with it: stop at the first one past `at`.
    let segments: Vec<SegmentRef> = generation
        .segments
        .iter()
        .take_while(|s| s.unix_ms <= at_ms)
        .cloned()
        .collect();
    let db = OpenOptions::new()
        .write(true)
        .open(tmp)
        .map_err(io_err("opening", tmp))?;
    let db = Arc::new(db);
    apply_segments(objects, &generation.name, &segments, page_size, &db).await?;
    let bytes = blocking({
        let tmp = tmp.to_path_buf();
        move || finish_file(&db, &tmp)
    })
    .await?;
    let last_ms = segments.last().map_or(snapshot.unix_ms, |s| s.unix_ms);
    Ok(RestoreInfo {
        generation: generation.name.clone(),
        snapshot_at: time_of(snapshot.unix_ms),
        restored_through: time_of(last_ms),
        segments: segments.len(),
        bytes,
    })
}

/// Fetch and decompress the snapshot into `tmp`; returns the database's page size.
async fn download_snapshot(
    objects: &DynStore,
    key: &str,
    tmp: &Path,
) -> Result<u32, ReplicationError> {
    let compressed = files::companion(tmp, ".zst");
    objects.get_to_file(key, &compressed).await?;
    let dst = tmp.to_path_buf();
    blocking(move || {
        let n =
            files::decompress_file(&compressed, &dst).map_err(io_err("decompressing", &compressed));
        let _ = std::fs::remove_file(&compressed);
        n?;
        db_page_size(&dst)
    })
    .await
}

/// Fetch segments a few ahead, verify each continues the last, write their pages.
async fn apply_segments(
    objects: &DynStore,
    generation: &str,
    segments: &[SegmentRef],
    page_size: u32,
    db: &Arc<File>,
) -> Result<(), ReplicationError> {
    let mut chain = Chain::new(generation, page_size);
    // Owned items (not borrows) in the stream, so the restore future is `Send` for any caller.
    let owned = segments.iter().cloned().map(|s| {
        let objects = objects.clone();
        async move { fetch(&objects, &s).await }
    });
    let mut fetched = futures::stream::iter(owned).buffered(PREFETCH);
    while let Some((seg_ref, seg)) = fetched.try_next().await? {
        chain.check(&seg_ref, &seg)?;
        let (db, frames) = (db.clone(), seg.frames);
        blocking(move || {
            wal::apply_frames(&db, page_size, &frames).map_err(|source| ReplicationError::Wal {
                path: PathBuf::from("restored segment"),
                source,
            })
        })
        .await?;
    }
    Ok(())
}

async fn fetch(
    objects: &DynStore,
    seg: &SegmentRef,
) -> Result<(SegmentRef, Segment), ReplicationError> {
    let body = objects.get(&seg.key).await?.body;
    let key = seg.key.clone();
    let decoded = blocking(move || {
        segment::decode(&body).map_err(|source| ReplicationError::Corrupt { key, source })
    })
    .await?;
    Ok((seg.clone(), decoded))
}

/// Continuity of the segments being applied: each continues the previous one's checksum chain
/// at the next byte, or starts the next WAL cycle at its beginning.
struct Chain<'a> {
    generation: &'a str,
    page_size: u32,
    last: Option<(u64, u64, [u32; 2], [u32; 2])>,
}

impl<'a> Chain<'a> {
    fn new(generation: &'a str, page_size: u32) -> Self {
        Chain {
            generation,
            page_size,
            last: None,
        }
    }

    fn check(&mut self, r: &SegmentRef, s: &Segment) -> Result<(), ReplicationError> {
        let gap = |reason| ReplicationError::Gap {
            generation: self.generation.to_string(),
            key: r.key.clone(),
            reason,
        };
        if s.page_size != self.page_size {
            return Err(gap("its page size differs from the snapshot's"));
        }
        let ok = match self.last {
            None => r.offset == HEADER_LEN,
            Some((index, end, salt, chain)) if r.index == index => {
                r.offset == end && s.salt == salt && s.seed == chain
            }
            Some((index, ..)) => r.index == index + 1 && r.offset == HEADER_LEN,
        };
        if !ok {
            return Err(gap("it does not continue the previous segment"));
        }
        self.last = Some((r.index, r.offset + s.frames.len() as u64, s.salt, s.end));
        Ok(())
    }
}

/// The page size recorded in a database file's header.
fn db_page_size(db: &Path) -> Result<u32, ReplicationError> {
    let mut header = [0u8; 100];
    let f = File::open(db).map_err(io_err("opening", db))?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut header, 0).map_err(io_err("reading", db))?;
    let raw = u32::from(u16::from_be_bytes([header[16], header[17]]));
    Ok(if raw == 1 { 65536 } else { raw })
}

/// Sync the file and check its integrity with SQLite itself.
fn finish_file(db: &File, path: &Path) -> Result<u64, ReplicationError> {
    db.sync_all().map_err(io_err("syncing", path))?;
    let conn = rusqlite::Connection::open(path).map_err(crate::store::StoreError::from)?;
    let problems = crate::store::integrity_check(&conn)?;
    drop(conn);
    if !problems.is_empty() {
        return Err(ReplicationError::Integrity {
            path: path.to_path_buf(),
            problems,
        });
    }
    files::remove_wal_files(path).map_err(io_err("cleaning up beside", path))?;
    Ok(files::len_or_zero(path))
}

/// Move the restored file into place: stale WAL files first, then the rename, then the
/// directory sync.
fn install(tmp: &Path, to: &Path) -> Result<(), ReplicationError> {
    files::remove_wal_files(to).map_err(io_err("removing stale WAL files of", to))?;
    std::fs::rename(tmp, to).map_err(io_err("renaming into place", to))?;
    files::sync_dir(to).map_err(io_err("syncing the directory of", to))
}

fn time_of(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ReplicationError {
    let path = path.to_path_buf();
    move |source| ReplicationError::Io { what, path, source }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReplicationError> + Send + 'static,
) -> Result<T, ReplicationError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ReplicationError::Stopped)?
}
