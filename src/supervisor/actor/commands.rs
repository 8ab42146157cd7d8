//! Commands from the handle: reads go to `view.rs`, changes are applied here; while shutting
//! down, changes are refused. `load` takes over a configuration's processes once.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Actor, Proc, Wait, health};
use crate::config::ProcessSpec;
use crate::logs::LogBuffer;
use crate::supervisor::state::{AfterStop, Input, Machine};
use crate::supervisor::{Command, SupervisorError};

impl Actor {
    pub(super) fn on_command(&mut self, cmd: Command) {
        let Err(cmd) = self.answer_read(cmd) else {
            return;
        };
        if self.shutdown.is_some() {
            return self.during_shutdown(cmd);
        }
        match cmd {
            Command::Load {
                specs,
                start,
                reply,
            } => {
                let _ = reply.send(self.load(specs, start));
            }
            Command::Start { pattern, reply } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.pending_start.extend(ix.iter().copied());
                    ix.iter().for_each(|i| {
                        self.pending_stop.remove(i);
                    });
                    self.progress();
                    let _ = reply.send(Ok(self.names(&ix)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Stop {
                pattern,
                timeout,
                reply,
            } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.thaw_if_frozen();
                    for &i in &ix {
                        self.pending_start.remove(&i);
                        let timeout = timeout.unwrap_or(self.procs[i].spec.stop_timeout);
                        let stop = Input::Stop {
                            timeout,
                            reason: "stopped by request".into(),
                            then: AfterStop::Stay,
                        };
                        self.feed(i, stop);
                    }
                    let names = self.names(&ix);
                    self.wait(ix, Wait::Down, move || drop(reply.send(Ok(names))));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Restart { pattern, reply } => match self.select_some(&pattern) {
                Ok(ix) => {
                    self.thaw_if_frozen();
                    for &i in &ix {
                        self.restart(i, "restarted by request");
                    }
                    let names = self.names(&ix);
                    self.wait(ix, Wait::Settled, move || drop(reply.send(Ok(names))));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::StopAll { timeout, reply } => {
                self.thaw_if_frozen();
                self.stop_cap = timeout;
                self.pending_start.clear();
                self.pending_stop = (0..self.procs.len()).collect();
                let all = (0..self.procs.len()).collect();
                self.wait(all, Wait::Down, move || drop(reply.send(Ok(()))));
            }
            Command::StartAll { overrides, reply } => {
                let auto = (0..self.procs.len()).filter(|&i| {
                    let p = &self.procs[i];
                    overrides.get(&*p.name).copied().unwrap_or(p.spec.autostart)
                });
                self.pending_start.extend(auto);
                self.pending_stop.clear();
                let _ = reply.send(Ok(()));
            }
            Command::Freeze { frozen, reply } => {
                let groups = self.freeze(frozen);
                let _ = reply.send(Ok(groups));
            }
            Command::Sync {
                specs,
                defer,
                reply,
            } => {
                let _ = reply.send(self.sync(specs, defer));
            }
            Command::WaitUp { names, reply } => {
                let ix = names
                    .iter()
                    .filter_map(|n| self.index.get(n.as_str()).copied())
                    .collect();
                self.wait(ix, Wait::Up, move || drop(reply.send(Ok(()))));
            }
            Command::Announce {
                process,
                change,
                reason,
            } => self.announce(&process, change, reason),
            Command::Signal { signal } => self.signal_all(signal),
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
            Command::SetLedger { ledger, reply } => {
                self.opts.ledger = ledger;
                if self.loaded {
                    self.begin_cleanup();
                }
                let _ = reply.send(Ok(()));
            }
            read => drop(self.answer_read(read)),
        }
    }

    /// While shutting down, reads are still answered (before this); changes are refused.
    pub(super) fn during_shutdown(&mut self, cmd: Command) {
        match cmd {
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply)),
            Command::Signal { signal } => self.signal_all(signal),
            Command::Announce {
                process,
                change,
                reason,
            } => self.announce(&process, change, reason),
            // The database may close while processes stop; nothing starts any more.
            Command::SetLedger { ledger, reply } => {
                self.opts.ledger = ledger;
                let _ = reply.send(Ok(()));
            }
            other => self.refuse(other),
        }
    }

    pub(super) fn refuse(&self, cmd: Command) {
        fn e<T>() -> Result<T, SupervisorError> {
            Err(SupervisorError::ShuttingDown)
        }
        match cmd {
            Command::Load { reply, .. }
            | Command::StopAll { reply, .. }
            | Command::StartAll { reply, .. }
            | Command::Sync { reply, .. }
            | Command::WaitUp { reply, .. } => drop(reply.send(e())),
            Command::Shutdown { reply } => drop(reply.send(Ok(()))),
            Command::List { reply, .. } => drop(reply.send(e())),
            Command::Start { reply, .. }
            | Command::Stop { reply, .. }
            | Command::Restart { reply, .. } => drop(reply.send(e())),
            Command::Freeze { reply, .. } => drop(reply.send(e())),
            Command::Logs { reply, .. } => drop(reply.send(e())),
            Command::Ports { reply } => drop(reply.send(e())),
            Command::SetLedger { reply, .. } => drop(reply.send(e())),
            Command::Signal { .. } | Command::Announce { .. } => {}
        }
    }

    pub(super) fn load(
        &mut self,
        specs: Vec<Arc<ProcessSpec>>,
        start: bool,
    ) -> Result<(), SupervisorError> {
        if self.loaded {
            return Err(SupervisorError::AlreadyLoaded);
        }
        let probes = specs
            .iter()
            .map(|s| health::probes_of(s))
            .collect::<Result<Vec<_>, _>>()?;
        self.loaded = true;
        for (spec, probes) in specs.into_iter().zip(probes) {
            let i = self.procs.len();
            if start && spec.autostart {
                self.pending_start.insert(i);
            }
            let p = self.new_proc(spec, probes);
            self.index.insert(p.name.clone(), i);
            self.procs.push(p);
        }
        self.begin_cleanup();
        Ok(())
    }

    /// A process of `spec`, stopped, with its file watch (if any) set up.
    pub(super) fn new_proc(
        &self,
        spec: Arc<ProcessSpec>,
        (readiness, liveness): health::Probes,
    ) -> Proc {
        let name: Arc<str> = spec.name.as_str().into();
        let watch = (!spec.watch.is_empty()).then(|| {
            let base = spec
                .cwd
                .clone()
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_default();
            crate::supervisor::watch::watch(name.clone(), &spec.watch, &base, self.watch_tx.clone())
                .map_err(|e| tracing::warn!(process = %name, "cannot watch {:?}: {e}", spec.watch))
                .ok()
        });
        Proc {
            m: Machine::new(spec.restart.clone(), spec.stop_signal),
            spec,
            name,
            logs: Arc::new(LogBuffer::default()),
            since: OffsetDateTime::now_utc(),
            reason: None,
            last_pid: None,
            _watch: watch.flatten(),
            readiness,
            liveness,
            probes: Vec::new(),
            ready: false,
            live_ok: None,
            last_probe: None,
            log_mark: 0,
            group_check: false,
        }
    }
}
