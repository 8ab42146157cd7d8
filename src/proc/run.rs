//! Run a short command to completion (hooks, exec probes): bounded output, a timeout that kills
//! the whole process group, optional bytes on stdin; killed with state-manager if it dies
//! (`PR_SET_PDEATHSIG`, as supervised processes).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{SpawnError, SpawnRequest, Stdio3, child_env, signal_group, spawn};
use crate::events::ExitStatus;

/// Most bytes of stdout and of stderr kept from a command.
const OUTPUT_LIMIT: usize = 64 * 1024;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    /// stdout then stderr, each cut to 64 KiB.
    pub stdout: String,
    pub stderr: String,
}

/// Why [`run`] has no output to give: the command did not start, or did not end in time.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{program:?} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
}

/// Kills the process group of a command whose caller stopped waiting (a cancelled probe), so that
/// dropping [`run`]'s future never leaves the command running.
struct KillOnDrop {
    pgid: u32,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Run `argv` and wait for it, killing its process group if it outlives `opts.timeout` (or if
/// the returned future is dropped before it ends).
pub async fn run(argv: &[String], opts: RunOptions) -> Result<Output, CommandError> {
    let env = child_env(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let stdio = if opts.stdin.is_some() {
        Stdio3::CaptureWithStdin
    } else {
        Stdio3::Capture
    };
    let mut child = spawn(SpawnRequest {
        argv: argv.to_vec(),
        env,
        cwd: opts.cwd.clone(),
        stdio,
        // A hook or probe must not outlive the server that asked for it (a restore hook of a
        // kill -9'd server running on beside the next one, say).
        die_with_parent: true,
        credentials: None,
    })
    .await?;
    let pid = child.pid;
    let mut guard = KillOnDrop {
        pgid: pid,
        armed: true,
    };
    if let (Some(fd), Some(bytes)) = (child.stdin.take(), opts.stdin) {
        tokio::spawn(async move {
            if let Ok(mut w) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                let _ = w.write_all(&bytes).await;
            }
        });
    }
    let out = tokio::spawn(read_limited(child.stdout.take()));
    let err = tokio::spawn(read_limited(child.stderr.take()));
    let status = match tokio::time::timeout(opts.timeout, &mut child.exit).await {
        Ok(status) => {
            guard.armed = false;
            status.map_err(|_| SpawnError::SpawnerGone)?
        }
        Err(_) => {
            let _ = signal_group(pid, Signal::SIGKILL);
            let _ = child.exit.await;
            guard.armed = false;
            return Err(CommandError::Timeout {
                program: argv[0].clone(),
                timeout: opts.timeout,
            });
        }
    };
    // Grandchildren may hold the pipes open; they die with the group.
    let _ = signal_group(pid, Signal::SIGKILL);
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

async fn read_limited(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else { return String::new() };
    let Ok(mut r) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) if buf.len() < OUTPUT_LIMIT => {
                let take = n.min(OUTPUT_LIMIT - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(_) => {} // keep draining so the writer does not block
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn captures_output_and_stdin() {
        let opts = RunOptions {
            stdin: Some(b"hello\n".to_vec()),
            timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let out = run(&argv(&["sh", "-c", "cat; echo oops >&2; exit 2"]), opts)
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(2));
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let opts = RunOptions {
            timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let err = run(&argv(&["sh", "-c", "sleep 60 & sleep 60"]), opts)
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
        let opts = RunOptions {
            timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let cmd = argv(&["sh", "-c", &script]);
        let fut = run(&cmd, opts);
        let read_pid = async {
            loop {
                if let Some(pid) = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let pid = tokio::select! {
            _ = fut => panic!("the command ended by itself"),
            pid = read_pid => pid,
        };
        // The future is dropped here; its group must be gone soon.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while super::super::group_alive(pid as u32) {
            assert!(std::time::Instant::now() < deadline, "group {pid} survived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
