//! Writing a restored chunk into the staging tree. The page-aligned run of each slice goes to the
//! disk with `O_DIRECT`, straight from the buffer the chunk was decompressed into, so a restore
//! does not fill the page cache with a tree nobody has read yet and copies each byte once less.
//! The unaligned edges of a slice, and slices too short to be worth it, go through the page
//! cache. Where the filesystem refuses `O_DIRECT` (at open or at a write), the restore carries on
//! through the page cache alone. The final `syncfs` of the restore covers both kinds of write.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::error::{CheckpointError, Result};
use super::manifest::{ChunkHash, MAX_OBJECT};
use super::tree::SafeRoot;

/// Direct writes start at file offsets and addresses that are multiples of this, and their
/// lengths are too: the page size, which every common block device's logical block size divides.
const ALIGN: usize = 4096;
/// An aligned run shorter than this goes through the page cache with the rest of its slice.
const MIN_DIRECT: usize = 64 * 1024;

/// Where one chunk's bytes go: `len` bytes from `chunk_offset` into entry `path` at `file_offset`.
pub struct Target {
    pub path: String,
    pub file_offset: u64,
    pub chunk_offset: u64,
    pub len: u64,
}

/// What the chunk writes of one restore share: buffers to decompress into, reused from chunk to
/// chunk, and whether direct writes work where the tree is built.
pub struct Landing {
    buffers: Mutex<Vec<Vec<u8>>>,
    direct: AtomicBool,
}

impl Landing {
    pub fn new() -> Self {
        Landing {
            buffers: Mutex::new(Vec::new()),
            direct: AtomicBool::new(true),
        }
    }

    /// Decompress `body` (at most [`MAX_OBJECT`] bytes), check it against `hash` and write its
    /// slices to `targets`.
    pub fn write(
        &self,
        root: &SafeRoot,
        hash: &ChunkHash,
        body: &[u8],
        targets: &[Target],
    ) -> Result<()> {
        let taken = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buf = taken.unwrap_or_else(|| vec![0; MAX_OBJECT + ALIGN]);
        let result = self.write_from(&mut buf, root, hash, body, targets);
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.push(buf);
        result
    }

    fn write_from(
        &self,
        buf: &mut [u8],
        root: &SafeRoot,
        hash: &ChunkHash,
        body: &[u8],
        targets: &[Target],
    ) -> Result<()> {
        let shift = shift_for(buf.as_ptr() as usize, targets);
        let data = decode_into(hash, body, &mut buf[shift..shift + MAX_OBJECT])?;
        for t in targets {
            let end = t.chunk_offset + t.len;
            let slice = data
                .get(t.chunk_offset as usize..end as usize)
                .ok_or_else(|| CheckpointError::CorruptChunk {
                    hash: hash.to_hex(),
                    reason: format!(
                        "{} bytes, too short for a slice ending at {end}",
                        data.len()
                    ),
                })?;
            self.write_slice(root, t, slice)?;
        }
        Ok(())
    }

    fn write_slice(&self, root: &SafeRoot, t: &Target, slice: &[u8]) -> Result<()> {
        let run = match self.direct.load(Ordering::Relaxed) {
            true => aligned_run(t.file_offset, slice.as_ptr() as usize, slice.len()),
            false => None,
        };
        let direct = match run {
            Some(_) => root.open_direct(&t.path)?,
            None => None,
        };
        let wanted = run.is_some();
        let (Some(run), Some(direct)) = (run, direct) else {
            if wanted {
                self.no_direct("open");
            }
            return buffered(root, t, 0..slice.len(), slice);
        };
        let at = t.file_offset + run.start as u64;
        match direct.write_all_at(&slice[run.clone()], at) {
            Ok(()) => {}
            // The device wants a coarser alignment than ALIGN, or the filesystem takes O_DIRECT
            // at open but not at write: the page cache writes what direct writes cannot.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.no_direct("write");
                buffered(root, t, run.clone(), slice)?;
            }
            Err(e) => return Err(CheckpointError::io("write", Path::new(&t.path), e)),
        }
        for edge in [0..run.start, run.end..slice.len()] {
            if !edge.is_empty() {
                buffered(root, t, edge, slice)?;
            }
        }
        Ok(())
    }

    fn no_direct(&self, at: &str) {
        if self.direct.swap(false, Ordering::Relaxed) {
            tracing::info!(
                refused_at = at,
                "the filesystem refuses direct writes; the restore goes on through the page cache"
            );
        }
    }

    #[cfg(test)]
    fn buffered_only() -> Self {
        let landing = Landing::new();
        landing.direct.store(false, Ordering::Relaxed);
        landing
    }
}

/// Write `slice[range]` through the page cache and have the kernel start writing it to disk now,
/// so that the disk works while later chunks are fetched and the final `syncfs` finds little
/// left to do.
fn buffered(root: &SafeRoot, t: &Target, range: Range<usize>, slice: &[u8]) -> Result<()> {
    let file = root.open_file(&t.path, true)?;
    let at = t.file_offset + range.start as u64;
    let len = range.len() as u64;
    file.write_all_at(&slice[range], at)
        .map_err(|e| CheckpointError::io("write", Path::new(&t.path), e))?;
    start_writeback(&file, at, len);
    Ok(())
}

/// Advice only: an error changes nothing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: sync_file_range only reads its arguments; the descriptor is open for the call.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Decompress into `out` (its length bounds the result) and check the hash.
fn decode_into<'b>(hash: &ChunkHash, body: &[u8], out: &'b mut [u8]) -> Result<&'b [u8]> {
    let corrupt = |reason: String| CheckpointError::CorruptChunk {
        hash: hash.to_hex(),
        reason,
    };
    let n = zstd::bulk::decompress_to_buffer(body, out)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    let data = &out[..n];
    if ChunkHash::of(data) != *hash {
        return Err(corrupt("content does not match its hash".into()));
    }
    Ok(data)
}

/// Bytes from the start of a slice at `file_offset` to its first aligned file offset.
fn lead(file_offset: u64) -> usize {
    (ALIGN - (file_offset % ALIGN as u64) as usize) % ALIGN
}

/// Where in a buffer at address `base` to decompress a chunk so that the aligned run of its
/// longest target starts at an aligned address (`0..ALIGN`).
fn shift_for(base: usize, targets: &[Target]) -> usize {
    let Some(t) = targets.iter().max_by_key(|t| t.len) else {
        return 0;
    };
    let first = base
        .wrapping_add(t.chunk_offset as usize)
        .wrapping_add(lead(t.file_offset));
    (ALIGN - first % ALIGN) % ALIGN
}

/// The part of a slice of `len` bytes at address `addr`, to be written at `file_offset`, that a
/// direct write can take: it starts at an aligned file offset and an aligned address, its length
/// is a multiple of [`ALIGN`] and at least [`MIN_DIRECT`]. `None` if there is no such part.
fn aligned_run(file_offset: u64, addr: usize, len: usize) -> Option<Range<usize>> {
    let start = lead(file_offset);
    let whole = len.checked_sub(start)? / ALIGN * ALIGN;
    let aligned = addr.wrapping_add(start).is_multiple_of(ALIGN);
    (whole >= MIN_DIRECT && aligned).then(|| start..start + whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8)
            .collect()
    }

    #[test]
    fn an_aligned_run_is_aligned_in_the_file_and_in_memory_and_long_enough() {
        for file_offset in [0u64, 1, 511, 4095, 4096, 4097, 1 << 20, (1 << 20) + 17] {
            for addr in [0usize, 8, 4096 - 100, 4096, 12_345] {
                for len in [
                    0usize,
                    100,
                    MIN_DIRECT,
                    MIN_DIRECT + ALIGN,
                    1 << 20,
                    3 << 20 | 77,
                ] {
                    let Some(run) = aligned_run(file_offset, addr, len) else {
                        continue;
                    };
                    assert_eq!((file_offset + run.start as u64) % ALIGN as u64, 0);
                    assert_eq!((addr + run.start) % ALIGN, 0);
                    assert_eq!(run.len() % ALIGN, 0);
                    assert!(run.len() >= MIN_DIRECT && run.end <= len);
                    // The edges left to the page cache are shorter than one block each.
                    assert!(
                        run.start < ALIGN && len - run.end < ALIGN,
                        "{run:?} of {len}"
                    );
                }
            }
        }
        assert_eq!(aligned_run(0, 0, 1 << 20), Some(0..1 << 20));
        assert_eq!(aligned_run(0, 8, 1 << 20), None, "misaligned memory");
        assert_eq!(aligned_run(0, 0, MIN_DIRECT - 1), None, "too short");
    }

    #[test]
    fn the_shift_puts_the_longest_targets_run_on_an_aligned_address() {
        for base in [0usize, 16, 4000, 4096, 10_000] {
            for (file_offset, chunk_offset) in [(0u64, 0u64), (1, 0), (5000, 300), (4096, 4095)] {
                let targets = [
                    target("small", 0, 0, 10),
                    target("big", file_offset, chunk_offset, 1 << 20),
                ];
                let shift = shift_for(base, &targets);
                assert!(shift < ALIGN);
                let addr = base + shift + chunk_offset as usize;
                assert!(aligned_run(file_offset, addr, 1 << 20).is_some());
            }
        }
    }

    fn target(path: &str, file_offset: u64, chunk_offset: u64, len: u64) -> Target {
        Target {
            path: path.into(),
            file_offset,
            chunk_offset,
            len,
        }
    }

    /// Two chunks of one file meeting at an offset that is not a block boundary, written in
    /// either order, direct and buffered, give the same bytes; so does a chunk shared by two
    /// files at different offsets.
    #[test]
    fn direct_and_buffered_writes_give_the_same_files() {
        let first = content(700_001, 1);
        let second = content(900_000, 2);
        let mut whole = first.clone();
        whole.extend_from_slice(&second);
        for landing in [Landing::new(), Landing::buffered_only()] {
            for reversed in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let root = SafeRoot::open(dir.path()).unwrap();
                drop(root.create_file("f").unwrap());
                drop(root.create_file("g").unwrap());
                let mut writes = vec![
                    (&first, vec![target("f", 0, 0, first.len() as u64)]),
                    (
                        &second,
                        vec![
                            target("f", first.len() as u64, 0, second.len() as u64),
                            target("g", 3, 100, second.len() as u64 - 100),
                        ],
                    ),
                ];
                if reversed {
                    writes.reverse();
                }
                for (data, targets) in writes {
                    let body = zstd::bulk::compress(data, 3).unwrap();
                    let hash = ChunkHash::of(data);
                    landing.write(&root, &hash, &body, &targets).unwrap();
                }
                assert!(std::fs::read(dir.path().join("f")).unwrap() == whole);
                let g = std::fs::read(dir.path().join("g")).unwrap();
                assert!(g[..3] == [0, 0, 0] && g[3..] == second[100..]);
            }
        }
    }

    #[test]
    fn a_chunk_that_does_not_match_its_hash_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = SafeRoot::open(dir.path()).unwrap();
        drop(root.create_file("f").unwrap());
        let data = content(1 << 20, 3);
        let body = zstd::bulk::compress(&data, 3).unwrap();
        let wrong = ChunkHash::of(b"something else");
        let err = Landing::new()
            .write(&root, &wrong, &body, &[target("f", 0, 0, 1 << 20)])
            .unwrap_err();
        assert!(err.to_string().contains("does not match its hash"), "{err}");
        assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().len(), 0);
    }

    #[test]
    fn a_body_past_the_bound_is_refused() {
        let data = vec![7u8; MAX_OBJECT + 1];
        let body = zstd::bulk::compress(&data, 3).unwrap();
        let mut out = vec![0; MAX_OBJECT];
        let err = decode_into(&ChunkHash::of(&data), &body, &mut out).unwrap_err();
        assert!(err.to_string().contains("does not decompress"), "{err}");
    }
}
