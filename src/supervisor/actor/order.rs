//! Dependency order: what waits for its dependencies to be running starts once they are, what
//! waits for its dependants to be down stops once they are; and the waiters answered once their
//! targets settle.

use super::{Actor, Wait, Waiter};
use crate::events::StateName;
use crate::supervisor::state::{AfterStop, Input, ProcState};

impl Actor {
    pub(super) fn progress(&mut self) {
        loop {
            let startable: Vec<usize> = self
                .pending_start
                .iter()
                .copied()
                .filter(|&i| self.cleaning == 0 && self.deps_running(i))
                .collect();
            let stoppable: Vec<usize> = self
                .pending_stop
                .iter()
                .copied()
                .filter(|&i| self.dependants_down(i))
                .collect();
            if startable.is_empty() && stoppable.is_empty() {
                break;
            }
            for i in startable {
                self.pending_start.remove(&i);
                self.feed(
                    i,
                    Input::Start {
                        reason: "starting".into(),
                    },
                );
            }
            for i in stoppable {
                self.pending_stop.remove(&i);
                let own = self.procs[i].spec.stop_timeout;
                let timeout = self.stop_cap.map_or(own, |cap| own.min(cap));
                let reason = if self.shutdown.is_some() {
                    "shutting down"
                } else {
                    "stopping all"
                };
                self.feed(
                    i,
                    Input::Stop {
                        timeout,
                        reason: reason.into(),
                        then: AfterStop::Stay,
                    },
                );
            }
        }
        let procs = &self.procs;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| {
                w.targets.iter().all(|&i| match w.until {
                    Wait::Down => procs[i].m.state.is_down(),
                    Wait::Settled => !matches!(procs[i].m.state, ProcState::Stopping { .. }),
                    Wait::Up => {
                        let state = &procs[i].m.state;
                        state.is_down()
                            || matches!(state.name(), StateName::Running | StateName::Backoff)
                    }
                })
            });
        self.waiters = keep;
        for w in done {
            (w.reply)();
        }
    }

    pub(super) fn deps_running(&self, i: usize) -> bool {
        let deps = &self.procs[i].spec.depends_on;
        deps.is_empty()
            || self
                .procs
                .iter()
                .filter(|p| deps.contains(&p.spec.stack))
                .all(|p| p.m.state.name() == StateName::Running)
    }

    pub(super) fn dependants_down(&self, i: usize) -> bool {
        let stack = &self.procs[i].spec.stack;
        self.procs
            .iter()
            .filter(|p| p.spec.depends_on.contains(stack))
            .all(|p| p.m.state.is_down())
    }

    pub(super) fn wait(
        &mut self,
        targets: Vec<usize>,
        until: Wait,
        reply: impl FnOnce() + Send + 'static,
    ) {
        self.waiters.push(Waiter {
            targets,
            until,
            reply: Box::new(reply),
        });
    }

    pub(super) fn begin_shutdown(&mut self, reply: Option<crate::supervisor::Reply<()>>) {
        self.thaw_if_frozen();
        self.stop_cap = None;
        self.pending_start.clear();
        let replies = self.shutdown.get_or_insert_with(Vec::new);
        replies.extend(reply);
        self.pending_stop = (0..self.procs.len())
            .filter(|&i| !self.procs[i].m.state.is_down())
            .collect();
    }
}
