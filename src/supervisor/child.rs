//! Starting one process of a spec: its managed ports freed, its environment (inherited, config,
//! env file), its log pumps, and the task that reports its exit to the actor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::pump::pump;
use crate::config::ProcessSpec;
use crate::events::ExitStatus;
use crate::logs::LogBuffer;
use crate::ports::{self, Holder, Policy};
use crate::proc::{self, SpawnRequest, Stdio3};

/// Decides whether the holder of a managed port is a leftover of this supervisor.
pub type IsOurs = Arc<dyn Fn(&Holder) -> bool + Send + Sync>;

/// Longest wait between SIGTERM and SIGKILL for a port's holder.
const PORT_GRACE_MAX: Duration = Duration::from_secs(10);

/// A spawned process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub start_ticks: Option<u64>,
}

/// What a launch reports to the actor, in this order on one channel: the spawn's outcome, then
/// (if it started) the exit. One channel keeps the order, so an exit never overtakes its spawn.
#[derive(Debug)]
pub enum Launch {
    Spawned {
        name: Arc<str>,
        result: Result<Started, String>,
    },
    /// The leader exited; `group_alive`: members of its group are still there (checked off the
    /// actor, since that may mean reading every process's stat).
    Exited {
        name: Arc<str>,
        pid: u32,
        status: ExitStatus,
        group_alive: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("env file {path}: line {line}: {problem}")]
    EnvFile {
        path: String,
        line: usize,
        problem: &'static str,
    },
    #[error("cannot read env file {path}: {source}")]
    EnvFileRead {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    User(#[from] proc::UserError),
    #[error(transparent)]
    Spawn(#[from] proc::SpawnError),
    #[error(transparent)]
    Port(#[from] ports::PortError),
}

/// How a launch goes about it.
#[derive(Clone)]
pub struct LaunchOptions {
    pub stdio: Stdio3,
    pub forward: bool,
    pub is_ours: IsOurs,
    /// Set over the spec's environment ([`super::AmbientEnv`]).
    pub ambient: Vec<(String, String)>,
}

/// Start `spec` in the background (after freeing its ports): report `Spawned`, then `Exited`,
/// on `tx`.
pub fn launch(
    spec: Arc<ProcessSpec>,
    opts: LaunchOptions,
    logs: Arc<LogBuffer>,
    tx: mpsc::UnboundedSender<Launch>,
) {
    tokio::spawn(async move {
        let name: Arc<str> = spec.name.as_str().into();
        // Boxed: the start's state is freed once the child runs, so a task waiting for its
        // child's exit (one per supervised process) holds little more than the channel.
        let started = Box::pin(async {
            free_ports(&spec, &opts.is_ours).await?;
            start(&spec, &opts, &logs).await
        })
        .await;
        match started {
            Ok(child) => {
                let pid = child.pid;
                let started = Started {
                    pid,
                    start_ticks: child.start_ticks,
                };
                let _ = tx.send(Launch::Spawned {
                    name: name.clone(),
                    result: Ok(started),
                });
                if let Ok(status) = child.exit.await {
                    let group_alive = proc::group_alive_async(pid).await;
                    let _ = tx.send(Launch::Exited {
                        name,
                        pid,
                        status,
                        group_alive,
                    });
                }
            }
            Err(e) => {
                let _ = tx.send(Launch::Spawned {
                    name,
                    result: Err(e.to_string()),
                });
            }
        }
    });
}

/// Make sure nothing holds the ports of `spec` (killing leftovers of ours).
async fn free_ports(spec: &ProcessSpec, is_ours: &IsOurs) -> Result<(), StartError> {
    if spec.ports.is_empty() {
        return Ok(());
    }
    let policy = Policy {
        reclaim_foreign: spec.reclaim_ports,
        is_ours: &**is_ours,
        grace: spec.stop_timeout.min(PORT_GRACE_MAX),
    };
    for f in ports::free(&spec.ports, &policy).await? {
        tracing::warn!(process = %spec.name, port = f.port, pid = f.holder.pid, command = %f.holder.command,
            took_ms = f.took.as_millis() as u64, "freed a managed port held by a stray process");
    }
    Ok(())
}

/// Spawn `spec` and wire its output into `logs`.
async fn start(
    spec: &ProcessSpec,
    opts: &LaunchOptions,
    logs: &Arc<LogBuffer>,
) -> Result<proc::Child, StartError> {
    let (stdio, forward) = (opts.stdio, opts.forward);
    let from_file = match &spec.env_file {
        Some(file) => read_env_file(file)?,
        None => Vec::new(),
    };
    let credentials = credentials(spec).await?;
    let instance = spec.instance.map(|i| i.to_string());
    // Later entries win: the user's own first, so that the spec's env sets them if it likes;
    // then the spec's env, its env file, the ambient variables, and ours.
    let home = credentials
        .as_ref()
        .and_then(|c| Some(c.home.as_ref()?.display().to_string()));
    let name = credentials.as_ref().and_then(|c| c.name.as_deref());
    let user = [("USER", name), ("LOGNAME", name), ("HOME", home.as_deref())];
    let env = user
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .chain(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .chain(from_file.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .chain(opts.ambient.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .chain([("STATE_MANAGER_PROCESS", spec.name.as_str())])
        .chain(instance.as_deref().map(|i| ("STATE_MANAGER_INSTANCE", i)));
    let req = SpawnRequest {
        argv: spec.argv.clone(),
        env: proc::child_env(env),
        cwd: spec.cwd.clone(),
        stdio,
        die_with_parent: true,
        credentials,
    };
    let mut child = proc::spawn(req).await?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    if stdout.is_some() || stderr.is_some() {
        let name: Arc<str> = spec.name.as_str().into();
        tokio::spawn(pump(stdout, stderr, name, logs.clone(), forward));
    }
    Ok(child)
}

/// The user and groups `spec` runs as, looked up at each start (so a change to the user
/// database applies on restart) on the blocking pool: the lookup reads files or asks NSS.
async fn credentials(spec: &ProcessSpec) -> Result<Option<proc::Credentials>, StartError> {
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    let (user, group) = (spec.user.clone(), spec.group.clone());
    let resolved =
        tokio::task::spawn_blocking(move || proc::user::resolve(user.as_deref(), group.as_deref()))
            .await
            .map_err(|e| proc::UserError::Lookup(e.to_string()))??;
    Ok(Some(resolved))
}

/// `KEY=VALUE` lines; blank lines and `#` comments skipped; matching quotes around a value
/// removed. A missing file is an empty environment.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, StartError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StartError::EnvFileRead {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let bad = |problem| StartError::EnvFile {
            path: path.display().to_string(),
            line: i + 1,
            problem,
        };
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(bad("the name before '=' must be non-empty without spaces"));
        }
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if q == e && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v,
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_and_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, "# c\n\nA=1\nexport B = \"two words\"\nC='x'\n").unwrap();
        let env = read_env_file(&p).unwrap();
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into())
            ]
        );
        std::fs::write(&p, "A=1\nnonsense\n").unwrap();
        let err = read_env_file(&p).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("KEY=VALUE"), "{err}");
        assert!(
            read_env_file(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
