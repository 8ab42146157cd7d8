//! Reading SQLite's WAL file and applying its frames, per the file format
//! (<https://sqlite.org/fileformat2.html#walformat>).
//!
//! A WAL is a 32-byte header then frames (24-byte header + one page). A frame is valid when its
//! salts match the header's and its checksum continues the running checksum chain; a frame whose
//! "database size" field is non-zero commits a transaction. Only whole committed transactions are
//! ever returned, and the chain state travels with a read position so the next read continues it.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub const HEADER_LEN: u64 = 32;
pub const FRAME_HEADER_LEN: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;

/// What cannot be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid WAL header: {0}")]
    BadHeader(&'static str),
    #[error("invalid WAL frames: {0}")]
    BadFrames(String),
}

/// The fields of a WAL header that frames are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    pub page_size: u32,
    pub salt: [u32; 2],
    pub checksum: [u32; 2],
    /// Checksums read the data as big-endian words (magic ...83) instead of little-endian.
    pub big_endian: bool,
}

impl WalHeader {
    pub fn parse(b: &[u8; 32]) -> Result<WalHeader, WalError> {
        let big_endian = match be32(b, 0) {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return Err(WalError::BadHeader("wrong magic number")),
        };
        if be32(b, 4) != VERSION {
            return Err(WalError::BadHeader("unknown WAL format version"));
        }
        let page_size = be32(b, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalError::BadHeader(
                "page size is not a power of two in 512..=65536",
            ));
        }
        let checksum = [be32(b, 24), be32(b, 28)];
        if checksum_of(&b[..24], [0, 0], big_endian) != checksum {
            return Err(WalError::BadHeader("header checksum mismatch"));
        }
        Ok(WalHeader {
            page_size,
            salt: [be32(b, 16), be32(b, 20)],
            checksum,
            big_endian,
        })
    }

    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.page_size as usize
    }
}

/// Where the next read of one WAL cycle continues: the header it belongs to, the byte offset of
/// the next frame and the checksum chain up to it. `header: None` means the cycle's header has
/// not been read yet (the WAL was just reset). After a RESTART checkpoint the file keeps the old
/// header until the next write replaces it: `stale` holds the old salts, so that header is not
/// mistaken for a new cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalPos {
    pub header: Option<WalHeader>,
    pub offset: u64,
    pub chain: [u32; 2],
    pub stale: Option<[u32; 2]>,
}

impl WalPos {
    /// The start of a fresh (empty or truncated) WAL.
    pub const START: WalPos = WalPos {
        header: None,
        offset: 0,
        chain: [0, 0],
        stale: None,
    };

    /// The start of the next cycle after a RESTART checkpoint of the cycle `self` was reading.
    pub fn restarted(&self) -> WalPos {
        WalPos {
            stale: self.header.map(|h| h.salt).or(self.stale),
            ..WalPos::START
        }
    }
}

/// The result of reading committed frames past a position.
#[derive(Debug)]
pub enum WalRead {
    /// Frames `bytes` (whole transactions, possibly none) starting at byte `start`, whose
    /// checksum chain starts at `seed`; `next` continues after them. `more`: stopped at the
    /// size cap with committed frames left.
    Frames {
        start: u64,
        seed: [u32; 2],
        bytes: Vec<u8>,
        next: WalPos,
        more: bool,
    },
    /// The WAL is not the one the position belongs to (reset or truncated behind our back).
    Discontinuity(&'static str),
}

/// Read the committed frames after `pos`, up to about `cap` bytes (always whole transactions).
pub fn read_committed(wal: &Path, pos: &WalPos, cap: u64) -> Result<WalRead, WalError> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(nothing_or_gap(pos)),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len < HEADER_LEN {
        return Ok(nothing_or_gap(pos));
    }
    let mut raw = [0u8; 32];
    file.read_exact_at(&mut raw, 0)?;
    let header = match pos.header {
        Some(h) if raw[16..24] != salt_bytes(&h.salt) => {
            return Ok(WalRead::Discontinuity("the WAL was restarted"));
        }
        Some(h) => h,
        None if pos
            .stale
            .is_some_and(|salt| raw[16..24] == salt_bytes(&salt)) =>
        {
            return Ok(nothing_or_gap(pos));
        }
        None => match WalHeader::parse(&raw) {
            Ok(h) => h,
            Err(_) => {
                // A read beside the writer may catch SQLite rewriting the header of a new
                // cycle halfway; the whole 32-byte write is there a moment later.
                std::thread::sleep(std::time::Duration::from_millis(2));
                file.read_exact_at(&mut raw, 0)?;
                WalHeader::parse(&raw)?
            }
        },
    };
    let start = pos.offset.max(HEADER_LEN);
    if len < start {
        return Ok(WalRead::Discontinuity(
            "the WAL is shorter than what was already read",
        ));
    }
    let chain = if pos.header.is_some() {
        pos.chain
    } else {
        header.checksum
    };
    scan(file, header, start, chain, cap, len - start)
}

fn nothing_or_gap(pos: &WalPos) -> WalRead {
    if pos.header.is_some() {
        return WalRead::Discontinuity("the WAL was truncated");
    }
    WalRead::Frames {
        start: HEADER_LEN,
        seed: pos.chain,
        bytes: Vec::new(),
        next: *pos,
        more: false,
    }
}

fn salt_bytes(salt: &[u32; 2]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&salt[0].to_be_bytes());
    b[4..].copy_from_slice(&salt[1].to_be_bytes());
    b
}

/// Walk valid frames from `start`, keeping everything up to the last commit frame (about `cap`
/// bytes at most; `there` is how many the file held after `start` when it was opened).
fn scan(
    mut file: File,
    header: WalHeader,
    start: u64,
    chain: [u32; 2],
    cap: u64,
    there: u64,
) -> Result<WalRead, WalError> {
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    // Sized once: grown by doubling, a few megabytes of frames would leave each smaller copy
    // behind in the heap, where it stays held after the read.
    let mut bytes = Vec::with_capacity(usize::try_from(cap.min(there)).unwrap_or(usize::MAX));
    let mut frame = vec![0u8; header.frame_len()];
    let (mut running, mut committed_chain, mut committed_len) = (chain, chain, 0usize);
    let mut more = false;
    loop {
        if !read_full(&mut reader, &mut frame)? {
            break;
        }
        let Some(next) = check_frame(&frame, &header, running) else {
            break;
        };
        if committed_len as u64 >= cap {
            more = true;
            break;
        }
        running = next;
        bytes.extend_from_slice(&frame);
        if be32(&frame, 4) != 0 {
            committed_len = bytes.len();
            committed_chain = running;
        }
    }
    bytes.truncate(committed_len);
    let next = WalPos {
        header: Some(header),
        offset: start + committed_len as u64,
        chain: committed_chain,
        stale: None,
    };
    Ok(WalRead::Frames {
        start,
        seed: chain,
        bytes,
        next,
        more,
    })
}

/// Bytes of frames after `pos` that belong to its WAL cycle (committed or not): what is waiting
/// to be shipped. Reads only frame headers' salts, so it is cheap but not a validation.
pub fn unread_bytes(wal: &Path, pos: &WalPos) -> Result<u64, WalError> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len < HEADER_LEN {
        return Ok(0);
    }
    let mut raw = [0u8; 32];
    file.read_exact_at(&mut raw, 0)?;
    let salt = match (pos.header, pos.stale) {
        (Some(h), _) => salt_bytes(&h.salt),
        (None, Some(stale)) if raw[16..24] == salt_bytes(&stale) => return Ok(0),
        (None, _) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[16..24]);
            b
        }
    };
    let frame_len = u64::from(be32(&raw, 8)) + FRAME_HEADER_LEN as u64;
    let mut offset = pos.offset.max(HEADER_LEN);
    let mut frame_header = [0u8; FRAME_HEADER_LEN];
    while offset + frame_len <= len {
        file.read_exact_at(&mut frame_header, offset)?;
        if frame_header[8..16] != salt {
            break;
        }
        offset += frame_len;
    }
    Ok(offset - pos.offset.max(HEADER_LEN))
}

/// Fill `buf` completely; `false` at end of file (a partial frame counts as the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, WalError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The chain after `frame`, or `None` if the frame is not a valid continuation.
pub fn check_frame(frame: &[u8], header: &WalHeader, chain: [u32; 2]) -> Option<[u32; 2]> {
    if frame[8..16] != salt_bytes(&header.salt) || be32(frame, 0) == 0 {
        return None;
    }
    let sum = checksum_of(&frame[..8], chain, header.big_endian);
    let sum = checksum_of(&frame[FRAME_HEADER_LEN..], sum, header.big_endian);
    (sum == [be32(frame, 16), be32(frame, 20)]).then_some(sum)
}

/// SQLite's WAL checksum over 8-byte words, continuing from `seed`.
pub fn checksum_of(data: &[u8], seed: [u32; 2], big_endian: bool) -> [u32; 2] {
    // One loop per byte order, so the hot loop has no branch in it: this runs over every
    // shipped frame on the writer thread.
    if big_endian {
        checksum_words(data, seed, u32::from_be_bytes)
    } else {
        checksum_words(data, seed, u32::from_le_bytes)
    }
}

#[inline(always)]
fn checksum_words(data: &[u8], seed: [u32; 2], word: impl Fn([u8; 4]) -> u32) -> [u32; 2] {
    let [mut s1, mut s2] = seed;
    for w in data.chunks_exact(8) {
        s1 = s1
            .wrapping_add(word([w[0], w[1], w[2], w[3]]))
            .wrapping_add(s2);
        s2 = s2
            .wrapping_add(word([w[4], w[5], w[6], w[7]]))
            .wrapping_add(s1);
    }
    [s1, s2]
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Write the pages of whole-transaction `frames` into a database file, as a checkpoint would:
/// each page at its place, and the file cut to the size a commit frame records.
pub fn apply_frames(db: &File, page_size: u32, frames: &[u8]) -> Result<(), WalError> {
    let frame_len = FRAME_HEADER_LEN + page_size as usize;
    if !frames.len().is_multiple_of(frame_len) {
        return Err(WalError::BadFrames(format!(
            "{} bytes is not a whole number of {frame_len}-byte frames",
            frames.len()
        )));
    }
    // Pages are numbered from 1; a frame that says 0 (which a verified segment never holds) is
    // refused before anything is written.
    if let Some(i) = frames.chunks_exact(frame_len).position(|f| be32(f, 0) == 0) {
        return Err(WalError::BadFrames(format!("frame {i} names page 0")));
    }
    for frame in frames.chunks_exact(frame_len) {
        let page = u64::from(be32(frame, 0));
        db.write_all_at(
            &frame[FRAME_HEADER_LEN..],
            (page - 1) * u64::from(page_size),
        )?;
        let commit_pages = be32(frame, 4);
        if commit_pages != 0 {
            db.set_len(u64::from(commit_pages) * u64::from(page_size))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "wal_tests.rs"]
pub(super) mod tests;
