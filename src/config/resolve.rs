//! From a validated config to the concrete processes the supervisor runs: stacks expanded into
//! instances, defaults applied, `{instance}` substituted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::process::{instance_names, parse_signal};
use super::{CommandSpec, Config, OnExit, ProbeConfig, ProcessConfig, StackEntry};

/// Where a process's definition came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackSource {
    Inline,
    /// An s6-style directory holding `run` and optionally `env`, `ready`, `checkpoint`, `restore`.
    Dir(PathBuf),
}

/// How a process is restarted. Pure data; the arithmetic is in `supervisor::backoff`.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    pub on_exit: OnExit,
    pub delay: Duration,
    pub backoff_max: Duration,
    pub reset_after: Duration,
    pub max_restarts: Option<u32>,
}

/// One concrete process, e.g. `web-2`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    pub name: String,
    /// The stack it belongs to (`web` for `web-2`); `depends_on` refers to stacks.
    pub stack: String,
    pub instance: Option<u32>,
    pub argv: Vec<String>,
    /// Configured environment (global under own); the inherited environment is added at spawn.
    pub env: BTreeMap<String, String>,
    /// A `KEY=VALUE` file read at every start, so edits apply on restart.
    pub env_file: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    /// The user and group to run as (names or numeric ids), resolved at every start.
    pub user: Option<String>,
    pub group: Option<String>,
    pub source: StackSource,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub watch: Vec<PathBuf>,
    pub checkpoint_command: Option<Vec<String>>,
    pub restore_command: Option<Vec<String>>,
    pub depends_on: Vec<String>,
    pub ports: Vec<u16>,
    pub reclaim_ports: bool,
    /// Boxed, as most processes have none: a spec is held per process for its whole life.
    pub readiness: Option<Box<ProbeConfig>>,
    pub liveness: Option<Box<ProbeConfig>>,
}

/// Every process of `config`, in configuration order. `stacks_dir` holds string stacks.
///
/// Specs are shared (`Arc`): the process set, its views and the supervisor hold one copy of
/// each, see [`share`].
pub fn resolve(config: &Config, stacks_dir: &Path) -> Vec<Arc<ProcessSpec>> {
    let mut out = Vec::with_capacity(config.stacks.len());
    for entry in &config.stacks {
        match entry {
            StackEntry::Dir(name) => {
                out.push(Arc::new(dir_stack(config, name, &stacks_dir.join(name))));
            }
            StackEntry::Inline(pc) => {
                let names = instance_names(&pc.name, pc.instances);
                for (i, name) in names.into_iter().enumerate() {
                    let instance = pc.instances.map(|_| i as u32 + 1);
                    out.push(Arc::new(inline(config, pc, name, instance)));
                }
            }
        }
    }
    out
}

/// Replace each of `specs` that equals the spec of the same name in `known` by that one, so
/// that a process whose definition did not change keeps one copy however many views hold it.
pub fn share(specs: &mut [Arc<ProcessSpec>], known: &[Arc<ProcessSpec>]) {
    let by_name: HashMap<&str, &Arc<ProcessSpec>> =
        known.iter().map(|s| (s.name.as_str(), s)).collect();
    for spec in specs {
        if let Some(&k) = by_name.get(spec.name.as_str())
            && !Arc::ptr_eq(k, spec)
            && **k == **spec
        {
            *spec = Arc::clone(k);
        }
    }
}

fn policy(config: &Config, pc: Option<&ProcessConfig>) -> RestartPolicy {
    RestartPolicy {
        on_exit: pc.and_then(|p| p.on_exit).unwrap_or(OnExit::Restart),
        delay: pc
            .and_then(|p| p.restart_delay)
            .unwrap_or(config.restart_delay)
            .get(),
        backoff_max: pc
            .and_then(|p| p.backoff_max)
            .unwrap_or(config.backoff_max)
            .get(),
        reset_after: pc
            .and_then(|p| p.backoff_reset_after)
            .unwrap_or(config.backoff_reset_after)
            .get(),
        max_restarts: pc.and_then(|p| p.max_restarts).or(config.max_restarts),
    }
}

fn dir_stack(config: &Config, name: &str, dir: &Path) -> ProcessSpec {
    let ready = dir.join("ready");
    let readiness = is_executable(&ready).then(|| {
        Box::new(ProbeConfig {
            exec: Some(CommandSpec::Argv(vec![ready.display().to_string()])),
            period: super::Dur::millis(250),
            start_timeout: Some(super::Dur::secs(60)),
            ..ProbeConfig::default()
        })
    });
    let hook = |f: &str| {
        let p = dir.join(f);
        is_executable(&p).then(|| vec![p.display().to_string()])
    };
    ProcessSpec {
        name: name.to_string(),
        stack: name.to_string(),
        instance: None,
        argv: vec![dir.join("run").display().to_string()],
        env: config.env.clone(),
        env_file: Some(dir.join("env")),
        cwd: Some(dir.to_path_buf()),
        user: None,
        group: None,
        source: StackSource::Dir(dir.to_path_buf()),
        autostart: true,
        restart: policy(config, None),
        stop_signal: Signal::SIGTERM,
        stop_timeout: config.stop_timeout.get(),
        watch: Vec::new(),
        checkpoint_command: hook("checkpoint"),
        restore_command: hook("restore"),
        depends_on: Vec::new(),
        ports: Vec::new(),
        reclaim_ports: config.reclaim_ports,
        readiness,
        liveness: None,
    }
}

fn inline(config: &Config, pc: &ProcessConfig, name: String, instance: Option<u32>) -> ProcessSpec {
    let n = instance
        .map(|i| i.to_string())
        .unwrap_or_else(|| "1".into());
    let x = |s: &str| s.replace("{instance}", &n);
    let argv = if pc.args.is_empty() && pc.command.trim().contains(char::is_whitespace) {
        vec!["/bin/sh".into(), "-c".into(), x(&pc.command)]
    } else {
        std::iter::once(x(pc.command.trim()))
            .chain(pc.args.iter().map(|a| x(a)))
            .collect()
    };
    let mut env = config.env.clone();
    env.extend(pc.env.iter().map(|(k, v)| (k.clone(), x(v))));
    ProcessSpec {
        name,
        stack: pc.name.clone(),
        instance,
        argv,
        env,
        env_file: None,
        cwd: pc
            .cwd
            .as_ref()
            .map(|c| PathBuf::from(x(&c.to_string_lossy()))),
        user: pc.user.clone(),
        group: pc.group.clone(),
        source: StackSource::Inline,
        autostart: pc.autostart.unwrap_or(true),
        restart: policy(config, Some(pc)),
        stop_signal: pc
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(Signal::SIGTERM),
        stop_timeout: pc.stop_timeout.unwrap_or(config.stop_timeout).get(),
        watch: pc.watch.clone(),
        checkpoint_command: pc.checkpoint_command.as_ref().map(CommandSpec::argv),
        restore_command: pc.restore_command.as_ref().map(CommandSpec::argv),
        depends_on: pc.depends_on.clone(),
        ports: pc.ports.clone(),
        reclaim_ports: pc.reclaim_ports.unwrap_or(config.reclaim_ports),
        readiness: pc.readiness.as_ref().map(|p| Box::new(expand_probe(p, &x))),
        liveness: pc.liveness.as_ref().map(|p| Box::new(expand_probe(p, &x))),
    }
}

/// `{instance}` in a probe's URL, command and address.
fn expand_probe(p: &ProbeConfig, x: &impl Fn(&str) -> String) -> ProbeConfig {
    let mut p = p.clone();
    p.http = p.http.as_deref().map(x);
    p.exec = p.exec.map(|c| match c {
        CommandSpec::Shell(s) => CommandSpec::Shell(x(&s)),
        CommandSpec::Argv(v) => CommandSpec::Argv(v.iter().map(|a| x(a)).collect()),
    });
    if let Some(super::TcpTarget::Addr(a)) = &p.tcp {
        p.tcp = Some(super::TcpTarget::Addr(x(a)));
    }
    p
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn instances_expand_names_args_and_env() {
        let c = parse(
            r#"{"env": {"G": "g", "X": "global"}, "stacks": [{"name": "web", "command": "srv", "args": ["--port", "80{instance}"],
                "env": {"X": "own-{instance}"}, "instances": 2}]}"#,
        )
        .unwrap();
        let specs = resolve(&c, Path::new("/stacks"));
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["web-1", "web-2"]
        );
        assert_eq!(specs[1].argv, ["srv", "--port", "802"]);
        assert_eq!(specs[1].env["X"], "own-2");
        assert_eq!(specs[1].env["G"], "g");
        assert_eq!(specs[0].stack, "web");
    }

    #[test]
    fn shell_form_and_dir_stacks() {
        let c = parse(r#"{"stop_timeout": "5s", "stacks": ["db", {"name": "a", "command": "sleep 10 && echo hi"}]}"#).unwrap();
        let specs = resolve(&c, Path::new("/srv/stacks"));
        assert_eq!(specs[0].argv, ["/srv/stacks/db/run"]);
        assert_eq!(specs[0].stop_timeout, Duration::from_secs(5));
        assert_eq!(specs[1].argv, ["/bin/sh", "-c", "sleep 10 && echo hi"]);
        assert_eq!(specs[1].restart.delay, Duration::from_secs(1));
    }

    #[test]
    fn an_unchanged_spec_is_shared_and_a_changed_one_is_not() {
        let before =
            parse(r#"{"stacks": [{"name": "a", "command": "x"}, {"name": "b", "command": "y"}]}"#)
                .unwrap();
        let after = parse(r#"{"stacks": [{"name": "a", "command": "x"}, {"name": "b", "command": "z"}, {"name": "c", "command": "x"}]}"#).unwrap();
        let known = resolve(&before, Path::new("/"));
        let mut specs = resolve(&after, Path::new("/"));
        share(&mut specs, &known);
        assert!(Arc::ptr_eq(&specs[0], &known[0]), "a did not change");
        assert!(!Arc::ptr_eq(&specs[1], &known[1]), "b did");
        assert_eq!(specs[1].argv, ["z"]);
        assert_eq!(specs[2].name, "c");
    }
}
