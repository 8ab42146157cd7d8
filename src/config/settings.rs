//! The whole file: the settings that apply to every process (environment, restart and stop
//! defaults, the node's identity) and the sections ([`super::process`], [`super::storage`],
//! [`super::hooks`]); and the settings that the environment may give instead of the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Dur;
use super::hooks::{HooksConfig, WebhookConfig};
use super::process::StackEntry;
use super::storage::{CheckpointConfig, LeaseConfig, ReplicationConfig, StorageConfig};

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
    use crate::config::{parse_with_env, validate};

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
