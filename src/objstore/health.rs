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
//! - Watchers wake on a change of state or of the kind of failure only (logged once: a warning
//!   when it starts failing or the kind changes, info when it works again), never once per
//!   failed request nor for a new message of the same kind; the message is still the latest
//!   one for a reader of the current value.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{DynStore, ETag, Failure, Object, ObjectMeta, ObjectStore, Result, StorageError};

/// The three states of storage as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    /// No request has finished yet.
    Unknown,
    /// The last request worked.
    Ok,
    /// The last request failed; `failure` says why and what to do.
    Failing,
}

impl StorageState {
    pub const ALL: [StorageState; 3] = [
        StorageState::Unknown,
        StorageState::Ok,
        StorageState::Failing,
    ];

    /// The word in the API (and, for `ok` and `failing`, in the events table).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageState::Unknown => "unknown",
            StorageState::Ok => "ok",
            StorageState::Failing => "failing",
        }
    }
}

impl std::str::FromStr for StorageState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        StorageState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown storage state {s:?}"))
    }
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
    /// Requests that failed in a row, since one last worked.
    pub failed_requests: u64,
}

impl StorageHealth {
    fn unknown() -> StorageHealth {
        StorageHealth {
            state: StorageState::Unknown,
            since: OffsetDateTime::now_utc(),
            last_ok: None,
            failure: None,
            failed_requests: 0,
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
            h.failed_requests = 0;
            // `last_ok` alone is not news: watchers wake on state changes only.
            changed
        });
    }

    fn failed(&self, f: Failure) {
        self.health.send_if_modified(|h| {
            let news = h.state != StorageState::Failing
                || h.failure.as_ref().map(|o| o.kind) != Some(f.kind);
            if news {
                tracing::warn!(
                    storage = %self.inner.describe(),
                    kind = f.kind.as_str(),
                    "storage is failing: {f}"
                );
                h.since = OffsetDateTime::now_utc();
                h.state = StorageState::Failing;
            }
            // The latest sentence is kept for readers, but a new text of the same kind wakes
            // no watcher: they see changes of state and of kind only.
            h.failure = Some(f);
            h.failed_requests += 1;
            news
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::FailureKind;

    fn failure(kind: FailureKind, message: &str) -> Failure {
        Failure::new(kind, message, "fix it")
    }

    #[test]
    fn watchers_wake_on_a_new_state_or_kind_only() {
        let dir = tempfile::tempdir().unwrap();
        let local = crate::objstore::local::LocalStore::open(dir.path(), None).unwrap();
        let (tx, mut rx) = watch::channel(StorageHealth::unknown());
        let w = Watched {
            inner: Arc::new(local),
            health: Arc::new(tx),
        };
        w.failed(failure(FailureKind::Credentials, "first"));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        w.failed(failure(FailureKind::Credentials, "second"));
        assert!(!rx.has_changed().unwrap(), "same kind, new text: no news");
        assert_eq!(rx.borrow().failure.as_ref().unwrap().message, "second");
        assert_eq!(rx.borrow().failed_requests, 2);
        w.failed(failure(FailureKind::Unreachable, "third"));
        assert!(rx.has_changed().unwrap(), "another kind is news");
        rx.borrow_and_update();
        w.worked();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().state, StorageState::Ok);
        assert_eq!(rx.borrow().failed_requests, 0);
        w.worked();
        assert!(
            !rx.has_changed().unwrap(),
            "working again and again: no news"
        );
    }
}
