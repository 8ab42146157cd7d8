//! The process section: stacks (a directory name or a process defined inline), commands,
//! restart and stop settings, and the rules of each process on its own (its probes' are in
//! [`super::probe`]). Rules that look across processes (names, dependencies, ports) are in
//! `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::command::CommandSpec;
use super::probe::{ProbeConfig, TcpTarget, check_probe};
use super::{Dur, Problem};

/// Most instances one process may ask for.
pub const MAX_INSTANCES: u32 = 10_000;

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
            v @ serde_json::Value::Object(_) => super::strict::from_value(v)
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
    /// Run as this user (a name or a numeric uid), with its groups; needs the service to run
    /// as root. Default: the service's own user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run with this primary group (a name or a numeric gid) instead of the user's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
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

/// Names of the instances of a stack: the name itself when `instances` is unset, else
/// `name-1 … name-N`.
pub fn instance_names(name: &str, instances: Option<u32>) -> Vec<String> {
    match instances {
        None => vec![name.to_string()],
        Some(n) => (1..=n).map(|i| format!("{name}-{i}")).collect(),
    }
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    let sig = if let Ok(n) = t.parse::<i32>() {
        Signal::try_from(n).ok()
    } else {
        let up = t.to_ascii_uppercase();
        let full = if up.starts_with("SIG") {
            up
        } else {
            format!("SIG{up}")
        };
        full.parse::<Signal>().ok()
    };
    sig.ok_or_else(|| {
        format!("unknown signal {s:?}: use a name like \"SIGTERM\", \"INT\" or a number like 15")
    })
}

/// The rules of one inline process, its probes included; `base` is its path (`stacks[3]`).
pub(super) fn check_process(pc: &ProcessConfig, base: &str, p: &mut Vec<Problem>) {
    let at = |f: &str| format!("{base}.{f}");
    if pc.command.trim().is_empty() {
        p.push(Problem::new(
            at("command"),
            "a command is required, e.g. \"/usr/bin/myapp\" or \"sleep 10\"",
        ));
    }
    if let Some(n) = pc.instances
        && !(1..=MAX_INSTANCES).contains(&n)
    {
        p.push(Problem::new(
            at("instances"),
            format!("must be between 1 and {MAX_INSTANCES}, got {n}"),
        ));
    }
    if let Some(sig) = &pc.stop_signal
        && let Err(e) = parse_signal(sig)
    {
        p.push(Problem::new(at("stop_signal"), e));
    }
    check_env(&pc.env, &at("env"), p);
    check_user(pc, base, p);
    for (j, w) in pc.watch.iter().enumerate() {
        if w.as_os_str().is_empty() {
            p.push(Problem::new(
                format!("{base}.watch[{j}]"),
                "a watched path must not be empty",
            ));
        }
    }
    for (field, cmd) in [
        ("checkpoint_command", &pc.checkpoint_command),
        ("restore_command", &pc.restore_command),
    ] {
        if cmd.as_ref().is_some_and(CommandSpec::is_empty) {
            p.push(Problem::new(at(field), "the command must not be empty"));
        }
    }
    if let Some(r) = &pc.readiness {
        check_probe(r, &at("readiness"), p);
    }
    if let Some(l) = &pc.liveness {
        check_probe(l, &at("liveness"), p);
        if l.start_timeout.is_some() {
            p.push(Problem::new(
                at("liveness.start_timeout"),
                "only a readiness probe has a start_timeout",
            ));
        }
    }
    for (field, pr) in [("readiness", &pc.readiness), ("liveness", &pc.liveness)] {
        match pr.as_ref().and_then(|pr| pr.tcp.as_ref()) {
            Some(TcpTarget::FirstPort(false)) => p.push(Problem::new(
                at(&format!("{field}.tcp")),
                "use a port (5050), \"host:5050\", or true for the first of `ports`",
            )),
            Some(TcpTarget::FirstPort(true)) if pc.ports.is_empty() => p.push(Problem::new(
                at(&format!("{field}.tcp")),
                "true means the first of `ports`, but the process has no ports; name a port",
            )),
            _ => {}
        }
    }
    if pc.instances.unwrap_or(1) > 1 && !pc.ports.is_empty() {
        p.push(Problem::new(
            at("ports"),
            "a process with several instances cannot own fixed ports; give each its own process",
        ));
    }
}

/// `user` and `group`: not empty, existing on this machine, and switchable to by this process
/// (root, or the user it already is). Reads the user database (blocking).
fn check_user(pc: &ProcessConfig, base: &str, p: &mut Vec<Problem>) {
    use crate::proc::user::{UserError, check};
    let (user, group) = (pc.user.as_deref(), pc.group.as_deref());
    let mut bad = false;
    for (field, v) in [("user", user), ("group", group)] {
        if v.is_some_and(|v| v.trim().is_empty() || v.contains('\0')) {
            p.push(Problem::new(
                format!("{base}.{field}"),
                format!("a {field} name or a numeric id, e.g. \"nobody\" or \"65534\""),
            ));
            bad = true;
        }
    }
    if bad || (user.is_none() && group.is_none()) {
        return;
    }
    if let Err(e) = check(user, group) {
        let field = match &e {
            UserError::NoGroup(_) => "group",
            UserError::NotRoot { .. } | UserError::Lookup(_) if user.is_none() => "group",
            _ => "user",
        };
        p.push(Problem::new(format!("{base}.{field}"), e.to_string()));
    }
}

/// Environment variables: names usable by `execve`, values without NUL.
pub(super) fn check_env(env: &BTreeMap<String, String>, base: &str, p: &mut Vec<Problem>) {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            p.push(Problem::new(
                format!("{base}.{k}"),
                "an environment variable name must be non-empty without '=' or NUL",
            ));
        }
        if v.contains('\0') {
            p.push(Problem::new(
                format!("{base}.{k}"),
                "an environment value must not contain NUL",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::problems_of as problems;

    #[test]
    fn signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn tcp_true_needs_ports() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "readiness": {"tcp": true}},
                           {"name": "b", "command": "x", "liveness": {"tcp": false}, "ports": [9]},
                           {"name": "c", "command": "x", "readiness": {"tcp": true}, "ports": [10]}]}"#,
        );
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["stacks[0].readiness.tcp", "stacks[1].liveness.tcp"],
            "{p:#?}"
        );
    }
}
