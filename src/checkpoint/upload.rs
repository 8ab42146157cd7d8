//! Reading changed files into chunks and uploading the new ones.
//!
//! A blocking producer cuts and hashes (one thread, sequential reads); chunks not in the
//! known-chunks set and not yet sent in this run go through a bounded channel to the async
//! side, which compresses each on the blocking pool and stores it with `put_if_absent` —
//! `checkpoint.concurrency` at a time. No HEAD or LIST per chunk: the known set says what is
//! there, and a chunk that exists anyway costs one refused PUT.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::chunker::{ChunkSink, MIN_CHUNK, Packer, chunk_file};
use super::error::{CheckpointError, Result};
use super::manifest::{ChunkHash, ChunkRef};
use super::stager::SpooledChunk;
use crate::objstore::DynStore;

/// zstd level: 3 is zstd's default, fast enough to keep up with the network on one core.
pub const ZSTD_LEVEL: i32 = 3;

/// A file to read, by its position in the plan.
pub struct ToRead {
    pub entry: usize,
    pub source: Source,
}

/// Where a changed file's bytes are.
pub enum Source {
    /// A file of (at the walk) `size` bytes: a staged copy or the live file.
    File { path: PathBuf, size: u64 },
    /// A slice of the staging spool.
    Spool { offset: u64, len: u64 },
    /// Cut during the freeze; the chunks storage lacks are in the spool.
    Chunked {
        chunks: Vec<ChunkRef>,
        size: u64,
        new: Vec<SpooledChunk>,
    },
}

/// What reading a file produced.
#[derive(Debug, Default)]
pub struct FileChunks {
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    pub content: Option<ChunkHash>,
}

#[derive(Debug, Default)]
pub struct UploadStats {
    pub chunks_new: u64,
    pub uploaded_bytes: u64,
}

struct Upload {
    hash: ChunkHash,
    data: Vec<u8>,
}

struct Sink {
    tx: mpsc::Sender<Upload>,
    known: Arc<HashSet<ChunkHash>>,
    sent: HashSet<ChunkHash>,
}

impl ChunkSink for Sink {
    fn offer(&mut self, hash: ChunkHash, data: &[u8]) -> Result<()> {
        if self.known.contains(&hash) || !self.sent.insert(hash) {
            return Ok(());
        }
        let upload = Upload {
            hash,
            data: data.to_vec(),
        };
        self.tx
            .blocking_send(upload)
            .map_err(|_| CheckpointError::Task {
                reason: "the upload stopped".into(),
            })
    }
}

/// Read `files`, upload their new chunks; returns per-file chunk lists keyed by entry.
pub async fn read_and_upload(
    store: DynStore,
    files: Vec<ToRead>,
    spool: Option<PathBuf>,
    known: Arc<HashSet<ChunkHash>>,
    small_by_content: HashMap<ChunkHash, ChunkRef>,
    concurrency: usize,
) -> Result<(HashMap<usize, FileChunks>, UploadStats)> {
    let (tx, rx) = mpsc::channel(concurrency * 2);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sink = Sink {
            tx,
            known,
            sent: HashSet::new(),
        };
        let spool = match &spool {
            Some(p) => Some(File::open(p).map_err(CheckpointError::io_at("open", p))?),
            None => None,
        };
        read_all(&files, spool.as_ref(), &mut sink, &small_by_content)
    });
    let uploaded = upload_all(store, rx, concurrency).await;
    let produced = producer.await?;
    match (produced, uploaded) {
        (Ok(chunks), Ok(stats)) => Ok((chunks, stats)),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
    }
}

fn read_all(
    files: &[ToRead],
    spool: Option<&File>,
    sink: &mut Sink,
    small_by_content: &HashMap<ChunkHash, ChunkRef>,
) -> Result<HashMap<usize, FileChunks>> {
    let mut out = HashMap::with_capacity(files.len());
    let mut packer = Packer::default();
    for f in files {
        let data = match &f.source {
            Source::Chunked { chunks, size, new } => {
                for c in new {
                    sink.offer(c.hash, &read_spool(spool, c.offset, c.len)?)?;
                }
                let (chunks, size) = (chunks.clone(), *size);
                out.insert(
                    f.entry,
                    FileChunks {
                        chunks,
                        size,
                        content: None,
                    },
                );
                continue;
            }
            source => read_small(source, spool)?,
        };
        let data = match data {
            Some(data) => data,
            None => {
                let Source::File { path, .. } = &f.source else {
                    unreachable!("spooled files are small")
                };
                let (chunks, size) = chunk_file(path, sink)?;
                out.insert(
                    f.entry,
                    FileChunks {
                        chunks,
                        size,
                        content: None,
                    },
                );
                continue;
            }
        };
        let content = ChunkHash::of(&data);
        let fc = out.entry(f.entry).or_insert(FileChunks {
            chunks: Vec::new(),
            size: data.len() as u64,
            content: Some(content),
        });
        match small_by_content.get(&content) {
            _ if data.is_empty() => {}
            Some(r) if sink.known.contains(&r.hash) || sink.sent.contains(&r.hash) => {
                fc.chunks.push(r.clone())
            }
            _ => place(&mut out, packer.add(f.entry, &data, sink)?),
        }
    }
    place(&mut out, packer.seal(sink)?);
    Ok(out)
}

/// The content of a file below the chunking threshold, or `None` if it is (or has grown) too
/// large to be packed.
fn read_small(source: &Source, spool: Option<&File>) -> Result<Option<Vec<u8>>> {
    let (path, size) = match source {
        Source::File { path, size } => (path, *size),
        Source::Spool { offset, len } => return read_spool(spool, *offset, *len).map(Some),
        Source::Chunked { .. } => return Ok(None),
    };
    if size >= MIN_CHUNK as u64 {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(size as usize);
    File::open(path)
        .and_then(|file| file.take(MIN_CHUNK as u64).read_to_end(&mut data))
        .map_err(CheckpointError::io_at("read", path))?;
    Ok((data.len() < MIN_CHUNK).then_some(data))
}

fn read_spool(spool: Option<&File>, offset: u64, len: u64) -> Result<Vec<u8>> {
    let spool = spool.expect("a spool slice comes with its spool");
    let mut data = vec![0u8; len as usize];
    spool
        .read_exact_at(&mut data, offset)
        .map_err(CheckpointError::io_at("read", Path::new("staging spool")))?;
    Ok(data)
}

/// Record pack slices for the files a sealed pack holds.
fn place(out: &mut HashMap<usize, FileChunks>, slices: Vec<(usize, ChunkRef)>) {
    for (entry, r) in slices {
        out.entry(entry).or_default().chunks.push(r);
    }
}

async fn upload_all(
    store: DynStore,
    rx: mpsc::Receiver<Upload>,
    concurrency: usize,
) -> Result<UploadStats> {
    ReceiverStream::new(rx)
        .map(|u| upload_one(store.clone(), u))
        .buffer_unordered(concurrency)
        .try_fold(UploadStats::default(), |mut acc, sent| async move {
            if let Some(bytes) = sent {
                acc.chunks_new += 1;
                acc.uploaded_bytes += bytes;
            }
            Ok(acc)
        })
        .await
}

/// Compress and store one chunk; `Some(bytes)` if it was new.
async fn upload_one(store: DynStore, u: Upload) -> Result<Option<u64>> {
    let compressed = tokio::task::spawn_blocking(move || zstd::bulk::compress(&u.data, ZSTD_LEVEL))
        .await?
        .map_err(|e| CheckpointError::Task {
            reason: format!("zstd compression failed: {e}"),
        })?;
    let len = compressed.len() as u64;
    match store
        .put_if_absent(&u.hash.key(), Bytes::from(compressed))
        .await
    {
        Ok(_) => Ok(Some(len)),
        Err(e) if e.is_precondition_failed() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
