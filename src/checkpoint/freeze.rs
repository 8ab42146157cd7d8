//! The consistency window. A [`Freezer`] (the supervisor: SIGSTOP/SIGCONT of the process groups,
//! or the cgroup freezer) stops the writers while the tree is walked and the changed files are
//! copied to staging; the upload happens after they run again.
//!
//! Invariant: once `freeze` has been called, `thaw` is called exactly once — after the work, on
//! every error path (including a failed `freeze`, which may have stopped some groups), and when
//! the checkpoint's future is dropped mid-window (the guard spawns the thaw).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::error::{CheckpointError, FreezeError, Result};

/// Stops and resumes the writers of `env_dir`. Implementations must make `thaw` safe to call
/// after a partial or failed `freeze`.
#[async_trait::async_trait]
pub trait Freezer: Send + Sync + 'static {
    async fn freeze(&self) -> Result<(), FreezeError>;
    async fn thaw(&self) -> Result<(), FreezeError>;
}

/// Thaws on drop if [`ThawGuard::thaw`] was not reached.
struct ThawGuard {
    freezer: Option<Arc<dyn Freezer>>,
}

impl ThawGuard {
    async fn thaw(mut self) -> Result<(), FreezeError> {
        match self.freezer.take() {
            Some(f) => f.thaw().await,
            None => Ok(()),
        }
    }
}

impl Drop for ThawGuard {
    fn drop(&mut self) {
        let Some(f) = self.freezer.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = f.thaw().await {
                        tracing::error!(error = %e, "resuming processes after a cancelled checkpoint failed");
                    }
                });
            }
            Err(_) => tracing::error!("no runtime to resume the frozen processes on"),
        }
    }
}

/// Run `work` with the writers frozen (if there is a freezer); returns its output and the
/// length of the window in milliseconds.
pub async fn frozen<T, F>(freezer: Option<&Arc<dyn Freezer>>, work: F) -> Result<(T, u64)>
where
    F: Future<Output = Result<T>>,
{
    let Some(freezer) = freezer else {
        return Ok((work.await?, 0));
    };
    let start = Instant::now();
    let guard = ThawGuard {
        freezer: Some(freezer.clone()),
    };
    if let Err(source) = freezer.freeze().await {
        if let Err(e) = guard.thaw().await {
            tracing::error!(error = %e, "resuming processes after a failed freeze also failed");
        }
        return Err(CheckpointError::Freeze { source });
    }
    let out = work.await;
    let thawed = guard.thaw().await;
    let ms = start.elapsed().as_millis() as u64;
    match (out, thawed) {
        (Ok(v), Ok(())) => Ok((v, ms)),
        (Ok(_), Err(source)) => Err(CheckpointError::Thaw { source }),
        (Err(e), thawed) => {
            if let Err(t) = thawed {
                tracing::error!(error = %t, "resuming processes after a failed checkpoint failed");
            }
            Err(e)
        }
    }
}
