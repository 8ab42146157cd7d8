//! The actor's health work: probe tasks per incarnation and what their verdicts do, the run
//! ledger (opened/closed runs), start-up cleanup of an earlier run's leftovers, and the decision
//! whether a port's holder is ours.
//!
//! Invariants: probe tasks exist only for a process that is `starting` (with a pid) or `running`
//! and not frozen, and only for its current pid; a report for another pid is ignored. Liveness
//! runs only once the process is running (ready), so a slow start is not mistaken for a hang.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::Actor;
use crate::config::ProcessSpec;
use crate::probes::{self, ProbeError, ProbeRole, ProbeSpec, Report, Target, Verdict};
use crate::supervisor::child::{IsOurs, Started};
use crate::supervisor::leftovers::{self, Cleanup, Earlier};
use crate::supervisor::state::{AfterStop, Input, ProcState};

/// Stop timeout for a leftover whose process is no longer configured.
const LEFTOVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Probes = (Option<Arc<ProbeSpec>>, Option<Arc<ProbeSpec>>);

/// The readiness and liveness probes of `spec`, ready to run.
pub(super) fn probes_of(spec: &ProcessSpec) -> Result<Probes, ProbeError> {
    let build = |cfg: &Option<Box<crate::config::ProbeConfig>>| {
        cfg.as_ref()
            .map(|c| ProbeSpec::new(c, spec).map(Arc::new))
            .transpose()
    };
    Ok((build(&spec.readiness)?, build(&spec.liveness)?))
}

impl Actor {
    /// With a ledger, stop the leftovers of an earlier run in the background; nothing starts
    /// until that is done ([`Actor::on_cleanup`]). A recorded run that is one of our live
    /// processes is not a leftover.
    pub(super) fn begin_cleanup(&mut self) {
        let Some(ledger) = self.opts.ledger.clone() else {
            return;
        };
        self.cleaning += 1;
        let how: HashMap<String, (Signal, Duration)> = self
            .procs
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    (p.spec.stop_signal, p.spec.stop_timeout),
                )
            })
            .collect();
        let ours: HashSet<u32> = self.procs.iter().filter_map(|p| p.m.state.pid()).collect();
        let tx = self.cleanup_tx.clone();
        tokio::spawn(async move {
            let mut runs = ledger.earlier_runs().await;
            runs.retain(|r| !ours.contains(&r.pid));
            let done = leftovers::stop_leftovers(&runs, |name| {
                how.get(name)
                    .copied()
                    .unwrap_or((Signal::SIGTERM, LEFTOVER_STOP_TIMEOUT))
            })
            .await;
            for (r, what) in runs.iter().zip(&done) {
                if *what != Cleanup::Gone {
                    tracing::warn!(process = %r.process, pid = r.pid, "earlier run: {what:?}");
                }
                ledger.closed(&r.process, r.pid, None);
            }
            let _ = tx.send(Earlier { runs });
        });
    }

    pub(super) fn on_cleanup(&mut self, earlier: Earlier) {
        self.earlier = Arc::new(earlier);
        self.cleaning = self.cleaning.saturating_sub(1);
    }

    /// The decision handed to launches: is a port's holder ours to kill? Never a process of
    /// another supervised process's current incarnation (that is a configuration mistake to
    /// report, not a leftover).
    pub(super) fn is_ours(&self) -> IsOurs {
        let earlier = self.earlier.clone();
        let live: HashSet<u32> = self.procs.iter().filter_map(|p| p.m.state.pid()).collect();
        Arc::new(move |h| {
            !h.pgid.is_some_and(|g| live.contains(&g)) && leftovers::is_ours(&earlier, h)
        })
    }

    pub(super) fn opened(&self, i: usize, started: Started) {
        if let Some(ledger) = &self.opts.ledger {
            ledger.opened(&self.procs[i].name, started.pid, started.start_ticks);
        }
    }

    /// Make the probe tasks of process `i` match its state: readiness from the spawn on,
    /// liveness once running, none when it is down, stopping or frozen.
    pub(super) fn sync_probes(&mut self, i: usize) {
        let frozen = self.frozen;
        let p = &mut self.procs[i];
        let (pid, running) = match p.m.state {
            ProcState::Starting { pid: Some(pid), .. } => (pid, false),
            ProcState::Running { pid, .. } => (pid, true),
            _ => {
                p.probes.clear();
                p.ready = false;
                p.live_ok = None;
                return;
            }
        };
        if p.probes.iter().any(|t| t.pid != pid) {
            p.probes.clear();
            p.live_ok = None;
        }
        if frozen {
            p.probes.clear();
            return;
        }
        if p.readiness.is_none() {
            p.ready = running;
        }
        let roles = [
            (ProbeRole::Readiness, &p.readiness, true),
            (ProbeRole::Liveness, &p.liveness, running),
        ];
        for (role, spec, wanted) in roles {
            let Some(spec) = spec.clone().filter(|_| wanted) else {
                continue;
            };
            if p.probes.iter().any(|t| t.role == role) {
                continue;
            }
            let target = Target {
                name: p.name.clone(),
                pid,
                logs: p.logs.clone(),
                mark: p.log_mark,
                already_ready: p.ready,
            };
            let task = probes::spawn(role, spec, target, self.probe_tx.clone());
            p.probes.push(task);
        }
    }

    pub(super) fn on_probe(&mut self, report: Report) {
        let Some(&i) = self.index.get(&report.name) else {
            return;
        };
        let p = &mut self.procs[i];
        if p.m.state.pid() != Some(report.pid) || self.frozen {
            return; // an earlier incarnation's, or from before a freeze
        }
        if report.result.probe == ProbeRole::Liveness {
            p.live_ok = Some(report.result.ok);
        }
        p.last_probe = Some(report.result);
        let starting = matches!(p.m.state, ProcState::Starting { .. });
        match report.verdict {
            None => {}
            Some(Verdict::Ready) => {
                p.ready = true;
                if starting {
                    self.feed(i, Input::Ready);
                } else {
                    tracing::info!(process = %p.name, "ready again");
                }
            }
            Some(Verdict::Unready(why)) => {
                p.ready = false;
                tracing::warn!(process = %p.name, "not ready: readiness {why}");
            }
            Some(Verdict::StartTimeout(why)) if starting => self.recover(i, why),
            Some(Verdict::StartTimeout(_)) => {}
            Some(Verdict::LivenessFailed(why)) => self.recover(i, format!("liveness {why}")),
        }
    }

    /// Stop process `i` and treat it as crashed: the restart policy applies, `why` is the reason.
    fn recover(&mut self, i: usize, why: String) {
        let timeout = self.procs[i].spec.stop_timeout;
        self.feed(
            i,
            Input::Stop {
                timeout,
                reason: why.clone(),
                then: AfterStop::Recover(why),
            },
        );
    }
}
