//! Splitting file contents into content-addressed chunks.
//!
//! Files of at least [`MIN_CHUNK`] bytes are cut with FastCDC (min 256 KiB, average 1 MiB, max
//! 4 MiB). The sizes trade dedup granularity against request cost: an edit costs about one
//! average chunk of upload, while 1 GiB of data is ~1,000 objects (one PUT each, and one GET
//! each on restore) rather than the ~130,000 a backup tool's 8 KiB chunks would need.
//!
//! Smaller files would each be a request of their own, so they are packed: their contents are
//! concatenated into a pack of up to [`PACK_TARGET`] bytes that is stored like any chunk, and
//! each file refers to its slice. A pack stays in storage as long as any file refers to it.
//!
//! Invariant: no stored object decompresses to more than [`MAX_OBJECT`] bytes, which restore
//! uses as its decompression limit.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use fastcdc::v2020::FastCDC;

use super::error::{CheckpointError, Result};
use super::manifest::{ChunkHash, ChunkRef, MAX_OBJECT};

pub const MIN_CHUNK: usize = 256 * 1024;
pub const AVG_CHUNK: usize = 1024 * 1024;
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// A pack is sealed once it holds this much.
pub const PACK_TARGET: usize = 4 * 1024 * 1024;
// A pack may overshoot its target by one small file; neither it nor a chunk may pass the bound.
const _: () = assert!(PACK_TARGET + MIN_CHUNK <= MAX_OBJECT && MAX_CHUNK <= MAX_OBJECT);
/// Read window of the streaming chunker; a multiple of `MAX_CHUNK` keeps copies rare.
const WINDOW: usize = 4 * MAX_CHUNK;

/// Receives each chunk as it is cut; decides whether it must be uploaded.
pub trait ChunkSink {
    fn offer(&mut self, hash: ChunkHash, data: &[u8]) -> Result<()>;
}

/// Cut the file at `path` into chunks, offering each to `sink`. Returns the chunk list and the
/// number of bytes read.
pub fn chunk_file(path: &Path, sink: &mut dyn ChunkSink) -> Result<(Vec<ChunkRef>, u64)> {
    let mut file = File::open(path).map_err(CheckpointError::io_at("open", path))?;
    let mut buf = vec![0u8; WINDOW];
    let (mut len, mut eof, mut total) = (0usize, false, 0u64);
    let mut refs = Vec::new();
    loop {
        while !eof && len < buf.len() {
            let n = file
                .read(&mut buf[len..])
                .map_err(CheckpointError::io_at("read", path))?;
            eof = n == 0;
            len += n;
        }
        let used = cut_window(&buf[..len], eof, sink, &mut refs)?;
        total += used as u64;
        buf.copy_within(used..len, 0);
        len -= used;
        if eof && len == 0 {
            return Ok((refs, total));
        }
    }
}

/// Cut the chunks of `window` whose end is certain (at least `MAX_CHUNK` bytes follow their
/// start, or the file ended); returns how many bytes were consumed.
fn cut_window(
    window: &[u8],
    eof: bool,
    sink: &mut dyn ChunkSink,
    refs: &mut Vec<ChunkRef>,
) -> Result<usize> {
    let mut used = 0;
    for c in FastCDC::new(window, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        if !eof && window.len() - c.offset < MAX_CHUNK {
            break;
        }
        let data = &window[c.offset..c.offset + c.length];
        let hash = ChunkHash::of(data);
        sink.offer(hash, data)?;
        refs.push(ChunkRef {
            hash,
            offset: 0,
            len: c.length as u64,
        });
        used = c.offset + c.length;
    }
    Ok(used)
}

/// Collects small files into packs. `add` returns the member's index; `seal` emits the pack and
/// returns `(member, slice)` pairs for the files it holds.
#[derive(Default)]
pub struct Packer {
    buf: Vec<u8>,
    members: Vec<(usize, u64, u64)>,
}

impl Packer {
    /// Append `data` for file number `member`. Returns the sealed pack's slices if it filled up.
    pub fn add(
        &mut self,
        member: usize,
        data: &[u8],
        sink: &mut dyn ChunkSink,
    ) -> Result<Vec<(usize, ChunkRef)>> {
        self.members
            .push((member, self.buf.len() as u64, data.len() as u64));
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PACK_TARGET {
            return self.seal(sink);
        }
        Ok(Vec::new())
    }

    /// Emit the pack (if it holds anything) and return where each member landed.
    pub fn seal(&mut self, sink: &mut dyn ChunkSink) -> Result<Vec<(usize, ChunkRef)>> {
        if self.buf.is_empty() {
            return Ok(Vec::new());
        }
        let hash = ChunkHash::of(&self.buf);
        sink.offer(hash, &self.buf)?;
        self.buf.clear();
        Ok(self
            .members
            .drain(..)
            .map(|(m, offset, len)| (m, ChunkRef { hash, offset, len }))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(ChunkHash, Vec<u8>)>);
    impl ChunkSink for Collect {
        fn offer(&mut self, hash: ChunkHash, data: &[u8]) -> Result<()> {
            self.0.push((hash, data.to_vec()));
            Ok(())
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn windowed_cuts_equal_whole_buffer_cuts_and_reassemble() {
        let data = pseudo_random(37 * 1024 * 1024 + 123, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let mut sink = Collect::default();
        let (refs, total) = chunk_file(&path, &mut sink).unwrap();
        assert_eq!(total, data.len() as u64);
        let whole: Vec<usize> = FastCDC::new(&data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
            .map(|c| c.length)
            .collect();
        let windowed: Vec<usize> = refs.iter().map(|r| r.len as usize).collect();
        assert_eq!(whole, windowed);
        let joined: Vec<u8> = sink.0.iter().flat_map(|(_, d)| d.clone()).collect();
        assert!(joined == data);
    }

    #[test]
    fn an_edit_changes_only_nearby_chunks() {
        let mut data = pseudo_random(20 * 1024 * 1024, 3);
        let mut before = Collect::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        chunk_file(&path, &mut before).unwrap();
        data[10 * 1024 * 1024] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let mut after = Collect::default();
        chunk_file(&path, &mut after).unwrap();
        let old: std::collections::HashSet<_> = before.0.iter().map(|c| c.0).collect();
        let new = after.0.iter().filter(|c| !old.contains(&c.0)).count();
        assert!((1..=2).contains(&new), "{new} new chunks");
    }

    #[test]
    fn packs_seal_at_target_and_slices_point_at_the_data() {
        let mut sink = Collect::default();
        let mut p = Packer::default();
        let file = vec![9u8; 200 * 1024];
        let mut placed = Vec::new();
        for i in 0..30 {
            placed.extend(p.add(i, &file, &mut sink).unwrap());
        }
        placed.extend(p.seal(&mut sink).unwrap());
        assert_eq!(placed.len(), 30);
        assert_eq!(sink.0.len(), 2);
        assert!(sink.0.iter().all(|(_, d)| d.len() <= MAX_OBJECT));
        let (_, r) = &placed[25];
        let pack = &sink.0.iter().find(|c| c.0 == r.hash).unwrap().1;
        assert_eq!(&pack[r.offset as usize..][..r.len as usize], &file[..]);
    }
}
