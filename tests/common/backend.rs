//! Where a test keeps its objects: a local directory, a moto server, or s3s-fs (which checks
//! signatures), each made ready with one bucket, [`BUCKET`]. Every store a test opens comes
//! from [`Backend::storage`] through `objstore::open`, as the service opens it.
//!
//! The local backend keeps its objects in `<tempdir>/objects`; the servers are killed when the
//! backend is dropped. What only one test module needs (making the local directory refuse
//! writes, a node's JSON config) lives in that module, named for what it does.

use std::path::{Path, PathBuf};

use state_manager::config::StorageConfig;
use state_manager::objstore::{self, DynStore};

use super::moto::MotoServer;
use super::s3s::S3sServer;

/// The bucket every server backend creates.
pub const BUCKET: &str = "env";

/// One test's storage.
pub enum Backend {
    Local(tempfile::TempDir),
    Moto(MotoServer),
    /// s3s-fs, which checks every request's signature.
    S3s(S3sServer),
}

impl Backend {
    /// Objects under a fresh temporary directory.
    pub fn local() -> Backend {
        Backend::Local(tempfile::tempdir().unwrap())
    }

    /// A moto server of its own, with [`BUCKET`].
    pub fn moto() -> Backend {
        let moto = MotoServer::start();
        moto.create_bucket(BUCKET);
        Backend::Moto(moto)
    }

    /// An s3s-fs server of its own, with [`BUCKET`] and the test keys.
    pub fn s3s() -> Backend {
        let s3s = S3sServer::start();
        s3s.create_bucket(BUCKET);
        Backend::S3s(s3s)
    }

    /// The storage section for keys under `prefix` (none if empty).
    pub fn storage(&self, prefix: &str) -> StorageConfig {
        match self {
            Backend::Local(dir) => StorageConfig {
                endpoint: Some(format!("file://{}", dir.path().join("objects").display())),
                key_prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                ..StorageConfig::default()
            },
            Backend::Moto(moto) => moto.storage_config(BUCKET, prefix),
            Backend::S3s(s3s) => s3s.storage_config(BUCKET, prefix),
        }
    }

    /// A store of its own for keys under `prefix`, as a node would open it.
    pub async fn store(&self, prefix: &str) -> DynStore {
        objstore::open(Some(&self.storage(prefix)), Path::new("/nonexistent"))
            .await
            .unwrap()
    }

    /// The directory of the objects under `prefix` (local backend only).
    pub fn objects_dir(&self, prefix: &str) -> Option<PathBuf> {
        match self {
            Backend::Local(dir) => Some(dir.path().join("objects").join(prefix)),
            _ => None,
        }
    }

    /// The moto server, for a case that stops, restarts or freezes it.
    pub fn moto_server(&self) -> &MotoServer {
        match self {
            Backend::Moto(m) => m,
            _ => panic!("this case needs the moto backend"),
        }
    }

    /// [`Backend::moto_server`], to stop or restart it.
    pub fn moto_server_mut(&mut self) -> &mut MotoServer {
        match self {
            Backend::Moto(m) => m,
            _ => panic!("this case needs the moto backend"),
        }
    }
}
