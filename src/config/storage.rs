//! The storage section and what lives in storage: where objects go (S3 or a local directory),
//! how the state database is replicated, how checkpoints are taken and kept, and the lease's
//! timing; with the rules of each.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Dur, Problem};

/// The seed's storage section. With `endpoint` `file:///abs/path` (or no section at all) the
/// local-directory backend is used. Its `Debug` hides the secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `http(s)://host:port` for MinIO and other S3-compatible servers, `file:///abs/path` for a
    /// local directory; unset for AWS S3 itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Prefix of every key this environment writes, e.g. `env-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// The environment directory that checkpoints capture. Default `<data_dir>/env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub env_dir: Option<PathBuf>,
    /// Path-style addressing (`endpoint/bucket/key`). Default: on when `endpoint` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("StorageConfig")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &hide(&self.secret_key))
            .field("session_token", &hide(&self.session_token))
            .field("region", &self.region)
            .field("key_prefix", &self.key_prefix)
            .field("env_dir", &self.env_dir)
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Replicate the state database to storage (default true).
    pub enabled: bool,
    /// How often committed WAL frames are shipped.
    pub interval: Dur,
    /// How often a new full snapshot starts a new generation.
    pub snapshot_interval: Dur,
    /// Generations older than this (except the current one) are pruned.
    pub retention: Dur,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            enabled: true,
            interval: Dur::secs(1),
            snapshot_interval: Dur::secs(3600),
            retention: Dur::secs(24 * 3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Keep at least the newest N checkpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep every checkpoint younger than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Dur>,
    /// Freeze the supervised process groups while changed files are staged (default true).
    pub freeze: bool,
    /// Parallel chunk uploads/downloads.
    pub concurrency: u32,
    /// Glob patterns, relative to env_dir, left out of checkpoints.
    pub exclude: Vec<String>,
    /// Take a checkpoint this often (unset: only on request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            keep_last: None,
            keep_within: None,
            freeze: true,
            concurrency: 8,
            exclude: Vec::new(),
            interval: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Lifetime of the lease; renewed at about a third of it.
    pub ttl: Dur,
    /// How often a standby looks at the lease (jittered).
    pub poll_interval: Dur,
    /// A standby takes the lease as soon as it is free or expired (default true). A node that
    /// released the lease never takes that release back by itself: it waits for
    /// `POST /acquire-lease`, or until another node has held the lease, after which it is an
    /// ordinary standby again.
    pub auto_acquire: bool,
    /// Allowance for clock skew between nodes.
    pub clock_skew: Dur,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: Dur::secs(30),
            poll_interval: Dur::secs(2),
            auto_acquire: true,
            clock_skew: Dur::secs(2),
        }
    }
}

/// An endpoint that can be reached, a bucket S3 accepts, credentials in pairs, a key prefix
/// and env_dir that cannot escape where they point.
pub(super) fn check_storage(s: &StorageConfig, p: &mut Vec<Problem>) {
    let endpoint = s.endpoint.as_deref().unwrap_or("");
    let local = endpoint.starts_with("file://");
    if local {
        let path = &endpoint["file://".len()..];
        if !path.starts_with('/') {
            p.push(Problem::new(
                "storage.endpoint",
                "a file endpoint needs an absolute path: \"file:///var/lib/objects\"",
            ));
        }
    } else {
        if !endpoint.is_empty() {
            match reqwest::Url::parse(endpoint) {
                Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
                _ => p.push(Problem::new(
                    "storage.endpoint",
                    format!("invalid endpoint {endpoint:?}: use \"http://host:9000\", \"https://…\" or \"file:///abs/path\""),
                )),
            }
        }
        match s.bucket.as_deref() {
            None | Some("") => p.push(Problem::new(
                "storage.bucket",
                "a bucket is required for S3 storage",
            )),
            Some(b) if !valid_bucket(b) => p.push(Problem::new(
                "storage.bucket",
                format!(
                    "invalid bucket name {b:?}: up to 63 lowercase letters, digits, '.' or '-'"
                ),
            )),
            _ => {}
        }
    }
    if s.access_key.is_some() != s.secret_key.is_some() {
        p.push(Problem::new(
            "storage",
            "access_key and secret_key go together: set both or neither",
        ));
    }
    if let Some(prefix) = &s.key_prefix
        && (prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || prefix.chars().any(|c| c.is_control() || c == '\\'))
    {
        p.push(Problem::new(
            "storage.key_prefix",
            format!("invalid key prefix {prefix:?}: use segments like \"env-1\" or \"team/env-1\", without '..' or leading/trailing '/'"),
        ));
    }
    if let Some(d) = &s.env_dir
        && !d.is_absolute()
    {
        p.push(Problem::new(
            "storage.env_dir",
            "must be an absolute path, e.g. \"/data/env\"",
        ));
    }
}

fn valid_bucket(b: &str) -> bool {
    (1..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// Intervals that grow from shipping to snapshots to retention.
pub(super) fn check_replication(r: &ReplicationConfig, p: &mut Vec<Problem>) {
    if r.snapshot_interval.get() < r.interval.get() {
        p.push(Problem::new(
            "replication.snapshot_interval",
            "must not be shorter than replication.interval",
        ));
    }
    if r.retention.get() < r.snapshot_interval.get() {
        p.push(Problem::new(
            "replication.retention",
            "must not be shorter than replication.snapshot_interval",
        ));
    }
}

/// Timing that leaves a holder several renewals and a margin for skew (see `lease`).
pub(super) fn check_lease(l: &LeaseConfig, p: &mut Vec<Problem>) {
    if l.poll_interval.get() >= l.ttl.get() {
        p.push(Problem::new(
            "lease.poll_interval",
            "must be shorter than lease.ttl",
        ));
    }
    if l.clock_skew.get() * 3 >= l.ttl.get() {
        p.push(Problem::new(
            "lease.clock_skew",
            "must be less than a third of lease.ttl",
        ));
    }
}

/// Valid exclude patterns (numbers and durations are bounded in `limits`).
pub(super) fn check_checkpoint(k: &CheckpointConfig, p: &mut Vec<Problem>) {
    for (i, pat) in k.exclude.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(pat) {
            p.push(Problem::new(
                format!("checkpoint.exclude[{i}]"),
                format!("invalid pattern: {e}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::config::problems_of as problems;

    #[test]
    fn storage_rules() {
        let p = problems(
            r#"{"storage": {"endpoint": "minio:9000", "key_prefix": "../x", "access_key": "a"}}"#,
        );
        let paths: BTreeSet<_> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "storage.endpoint",
            "storage.bucket",
            "storage.key_prefix",
            "storage",
        ] {
            assert!(paths.contains(want), "{want}: {p:#?}");
        }
        assert!(problems(r#"{"storage": {"endpoint": "file:///tmp/objs"}}"#).is_empty());
    }
}
