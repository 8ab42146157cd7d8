//! The only code that talks to storage: a narrow object interface with an S3 backend and a
//! local-directory backend (the embedded default).
//!
//! Keys are relative to the environment's `key_prefix` (the backend adds it) and are validated:
//! `/`-separated segments of printable characters, no empty, `.` or `..` segment. Conditional
//! writes are atomic in both backends; a failed precondition is [`StorageError::PreconditionFailed`],
//! never an error string to match.
//!
//! [`open`] picks the backend from the config's `storage` section.

mod atomic;
mod error;
pub mod health;
pub mod local;
pub mod preflight;
pub mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::StorageConfig;

pub use error::{Failure, FailureKind, StorageError};
pub use health::{StorageHealth, StorageState};

/// Opaque version tag of an object, compared for conditional writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ETag(pub String);

/// What `head` and `list` return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key relative to the prefix, as given to `put`.
    pub key: String,
    pub size: u64,
    pub etag: ETag,
    /// Seconds since the epoch of the last write.
    pub modified_unix: i64,
}

/// An object's bytes and its version.
#[derive(Clone, Debug)]
pub struct Object {
    pub body: Bytes,
    pub etag: ETag,
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The storage interface. Every method is safe to call concurrently.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Whole object with its ETag.
    async fn get(&self, key: &str) -> Result<Object>;
    /// Bytes `range` of an object (end exclusive, clamped to the object's size).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Metadata, or `None` if there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Unconditional write.
    async fn put(&self, key: &str, body: Bytes) -> Result<ETag>;
    /// Write only if no object exists at `key`; exactly one of concurrent callers wins.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<ETag>;
    /// Write only if the current object has `etag`.
    async fn put_if_match(&self, key: &str, body: Bytes, etag: &ETag) -> Result<ETag>;
    /// Upload a local file, streaming it (multipart for large files on S3).
    async fn put_file(&self, key: &str, path: &Path) -> Result<ETag>;
    /// Download an object into a local file, written atomically (temp + fsync + rename).
    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64>;
    /// Every object whose key starts with `prefix` (relative to the key prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Remove an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Where the objects live, for status and logs, e.g. `s3://bucket/env-1` (no secrets).
    fn describe(&self) -> String;
}

pub type DynStore = Arc<dyn ObjectStore>;

/// Check a key before it reaches a backend.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 900 {
        return bad("longer than 900 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("starts or ends with '/'");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("has an empty, '.' or '..' segment");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("has a control character or backslash");
    }
    Ok(())
}

/// Check a `list` prefix: empty, or key-like text that may end with `/` or in a partial segment.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    validate_key(body).map_err(|e| match e {
        StorageError::InvalidKey { reason, .. } => StorageError::InvalidKey {
            key: prefix.to_string(),
            reason,
        },
        other => other,
    })
}

/// The store the config asks for: no `storage` section → the local backend under
/// `<data_dir>/objects`; `endpoint: "file:///abs/path"` → the local backend there; anything
/// else → S3. The key prefix applies to all three.
pub async fn open(storage: Option<&StorageConfig>, data_dir: &Path) -> Result<DynStore> {
    let Some(s) = storage else {
        return open_local(crate::datadir::DataDir::new(data_dir).objects(), None).await;
    };
    match s.endpoint.as_deref().and_then(file_endpoint) {
        Some(base) if !base.is_absolute() => Err(StorageError::backend(
            "open",
            "",
            FailureKind::Config,
            "a file endpoint needs an absolute path",
            "set storage.endpoint like \"file:///var/lib/objects\"",
        )),
        Some(base) => open_local(base, s.key_prefix.clone()).await,
        None => Ok(Arc::new(s3::S3Store::connect(s).await?)),
    }
}

async fn open_local(base: PathBuf, prefix: Option<String>) -> Result<DynStore> {
    let store =
        tokio::task::spawn_blocking(move || local::LocalStore::open(&base, prefix.as_deref()))
            .await
            .map_err(|e| StorageError::Io {
                key: String::new(),
                source: std::io::Error::other(e),
            })??;
    Ok(Arc::new(store))
}

/// The directory of a `file:///abs/path` endpoint.
fn file_endpoint(endpoint: &str) -> Option<PathBuf> {
    endpoint.strip_prefix("file://").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for k in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", "a\\b", "a\nb",
        ] {
            assert!(validate_key(k).is_err(), "{k:?}");
        }
        for k in ["lease.json", "db/gen-0001/snapshot.db.zst", "chunks/ab12"] {
            validate_key(k).unwrap();
        }
    }

    #[test]
    fn prefixes_may_be_partial_or_end_with_slash() {
        for p in ["", "db/", "db/gen-", "chunks"] {
            validate_prefix(p).unwrap();
        }
        for p in ["/", "/db", "../", "db/../x", "a\\b"] {
            assert!(validate_prefix(p).is_err(), "{p:?}");
        }
    }
}
