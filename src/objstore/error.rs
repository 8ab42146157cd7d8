//! Storage failures as types: [`StorageError`] for every backend, and [`Failure`] — what a
//! request to the storage service met, in words a person acts on.
//!
//! Invariants:
//! - A [`Failure`] carries a [`FailureKind`] (a stable word for metrics labels and clients),
//!   one sentence of what happened and one of what to do. Neither ever holds a credential or
//!   the SDK's debug text; the source of credentials may be named, never their value.
//! - Outcomes callers branch on (`NotFound`, `PreconditionFailed`) are variants, never text.

use serde::{Deserialize, Serialize};

/// A failure of storage (either backend), with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key:?} not found")]
    NotFound { key: String },
    /// put-if-absent found an object, or put-if-match found another version.
    #[error("precondition failed for {key:?}: the object exists or changed since it was read")]
    PreconditionFailed { key: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("local storage I/O on {key:?}: {source}")]
    Io { key: String, source: std::io::Error },
    /// A request to the storage service failed (after retries where retrying helps).
    #[error("storage request {op} {key:?} failed: {failure}")]
    Backend {
        op: &'static str,
        key: String,
        failure: Failure,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StorageError::PreconditionFailed { .. })
    }

    /// What the storage service or the way to it got wrong; `None` for outcomes that say
    /// storage works (not found, precondition failed) and for a bad key of ours.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            StorageError::Backend { failure, .. } => Some(failure.clone()),
            StorageError::Io { source, .. } => Some(Failure::new(
                FailureKind::Other,
                format!("the local storage directory cannot be used: {source}"),
                "check that the data directory (or the file endpoint) exists, is writable and \
                 has free space",
            )),
            _ => None,
        }
    }

    /// A backend failure of `kind` for `op` on `key`.
    pub fn backend(
        op: &'static str,
        key: &str,
        kind: FailureKind,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> StorageError {
        StorageError::Backend {
            op,
            key: key.into(),
            failure: Failure::new(kind, message, fix),
        }
    }
}

/// The kinds of storage failure an operator tells apart, each with its own fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The server rejected the credentials: unknown key, wrong secret, expired token.
    Credentials,
    /// The credentials are valid but the policy does not allow the request.
    AccessDenied,
    NoSuchBucket,
    InvalidBucketName,
    /// The bucket lives in another region than `storage.region`.
    WrongRegion,
    /// Nothing answers at the endpoint: refused, unknown host, TLS failure, timeout.
    Unreachable,
    /// The server rejected the request's time: this machine's clock is off.
    ClockSkew,
    /// The server asked us to slow down; requests are retried.
    Throttled,
    /// The storage config cannot work as written.
    Config,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 10] = [
        FailureKind::Credentials,
        FailureKind::AccessDenied,
        FailureKind::NoSuchBucket,
        FailureKind::InvalidBucketName,
        FailureKind::WrongRegion,
        FailureKind::Unreachable,
        FailureKind::ClockSkew,
        FailureKind::Throttled,
        FailureKind::Config,
        FailureKind::Other,
    ];

    /// The word in the API and the metrics' `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Credentials => "credentials",
            FailureKind::AccessDenied => "access_denied",
            FailureKind::NoSuchBucket => "no_such_bucket",
            FailureKind::InvalidBucketName => "invalid_bucket_name",
            FailureKind::WrongRegion => "wrong_region",
            FailureKind::Unreachable => "unreachable",
            FailureKind::ClockSkew => "clock_skew",
            FailureKind::Throttled => "throttled",
            FailureKind::Config => "config",
            FailureKind::Other => "other",
        }
    }
}

impl std::str::FromStr for FailureKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        FailureKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind of storage failure {s:?}"))
    }
}

/// What a storage request met: its kind, what happened and what to do, in sentences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    pub kind: FailureKind,
    /// What happened, e.g. "the server rejected the secret key (SignatureDoesNotMatch)".
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.message, self.fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_words() {
        for kind in FailureKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(kind.as_str().parse::<FailureKind>().unwrap(), kind);
        }
    }

    #[test]
    fn a_backend_error_reads_as_what_happened_and_what_to_do() {
        let e = StorageError::backend(
            "get",
            "lease.json",
            FailureKind::NoSuchBucket,
            "bucket \"b\" does not exist",
            "create it or fix storage.bucket",
        );
        assert_eq!(
            e.to_string(),
            "storage request get \"lease.json\" failed: bucket \"b\" does not exist; create it \
             or fix storage.bucket"
        );
        assert_eq!(e.failure().unwrap().kind, FailureKind::NoSuchBucket);
        assert!(
            StorageError::NotFound { key: "k".into() }
                .failure()
                .is_none()
        );
    }
}
