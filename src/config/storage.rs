//! The storage section and what lives in storage: where objects go (S3 or a local directory),
//! how the state database is replicated, how checkpoints are taken and kept, and the lease's
//! timing; with the rules of each.

use std::path::PathBuf;
use std::time::Duration;

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

/// The lease's timing. `clock_skew`, when not given, follows `ttl` ([`default_clock_skew`]),
/// so that every valid `ttl` is valid with the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(from = "LeaseFields")]
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
    /// Allowance for clock skew between nodes. Default: [`default_clock_skew`] of `ttl`.
    pub clock_skew: Dur,
}

/// The default skew allowance for `ttl`: 2 s, or a fifth of `ttl` when that is less (a skew
/// must stay under a third of `ttl`): `"30s"` → 2 s, `"6s"` → 1.2 s, `"3s"` → 600 ms.
pub fn default_clock_skew(ttl: Dur) -> Dur {
    Dur(Duration::from_secs(2).min(ttl.get() / 5))
}

/// [`LeaseConfig`] as written, with `clock_skew` still absent when it was not given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFields {
    #[serde(default = "default_ttl")]
    ttl: Dur,
    #[serde(default = "default_poll")]
    poll_interval: Dur,
    #[serde(default = "default_auto_acquire")]
    auto_acquire: bool,
    #[serde(default)]
    clock_skew: Option<Dur>,
}

fn default_ttl() -> Dur {
    Dur::secs(30)
}
fn default_poll() -> Dur {
    Dur::secs(2)
}
fn default_auto_acquire() -> bool {
    true
}

impl From<LeaseFields> for LeaseConfig {
    fn from(f: LeaseFields) -> LeaseConfig {
        LeaseConfig {
            clock_skew: f.clock_skew.unwrap_or_else(|| default_clock_skew(f.ttl)),
            ttl: f.ttl,
            poll_interval: f.poll_interval,
            auto_acquire: f.auto_acquire,
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: default_ttl(),
            poll_interval: default_poll(),
            auto_acquire: default_auto_acquire(),
            clock_skew: default_clock_skew(default_ttl()),
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
        if !endpoint.is_empty()
            && let Err(problem) = endpoint_problem(endpoint)
        {
            p.push(Problem::new(
                "storage.endpoint",
                format!("invalid endpoint {endpoint:?}: {problem}"),
            ));
        }
        match s.bucket.as_deref() {
            None | Some("") => p.push(Problem::new(
                "storage.bucket",
                "a bucket is required for S3 storage",
            )),
            Some(b) => {
                if let Err(problem) = bucket_problem(b, endpoint.is_empty()) {
                    p.push(Problem::new(
                        "storage.bucket",
                        format!("invalid bucket name {b:?}: {problem}"),
                    ));
                }
            }
        }
        if let Some(r) = &s.region
            && !valid_region(r)
        {
            p.push(Problem::new(
                "storage.region",
                format!(
                    "invalid region {r:?}: lowercase letters and digits in groups joined by '-', \
                     like \"us-east-1\" or \"eu-central-1\" (\"auto\" for R2)"
                ),
            ));
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

/// An `http(s)://host[:port]` URL: no user info (credentials go in `access_key`/`secret_key`),
/// no path, query or fragment (the SDK puts the bucket there).
fn endpoint_problem(endpoint: &str) -> Result<(), &'static str> {
    const USE: &str = "use \"http://host:9000\", \"https://…\" or \"file:///abs/path\"";
    let Ok(u) = reqwest::Url::parse(endpoint) else {
        return Err(USE);
    };
    if !(u.scheme() == "http" || u.scheme() == "https") || u.host().is_none() {
        return Err(USE);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("it holds credentials: put them in storage.access_key and storage.secret_key");
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(
            "give only scheme, host and port, like \"http://host:9000\" (no path or query)",
        );
    }
    Ok(())
}

/// S3's rules for bucket names (general purpose buckets), the ones a typo breaks. The minimum
/// of 3 characters holds for AWS S3 (`aws`); with an endpoint the server decides, so that the
/// seed form of the design (`"bucket": "b"` on a MinIO endpoint) stays valid as written — a
/// server that refuses shows `invalid_bucket_name` in `GET /`, and `check --storage` finds it
/// before the node runs.
fn bucket_problem(b: &str, aws: bool) -> Result<(), &'static str> {
    if b.len() > 63 || (aws && b.len() < 3) {
        return Err("S3 needs 3 to 63 characters");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(b.chars().next()) || !edge(b.chars().last()) {
        return Err("it must begin and end with a letter or digit");
    }
    if b.contains("..") {
        return Err("two '.' may not be adjacent");
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it may not be formatted as an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| b.starts_with(p))
    {
        return Err("the prefixes xn--, sthree- and amzn-s3-demo- are reserved");
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|p| b.ends_with(p))
    {
        return Err("the suffixes -s3alias, --ol-s3, .mrap, --x-s3 and --table-s3 are reserved");
    }
    Ok(())
}

/// `us-east-1`, `eu-central-1`, `auto`: lowercase alphanumeric groups joined by `-`.
fn valid_region(r: &str) -> bool {
    (1..=32).contains(&r.len())
        && r.split('-').all(|g| {
            !g.is_empty()
                && g.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
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
            format!(
                "must be less than a third of lease.ttl ({}); leave it out for the default, {}",
                l.ttl,
                default_clock_skew(l.ttl)
            ),
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

    use super::{Dur, LeaseConfig};
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

    #[test]
    fn the_default_clock_skew_follows_the_ttl_and_a_given_one_is_kept() {
        let lease = |json: &str| {
            serde_json::from_str::<crate::config::Config>(&format!(r#"{{"lease": {json}}}"#))
                .unwrap()
                .lease
        };
        for (ttl, skew) in [
            ("3s", "600ms"),
            ("6s", "1s 200ms"),
            ("10s", "2s"),
            ("30s", "2s"),
            ("1h", "2s"),
        ] {
            let l = lease(&format!(r#"{{"ttl": "{ttl}", "poll_interval": "500ms"}}"#));
            assert_eq!(l.clock_skew.to_string(), skew, "ttl {ttl}");
            assert!(
                problems(&format!(
                    r#"{{"lease": {{"ttl": "{ttl}", "poll_interval": "500ms"}}}}"#
                ))
                .is_empty(),
                "ttl {ttl}"
            );
        }
        assert_eq!(lease("{}"), LeaseConfig::default());
        assert_eq!(LeaseConfig::default().clock_skew, Dur::secs(2));
        let l = lease(r#"{"ttl": "6s", "clock_skew": "500ms"}"#);
        assert_eq!(l.clock_skew, Dur::millis(500));
        let p = problems(r#"{"lease": {"ttl": "6s", "clock_skew": "2s"}}"#);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, "lease.clock_skew");
        assert!(
            p[0].message
                .contains("leave it out for the default, 1s 200ms"),
            "{p:#?}"
        );
        let e = crate::config::parse(r#"{"lease": {"ttl": "6s", "skew": "1s"}}"#).unwrap_err();
        assert!(e.to_string().contains("lease.skew: unknown field"), "{e}");
    }

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for good in [
            "bk1",
            "my-bucket.v2",
            "a".repeat(63).as_str(),
            "192.168.5.x",
        ] {
            assert!(super::bucket_problem(good, true).is_ok(), "{good}");
        }
        for bad in [
            "bk",
            "a".repeat(64).as_str(),
            "My-Bucket",
            "under_score",
            "-lead",
            "trail.",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "sthree-x",
            "x-s3alias",
            "x--ol-s3",
        ] {
            assert!(super::bucket_problem(bad, true).is_err(), "{bad}");
        }
        // With an endpoint the server judges the length (the seed form's "b" stays valid).
        assert!(super::bucket_problem("b", false).is_ok());
        let p = problems(r#"{"storage": {"bucket": "bk"}}"#);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, "storage.bucket");
        assert!(p[0].message.contains("3 to 63"), "{p:#?}");
    }

    #[test]
    fn regions_and_endpoints_are_checked_at_their_field() {
        for good in ["us-east-1", "eu-central-1", "us-gov-west-1", "auto"] {
            assert!(super::valid_region(good), "{good}");
        }
        for bad in ["", "US-EAST-1", "us_east_1", "us-east-", "us east 1"] {
            assert!(!super::valid_region(bad), "{bad}");
        }
        let one = |storage: &str| {
            let p = problems(&format!(r#"{{"storage": {storage}}}"#));
            p.iter().map(|p| p.path.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            one(r#"{"bucket": "bkt", "region": "US East"}"#),
            ["storage.region"]
        );
        for ep in [
            "ftp://h",
            "http://u:p@h:9000",
            "http://h:9000/bucket",
            "http://h:9000?x=1",
            "h:9000",
        ] {
            let got = one(&format!(r#"{{"bucket": "bkt", "endpoint": "{ep}"}}"#));
            assert_eq!(got, ["storage.endpoint"], "{ep}");
        }
        assert!(one(r#"{"bucket": "bkt", "endpoint": "https://s3.example.com:443/"}"#).is_empty());
    }
}
