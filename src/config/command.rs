//! Commands in the configuration (checkpoint and restore commands, hooks, exec probes): a shell
//! string or an argv array. A leaf: every section that runs something uses it.

use serde::{Deserialize, Serialize};

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
