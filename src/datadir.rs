//! The data directory: every path state-manager keeps under it, and its lock.
//!
//! ```text
//! <data_dir>/
//!   state-manager.lock   the lock (holds the holder's pid)
//!   config.json          the config file, unless --config names another
//!   state.db             the state database (+ -wal, -shm and replication's files beside it)
//!   owner.json           the last lease epoch this data directory owned the environment under
//!   fence                the page shared with the fence process (lease deadline, what it did)
//!   lease-epoch          the epoch this node owns the environment under, for its processes
//!   instance-id          this directory's id, named in the lease it holds (reclaimed at restart)
//!   checkpoint/          checkpoint state: staging, restore journal, local index (see checkpoint)
//!   env/                 the environment directory, unless storage.env_dir names another
//!   stacks/              string stacks (<name>/run), unless stacks_dir names another
//!   objects/             the local storage backend, when no storage is configured
//! ```
//!
//! One state-manager per data directory, enforced with an OS file lock (not a pid file, which
//! outlives a crash). The lock file also holds the holder's pid so that a refused second
//! instance can say who holds it. Hooks run with the data directory as their working directory.
//!
//! The directory is 0700 and the files holding state or secrets under it 0600 (the config, the
//! database with its WAL and SHM, the owner record, the fence page, the instance id, replication's and checkpoints' state).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::config::Config;

/// A data directory: the root, and a method for every path under it. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock that keeps a second state-manager off this directory.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("state-manager.lock")
    }

    /// The config file when none is given on the command line.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// The state database.
    pub fn db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The record of the last epoch this directory owned the environment under.
    pub fn owner_record(&self) -> PathBuf {
        self.root.join("owner.json")
    }

    /// The page the server shares with its fence process (`lease::watchdog`).
    pub fn fence_page(&self) -> PathBuf {
        self.root.join("fence")
    }

    /// This directory's instance id (`lease::instance_id`).
    pub fn instance_id_file(&self) -> PathBuf {
        self.root.join("instance-id")
    }

    /// The lease epoch the processes run under (`STATE_MANAGER_LEASE_EPOCH_FILE`).
    pub fn lease_epoch_file(&self) -> PathBuf {
        self.root.join("lease-epoch")
    }

    /// The checkpoint engine's own state (its layout is the checkpoint module's).
    pub fn checkpoint_state(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// Where the local storage backend keeps objects when no storage is configured.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The environment directory checkpoints capture: `storage.env_dir`, else `env/`.
    pub fn env_dir(&self, config: &Config) -> PathBuf {
        config
            .storage
            .as_ref()
            .and_then(|s| s.env_dir.clone())
            .unwrap_or_else(|| self.root.join("env"))
    }

    /// Where string stacks live: `stacks_dir`, else `stacks/`.
    pub fn stacks_dir(&self, config: &Config) -> PathBuf {
        config
            .stacks_dir
            .clone()
            .unwrap_or_else(|| self.root.join("stacks"))
    }

    /// Create the directory if needed and lock it for the life of the returned guard.
    pub fn lock(&self) -> Result<DirLock, LockError> {
        lock(self)
    }
}

/// Held for the life of the process; the OS releases it on exit, even on kill -9.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another state-manager (pid {pid}) is running on data directory {dir}; stop it or use another --data-dir"
    )]
    Held { dir: String, pid: String },
    #[error("cannot use data directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

fn lock(data_dir: &DataDir) -> Result<DirLock, LockError> {
    let dir = data_dir.root();
    let io = |source| LockError::Io {
        dir: dir.display().to_string(),
        source,
    };
    create_private_dir(dir).map_err(io)?;
    let path = data_dir.lock_file();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = if pid.trim().is_empty() {
                "unknown".into()
            } else {
                pid.trim().to_string()
            };
            return Err(LockError::Held {
                dir: dir.display().to_string(),
                pid,
            });
        }
    };
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _lock: lock, path })
}

/// Create `dir` (and missing parents) as 0700, and make it 0700 if it exists: the data
/// directory holds the config, the state database and the process set's environment, for the
/// user state-manager runs as only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Create `path` empty as 0600 if it does not exist, and make it 0600 if it does: for files that
/// another library creates (SQLite takes the mode of the database for its WAL and SHM files).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_private_even_when_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = DataDir::new(tmp.path().join("a/data"));
        let _held = fresh.lock().unwrap();
        assert_eq!(mode(fresh.root()), 0o700);
        assert_eq!(mode(&fresh.lock_file()), 0o600);
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _held = DataDir::new(&old).lock().unwrap();
        assert_eq!(mode(&old), 0o700);
    }

    #[test]
    fn second_lock_is_refused_with_the_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let _held = dir.lock().unwrap();
        let err = dir.lock().unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }
}
