//! Local file chores of replication, all blocking (call them off the async runtime): compressing
//! a snapshot, decompressing one, fingerprints, atomic writes, moving a database aside.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SNAPSHOT_LEVEL: i32 = 3;

/// `<db>-wal`, `<db>-shm` or another companion file of a database.
pub fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Reads a shared file handle from the start with positional reads (never moving a cursor that
/// clones of the handle share).
pub struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> ReadAt<'a> {
    pub fn new(file: &'a File) -> Self {
        ReadAt { file, pos: 0 }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Compress the database file behind `db` (the store's shared handle) into `out` (zstd with a
/// content checksum), durably. Returns the compressed size.
pub fn compress_file(db: &File, out: &Path) -> io::Result<u64> {
    let mut src = BufReader::with_capacity(1 << 20, ReadAt::new(db));
    let dst = File::create(out)?;
    let mut enc =
        zstd::stream::Encoder::new(BufWriter::with_capacity(1 << 20, dst), SNAPSHOT_LEVEL)?;
    enc.include_checksum(true)?;
    io::copy(&mut src, &mut enc)?;
    let dst = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
    dst.sync_all()?;
    dst.metadata().map(|m| m.len())
}

/// Decompress `src` into a new file `out`, synced.
pub fn decompress_file(src: &Path, out: &Path) -> io::Result<u64> {
    let input = BufReader::with_capacity(1 << 20, File::open(src)?);
    let mut dst = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let n = io::copy(&mut zstd::stream::Decoder::new(input)?, &mut dst)?;
    dst.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(n)
}

/// Length and BLAKE3 hash of a file: proves at start-up that the database is byte for byte the
/// one a clean shutdown left.
pub fn fingerprint(file: &File) -> io::Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    let mut reader = BufReader::with_capacity(1 << 20, ReadAt::new(file));
    let len = io::copy(&mut reader, &mut hasher)?;
    Ok((len, hasher.finalize().to_hex().to_string()))
}

/// Write `bytes` to `path` atomically (see [`crate::durable`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::durable::write_file(path, bytes)
}

pub use crate::durable::sync_dir;

/// Remove the `-wal` and `-shm` files of `db`: a WAL left beside a different database file
/// would be replayed into it.
pub fn remove_wal_files(db: &Path) -> io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        match fs::remove_file(companion(db, suffix)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Rename `db` and its WAL files to `<db>.<tag>` (keeping them a consistent set); returns the new
/// database path.
pub fn move_aside(db: &Path, tag: &str) -> io::Result<PathBuf> {
    let to = companion(db, &format!(".{tag}"));
    for suffix in ["-wal", "-shm", ""] {
        match fs::rename(companion(db, suffix), companion(&to, suffix)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    sync_dir(db)?;
    Ok(to)
}

/// Size of a file, 0 if it does not exist.
pub fn len_or_zero(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Remove snapshot files a crash left beside `db` (`<db>-snapshot-*.zst`).
pub fn remove_stale_snapshots(db: &Path) -> io::Result<()> {
    let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}-snapshot-", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".zst") {
            fs::remove_file(dir.join(file))?;
        }
    }
    Ok(())
}
