//! Replication segments as read from storage (`replication::segment::decode`):
//!
//! - any bytes as a stored body, and the same bytes as a body's decompressed content (so that
//!   the header and frame checks are reached, not only zstd's): a segment whose frames are
//!   whole, or a refusal that says why;
//! - a valid segment built from the input (frames with correct checksums) decodes to its
//!   frames, and the same segment with one bit of its frames or of its magic, salts or seed
//!   flipped is refused.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use state_manager::replication::segment::{self, Segment, SegmentError};
use state_manager::replication::wal::{self, FRAME_HEADER_LEN, WalHeader};

fuzz_target!(|data: &[u8]| {
    check(segment::decode(data));
    let content = zstd::bulk::compress(data, 1).expect("zstd compresses");
    check(segment::decode(&content));
    let _ = built(&mut Unstructured::new(data));
});

fn check(r: std::result::Result<Segment, SegmentError>) {
    match r {
        Ok(s) => {
            let frame = FRAME_HEADER_LEN + s.page_size as usize;
            assert!(!s.frames.is_empty() && s.frames.len() % frame == 0);
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
}

/// Length of the header inside a segment's content: magic, byte order, page size, salts, seed.
const HEADER: usize = 32;

fn built(u: &mut Unstructured) -> Result<()> {
    let header = WalHeader {
        // 512 to 4096 bytes: larger pages only slow each run (the decoder's page size rule is
        // reached through the content path above).
        page_size: 512 << u.int_in_range(0..=3u32)?,
        salt: u.arbitrary()?,
        checksum: [0, 0],
        big_endian: u.arbitrary()?,
    };
    let seed: [u32; 2] = u.arbitrary()?;
    let count = u.int_in_range(1..=3usize)?;
    let mut frames = Vec::new();
    let mut chain = seed;
    for i in 0..count {
        let page_no: u32 = u.int_in_range(1..=u32::MAX)?;
        // The last frame commits.
        let commit: u32 = if i + 1 == count {
            u.int_in_range(1..=u32::MAX)?
        } else {
            u.arbitrary()?
        };
        let mut page = vec![0u8; header.page_size as usize];
        let given = u.bytes(u.len().min(page.len()))?;
        page[..given.len()].copy_from_slice(given);
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + page.len());
        frame.extend_from_slice(&page_no.to_be_bytes());
        frame.extend_from_slice(&commit.to_be_bytes());
        for s in header.salt {
            frame.extend_from_slice(&s.to_be_bytes());
        }
        chain = wal::checksum_of(&frame[..8], chain, header.big_endian);
        chain = wal::checksum_of(&page, chain, header.big_endian);
        for s in chain {
            frame.extend_from_slice(&s.to_be_bytes());
        }
        frame.extend_from_slice(&page);
        frames.extend_from_slice(&frame);
    }
    let body = segment::encode(&header, seed, &frames).expect("a segment encodes");
    let s = segment::decode(&body).expect("a valid segment decodes");
    assert_eq!(
        (s.frames.as_slice(), s.end, s.seed),
        (frames.as_slice(), chain, seed)
    );
    assert_eq!((s.page_size, s.salt), (header.page_size, header.salt));

    // One bit flipped in the magic (bytes 0..8), the salts and seed (16..32) or the frames.
    let content = zstd::stream::decode_all(body.as_slice()).expect("decompresses");
    let flippable = 8 + 16 + frames.len();
    let at = u.int_in_range(0..=flippable * 8 - 1)?;
    let (byte, bit) = (at / 8, at % 8);
    let byte = match byte {
        b if b < 8 => b,
        b if b < 24 => b + 8,
        b => b - 24 + HEADER,
    };
    let mut damaged = content;
    damaged[byte] ^= 1 << bit;
    let body = zstd::bulk::compress(&damaged, 1).expect("zstd compresses");
    assert!(
        segment::decode(&body).is_err(),
        "bit {bit} of byte {byte} flipped and the segment still decodes"
    );
    Ok(())
}
