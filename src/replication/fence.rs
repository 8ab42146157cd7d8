//! The one place replication writes to storage. Every write first asks the fence for the current
//! lease epoch and stamps it into the object name; when the fence says the lease is lost, the
//! write is refused and nothing reaches storage.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::ReplicationError;
use crate::objstore::DynStore;

/// The lease is lost: this node must not write to storage any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this node no longer holds the lease, so it must not write to storage")]
pub struct Fenced;

/// Asked before every write: the lease epoch to stamp, or [`Fenced`]. Without a fence the epoch
/// is 0 (a single node with nothing to fence against).
pub type Fence = Arc<dyn Fn() -> Result<u64, Fenced> + Send + Sync>;

/// Storage writes of replication, fenced.
#[derive(Clone)]
pub(crate) struct FencedWriter {
    pub objects: DynStore,
    fence: Option<Fence>,
}

impl FencedWriter {
    pub fn new(objects: DynStore, fence: Option<Fence>) -> Self {
        FencedWriter { objects, fence }
    }

    fn epoch(&self) -> Result<u64, ReplicationError> {
        match &self.fence {
            Some(f) => Ok(f()?),
            None => Ok(0),
        }
    }

    /// Write `body` under the key `key(epoch)`; returns the key.
    pub async fn put(
        &self,
        key: impl FnOnce(u64) -> String,
        body: Bytes,
    ) -> Result<String, ReplicationError> {
        let key = key(self.epoch()?);
        self.objects.put(&key, body).await?;
        Ok(key)
    }

    /// Upload a local file under the key `key(epoch)`; returns the key.
    pub async fn put_file(
        &self,
        key: impl FnOnce(u64) -> String,
        path: &Path,
    ) -> Result<String, ReplicationError> {
        let key = key(self.epoch()?);
        self.objects.put_file(&key, path).await?;
        Ok(key)
    }

    pub async fn delete(&self, key: &str) -> Result<(), ReplicationError> {
        self.epoch()?;
        Ok(self.objects.delete(key).await?)
    }
}
