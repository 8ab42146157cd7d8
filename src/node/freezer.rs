//! The checkpoint [`Freezer`] of a node: SIGSTOP every supervised process group, and wait until
//! each leader is really stopped before the tree is read; SIGCONT afterwards.

use std::time::{Duration, Instant};

use crate::checkpoint::{FreezeError, Freezer};
use crate::supervisor::SupervisorHandle;

/// Longest wait for stopped groups to show as stopped.
const SETTLE: Duration = Duration::from_secs(2);

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
        let mut pause = Duration::from_micros(200);
        while groups.iter().any(|&pid| running(pid)) {
            if Instant::now() > deadline {
                return Err(FreezeError::from(format!(
                    "processes did not stop within {SETTLE:?}"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
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

/// Whether `pid` exists and is neither stopped nor a zombie.
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("T" | "t" | "Z" | "X") | None)
}
