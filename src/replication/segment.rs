//! The body of a WAL segment object: a small header, then raw WAL frames of whole transactions,
//! all zstd-compressed with a content checksum.
//!
//! The header carries what is needed to verify the frames on their own: the page size, the WAL
//! cycle's salts, the byte order of checksums and the checksum chain value before the first
//! frame. Restore checks every frame against that chain, and that each segment's seed is the
//! previous segment's end, so a missing, reordered or damaged segment is detected.

use std::io::{Read, Write};

use super::wal::{self, WalHeader};

const MAGIC: &[u8; 8] = b"SMWALSG1";
const HEADER_LEN: usize = 32;
const ZSTD_LEVEL: i32 = 3;

/// The most a segment body may decompress to. A segment holds at most 16 MB of frames plus the
/// rest of the transaction under way, or the tail of a WAL cycle at rotation: far below this for
/// the state database. A body that would decompress to more (a few kilobytes can say
/// gigabytes) is refused before it takes the memory.
pub const MAX_DECODED: u64 = 1 << 30;

/// A decoded, verified segment.
#[derive(Debug)]
pub struct Segment {
    pub page_size: u32,
    pub salt: [u32; 2],
    pub seed: [u32; 2],
    /// The chain after the last frame: the next segment of the same WAL cycle starts from it.
    pub end: [u32; 2],
    pub frames: Vec<u8>,
}

/// Why a segment body is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("not a WAL segment (bad magic or too short)")]
    NotSegment,
    #[error("decompression failed: {0}")]
    Zstd(std::io::Error),
    #[error("frame {index} fails its checksum or salt check")]
    BadFrame { index: usize },
    #[error("{0}")]
    Shape(&'static str),
    #[error(
        "decompresses to more than {limit} bytes, more than any segment holds: not a segment \
         this tool wrote, or a damaged one"
    )]
    TooLarge { limit: u64 },
}

/// Compress frames read from a WAL with `header`, whose chain before the first frame is `seed`.
pub fn encode(header: &WalHeader, seed: [u32; 2], frames: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(HEADER_LEN);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&u32::from(header.big_endian).to_be_bytes());
    raw.extend_from_slice(&header.page_size.to_be_bytes());
    for v in header.salt.iter().chain(&seed) {
        raw.extend_from_slice(&v.to_be_bytes());
    }
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(frames.len() / 3), ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    // With the size known, zstd sizes its window and tables to the input: a small segment
    // needs a small context instead of the ~1.2 MB of an unknown-length stream.
    enc.set_pledged_src_size(Some((raw.len() + frames.len()) as u64))?;
    enc.write_all(&raw)?;
    enc.write_all(frames)?;
    enc.finish()
}

/// Decompress and verify a segment body.
pub fn decode(body: &[u8]) -> Result<Segment, SegmentError> {
    decode_within(body, MAX_DECODED)
}

/// [`decode`], refusing a body that decompresses to more than `limit` bytes.
fn decode_within(body: &[u8], limit: u64) -> Result<Segment, SegmentError> {
    let mut raw = Vec::new();
    // Our encoder records the size: sized once, the buffer is not copied as it grows (up to
    // what a segment of ours holds: the recorded size is only the body's word).
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(body) {
        raw.reserve(usize::try_from(size.min(64 << 20)).unwrap_or(0));
    }
    zstd::stream::read::Decoder::new(body)
        .and_then(|d| d.take(limit + 1).read_to_end(&mut raw))
        .map_err(SegmentError::Zstd)?;
    if raw.len() as u64 > limit {
        return Err(SegmentError::TooLarge { limit });
    }
    if raw.len() < HEADER_LEN || &raw[..8] != MAGIC {
        return Err(SegmentError::NotSegment);
    }
    let word = |i: usize| wal::be32(&raw, 8 + 4 * i);
    let big_endian = match word(0) {
        0 => false,
        1 => true,
        _ => return Err(SegmentError::Shape("bad byte-order word (neither 0 nor 1)")),
    };
    let header = WalHeader {
        big_endian,
        page_size: word(1),
        salt: [word(2), word(3)],
        checksum: [0, 0],
    };
    let seed = [word(4), word(5)];
    if !header.page_size.is_power_of_two() || !(512..=65536).contains(&header.page_size) {
        return Err(SegmentError::Shape("bad page size"));
    }
    let frames = raw[HEADER_LEN..].to_vec();
    let end = verify(&header, seed, &frames)?;
    Ok(Segment {
        page_size: header.page_size,
        salt: header.salt,
        seed,
        end,
        frames,
    })
}

fn verify(header: &WalHeader, seed: [u32; 2], frames: &[u8]) -> Result<[u32; 2], SegmentError> {
    let frame_len = header.frame_len();
    if frames.is_empty() || !frames.len().is_multiple_of(frame_len) {
        return Err(SegmentError::Shape(
            "not a whole, non-zero number of frames",
        ));
    }
    let mut chain = seed;
    for (index, frame) in frames.chunks_exact(frame_len).enumerate() {
        chain = wal::check_frame(frame, header, chain).ok_or(SegmentError::BadFrame { index })?;
    }
    let last = &frames[frames.len() - frame_len..];
    if wal::be32(last, 4) == 0 {
        return Err(SegmentError::Shape(
            "the last frame does not commit a transaction",
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::wal::tests::{insert, open};
    use crate::replication::wal::{FRAME_HEADER_LEN, WalPos, WalRead, read_committed};

    #[test]
    fn segments_verify_their_frames() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal) = (dir.path().join("a.db"), dir.path().join("a.db-wal"));
        let c = open(&db);
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        insert(&c, 0, 5);
        let read = read_committed(&wal, &WalPos::START, u64::MAX).unwrap();
        let WalRead::Frames {
            seed, bytes, next, ..
        } = read
        else {
            panic!("expected frames");
        };
        let header = next.header.unwrap();
        let body = encode(&header, seed, &bytes).unwrap();
        let seg = decode(&body).unwrap();
        assert_eq!(seg.frames, bytes);
        assert_eq!(seg.end, next.chain);

        let mut damaged = bytes.clone();
        damaged[FRAME_HEADER_LEN + 100] ^= 1;
        let body = encode(&header, seed, &damaged).unwrap();
        assert!(decode(&body).is_err());

        // A byte-order word other than 0 (little-endian) or 1 (big-endian) is refused, not
        // read as one of them.
        let mut raw =
            zstd::stream::decode_all(&encode(&header, seed, &bytes).unwrap()[..]).unwrap();
        raw[8..12].copy_from_slice(&2u32.to_be_bytes());
        let body = zstd::stream::encode_all(&raw[..], ZSTD_LEVEL).unwrap();
        let e = decode(&body).unwrap_err();
        assert!(e.to_string().contains("byte-order"), "{e}");
    }

    #[test]
    fn a_body_that_decompresses_past_the_limit_is_refused_at_the_limit() {
        // 64 MiB of zeros compress to a few kilobytes.
        let bomb = zstd::stream::encode_all(std::io::repeat(0).take(64 << 20), ZSTD_LEVEL).unwrap();
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let e = decode_within(&bomb, 1 << 20).unwrap_err();
        assert!(
            matches!(e, SegmentError::TooLarge { limit } if limit == 1 << 20),
            "{e}"
        );
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        // Under the limit the same body decodes (and is then refused for what it holds).
        let e = decode_within(&bomb, 128 << 20).unwrap_err();
        assert!(matches!(e, SegmentError::NotSegment), "{e}");
    }
}
