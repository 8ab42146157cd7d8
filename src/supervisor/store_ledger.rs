//! The run ledger kept in the state database's `runs` table ([`crate::store`]).
//!
//! The actor must never wait for SQLite, so `opened` and `closed` only queue the write on a tokio
//! task (the store's writer thread does the I/O). A run's id comes back from its insert; an exit
//! reported before that is remembered and applied as soon as the id is known, so a run is never
//! left open by a fast exit. Store errors are logged: the ledger is a best effort that only
//! matters after a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::leftovers::{OpenRun, RunLedger};
use crate::events::ExitStatus;
use crate::proc::procfs;
use crate::store::{Run, RunEnd, RunStart, Store};

#[derive(Debug)]
enum Slot {
    /// Recorded with this id, still open.
    Open(i64),
    /// Ended before its insert came back.
    EndedEarly(Option<ExitStatus>),
}

/// [`RunLedger`] on the state database.
#[derive(Debug, Clone)]
pub struct StoreLedger {
    store: Store,
    runs: Arc<Mutex<HashMap<(String, u32), Slot>>>,
}

impl StoreLedger {
    pub fn new(store: Store) -> Self {
        StoreLedger {
            store,
            runs: Arc::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Slot>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, id: i64, exit: Option<ExitStatus>) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let end = RunEnd {
                ended_at: OffsetDateTime::now_utc(),
                exit,
            };
            if let Err(e) = store.run_ended(id, end).await {
                tracing::warn!(run = id, "cannot record the end of a run: {e}");
            }
        });
    }
}

/// A recorded run that may still be alive: same boot, start time known.
fn candidate(run: &Run, boot: Option<&str>) -> Option<OpenRun> {
    let same_boot = match (run.boot_id.as_deref(), boot) {
        (Some(a), Some(b)) => a == b,
        _ => true, // cannot tell: the start time check still guards against recycled pids
    };
    let start_ticks = run.proc_start.filter(|_| same_boot)?;
    Some(OpenRun {
        process: run.process.clone(),
        pid: run.pid,
        start_ticks,
    })
}

#[async_trait]
impl RunLedger for StoreLedger {
    async fn earlier_runs(&self) -> Vec<OpenRun> {
        let runs = match self.store.open_runs().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    "cannot read the open runs of an earlier start: {e}; leftovers are not stopped"
                );
                return Vec::new();
            }
        };
        let boot = procfs::boot_id();
        let mut out = Vec::new();
        for run in runs {
            match candidate(&run, boot) {
                Some(open) => {
                    self.slots()
                        .insert((run.process.clone(), run.pid), Slot::Open(run.id));
                    out.push(open);
                }
                // Another boot, or no start time: whatever it was, it is not running now.
                None => self.end(run.id, None),
            }
        }
        out
    }

    fn opened(&self, process: &str, pid: u32, start_ticks: Option<u64>) {
        let key = (process.to_string(), pid);
        let start = RunStart {
            process: process.to_string(),
            pid,
            proc_start: start_ticks,
            boot_id: procfs::boot_id().map(String::from),
            started_at: OffsetDateTime::now_utc(),
        };
        let ledger = self.clone();
        tokio::spawn(async move {
            let id = match ledger.store.run_started(start).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(process = %key.0, pid, "cannot record a run: {e}");
                    ledger.slots().remove(&key);
                    return;
                }
            };
            let early = {
                let mut slots = ledger.slots();
                match slots.remove(&key) {
                    Some(Slot::EndedEarly(exit)) => Some(exit),
                    _ => {
                        slots.insert(key, Slot::Open(id));
                        None
                    }
                }
            };
            if let Some(exit) = early {
                ledger.end(id, exit);
            }
        });
    }

    fn closed(&self, process: &str, pid: u32, exit: Option<ExitStatus>) {
        let key = (process.to_string(), pid);
        let id = {
            let mut slots = self.slots();
            match slots.remove(&key) {
                Some(Slot::Open(id)) => Some(id),
                _ => {
                    slots.insert(key, Slot::EndedEarly(exit));
                    None
                }
            }
        };
        if let Some(id) = id {
            self.end(id, exit);
        }
    }
}
