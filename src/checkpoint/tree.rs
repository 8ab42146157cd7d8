//! Creating entries under a directory we own without ever following a symlink: every path is
//! resolved one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor
//! of the root, and every entry is created exclusively (`O_EXCL`, `mkdirat`, `symlinkat`). So a
//! symlink in a manifest, whatever its target, cannot make a later entry land outside the root,
//! even if manifest validation had missed it.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

use super::error::{CheckpointError, Result};
use super::manifest::Meta;

/// A directory opened once; all paths are relative to it.
pub struct SafeRoot {
    fd: OwnedFd,
    path: PathBuf,
}

enum Dir<'a> {
    Root(BorrowedFd<'a>),
    Sub(OwnedFd),
}

impl Dir<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Root(fd) => *fd,
            Dir::Sub(fd) => fd.as_fd(),
        }
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl SafeRoot {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| CheckpointError::io("open", path, e.into()))?;
        Ok(SafeRoot {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn err(&self, op: &'static str, rel: &str, e: nix::Error) -> CheckpointError {
        CheckpointError::io(op, &self.path.join(rel), e.into())
    }

    /// The directory holding `rel` and the last component of `rel`.
    fn parent<'a>(&'a self, rel: &'a str) -> Result<(Dir<'a>, &'a str)> {
        let (dirs, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, rel),
        };
        let mut dir = Dir::Root(self.fd.as_fd());
        for seg in dirs.into_iter().flat_map(|d| d.split('/')) {
            let next = openat(dir.fd(), seg, DIR_FLAGS, Mode::empty())
                .map_err(|e| self.err("open directory", rel, e))?;
            dir = Dir::Sub(next);
        }
        Ok((dir, name))
    }

    pub fn mkdir(&self, rel: &str) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        mkdirat(dir.fd(), name, Mode::from_bits_truncate(0o700))
            .map_err(|e| self.err("mkdir", rel, e))
    }

    /// Create an empty file; fails if anything exists at `rel`.
    pub fn create_file(&self, rel: &str) -> Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let (dir, name) = self.parent(rel)?;
        let fd = openat(dir.fd(), name, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| self.err("create", rel, e))?;
        Ok(File::from(fd))
    }

    /// Open an existing regular file for writing.
    pub fn open_file(&self, rel: &str, write: bool) -> Result<File> {
        let access = if write {
            OFlag::O_WRONLY
        } else {
            OFlag::O_RDONLY
        };
        let (dir, name) = self.parent(rel)?;
        let fd = openat(
            dir.fd(),
            name,
            access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("open", rel, e))?;
        Ok(File::from(fd))
    }

    /// Open an existing regular file for direct writes (`O_DIRECT`); `None` where the
    /// filesystem does not take them.
    pub fn open_direct(&self, rel: &str) -> Result<Option<File>> {
        let flags = OFlag::O_WRONLY | OFlag::O_DIRECT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let (dir, name) = self.parent(rel)?;
        match openat(dir.fd(), name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(nix::Error::EINVAL) => Ok(None),
            Err(e) => Err(self.err("open", rel, e)),
        }
    }

    pub fn symlink(&self, rel: &str, target: &str) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        symlinkat(target, dir.fd(), name).map_err(|e| self.err("symlink", rel, e))
    }

    /// Apply owner (when running as root), mode and mtime to a file or directory.
    pub fn set_meta(&self, rel: Option<&str>, meta: &Meta, is_dir: bool) -> Result<()> {
        let at = rel.unwrap_or(".");
        let fd = match rel {
            None => self
                .fd
                .try_clone()
                .map_err(|e| CheckpointError::io("dup", &self.path, e))?,
            Some(rel) if is_dir => {
                let (dir, name) = self.parent(rel)?;
                openat(dir.fd(), name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| self.err("open", rel, e))?
            }
            Some(rel) => self.open_file(rel, false)?.into(),
        };
        if nix::unistd::geteuid().is_root() {
            fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| self.err("chown", at, e))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(meta.mode)).map_err(|e| self.err("chmod", at, e))?;
        let t = timespec(meta.mtime_ns);
        futimens(&fd, &t, &t).map_err(|e| self.err("set mtime of", at, e))
    }

    /// Apply owner (when running as root) and mtime to a symlink itself.
    pub fn set_symlink_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        if nix::unistd::geteuid().is_root() {
            let (u, g) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
            fchownat(
                dir.fd(),
                name,
                Some(u),
                Some(g),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.err("chown", rel, e))?;
        }
        let t = timespec(meta.mtime_ns);
        utimensat(dir.fd(), name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.err("set mtime of", rel, e))
    }
}

fn timespec(ns: i64) -> TimeSpec {
    TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_directory_is_never_entered() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let t = SafeRoot::open(root.path()).unwrap();
        t.symlink("link", outside.path().to_str().unwrap()).unwrap();
        assert!(t.create_file("link/evil").is_err());
        assert!(t.mkdir("link/evil").is_err());
        assert!(t.symlink("link/evil", "x").is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        t.symlink("file", "/etc/passwd").unwrap();
        assert!(t.open_file("file", true).is_err());
        assert!(t.create_file("file").is_err());
    }
}
