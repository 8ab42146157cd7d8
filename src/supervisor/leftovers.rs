//! Leftovers of an earlier run of this supervisor on the same data directory: processes it
//! recorded as running (the state database's open runs) that are still alive because it ended
//! without stopping them (kill -9, power loss of the container runtime, a crash).
//!
//! A recorded run is the same process only if both its pid and its start time (clock ticks since
//! boot) match: a pid alone may have been recycled. A member of a recorded run's process group is
//! a leftover too, as long as that group's leader is the recorded process or gone (Linux does not
//! reuse a pid while a process group of that id exists).
//!
//! At start-up the supervisor stops every leftover (its whole group: stop signal, then SIGKILL
//! after the stop timeout) before it starts anything; later, a leftover found holding a managed
//! port is killed rather than refused.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;

use crate::events::ExitStatus;
use crate::ports::{self, Holder};
use crate::proc::{self, procfs};

/// A run of a process as recorded in the state database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRun {
    pub process: String,
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22 when it was spawned.
    pub start_ticks: u64,
}

/// The record of running processes that outlives the supervisor (the store implements it).
/// `opened` and `closed` are called from the supervisor's actor: they must not block (send the
/// write to the store's writer thread).
#[async_trait]
pub trait RunLedger: Send + Sync + std::fmt::Debug {
    /// Runs left open by earlier supervisors on this data directory. Called once, before any
    /// process of this run starts. An implementation that cannot read them logs why and returns
    /// what it could read.
    async fn earlier_runs(&self) -> Vec<OpenRun>;
    /// A process was spawned (`start_ticks`: its start time, if it could be read).
    fn opened(&self, process: &str, pid: u32, start_ticks: Option<u64>);
    /// A run ended: it exited with `exit`, or it was an earlier run's leftover and is now
    /// stopped or gone (`None`). Always after `opened` for this run's own processes.
    fn closed(&self, process: &str, pid: u32, exit: Option<ExitStatus>);
}

/// The earlier runs, for telling leftovers from foreign processes.
#[derive(Clone, Debug, Default)]
pub struct Earlier {
    pub runs: Vec<OpenRun>,
}

impl Earlier {
    /// Whether `h` is (a member of the process group of) a recorded earlier run.
    pub fn is_leftover(&self, h: &Holder) -> bool {
        self.runs.iter().any(|r| {
            let same = r.pid == h.pid && h.start_ticks == Some(r.start_ticks);
            let in_group = h.pgid == Some(r.pid)
                && h.start_ticks.is_some_and(|t| t >= r.start_ticks)
                && leader_is(r);
            same || in_group
        })
    }
}

/// The recorded leader is still the same process, or gone.
fn leader_is(r: &OpenRun) -> bool {
    match procfs::start_ticks(r.pid) {
        Some(t) => t == r.start_ticks,
        None => true,
    }
}

/// Whether a holder of a managed port may be killed as ours: a descendant of this process, or a
/// leftover of an earlier run.
pub fn is_ours(earlier: &Earlier, h: &Holder) -> bool {
    ports::descends_from_self(h) || earlier.is_leftover(h)
}

/// What start-up cleanup did with one recorded run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Nothing of it was left.
    Gone,
    /// The pid now belongs to another process (different start time): left alone.
    Recycled,
    /// Its group was stopped with the stop signal.
    Stopped,
    /// Its group outlived the stop timeout and was killed.
    Killed,
}

/// Stop every leftover of `runs`, in parallel; `how` gives each process's stop signal and
/// timeout. Returns what happened to each run, in order.
pub async fn stop_leftovers(
    runs: &[OpenRun],
    how: impl Fn(&str) -> (Signal, Duration),
) -> Vec<Cleanup> {
    let stops = runs.iter().map(|r| {
        let (sig, timeout) = how(&r.process);
        stop_one(r, sig, timeout)
    });
    futures::future::join_all(stops).await
}

async fn stop_one(r: &OpenRun, sig: Signal, timeout: Duration) -> Cleanup {
    if !leader_is(r) {
        return Cleanup::Recycled;
    }
    if !proc::group_alive_async(r.pid).await {
        return Cleanup::Gone;
    }
    tracing::warn!(process = %r.process, pid = r.pid, "stopping a leftover of an earlier run");
    let _ = proc::signal_group(r.pid, sig);
    if wait_empty(r.pid, timeout).await {
        return Cleanup::Stopped;
    }
    let _ = proc::signal_group(r.pid, Signal::SIGKILL);
    wait_empty(r.pid, Duration::from_secs(5)).await;
    Cleanup::Killed
}

async fn wait_empty(pgid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !proc::group_alive_async(pgid).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
