//! The shared vocabulary of process lifecycle: state names, exit statuses, the transition
//! event the supervisor emits, and the words of the process set (a stack's origin, a process's
//! intent, the actions that change them). The store persists events, the API streams them,
//! webhooks ship them (all through `crate::feed`, with the node's own events); all of them use
//! these types, and the text form of each enum is defined only here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The name of a process state (the data each state carries lives in the supervisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Stopped,
    Starting,
    Running,
    Stopping,
    Backoff,
    Exited,
    Fatal,
}

impl StateName {
    pub const ALL: [StateName; 7] = [
        StateName::Stopped,
        StateName::Starting,
        StateName::Running,
        StateName::Stopping,
        StateName::Backoff,
        StateName::Exited,
        StateName::Fatal,
    ];

    /// The stored and displayed form (also the CHECK constraint's list in `migrations/`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Stopped => "stopped",
            StateName::Starting => "starting",
            StateName::Running => "running",
            StateName::Stopping => "stopping",
            StateName::Backoff => "backoff",
            StateName::Exited => "exited",
            StateName::Fatal => "fatal",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StateName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StateName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown process state {s:?}"))
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// From a raw `waitpid` status.
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }

    /// The shell convention: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("?");
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

/// What an operator changed in the process set or in a process's intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Add,
    Remove,
    Replace,
    Scale,
    /// The operator started it: it runs after a restart or a takeover, `autostart` or not.
    Start,
    /// The operator stopped it: it stays stopped after a restart or a takeover.
    Stop,
}

impl ChangeAction {
    pub const ALL: [ChangeAction; 6] = [
        ChangeAction::Add,
        ChangeAction::Remove,
        ChangeAction::Replace,
        ChangeAction::Scale,
        ChangeAction::Start,
        ChangeAction::Stop,
    ];

    /// The stored and displayed form (also the CHECK constraint's list in `migrations/`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Add => "add",
            ChangeAction::Remove => "remove",
            ChangeAction::Replace => "replace",
            ChangeAction::Scale => "scale",
            ChangeAction::Start => "start",
            ChangeAction::Stop => "stop",
        }
    }
}

impl FromStr for ChangeAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ChangeAction::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown change {s:?}"))
    }
}

/// Where a stack of the set came from: precedence on reload depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Declared by the config file.
    File,
    /// Added through `POST /processes`.
    Api,
}

impl Origin {
    pub const ALL: [Origin; 2] = [Origin::File, Origin::Api];

    /// The stored and displayed form (also the CHECK constraint's list in `migrations/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Api => "api",
        }
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Origin::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown origin {s:?}"))
    }
}

/// What the operator last asked of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Stopped on purpose: it stays stopped after a restart or a takeover.
    Stopped,
    /// Started on purpose: it runs after a restart or a takeover, even with `autostart: false`.
    Started,
}

impl Intent {
    pub const ALL: [Intent; 2] = [Intent::Stopped, Intent::Started];

    /// The stored and displayed form (also the CHECK constraint's list in `migrations/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Stopped => "stopped",
            Intent::Started => "started",
        }
    }
}

impl FromStr for Intent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Intent::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown intent {s:?}"))
    }
}

/// A change of the process set or of an intent: what, by whom, and the revision it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    pub action: ChangeAction,
    /// The `sub` of the token that asked for it (`null` for the config file or a token without
    /// one).
    pub by: Option<String>,
    /// The revision of the process set after the change.
    pub revision: u64,
}

/// One state transition of one process, or (with `change`) a change an operator made to it, in
/// which case `from` and `to` are both its state at the time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub process: String,
    pub from: StateName,
    pub to: StateName,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exit: Option<ExitStatus>,
    /// Why it happened, in words: "crashed (exit code 1), restarting in 2s", "stopped by API".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Set for a change of the process set or of an intent, not a state transition.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<Change>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for n in StateName::ALL {
            assert_eq!(n.as_str().parse::<StateName>().unwrap(), n);
            assert_eq!(serde_json::to_value(n).unwrap(), n.as_str());
        }
    }

    #[test]
    fn change_actions_round_trip() {
        for a in ChangeAction::ALL {
            assert_eq!(a.as_str().parse::<ChangeAction>().unwrap(), a);
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }

    #[test]
    fn exit_status_codes() {
        assert_eq!(ExitStatus::Signal(15).shell_code(), 143);
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(
            serde_json::to_string(&ExitStatus::Code(3)).unwrap(),
            r#"{"code":3}"#
        );
        assert_eq!(
            ExitStatus::Signal(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
