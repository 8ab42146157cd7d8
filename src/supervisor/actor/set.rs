//! Changing the set of processes while the actor runs: [`Actor::sync`] makes it exactly a given
//! list of specs, and [`Actor::announce`] emits the event of an operator's change.
//!
//! Invariants: a process whose spec is unchanged keeps its `Proc` (state, pid, probes, logs);
//! so does a changed one in a deferred sync, which takes the new spec at its next start; only
//! down processes are dropped or replaced, so no child is ever orphaned by a change of the
//! set; every index the actor keeps (the name index, pending starts and stops, waiters) is
//! remapped to the new order in the same step.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use time::OffsetDateTime;

use super::{Actor, Proc, health};
use crate::config::ProcessSpec;
use crate::events::{Change, Event, StateName};
use crate::supervisor::SupervisorError;

impl Actor {
    pub(super) fn sync(
        &mut self,
        specs: Vec<Arc<ProcessSpec>>,
        defer: bool,
    ) -> Result<(), SupervisorError> {
        let wanted: HashMap<&str, &Arc<ProcessSpec>> =
            specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let blocked: Vec<String> = self
            .procs
            .iter()
            .filter(|p| wanted.get(&*p.name).is_none_or(|s| !defer && **s != p.spec))
            .filter(|p| !p.m.state.is_down())
            .map(|p| p.name.to_string())
            .collect();
        if !blocked.is_empty() {
            return Err(SupervisorError::StillRunning { names: blocked });
        }
        let probes = specs
            .iter()
            .map(|s| health::probes_of(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut old: HashMap<Arc<str>, (usize, Proc)> = std::mem::take(&mut self.procs)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), (i, p)))
            .collect();
        let mut remap = HashMap::new();
        let mut procs = Vec::with_capacity(specs.len());
        for (spec, probes) in specs.into_iter().zip(probes) {
            match old.remove(spec.name.as_str()) {
                Some((i, mut p)) if p.spec == spec => {
                    // The caller's copy: one spec shared by the set and the supervisor.
                    p.spec = spec;
                    remap.insert(i, procs.len());
                    procs.push(p);
                }
                Some((i, mut p)) if defer => {
                    (p.readiness, p.liveness) = probes;
                    p.m.policy = spec.restart.clone();
                    p.m.stop_signal = spec.stop_signal;
                    p.spec = spec;
                    remap.insert(i, procs.len());
                    procs.push(p);
                }
                earlier => {
                    let mut p = self.new_proc(spec, probes);
                    if let Some((_, e)) = earlier {
                        p.logs = e.logs.clone();
                    }
                    procs.push(p);
                }
            }
        }
        self.procs = procs;
        self.index = (0..self.procs.len())
            .map(|i| (self.procs[i].name.clone(), i))
            .collect();
        let moved = |set: &BTreeSet<usize>| -> BTreeSet<usize> {
            set.iter().filter_map(|i| remap.get(i).copied()).collect()
        };
        self.pending_start = moved(&self.pending_start);
        self.pending_stop = moved(&self.pending_stop);
        for w in &mut self.waiters {
            w.targets = w
                .targets
                .iter()
                .filter_map(|i| remap.get(i).copied())
                .collect();
        }
        if !self.loaded {
            self.loaded = true;
            self.begin_cleanup();
        }
        Ok(())
    }

    pub(super) fn announce(&mut self, process: &str, change: Change, reason: String) {
        let (state, pid) = match self.index.get(process) {
            Some(&i) => {
                let p = &self.procs[i];
                (p.m.state.name(), p.m.state.pid())
            }
            None => (StateName::Stopped, None),
        };
        tracing::info!(
            process,
            action = change.action.as_str(),
            by = change.by.as_deref().unwrap_or("-"),
            revision = change.revision,
            "{reason}"
        );
        let event = Event {
            at: OffsetDateTime::now_utc(),
            process: process.to_string(),
            from: state,
            to: state,
            pid,
            exit: None,
            reason: Some(reason),
            change: Some(change),
        };
        if let Some(feed) = &self.opts.feed {
            feed.publish(event.clone().into());
        }
        let _ = self.events.send(Arc::new(event));
    }
}
