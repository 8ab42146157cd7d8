//! A storage backend plus per-"node" directories (env_dir and state dir), and freezers that
//! let a test observe and hold the freeze window.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use state_manager::checkpoint::{CheckpointEngine, EngineOptions, FreezeError, Freezer};
use state_manager::config::StorageConfig;
use state_manager::objstore::DynStore;

use crate::common::backend::Backend;

/// One test's world: storage, and directories for as many nodes as it likes.
pub struct Fx {
    pub dir: tempfile::TempDir,
    pub storage: StorageConfig,
    pub store: DynStore,
    /// Keeps the storage (a server, a directory) alive for the test.
    _backend: Backend,
}

impl Fx {
    pub async fn new(backend: Backend) -> Fx {
        let storage = backend.storage("env-1");
        let store = backend.store("env-1").await;
        Fx {
            dir: tempfile::tempdir().unwrap(),
            storage,
            store,
            _backend: backend,
        }
    }

    pub fn env(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("env")
    }

    pub fn state(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("state")
    }

    pub fn options() -> EngineOptions {
        EngineOptions {
            concurrency: 4,
            gc_grace: Duration::ZERO,
            ..EngineOptions::default()
        }
    }

    /// An engine for `node`, recovered and ready.
    pub async fn engine(&self, node: &str) -> CheckpointEngine {
        self.engine_with(node, Fx::options()).await
    }

    pub async fn engine_with(&self, node: &str, opts: EngineOptions) -> CheckpointEngine {
        std::fs::create_dir_all(self.dir.path().join(node)).unwrap();
        let e = CheckpointEngine::new(self.store.clone(), self.env(node), self.state(node), opts)
            .unwrap();
        e.recover().await.unwrap();
        e
    }

    /// Object keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }
}

/// Counts calls; can be told to fail its freeze.
#[derive(Default)]
pub struct CountingFreezer {
    pub freezes: AtomicUsize,
    pub thaws: AtomicUsize,
    pub fail_freeze: bool,
}

#[async_trait::async_trait]
impl Freezer for CountingFreezer {
    async fn freeze(&self) -> Result<(), FreezeError> {
        self.freezes.fetch_add(1, Ordering::SeqCst);
        if self.fail_freeze {
            return Err("process group 4242 did not stop".into());
        }
        Ok(())
    }
    async fn thaw(&self) -> Result<(), FreezeError> {
        self.thaws.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Holds the checkpoint inside `freeze` until released, so a test can act at that moment.
pub struct GatedFreezer {
    pub frozen: tokio::sync::Notify,
    pub release: tokio::sync::Semaphore,
    pub thaws: AtomicUsize,
}

impl GatedFreezer {
    pub fn new() -> Arc<GatedFreezer> {
        Arc::new(GatedFreezer {
            frozen: tokio::sync::Notify::new(),
            release: tokio::sync::Semaphore::new(0),
            thaws: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl Freezer for GatedFreezer {
    async fn freeze(&self) -> Result<(), FreezeError> {
        self.frozen.notify_one();
        self.release.acquire().await?.forget();
        Ok(())
    }
    async fn thaw(&self) -> Result<(), FreezeError> {
        self.thaws.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
