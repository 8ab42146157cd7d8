//! Versions of local objects: the ETag is `<inode>-<mtime ns>-<size>` (hex) from one `fstat`,
//! and every write pushes the new file's mtime above the one it replaces, so no two versions
//! of a key share an ETag even when an inode number is reused. On a filesystem with one-second
//! timestamps the mtime moves to the next second instead. A key deleted and written again starts
//! from the clock; its ETag could repeat an old one only with the same inode, size and
//! nanosecond.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use crate::objstore::ETag;

/// The ETag of the file behind `meta` (see the module header).
pub(super) fn etag_of(meta: &Metadata) -> ETag {
    ETag(format!(
        "{:x}-{:x}-{:x}",
        meta.ino(),
        mtime_ns(meta),
        meta.len()
    ))
}

pub(super) fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Set `file`'s mtime above the replaced object's, so the new ETag differs from every earlier
/// one of this key; returns the file's final metadata.
pub(super) fn advance_mtime(file: &File, current: Option<&Metadata>) -> io::Result<Metadata> {
    let now = SystemTime::now();
    let Some(cur) = current else {
        file.set_modified(now)?;
        return file.metadata();
    };
    let cur_time = cur.modified()?;
    for bump in [
        Duration::from_nanos(1),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ] {
        file.set_modified(now.max(cur_time + bump))?;
        let meta = file.metadata()?;
        if mtime_ns(&meta) > mtime_ns(cur) {
            return Ok(meta);
        }
    }
    Err(io::Error::other(
        "the filesystem does not keep modification times finely enough to version objects",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_in_the_same_instant_get_new_etags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let old = std::fs::metadata(&path).unwrap();
        // A new version whose clock reading would equal the old one.
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(old.modified().unwrap()).unwrap();
        let new = advance_mtime(&file, Some(&old)).unwrap();
        assert!(mtime_ns(&new) > mtime_ns(&old));
        assert_ne!(etag_of(&new), etag_of(&old));
    }
}
