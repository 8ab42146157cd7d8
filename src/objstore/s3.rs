//! The S3 backend (aws-sdk-s3).

use super::{ETag, Object, ObjectMeta, ObjectStore, Result, StoreError};
use crate::config::StorageConfig;
use bytes::Bytes;
use std::ops::Range;
use std::path::Path;

/// Objects in an S3 bucket under the key prefix.
pub struct S3Store {}

fn missing() -> StoreError {
    StoreError::Backend {
        op: "open",
        key: String::new(),
        message: "the S3 backend is not available in this build".into(),
    }
}

impl S3Store {
    /// A client for the bucket in `cfg`.
    pub async fn connect(_cfg: &StorageConfig) -> Result<S3Store> {
        Err(missing())
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, _: &str) -> Result<Object> {
        Err(missing())
    }
    async fn get_range(&self, _: &str, _: Range<u64>) -> Result<Bytes> {
        Err(missing())
    }
    async fn head(&self, _: &str) -> Result<Option<ObjectMeta>> {
        Err(missing())
    }
    async fn put(&self, _: &str, _: Bytes) -> Result<ETag> {
        Err(missing())
    }
    async fn put_if_absent(&self, _: &str, _: Bytes) -> Result<ETag> {
        Err(missing())
    }
    async fn put_if_match(&self, _: &str, _: Bytes, _: &ETag) -> Result<ETag> {
        Err(missing())
    }
    async fn put_file(&self, _: &str, _: &Path) -> Result<ETag> {
        Err(missing())
    }
    async fn get_to_file(&self, _: &str, _: &Path) -> Result<u64> {
        Err(missing())
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>> {
        Err(missing())
    }
    async fn delete(&self, _: &str) -> Result<()> {
        Err(missing())
    }
    fn describe(&self) -> String {
        String::new()
    }
}
