//! The one place replication writes to storage. Every write first asks the lease's [`Fence`] for
//! the current epoch and stamps it into the object name; when the fence refuses, the write is
//! refused with the fence's reason and nothing reaches storage. Without a fence the epoch is 0
//! (a single node with nothing to fence against).

use std::path::Path;

use bytes::Bytes;

use super::ReplicationError;
use crate::lease::Fence;
use crate::objstore::DynStore;

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
            Some(f) => Ok(f.check()?),
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
