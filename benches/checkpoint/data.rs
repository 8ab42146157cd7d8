//! The benchmark's environment directory: 1 GiB of mixed files, and the 1 % change.
//!
//! | part        | files            | content                                   |
//! |-------------|------------------|-------------------------------------------|
//! | `db/`       | 4 × 128 MiB      | 4 KiB pages, 3 in 4 random, 1 in 4 text   |
//! | `media/`    | 8 × 32 MiB       | random (already compressed data)          |
//! | `logs/`     | 2 × 64 MiB       | log lines (compress ~10×)                 |
//! | `src/`      | 2,048 × 64 KiB   | source-like text over 64 directories      |
//!
//! The 1 % change (10.3 MiB): 6 MiB overwritten in the middle of one database file, 3 MiB
//! appended to one log, 52 small files rewritten (1.3 MiB).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const MIB: u64 = 1024 * 1024;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            w.copy_from_slice(&x[..w.len()]);
        }
    }
}

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "request",
        "user",
        "id=",
        "GET",
        "/api/v1/items",
        "200",
        "latency_ms=",
        "INFO",
        "cache",
        "miss",
        "fn",
        "let",
    ];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let n = rng.next();
        out.extend_from_slice(WORDS[(n % 12) as usize].as_bytes());
        out.extend_from_slice(format!(" {} ", n % 10_000).as_bytes());
        if n.is_multiple_of(7) {
            out.push(b'\n');
        }
    }
    out.truncate(len);
    out
}

fn write_file(path: &Path, len: u64, seed: u64, kind: &str) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut f =
        std::io::BufWriter::with_capacity(4 * MIB as usize, fs::File::create(path).unwrap());
    let mut page = vec![0u8; 4096];
    let mut written = 0;
    while written < len {
        match kind {
            "db" if rng.next().is_multiple_of(4) => page.copy_from_slice(&text(&mut rng, 4096)),
            "log" => page.copy_from_slice(&text(&mut rng, 4096)),
            _ => rng.fill(&mut page),
        }
        let n = (len - written).min(4096) as usize;
        f.write_all(&page[..n]).unwrap();
        written += n as u64;
    }
    f.flush().unwrap();
}

/// Write the whole tree; returns its size in bytes.
pub fn generate(env: &Path) -> u64 {
    let mut total = 0;
    for (dir, count, size, kind) in [
        ("db", 4, 128 * MIB, "db"),
        ("media", 8, 32 * MIB, "media"),
        ("logs", 2, 64 * MIB, "log"),
    ] {
        fs::create_dir_all(env.join(dir)).unwrap();
        for i in 0..count {
            write_file(
                &env.join(format!("{dir}/{i}.bin")),
                size,
                i as u64 + size,
                kind,
            );
            total += size;
        }
    }
    let mut rng = Rng(7);
    for i in 0..2048u64 {
        let dir = env.join(format!("src/m{:02}", i % 64));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}.rs")), text(&mut rng, 64 * 1024)).unwrap();
        total += 64 * 1024;
    }
    total
}

/// Apply the 1 % change; returns the number of bytes changed.
pub fn change_one_percent(env: &Path, round: u64) -> u64 {
    let mut rng = Rng(1000 + round);
    let mut db = fs::OpenOptions::new()
        .write(true)
        .open(env.join("db/2.bin"))
        .unwrap();
    db.seek(SeekFrom::Start(40 * MIB)).unwrap();
    let mut buf = vec![0u8; 6 * MIB as usize];
    rng.fill(&mut buf);
    db.write_all(&buf).unwrap();
    let mut log = fs::OpenOptions::new()
        .append(true)
        .open(env.join("logs/1.bin"))
        .unwrap();
    log.write_all(&text(&mut rng, 3 * MIB as usize)).unwrap();
    for i in 0..52u64 {
        let n = i * 37 % 2048;
        let path = env.join(format!("src/m{:02}/f{n}.rs", n % 64));
        fs::write(path, text(&mut rng, 25 * 1024 + 512)).unwrap();
    }
    9 * MIB + 52 * (25 * 1024 + 512)
}

/// Bytes under `dir`.
pub fn du(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}
