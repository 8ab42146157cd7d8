//! Managed ports: who holds a TCP port, found through /proc alone (no lsof), and freeing a port
//! before the process that owns it starts.
//!
//! A port is *in use* when a socket in LISTEN state is bound to it (`/proc/net/tcp` and `tcp6`,
//! in this process's network namespace). Its holders are the processes with a file descriptor on
//! that socket's inode (`/proc/<pid>/fd/*` → `socket:[inode]`). Processes of other users are
//! invisible without the rights to read their fds; a port held only by them is reported as such.
//!
//! Invariant: only a holder the caller calls its own (a leftover) or a foreign holder with
//! `reclaim` is ever signalled; state-manager's own process and process group never are.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;

use crate::proc::procfs;

/// How often a port being freed is looked at again.
const POLL: Duration = Duration::from_millis(10);
/// How long a holder has after SIGKILL to let go of the port.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A process holding a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, arguments separated by spaces (`[name]` for a kernel thread).
    pub command: String,
    #[serde(skip)]
    pub ppid: Option<u32>,
    #[serde(skip)]
    pub pgid: Option<u32>,
    /// Start time in clock ticks since boot: tells a recycled pid from the original.
    #[serde(skip)]
    pub start_ticks: Option<u64>,
}

/// One managed port, for `GET /ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PortInfo {
    pub port: u16,
    /// The process that owns it in the configuration.
    pub process: String,
    pub in_use: bool,
    /// The first visible holder, when in use.
    pub holder: Option<Holder>,
    /// The holder belongs to the owning process's current incarnation (its process group).
    pub held_by_owner: bool,
}

/// A holder that was made to let go of a port.
#[derive(Clone, Debug)]
pub struct Freed {
    pub port: u16,
    pub holder: Holder,
    /// From the holder's discovery to the port being free.
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "port {port} is held by pid {pid} ({command}), which is not a leftover of state-manager; stop it, or set \"reclaim_ports\": true to have it killed"
    )]
    Foreign {
        port: u16,
        pid: u32,
        command: String,
    },
    #[error(
        "port {port} is in use by a process not visible in /proc (another user's); free it, or run state-manager with the rights to see it"
    )]
    Hidden { port: u16 },
    #[error("port {port} is still held by pid {pid} ({command}) {waited:?} after SIGKILL")]
    StillHeld {
        port: u16,
        pid: u32,
        command: String,
        waited: Duration,
    },
    #[error("cannot read {path}: {source}")]
    Proc {
        path: &'static str,
        source: std::io::Error,
    },
}

/// Inodes of the listening sockets bound to `port`, IPv4 and IPv6.
pub fn listening_inodes(port: u16) -> Result<HashSet<u64>, PortError> {
    procfs::listening_inodes(port).map_err(|(path, source)| PortError::Proc { path, source })
}

/// Whether anything listens on `port`.
pub fn in_use(port: u16) -> Result<bool, PortError> {
    Ok(!listening_inodes(port)?.is_empty())
}

/// The processes holding `port` (empty when it is free or its holders are not visible).
pub fn holders(port: u16) -> Result<Vec<Holder>, PortError> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = procfs::Reader::new();
    let mut found = Vec::new();
    for pid in procfs::pids().into_iter().flatten() {
        if reader.holds_socket(pid, &inodes)
            && let Some(h) = describe_with(&mut reader, pid)
        {
            found.push(h);
        }
    }
    Ok(found)
}

/// A process's command line, parent, group and start time.
pub fn describe(pid: u32) -> Option<Holder> {
    describe_with(&mut procfs::Reader::new(), pid)
}

fn describe_with(reader: &mut procfs::Reader, pid: u32) -> Option<Holder> {
    let (stat, comm) = reader.stat_and_comm(pid).ok()?;
    let args = reader.cmdline(pid).unwrap_or_default();
    let command = if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    };
    Some(Holder {
        pid,
        command,
        ppid: Some(stat.ppid),
        pgid: Some(stat.pgrp),
        start_ticks: Some(stat.start_ticks),
    })
}

/// Whether `pid` descends from this process (a leftover of our own children, re-parented to us
/// as PID 1 or subreaper).
pub fn descends_from_self(holder: &Holder) -> bool {
    let me = std::process::id();
    let mut next = holder.ppid;
    for _ in 0..64 {
        match next {
            Some(p) if p == me => return true,
            Some(p) if p > 1 => next = describe(p).and_then(|h| h.ppid),
            _ => return false,
        }
    }
    false
}

/// The managed ports `(process, port, its current pid)` with their holders. Blocking (reads
/// /proc): call it off the async runtime.
pub fn list(managed: &[(String, u16, Option<u32>)]) -> Vec<PortInfo> {
    managed
        .iter()
        .map(|(process, port, owner_pid)| {
            let holder = holders(*port).ok().and_then(|h| h.into_iter().next());
            let in_use = holder.is_some() || in_use(*port).unwrap_or(false);
            let held_by_owner = match (&holder, owner_pid) {
                (Some(h), Some(pid)) => h.pgid == Some(*pid),
                _ => false,
            };
            PortInfo {
                port: *port,
                process: process.clone(),
                in_use,
                holder,
                held_by_owner,
            }
        })
        .collect()
}

/// How to free the ports of one process before it starts.
pub struct Policy<'a> {
    /// Kill holders that are not ours too.
    pub reclaim_foreign: bool,
    /// Whether a holder is a leftover of this supervisor (this run's or an earlier one's).
    pub is_ours: &'a (dyn Fn(&Holder) -> bool + Send + Sync),
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// Make sure each of `ports` is free: no holder → nothing to do; a leftover (or any holder with
/// `reclaim_foreign`) is stopped, its group if it leads one; a foreign holder is an error naming
/// it. Returns what was freed.
pub async fn free(ports: &[u16], policy: &Policy<'_>) -> Result<Vec<Freed>, PortError> {
    let mut freed = Vec::new();
    for &port in ports {
        let found = blocking(move || holders(port)).await?;
        if found.is_empty() {
            if blocking(move || in_use(port)).await? {
                return Err(PortError::Hidden { port });
            }
            continue;
        }
        let t = Instant::now();
        if let Some(h) = found
            .iter()
            .find(|h| !policy.reclaim_foreign && !(policy.is_ours)(h))
        {
            return Err(PortError::Foreign {
                port,
                pid: h.pid,
                command: h.command.clone(),
            });
        }
        stop_holders(port, &found, policy.grace).await?;
        freed.push(Freed {
            port,
            holder: found[0].clone(),
            took: t.elapsed(),
        });
    }
    Ok(freed)
}

/// SIGTERM the holders, wait up to `grace` for the port, then SIGKILL and wait again.
async fn stop_holders(port: u16, found: &[Holder], grace: Duration) -> Result<(), PortError> {
    found.iter().for_each(|h| signal_holder(h, Signal::SIGTERM));
    if wait_free(port, grace).await? {
        return Ok(());
    }
    found.iter().for_each(|h| signal_holder(h, Signal::SIGKILL));
    if wait_free(port, KILL_WAIT).await? {
        return Ok(());
    }
    Err(PortError::StillHeld {
        port,
        pid: found[0].pid,
        command: found[0].command.clone(),
        waited: KILL_WAIT,
    })
}

/// Signal the holder's process group if it leads one (and it is not ours), else the holder alone.
fn signal_holder(h: &Holder, sig: Signal) {
    let own_group = nix::unistd::getpgrp().as_raw() as u32;
    let me = std::process::id();
    if h.pid == me || h.pid <= 1 {
        return;
    }
    let result = if h.pgid == Some(h.pid) && h.pid != own_group {
        crate::proc::signal_group(h.pid, sig)
    } else {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid as i32), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    };
    match result {
        Ok(()) => {
            tracing::warn!(pid = h.pid, command = %h.command, "sent {sig} to the holder of a managed port")
        }
        Err(e) => tracing::warn!(
            pid = h.pid,
            "cannot send {sig} to the holder of a managed port: {e}"
        ),
    }
}

/// Poll until nothing listens on `port`; false if it is still in use after `within`.
async fn wait_free(port: u16, within: Duration) -> Result<bool, PortError> {
    let deadline = Instant::now() + within;
    loop {
        if !blocking(move || in_use(port)).await? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PortError> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_holding_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = holders(port).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, std::process::id());
        assert!(!descends_from_self(&found[0]));
        let ours = listening_inodes(port).unwrap();
        drop(l);
        // Our socket goes. Not "the port is free": another test of this binary may bind the
        // same ephemeral port once it is released. And polled: a child another test forks at
        // this moment holds a copy of the descriptor until its exec closes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let after = listening_inodes(port).unwrap();
            if ours.is_disjoint(&after) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{ours:?} still in {after:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
