//! Staging changed files inside the freeze window, so that the upload can read a consistent
//! copy after the writers run again. Three ways, cheapest first for what each file is:
//!
//! - a small file is appended to one spool file (no inode per file: creating thousands of
//!   files would dominate the window);
//! - a large file that the index knew (it was modified) is cut and hashed in place; only the
//!   bytes of chunks that storage does not have are appended to the spool, so a 6 MiB edit of a
//!   1 GiB database costs a read and a hash of it, not a 1 GiB copy;
//! - a large file seen for the first time is copied with `copy_file_range` (extents are shared
//!   on filesystems that can): most of its chunks are new, and a copy is faster than hashing.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::chunker::{ChunkSink, MIN_CHUNK, chunk_file};
use super::error::{CheckpointError, Result};
use super::local::IndexEntry;
use super::manifest::{ChunkHash, ChunkRef};

/// What to do with one file.
#[derive(Debug)]
pub enum FilePlan {
    /// Unchanged since the index entry: reuse its chunks without reading.
    Reuse(IndexEntry),
    /// Read from `source` (a staged copy, or the file itself when nothing is frozen).
    Read { source: PathBuf },
    /// Its bytes are in the spool file at `offset`.
    Spooled { offset: u64, len: u64 },
    /// Already cut in the window; the bytes of the chunks not known to storage are spooled.
    Chunked {
        chunks: Vec<ChunkRef>,
        size: u64,
        new: Vec<SpooledChunk>,
    },
    /// Disappeared between the walk and the copy.
    Vanished,
}

/// The spool's name inside the staging directory.
const SPOOL: &str = "spool";

/// A chunk whose bytes wait in the spool.
#[derive(Clone, Debug)]
pub struct SpooledChunk {
    pub hash: ChunkHash,
    pub offset: u64,
    pub len: u64,
}

/// One append-only file in the staging directory.
struct Spool {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    len: u64,
}

impl Spool {
    /// Append `data`; returns its offset.
    fn append(&mut self, data: &[u8]) -> Result<u64> {
        if self.writer.is_none() {
            let f =
                File::create(&self.path).map_err(CheckpointError::io_at("create", &self.path))?;
            self.writer = Some(BufWriter::with_capacity(1 << 20, f));
        }
        let w = self.writer.as_mut().expect("the spool was just opened");
        w.write_all(data)
            .map_err(CheckpointError::io_at("write", &self.path))?;
        let offset = self.len;
        self.len += data.len() as u64;
        Ok(offset)
    }
}

/// Spools the chunks of a file cut in place that storage does not have yet.
struct SpoolSink<'a> {
    spool: &'a mut Spool,
    known: &'a HashSet<ChunkHash>,
    spooled: &'a mut HashSet<ChunkHash>,
    new: Vec<SpooledChunk>,
}

impl ChunkSink for SpoolSink<'_> {
    fn offer(&mut self, hash: ChunkHash, data: &[u8]) -> Result<()> {
        if self.known.contains(&hash) || !self.spooled.insert(hash) {
            return Ok(());
        }
        let offset = self.spool.append(data)?;
        self.new.push(SpooledChunk {
            hash,
            offset,
            len: data.len() as u64,
        });
        Ok(())
    }
}

/// Stages changed files into a directory of its own.
pub struct Stager<'a> {
    dir: PathBuf,
    known: &'a HashSet<ChunkHash>,
    spool: Spool,
    spooled: HashSet<ChunkHash>,
}

impl<'a> Stager<'a> {
    pub fn new(dir: &Path, known: &'a HashSet<ChunkHash>) -> Self {
        Stager {
            dir: dir.to_path_buf(),
            known,
            spool: Spool {
                path: dir.join(SPOOL),
                writer: None,
                len: 0,
            },
            spooled: HashSet::new(),
        }
    }

    /// Stage file number `n`; `seen_before`: the index had an entry for it.
    pub fn stage(
        &mut self,
        original: &Path,
        n: usize,
        size: u64,
        seen_before: bool,
    ) -> Result<FilePlan> {
        let staged = if size < MIN_CHUNK as u64 {
            match self.spool_small(original, size)? {
                Some(plan) => Ok(plan),
                None => self.copy(original, n),
            }
        } else if seen_before {
            self.chunk_in_place(original)
        } else {
            self.copy(original, n)
        };
        match staged {
            Err(CheckpointError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(FilePlan::Vanished)
            }
            other => other,
        }
    }

    fn copy(&mut self, original: &Path, n: usize) -> Result<FilePlan> {
        let copy = self.dir.join(n.to_string());
        std::fs::copy(original, &copy)
            .map_err(CheckpointError::io_at("copy to staging", original))?;
        Ok(FilePlan::Read { source: copy })
    }

    fn chunk_in_place(&mut self, original: &Path) -> Result<FilePlan> {
        let mut sink = SpoolSink {
            spool: &mut self.spool,
            known: self.known,
            spooled: &mut self.spooled,
            new: Vec::new(),
        };
        let (chunks, size) = chunk_file(original, &mut sink)?;
        Ok(FilePlan::Chunked {
            chunks,
            size,
            new: sink.new,
        })
    }

    /// Append a small file to the spool; `None` if it has grown too large to be spooled.
    fn spool_small(&mut self, original: &Path, size: u64) -> Result<Option<FilePlan>> {
        let mut data = Vec::with_capacity(size as usize);
        File::open(original)
            .and_then(|f| f.take(MIN_CHUNK as u64).read_to_end(&mut data))
            .map_err(CheckpointError::io_at("read", original))?;
        if data.len() >= MIN_CHUNK {
            return Ok(None);
        }
        let offset = self.spool.append(&data)?;
        Ok(Some(FilePlan::Spooled {
            offset,
            len: data.len() as u64,
        }))
    }

    /// Flush the spool; returns its path if anything was spooled.
    pub fn finish(self) -> Result<Option<PathBuf>> {
        let Some(mut w) = self.spool.writer else {
            return Ok(None);
        };
        w.flush()
            .map_err(CheckpointError::io_at("write", &self.spool.path))?;
        Ok(Some(self.spool.path))
    }
}
