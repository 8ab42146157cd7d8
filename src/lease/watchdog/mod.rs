//! The fence process: a watchdog outside the server that kills the supervised processes when
//! the lease can no longer be trusted, without the server's help.
//!
//! The lease's own [`super::Fence`] closes storage writes on time even if the leaser is late,
//! but the processes are stopped by the server, and a server that is SIGSTOPped, deadlocked or
//! starved stops nothing: its children would run on while a standby takes over. So at start
//! the server also starts `state-manager fence`, a small child of its own binary in a process
//! group of its own (so `kill -STOP -<server's group>` misses it), dying with the server
//! (`PR_SET_PDEATHSIG`, as every supervised process). They share a page ([`page`]) under the
//! data directory: each time the storage fence is granted, the server arms the page with the
//! deadline `trust until − lead` ([`Timing::fence_lead`](super::Timing)), on CLOCK_BOOTTIME
//! and CLOCK_REALTIME; it disarms the page when the fence closes (release, loss, shutdown).
//! The fence process ([`guard`]) sleeps until the deadline and, if the page is still armed
//! with it, SIGKILLs every process group the server started and records that in the page,
//! where the server (and `GET /`) finds it once it runs again.
//!
//! Idle, the fence costs one wake per renewal (or per `idle_check` while disarmed) and a few
//! megabytes of memory, most of them pages of the binary shared with the server. It guarantees nothing the machine does not run: a whole-VM pause
//! freezes it too, and on resume it fires as soon as either clock shows the deadline passed.

mod guard;
mod page;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

pub use guard::{SWEEP, kill_children, run};
use page::{FenceClock, Mapping, futex_wake};

/// The server's side of the page.
pub struct Watchdog {
    mapping: Mapping,
    path: PathBuf,
    /// How long before the end of trust the fence fires.
    lead: Duration,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("path", &self.path)
            .field("lead", &self.lead)
            .finish_non_exhaustive()
    }
}

/// What `GET /` shows of the fence process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FenceStatus {
    /// The fence process's pid, once it runs.
    pub pid: Option<u32>,
    /// The processes may run only until the deadline the server last gave it.
    pub armed: bool,
    /// How often it killed this node's processes because the lease was not renewed in time.
    pub fired: u64,
    pub last_fired: Option<Fired>,
}

/// One firing of the fence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Fired {
    pub epoch: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Live processes it killed (each with its process group).
    pub processes: u64,
}

impl Watchdog {
    /// Create the page at `path`, disarmed. `lead`: how long before the end of trust the
    /// fence fires; `idle_check`: how often a disarmed fence looks without being woken.
    pub fn create(path: &Path, lead: Duration, idle_check: Duration) -> std::io::Result<Watchdog> {
        let mapping = Mapping::create(path)?;
        let p = mapping.page();
        p.idle_check
            .store(idle_check.as_nanos() as u64, Ordering::Release);
        Ok(Watchdog {
            mapping,
            path: path.to_path_buf(),
            lead,
        })
    }

    /// The processes may run for `trust_left` more (minus the lead), under `epoch`.
    pub fn arm(&self, epoch: u64, trust_left: Duration) {
        let p = self.mapping.page();
        let kill_in = trust_left.saturating_sub(self.lead).as_nanos() as u64;
        p.kill_at_boot
            .store(FenceClock::Boot.now() + kill_in, Ordering::Release);
        p.kill_at_real
            .store(FenceClock::Real.now() + kill_in, Ordering::Release);
        p.epoch.store(epoch, Ordering::Release);
        p.armed.store(1, Ordering::Release);
        self.changed();
    }

    /// No deadline any more: this node holds no lease, or gave it up after stopping.
    pub fn disarm(&self) {
        self.mapping.page().armed.store(0, Ordering::Release);
        self.changed();
    }

    fn changed(&self) {
        let p = self.mapping.page();
        p.generation.fetch_add(1, Ordering::AcqRel);
        futex_wake(&p.generation);
    }

    pub fn status(&self) -> FenceStatus {
        let p = self.mapping.page();
        let pid = p.fence_pid.load(Ordering::Acquire) as u32;
        let fired = p.fired.load(Ordering::Acquire);
        let last_fired = (fired > 0).then(|| {
            let ns = p.fired_at_real.load(Ordering::Acquire) as i128;
            Fired {
                epoch: p.fired_epoch.load(Ordering::Acquire),
                at: OffsetDateTime::from_unix_timestamp_nanos(ns)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                processes: p.fired_processes.load(Ordering::Acquire),
            }
        });
        FenceStatus {
            pid: (pid != 0).then_some(pid),
            armed: p.armed.load(Ordering::Acquire) != 0,
            fired,
            last_fired,
        }
    }

    /// Keep `program fence --page <page> --server <our pid>` running: started now, started
    /// again (after a second) whenever it ends, for as long as `self` lives.
    pub fn start_process(self: &Arc<Self>, program: PathBuf) {
        let weak = Arc::downgrade(self);
        let page = self.path.clone();
        tokio::spawn(async move {
            loop {
                if weak.strong_count() == 0 {
                    break;
                }
                let argv = vec![
                    program.display().to_string(),
                    "fence".into(),
                    "--page".into(),
                    page.display().to_string(),
                    "--server".into(),
                    std::process::id().to_string(),
                ];
                let req = crate::proc::SpawnRequest {
                    argv,
                    env: crate::proc::child_env([]),
                    cwd: None,
                    stdio: crate::proc::Stdio3::Inherit,
                    die_with_parent: true,
                    credentials: None,
                };
                match crate::proc::spawn(req).await {
                    Ok(child) => {
                        tracing::info!(pid = child.pid, "fence process started");
                        match weak.upgrade() {
                            Some(w) => w
                                .mapping
                                .page()
                                .fence_pid
                                .store(u64::from(child.pid), Ordering::Release),
                            None => {
                                let _ = crate::proc::signal_group(
                                    child.pid,
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                                break;
                            }
                        }
                        let status = child.exit.await;
                        let Some(w) = weak.upgrade() else { break };
                        w.mapping.page().fence_pid.store(0, Ordering::Release);
                        tracing::error!(?status, "the fence process ended; starting it again");
                    }
                    Err(e) => tracing::error!("cannot start the fence process: {e}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

impl Drop for Watchdog {
    /// Disarmed, and the fence process ended: nothing is left to hold the processes to.
    fn drop(&mut self) {
        self.disarm();
        let pid = self.mapping.page().fence_pid.load(Ordering::Acquire) as i32;
        if pid > 1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
