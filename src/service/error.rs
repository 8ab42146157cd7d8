//! What can go wrong configuring the service. Each variant's text is what the operator reads
//! (the API's `detail`, the start-up error), so it names the problem and the way out; the HTTP
//! status of each is chosen in `http/error.rs`.

use std::path::PathBuf;

use crate::config::{ConfigError, Problem};
use crate::node::NodeError;
use crate::supervisor::SupervisorError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A second config while one is applied.
    #[error(
        "state-manager is already configured from {p}; to change the configuration, edit {p}, check it with `state-manager check --config {p}` and restart state-manager",
        p = path.display()
    )]
    AlreadyConfigured { path: PathBuf },
    /// A config file was written at the `--config` path by someone else since the start.
    #[error(
        "a config file appeared at {} since state-manager started; restart state-manager to use it, or remove it and POST again",
        path.display()
    )]
    FileAppeared { path: PathBuf },
    #[error("the body is not UTF-8 text: {0}")]
    NotText(std::str::Utf8Error),
    /// Not JSON at all.
    #[error(transparent)]
    Unparsable(ConfigError),
    /// JSON, but not a valid config; every problem is listed.
    #[error("config has {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
    /// The config could not be written, so it was not applied. `cause` is for the log.
    #[error("cannot write the config to {}; nothing was applied: {cause}", path.display())]
    Persist { path: PathBuf, cause: String },
    /// A request that needs the environment, before there is one.
    #[error("state-manager is not configured yet, so it has no environment; POST /config first")]
    NotConfigured,
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Node(#[from] NodeError),
}
