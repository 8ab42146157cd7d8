//! Atomic local-file writes shared by both backends: a temp file beside the destination,
//! fsync, rename, fsync of the directory.
//!
//! Temp files carry a backslash in their name (`<name>\<pid>-<seq>.tmp`). A backslash can never
//! appear in a valid key (see [`super::validate_key`]), so a temp file can never be mistaken for
//! an object, and listing skips any name containing [`RESERVED`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks names the local backend owns (temp files, the lock file); never part of a valid key.
pub(crate) const RESERVED: char = '\\';

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temp file that is removed on drop unless it was renamed into place.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    armed: bool,
}

impl TempFile {
    /// Create a new, empty temp file (mode 0600) in the directory of `dest`, creating that
    /// directory (mode 0700) if needed. Retries if a concurrent delete removes the directory.
    pub(crate) fn beside(dest: &Path) -> io::Result<TempFile> {
        let dir = parent(dest);
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let mut attempt = 0;
        loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{name}{RESERVED}{}-{seq}.tmp", std::process::id()));
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match opened {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        armed: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => {
                    attempt += 1;
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Write all of `body` and flush it to disk.
    pub(crate) fn write_synced(&mut self, body: &[u8]) -> io::Result<()> {
        self.file.write_all(body)?;
        self.file.sync_data()
    }

    /// Copy all of `src` into the temp file and flush it to disk; returns the bytes copied.
    pub(crate) fn copy_synced(&mut self, src: &mut impl io::Read) -> io::Result<u64> {
        let n = io::copy(src, &mut self.file)?;
        self.file.sync_data()?;
        Ok(n)
    }

    /// Rename over `dest`. The caller fsyncs the directory (see [`fsync_parent`]) before it
    /// reports the write as done.
    pub(crate) fn rename_to(&mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(crate) use crate::durable::{parent, sync_dir as fsync_parent};

/// Write the whole of `src` to `dest` atomically: temp + fsync + rename + fsync dir.
pub(crate) fn copy_into(src: &mut impl io::Read, dest: &Path) -> io::Result<u64> {
    let mut tmp = TempFile::beside(dest)?;
    let n = tmp.copy_synced(src)?;
    tmp.rename_to(dest)?;
    fsync_parent(dest)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_is_removed_unless_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/obj");
        let tmp = TempFile::beside(&dest).unwrap();
        let tmp_path = tmp.path.clone();
        assert!(tmp_path.to_string_lossy().contains(RESERVED));
        drop(tmp);
        assert!(!tmp_path.exists());

        let n = copy_into(&mut &b"hello"[..], &dest).unwrap();
        assert_eq!(n, 5);
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert_eq!(fs::read_dir(parent(&dest)).unwrap().count(), 1);
    }
}
