//! The configuration: one typed tree, parsed strictly and validated in full.
//!
//! Every struct denies unknown fields and gives every field a default at the serde level, so that
//! [`load::parse`] can diagnose each field on its own and report every problem at once. Required
//! values (a process name, a command) are checked by [`validate`], which also collects every
//! problem before returning.
//!
//! Invariant: a `Config` that came out of [`parse`] has passed [`validate`]; code downstream relies
//! on names being unique, references resolving and durations being sane.

mod duration;
mod load;
mod resolve;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use duration::Dur;
pub use load::{ConfigError, Problem, parse, parse_file, parse_with_env, persist, redacted};
pub use resolve::{ProcessSpec, RestartPolicy, StackSource, resolve};
pub use validate::{instance_names, is_name, parse_signal, validate};

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where checkpoints, the replicated state database and the lease live. `None`: the local
    /// backend under the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// The processes to supervise: a name of a directory in `stacks_dir`, or an inline process.
    pub stacks: Vec<StackEntry>,
    /// Directory holding string stacks (`<stacks_dir>/<name>/run`). Default `<data_dir>/stacks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stacks_dir: Option<PathBuf>,
    /// Stable identity of this node for the lease. Default: derived from host name and data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Environment given to every process, under each process's own `env`.
    pub env: BTreeMap<String, String>,
    /// Delay before the first restart after a crash (default "1s").
    pub restart_delay: Dur,
    /// Cap of the exponential backoff between restarts (default "30s").
    pub backoff_max: Dur,
    /// A process that stayed up this long has its backoff reset (default "30s").
    pub backoff_reset_after: Dur,
    /// Restarts allowed in a row before a process is `fatal`. Unset: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Time between the stop signal and SIGKILL (default "90s").
    pub stop_timeout: Dur,
    /// Kill a foreign process holding one of a process's `ports` instead of failing its start.
    pub reclaim_ports: bool,
    pub replication: ReplicationConfig,
    pub checkpoint: CheckpointConfig,
    pub lease: LeaseConfig,
    pub hooks: HooksConfig,
    /// Webhooks that receive every lifecycle event as JSON (history sinks).
    pub webhooks: Vec<WebhookConfig>,
}

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

/// A stack: a directory name (s6 style) or a process defined inline.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StackEntry {
    Dir(String),
    Inline(Box<ProcessConfig>),
}

impl StackEntry {
    pub fn name(&self) -> &str {
        match self {
            StackEntry::Dir(n) => n,
            StackEntry::Inline(p) => &p.name,
        }
    }
}

impl<'de> Deserialize<'de> for StackEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(StackEntry::Dir(s)),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(|p| StackEntry::Inline(Box::new(p)))
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "a stack is a directory name (string) or a process object {\"name\", \"command\", ...}",
            )),
        }
    }
}

/// What to do when a process exits on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExit {
    /// Restart it, with backoff (the default for `serve`).
    Restart,
    /// Leave it `exited`.
    Ignore,
    /// Stop everything and exit with the process's exit code (the default for `run`).
    Shutdown,
}

/// A command: a shell string (run with `/bin/sh -c`) or an argv array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandSpec {
    /// The argv to execute.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            CommandSpec::Argv(v) => v.clone(),
        }
    }
    pub fn is_empty(&self) -> bool {
        match self {
            CommandSpec::Shell(s) => s.trim().is_empty(),
            CommandSpec::Argv(v) => v.first().is_none_or(|c| c.trim().is_empty()),
        }
    }
}

/// One process (or `instances` copies of it) defined inline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    pub name: String,
    /// Program to run. With no `args` and whitespace in it, it is run by `/bin/sh -c`.
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cwd: Option<PathBuf>,
    /// Number of copies, named `name-1 … name-N`; `{instance}` in args and env expands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Start with the supervisor (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_delay: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_reset_after: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// `SIGTERM`, `TERM` or a number. Default SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<OnExit>,
    /// Files whose change restarts the process gracefully.
    #[schema(value_type = Vec<String>)]
    pub watch: Vec<PathBuf>,
    /// Run before a checkpoint with `CHECKPOINT_ID` set (e.g. a database dumps itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_command: Option<CommandSpec>,
    /// Run after a restore, before the process starts again, with `CHECKPOINT_ID` set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_command: Option<CommandSpec>,
    /// Processes (stack names) that must be ready before this one starts.
    pub depends_on: Vec<String>,
    /// TCP ports this process owns; freed of stray holders before start.
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaim_ports: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ProbeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeConfig>,
}

/// A probe names its kind by its key: `exec`, `http`, `tcp` or `log_line`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<CommandSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Port on 127.0.0.1, `host:port`, or `true` for the first of the process's `ports`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTarget>,
    /// Regex matched against each line of the process's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_line: Option<String>,
    /// Expected HTTP status (default: any 2xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub initial_delay: Dur,
    pub period: Dur,
    pub timeout: Dur,
    /// Consecutive failures that count (liveness: restart after this many).
    pub failures: u32,
    /// Readiness only: not ready within this long after start fails the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Dur>,
}

impl ProbeConfig {
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.exec.is_some() {
            k.push("exec");
        }
        if self.http.is_some() {
            k.push("http");
        }
        if self.tcp.is_some() {
            k.push("tcp");
        }
        if self.log_line.is_some() {
            k.push("log_line");
        }
        k
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            exec: None,
            http: None,
            tcp: None,
            log_line: None,
            status: None,
            initial_delay: Dur::secs(0),
            period: Dur::secs(1),
            timeout: Dur::secs(1),
            failures: 3,
            start_timeout: None,
        }
    }
}

/// `5050`, `"host:5050"`, or `true` for the first of the process's `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TcpTarget {
    Port(u16),
    Addr(String),
    /// `true`: 127.0.0.1 on the first of the process's `ports` (`false` is rejected).
    FirstPort(bool),
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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Before any process starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_start: Option<HookConfig>,
    /// After all processes stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_stop: Option<HookConfig>,
    /// When the supervisor shuts down, last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_shutdown: Option<HookConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub command: CommandSpec,
    #[serde(default = "default_hook_timeout")]
    pub timeout: Dur,
}

fn default_hook_timeout() -> Dur {
    Dur::secs(30)
}

#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub url: String,
    /// Value of the `Authorization` header sent with each batch (a secret: redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// Most events per POST.
    pub batch_size: u32,
    /// Events wait at most this long before being sent.
    pub batch_interval: Dur,
    /// Events held while the receiver is down; older ones are dropped (and counted) beyond it.
    pub queue_capacity: u32,
    pub timeout: Dur,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .field("batch_size", &self.batch_size)
            .field("batch_interval", &self.batch_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            authorization: None,
            batch_size: 100,
            batch_interval: Dur::secs(1),
            queue_capacity: 10_000,
            timeout: Dur::secs(5),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            storage: None,
            stacks: Vec::new(),
            stacks_dir: None,
            node_id: None,
            env: BTreeMap::new(),
            restart_delay: Dur::secs(1),
            backoff_max: Dur::secs(30),
            backoff_reset_after: Dur::secs(30),
            max_restarts: None,
            stop_timeout: Dur::secs(90),
            reclaim_ports: false,
            replication: ReplicationConfig::default(),
            checkpoint: CheckpointConfig::default(),
            lease: LeaseConfig::default(),
            hooks: HooksConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

impl Config {
    /// Names of the stacks, in configuration order.
    pub fn stack_names(&self) -> impl Iterator<Item = &str> {
        self.stacks.iter().map(StackEntry::name)
    }
}

/// Settings that may come from the environment instead of the file (the environment wins), so
/// that secrets need not be written into a config file: `STATE_MANAGER_NODE_ID`,
/// `STATE_MANAGER_S3_ENDPOINT`, `STATE_MANAGER_S3_BUCKET`, `STATE_MANAGER_S3_KEY_PREFIX`,
/// `STATE_MANAGER_S3_ACCESS_KEY`, `STATE_MANAGER_S3_SECRET_KEY`, `STATE_MANAGER_S3_SESSION_TOKEN`.
/// Children never see `STATE_MANAGER_*` variables.
pub fn apply_env(config: &mut Config, get: impl Fn(&str) -> Option<String>) {
    let var = |name: &str| get(name).filter(|v| !v.is_empty());
    if let Some(id) = var("STATE_MANAGER_NODE_ID") {
        config.node_id = Some(id);
    }
    let overrides = [
        "STATE_MANAGER_S3_ENDPOINT",
        "STATE_MANAGER_S3_BUCKET",
        "STATE_MANAGER_S3_KEY_PREFIX",
        "STATE_MANAGER_S3_ACCESS_KEY",
        "STATE_MANAGER_S3_SECRET_KEY",
        "STATE_MANAGER_S3_SESSION_TOKEN",
    ]
    .map(var);
    if overrides.iter().all(Option::is_none) {
        return;
    }
    let s = config.storage.get_or_insert_with(StorageConfig::default);
    let [endpoint, bucket, prefix, access, secret, token] = overrides;
    let fields = [
        (&mut s.endpoint, endpoint),
        (&mut s.bucket, bucket),
        (&mut s.key_prefix, prefix),
        (&mut s.access_key, access),
        (&mut s.secret_key, secret),
        (&mut s.session_token, token),
    ];
    for (field, value) in fields {
        if value.is_some() {
            *field = value;
        }
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "STATE_MANAGER_S3_ACCESS_KEY" => Some("ak".to_string()),
            "STATE_MANAGER_S3_SECRET_KEY" => Some("sk".to_string()),
            "STATE_MANAGER_NODE_ID" => Some("node-b".to_string()),
            _ => None,
        };
        let c = parse_with_env(
            r#"{"storage": {"bucket": "b", "endpoint": "http://minio:9000"}}"#,
            env,
        )
        .unwrap();
        let s = c.storage.as_ref().unwrap();
        assert_eq!(
            (s.access_key.as_deref(), s.secret_key.as_deref()),
            (Some("ak"), Some("sk"))
        );
        assert_eq!(s.bucket.as_deref(), Some("b"));
        assert_eq!(c.node_id.as_deref(), Some("node-b"));
        assert!(validate(&c).is_empty());
        // The environment can complete a file that alone would be invalid.
        let env = |k: &str| (k == "STATE_MANAGER_S3_BUCKET").then(|| "from-env".to_string());
        let c = parse_with_env(r#"{"storage": {"endpoint": "http://minio:9000"}}"#, env).unwrap();
        assert_eq!(c.storage.unwrap().bucket.as_deref(), Some("from-env"));
    }
}
