//! The continuity record `<db>-replication.json`, written only by a clean shutdown after the last
//! frames were shipped and the WAL was truncated. At the next start it proves that the local
//! database is exactly where the stored generation ends (same location, same bytes, empty WAL),
//! so replication continues that generation instead of uploading a new snapshot. It is removed
//! as soon as it is read: anything else means "start a new generation", which is always safe.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files;

const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub version: u32,
    /// `ObjectStore::describe()` of the storage the generation lives in.
    pub location: String,
    pub generation: String,
    /// The WAL cycle index the next writes belong to.
    pub next_index: u64,
    pub db_len: u64,
    pub db_blake3: String,
}

impl Sidecar {
    pub fn new(location: String, generation: String, next_index: u64, fp: (u64, String)) -> Self {
        Sidecar {
            version: VERSION,
            location,
            generation,
            next_index,
            db_len: fp.0,
            db_blake3: fp.1,
        }
    }
}

pub fn path_for(db: &Path) -> PathBuf {
    files::companion(db, "-replication.json")
}

/// Write the record durably.
pub fn write(db: &Path, sidecar: &Sidecar) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(sidecar).map_err(std::io::Error::other)?;
    files::write_atomic(&path_for(db), &json)
}

/// Read and remove the record. Missing, unreadable or of another version: `None`.
pub fn take(db: &Path) -> Option<Sidecar> {
    let path = path_for(db);
    let bytes = std::fs::read(&path).ok()?;
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the replication record");
        return None;
    }
    serde_json::from_slice::<Sidecar>(&bytes)
        .ok()
        .filter(|s| s.version == VERSION)
}

/// Does the local database still match the record? (Blocking: hashes the file. Call it before
/// SQLite opens the database, see `Store::db_file`.)
pub fn matches(db: &Path, sidecar: &Sidecar, location: &str) -> bool {
    if sidecar.location != location || files::len_or_zero(&files::companion(db, "-wal")) != 0 {
        return false;
    }
    std::fs::File::open(db)
        .and_then(|f| files::fingerprint(&f))
        .is_ok_and(|(len, hash)| len == sidecar.db_len && hash == sidecar.db_blake3)
}
