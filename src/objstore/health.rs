//! Whether storage works, as the node's own requests find it: [`watched`] wraps a store so
//! that every request's outcome updates one [`StorageHealth`] on a watch channel, which status,
//! metrics and `ctl status` read.
//!
//! Invariants:
//! - Every request of every user (the lease's polls and renewals, replication, checkpoints)
//!   counts, so a standby that cannot read the lease shows it within one poll interval, and
//!   the first request that works again clears it.
//! - An answer that says storage works (found, not found, precondition failed) is healthy; a
//!   [`Failure`] is not; a key we refused ourselves says nothing about storage.
//! - A change of state is logged once (a warning when it starts failing or the kind changes,
//!   info when it works again), never once per failed request.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{DynStore, ETag, Failure, Object, ObjectMeta, ObjectStore, Result, StorageError};

/// The three states of storage as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    /// No request has finished yet.
    Unknown,
    /// The last request worked.
    Ok,
    /// The last request failed; `failure` says why and what to do.
    Failing,
}

/// Storage health for `GET /`: the state, since when, and the failure with its fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StorageHealth {
    pub state: StorageState,
    /// When the state (or the kind of failure) last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When a request last worked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_ok: Option<OffsetDateTime>,
    /// The last failure while `failing`.
    pub failure: Option<Failure>,
}

impl StorageHealth {
    fn unknown() -> StorageHealth {
        StorageHealth {
            state: StorageState::Unknown,
            since: OffsetDateTime::now_utc(),
            last_ok: None,
            failure: None,
        }
    }

    pub fn is_failing(&self) -> bool {
        self.state == StorageState::Failing
    }
}

/// `inner`, with every outcome recorded; and the channel its health is published on.
pub fn watched(inner: DynStore) -> (DynStore, watch::Receiver<StorageHealth>) {
    let (tx, rx) = watch::channel(StorageHealth::unknown());
    let store = Watched {
        inner,
        health: Arc::new(tx),
    };
    (Arc::new(store), rx)
}

struct Watched {
    inner: DynStore,
    health: Arc<watch::Sender<StorageHealth>>,
}

impl Watched {
    fn note<T>(&self, r: Result<T>) -> Result<T> {
        match &r {
            Ok(_)
            | Err(StorageError::NotFound { .. } | StorageError::PreconditionFailed { .. }) => {
                self.worked()
            }
            Err(e) => {
                if let Some(f) = e.failure() {
                    self.failed(f);
                }
            }
        }
        r
    }

    fn worked(&self) {
        let now = OffsetDateTime::now_utc();
        self.health.send_if_modified(|h| {
            let changed = h.state != StorageState::Ok;
            if changed {
                if h.state == StorageState::Failing {
                    tracing::info!(storage = %self.inner.describe(), "storage works again");
                }
                h.state = StorageState::Ok;
                h.since = now;
                h.failure = None;
            }
            h.last_ok = Some(now);
            // `last_ok` alone is not news: watchers wake on state changes only.
            changed
        });
    }

    fn failed(&self, f: Failure) {
        self.health.send_if_modified(|h| {
            let same = h.state == StorageState::Failing && h.failure.as_ref() == Some(&f);
            if same {
                return false;
            }
            let new_kind = h.failure.as_ref().map(|o| o.kind) != Some(f.kind);
            if h.state != StorageState::Failing || new_kind {
                tracing::warn!(
                    storage = %self.inner.describe(),
                    kind = f.kind.as_str(),
                    "storage is failing: {f}"
                );
                h.since = OffsetDateTime::now_utc();
            }
            h.state = StorageState::Failing;
            h.failure = Some(f);
            true
        });
    }
}

#[async_trait::async_trait]
impl ObjectStore for Watched {
    async fn get(&self, key: &str) -> Result<Object> {
        self.note(self.inner.get(key).await)
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.note(self.inner.get_range(key, range).await)
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.note(self.inner.head(key).await)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<ETag> {
        self.note(self.inner.put(key, body).await)
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<ETag> {
        self.note(self.inner.put_if_absent(key, body).await)
    }
    async fn put_if_match(&self, key: &str, body: Bytes, etag: &ETag) -> Result<ETag> {
        self.note(self.inner.put_if_match(key, body, etag).await)
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<ETag> {
        self.note(self.inner.put_file(key, path).await)
    }
    async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        self.note(self.inner.get_to_file(key, path).await)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.note(self.inner.list(prefix).await)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.note(self.inner.delete(key).await)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
