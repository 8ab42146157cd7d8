//! Process runs: one row per start of a process, closed when it ends. After a restart of
//! state-manager the open runs say which processes may still be alive; the pid is checked against
//! the start time the kernel recorded (and the boot id), so a recycled pid is not mistaken for
//! the process that once had it.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::codec::{exit_from_sql, exit_to_sql, time_from_sql, time_to_sql, unbox};
use super::{Result, Store, StoreError};
use crate::events::ExitStatus;
use crate::proc::procfs;

/// What is known when a process starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStart {
    pub process: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot at which the process started.
    pub proc_start: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` at start.
    pub boot_id: Option<String>,
    pub started_at: OffsetDateTime,
}

impl RunStart {
    /// Describe a process that just started, reading its start time and the boot id from /proc
    /// (left empty where /proc cannot tell, e.g. the process already exited).
    pub fn for_pid(process: &str, pid: u32, started_at: OffsetDateTime) -> RunStart {
        RunStart {
            process: process.to_string(),
            pid,
            proc_start: procfs::start_ticks(pid),
            boot_id: procfs::boot_id().map(String::from),
            started_at,
        }
    }
}

/// How a run ended. `exit` is `None` when the end was noticed without a status (the process was
/// found gone after a restart of state-manager).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunEnd {
    pub ended_at: OffsetDateTime,
    pub exit: Option<ExitStatus>,
}

/// A stored run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: i64,
    pub process: String,
    pub pid: u32,
    pub proc_start: Option<u64>,
    pub boot_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub exit: Option<ExitStatus>,
}

impl Run {
    /// True only if the pid is alive now, on the same boot, with the start time recorded for
    /// this run: the very process this run started, not a later one that reused the pid.
    pub fn same_process_alive(&self) -> bool {
        let (Some(start), Some(boot)) = (self.proc_start, self.boot_id.as_deref()) else {
            return false;
        };
        procfs::boot_id() == Some(boot) && procfs::start_ticks(self.pid) == Some(start)
    }
}

impl Store {
    /// Record a start; returns the run id to pass to [`Store::run_ended`].
    pub async fn run_started(&self, start: RunStart) -> Result<i64> {
        self.call(move |conn| {
            let proc_start = start
                .proc_start
                .map(i64::try_from)
                .transpose()
                .map_err(|_| {
                    StoreError::Invalid(format!("process start {:?} too large", start.proc_start))
                })?;
            conn.execute(
                "INSERT INTO runs (process, pid, proc_start, boot_id, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    start.process,
                    start.pid,
                    proc_start,
                    start.boot_id,
                    time_to_sql(start.started_at)?
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// Close an open run. A run that is unknown or already closed is an error.
    pub async fn run_ended(&self, id: i64, end: RunEnd) -> Result<()> {
        self.call(move |conn| {
            let (code, signal) = exit_to_sql(end.exit);
            let changed = conn.execute(
                "UPDATE runs SET ended_at = ?2, exit_code = ?3, exit_signal = ?4
                 WHERE id = ?1 AND ended_at IS NULL",
                params![id, time_to_sql(end.ended_at)?, code, signal],
            )?;
            if changed == 0 {
                return Err(StoreError::Invalid(format!(
                    "run {id} is not an open run (unknown or already ended)"
                )));
            }
            Ok(())
        })
        .await
    }

    /// Runs started and not ended, oldest first.
    pub async fn open_runs(&self) -> Result<Vec<Run>> {
        self.call(|conn| select_runs(conn, "WHERE ended_at IS NULL ORDER BY id"))
            .await
    }

    /// One run by id.
    pub async fn run(&self, id: i64) -> Result<Option<Run>> {
        self.call(move |conn| {
            let raw = conn
                .query_row(&format!("{SELECT} WHERE id = ?1"), [id], read_row)
                .optional()
                .map_err(unbox)?;
            raw.map(RawRun::into_run).transpose()
        })
        .await
    }
}

const SELECT: &str = "SELECT id, process, pid, proc_start, boot_id, started_at, ended_at, \
                      exit_code, exit_signal FROM runs";

fn select_runs(conn: &Connection, tail: &str) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} {tail}"))?;
    let rows = stmt.query_map([], read_row)?;
    rows.map(|r| r.map_err(unbox)?.into_run()).collect()
}

struct RawRun {
    id: i64,
    process: String,
    pid: u32,
    proc_start: Option<i64>,
    boot_id: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    code: Option<i32>,
    signal: Option<i32>,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: row.get(0)?,
        process: row.get(1)?,
        pid: row.get(2)?,
        proc_start: row.get(3)?,
        boot_id: row.get(4)?,
        started_at: row.get(5)?,
        ended_at: row.get(6)?,
        code: row.get(7)?,
        signal: row.get(8)?,
    })
}

impl RawRun {
    fn into_run(self) -> Result<Run> {
        Ok(Run {
            id: self.id,
            process: self.process,
            pid: self.pid,
            proc_start: self.proc_start.map(|v| v as u64),
            boot_id: self.boot_id,
            started_at: time_from_sql(self.started_at)?,
            ended_at: self.ended_at.map(time_from_sql).transpose()?,
            exit: exit_from_sql(self.code, self.signal)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_alive_checks_start_time() {
        let now = OffsetDateTime::now_utc();
        let me = RunStart::for_pid("me", std::process::id(), now);
        let mut run = Run {
            id: 1,
            process: me.process,
            pid: me.pid,
            proc_start: me.proc_start,
            boot_id: me.boot_id,
            started_at: now,
            ended_at: None,
            exit: None,
        };
        assert!(run.same_process_alive());
        run.proc_start = run.proc_start.map(|t| t + 1);
        assert!(!run.same_process_alive(), "a recycled pid must not match");
    }
}
