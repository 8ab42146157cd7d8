//! Read-only views of the actor's processes: selection by glob, per-process info, the summary,
//! managed ports. Reads are answered in every phase, shutdown included.

use super::{Actor, Proc};
use crate::events::StateName;
use crate::supervisor::state::ProcState;
use crate::supervisor::{Command, ProcessInfo, Summary, SupervisorError};

impl Actor {
    /// Answer `cmd` if it only reads; otherwise hand it back.
    pub(super) fn answer_read(&self, cmd: Command) -> Result<(), Command> {
        match cmd {
            Command::List { pattern, reply } => {
                let _ = reply.send(
                    self.select(pattern.as_deref())
                        .map(|ix| ix.iter().map(|&i| self.info(i)).collect()),
                );
            }
            Command::Logs { name, reply } => {
                let r = self
                    .index
                    .get(name.as_str())
                    .map(|&i| self.procs[i].logs.clone());
                let _ = reply.send(r.ok_or(SupervisorError::NotFound { name }));
            }
            Command::Ports { reply } => {
                let managed = self
                    .procs
                    .iter()
                    .flat_map(|p| {
                        let pid = p.m.state.pid();
                        p.spec
                            .ports
                            .iter()
                            .map(move |&port| (p.name.to_string(), port, pid))
                    })
                    .collect();
                let _ = reply.send(Ok(managed));
            }
            other => return Err(other),
        }
        Ok(())
    }

    pub(super) fn select(&self, pattern: Option<&str>) -> Result<Vec<usize>, SupervisorError> {
        let Some(pattern) = pattern else {
            return Ok((0..self.procs.len()).collect());
        };
        let glob =
            crate::config::name_glob(pattern).map_err(|reason| SupervisorError::BadPattern {
                pattern: pattern.into(),
                reason,
            })?;
        Ok((0..self.procs.len())
            .filter(|&i| glob.matches(&self.procs[i].name))
            .collect())
    }

    pub(super) fn select_some(&self, pattern: &str) -> Result<Vec<usize>, SupervisorError> {
        let ix = self.select(Some(pattern))?;
        if ix.is_empty() {
            Err(SupervisorError::NoMatch {
                pattern: pattern.into(),
            })
        } else {
            Ok(ix)
        }
    }

    pub(super) fn names(&self, ix: &[usize]) -> Vec<String> {
        ix.iter().map(|&i| self.procs[i].name.to_string()).collect()
    }

    fn info(&self, i: usize) -> ProcessInfo {
        let p = &self.procs[i];
        let up = |since| super::now().saturating_duration_since(since).as_secs_f64();
        let uptime = match p.m.state {
            ProcState::Starting {
                since,
                pid: Some(_),
            } => Some(up(since)),
            ProcState::Running { since, .. } => Some(up(since)),
            _ => None,
        };
        ProcessInfo {
            name: p.name.to_string(),
            stack: p.spec.stack.clone(),
            state: p.m.state.name(),
            pid: p.m.state.pid(),
            restarts: p.m.restarts,
            uptime_s: uptime.map(|u| (u * 1000.0).round() / 1000.0),
            since: p.since,
            last_exit: p.m.last_exit,
            reason: p.reason.clone(),
            ready: is_ready(p),
            healthy: is_healthy(p),
            last_probe: p.last_probe.clone(),
            usage: None,
            origin: None,
            intent: None,
        }
    }

    /// Publish the summary if it changed (readiness, probes and waiting count change it too,
    /// not only transitions).
    pub(super) fn publish_summary(&self) {
        let now = self.summary();
        self.summary_tx.send_if_modified(|s| {
            let changed = *s != now;
            if changed {
                *s = now;
            }
            changed
        });
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.procs.len(),
            waiting: self.pending_start.len(),
            ..Summary::default()
        };
        for p in &self.procs {
            match p.m.state.name() {
                StateName::Running => s.running += 1,
                StateName::Starting => s.starting += 1,
                StateName::Stopping => s.stopping += 1,
                StateName::Stopped => s.stopped += 1,
                StateName::Backoff => s.backoff += 1,
                StateName::Exited => s.exited += 1,
                StateName::Fatal => s.failed += 1,
            }
            s.ready += usize::from(is_ready(p));
            s.healthy += usize::from(is_healthy(p));
        }
        s.restart_queue = s.backoff + s.waiting;
        s
    }
}

fn is_ready(p: &Proc) -> bool {
    matches!(p.m.state, ProcState::Running { .. }) && p.ready
}

fn is_healthy(p: &Proc) -> bool {
    is_ready(p) && p.live_ok != Some(false)
}
