//! The checkpoint [`Freezer`] of a node: SIGSTOP every supervised process group, and wait until
//! each leader is really stopped before the tree is read; SIGCONT afterwards.

use std::time::{Duration, Instant};

use crate::checkpoint::{FreezeError, Freezer};
use crate::proc::procfs::{self, TaskState};
use crate::retry::Backoff;
use crate::supervisor::SupervisorHandle;

/// Longest wait for stopped groups to show as stopped. A process inside a system call in
/// uninterruptible sleep (state `D`, e.g. throttled by a busy disk) stops when it returns.
const SETTLE: Duration = Duration::from_secs(10);
/// Pauses between looks at the groups: most stop within a millisecond.
const LOOK_AGAIN: Backoff = Backoff::new(Duration::from_micros(200), Duration::from_millis(20));

pub struct SupervisorFreezer {
    supervisor: SupervisorHandle,
}

impl SupervisorFreezer {
    pub fn new(supervisor: SupervisorHandle) -> Self {
        SupervisorFreezer { supervisor }
    }
}

#[async_trait::async_trait]
impl Freezer for SupervisorFreezer {
    async fn freeze(&self) -> Result<(), FreezeError> {
        let groups = self
            .supervisor
            .freeze(true)
            .await
            .map_err(|e| FreezeError::from(e.to_string()))?;
        let deadline = Instant::now() + SETTLE;
        let mut pauses = LOOK_AGAIN.delays();
        while let Some((pid, state)) = groups
            .iter()
            .find_map(|&pid| running(pid).map(|s| (pid, s)))
        {
            if Instant::now() > deadline {
                return Err(FreezeError::from(format!(
                    "process {pid} is still in state {state} {SETTLE:?} after SIGSTOP (a busy disk?); retry the checkpoint"
                )));
            }
            tokio::time::sleep(pauses.next_delay()).await;
        }
        Ok(())
    }

    async fn thaw(&self) -> Result<(), FreezeError> {
        self.supervisor
            .freeze(false)
            .await
            .map(|_| ())
            .map_err(|e| FreezeError::from(e.to_string()))
    }
}

/// The state of `pid` if it exists and can still run code: neither stopped, nor a zombie, nor
/// waiting on a `vfork` child.
fn running(pid: u32) -> Option<TaskState> {
    let mut reader = procfs::Reader::new();
    let state = reader.stat(pid).ok()?.state;
    match state {
        s if s.is_stopped() || s.is_zombie() || s == TaskState::Dead => None,
        TaskState::DiskSleep if in_vfork(&mut reader, pid) => None,
        s => Some(s),
    }
}

/// Whether `pid` sleeps in `vfork` until its child calls exec or exits. Shells (dash) and
/// `posix_spawn` start commands this way; when the group's SIGSTOP reaches the child before its
/// exec, the parent stays in state `D` until SIGCONT — it can run nothing, and the stop pending
/// for it takes effect before it returns to its own code, so it counts as stopped.
fn in_vfork(reader: &mut procfs::Reader, pid: u32) -> bool {
    reader.wchan(pid).is_ok_and(|w| {
        matches!(
            w,
            "kernel_clone" | "wait_for_vfork_done" | "do_fork" | "_do_fork"
        )
    })
}
