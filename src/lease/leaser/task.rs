//! The lease task's loop: one step as owner (renew, or lose at the deadline) or as standby
//! (look, maybe take), each racing the command channel.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{Command, Desire, Flow, ReleaseOutcome, Task, Tenure};
use crate::lease::role::Counters;
use crate::lease::timing::Claim;
use crate::lease::{Held, LeaseError, LeaseEvent, LeaseEventKind, LeaseView, LostReason, Role};

impl Task {
    pub(super) async fn run(mut self) {
        // At start-up a configured node always tries once.
        self.look(true).await;
        self.desire = self.configured_desire();
        loop {
            let flow = match self.held.clone() {
                Some(held) => self.owner_step(held).await,
                None => self.standby_step().await,
            };
            if let Flow::Stop = flow {
                break;
            }
        }
    }

    fn configured_desire(&self) -> Desire {
        if self.auto {
            Desire::Auto
        } else {
            Desire::Manual
        }
    }

    async fn owner_step(&mut self, held: Held) -> Flow {
        let deadline = self.timing().valid_until(held.sent);
        let (to_deadline, to_renew) = (self.until(deadline), self.until(self.next_renew));
        tokio::select! {
            biased;
            cmd = self.cmds.recv() => self.command(cmd).await,
            _ = tokio::time::sleep(to_deadline) => {
                self.lose(LostReason::NotRenewed { last_error: self.last_error.clone() });
                Flow::Continue
            }
            _ = tokio::time::sleep(to_renew) => {
                self.renew(held, deadline).await;
                Flow::Continue
            }
        }
    }

    async fn renew(&mut self, held: Held, deadline: Duration) {
        let clock = self.lease.clock().clone();
        let result = tokio::select! {
            r = self.lease.renew(&held) => Some(r),
            _ = tokio::time::sleep(deadline.saturating_sub(clock.mono())) => None,
        };
        // Trust that ran out stays out, even if the renewal landed just after.
        let result = match result {
            Some(r) if clock.mono() < deadline => r,
            late => {
                let last_error = match late {
                    Some(Err(e)) => e.to_string(),
                    _ => "renewal did not complete in time".into(),
                };
                let last_error = Some(last_error);
                return self.lose(LostReason::NotRenewed { last_error });
            }
        };
        match result {
            Ok(h) => {
                Counters::bump(&self.counters.renewals);
                self.last_error = None;
                self.trust(h);
            }
            Err(LeaseError::Superseded { current }) => {
                self.lose(LostReason::Superseded { current });
            }
            Err(e) => {
                Counters::bump(&self.counters.renew_failures);
                tracing::warn!(epoch = held.record.epoch, error = %e, "lease renewal failed; retrying");
                self.last_error = Some(e.to_string());
                self.next_renew = clock.mono() + self.timing().retry_every;
            }
        }
    }

    async fn standby_step(&mut self) -> Flow {
        let delay = self.look(false).await;
        if self.held.is_some() {
            return Flow::Continue;
        }
        tokio::select! {
            biased;
            cmd = self.cmds.recv() => self.command(cmd).await,
            _ = tokio::time::sleep(delay) => Flow::Continue,
        }
    }

    /// Read the lease, take it if allowed and free; the delay until the next look.
    async fn look(&mut self, force: bool) -> Duration {
        let take = force || self.desire == Desire::Auto;
        let result = if take {
            self.try_acquire().await.map(|_| ())
        } else {
            self.lease.read().await.map(|cur| {
                let now = self.lease.clock().now();
                let rec = cur.as_ref().map(|c| &c.0);
                // Once a successor holds the lease we gave up, be an ordinary standby again
                // (ready to take over if it dies), as configured.
                if rec.is_some_and(|r| r.holder != self.lease.node_id() && !r.released) {
                    self.desire = self.configured_desire();
                }
                let (me, instance) = (self.lease.node_id(), self.lease.instance());
                self.seen = Some(self.timing().claim_as(now, rec, me, instance, None));
                self.saw(rec.map(LeaseView::from));
            })
        };
        if let Err(e) = result {
            if !matches!(e, LeaseError::Held { .. }) {
                Counters::bump(&self.counters.poll_failures);
                tracing::warn!(error = %e, "cannot read the lease");
                self.last_error = Some(e.to_string());
            }
            if *self.role.borrow() == Role::Starting {
                self.set_role(Role::Standby { lease: None });
            }
        }
        let now = self.lease.clock().now();
        self.timing()
            .poll_delay(rand::random::<f64>(), now, self.seen.as_ref())
    }

    /// One acquisition attempt with its bookkeeping.
    async fn try_acquire(&mut self) -> Result<Tenure, LeaseError> {
        self.seen = None;
        match self.lease.acquire(self.lost_epoch).await {
            Ok(h) => {
                let expired = self.lease.clock().mono() >= self.timing().valid_until(h.sent);
                if expired {
                    // Adopted a write that landed too long ago to trust: take it over again.
                    self.lost_epoch = Some(h.record.epoch);
                    self.seen = Some(Claim::TakeOver);
                    return Err(LeaseError::Superseded {
                        current: Some((&h.record).into()),
                    });
                }
                Ok(self.became_owner(h))
            }
            Err(LeaseError::Held { holder, free_at }) => {
                self.seen = Some(Claim::Wait { free_at });
                self.saw(Some(holder.clone()));
                Err(LeaseError::Held { holder, free_at })
            }
            Err(e) => Err(e),
        }
    }

    fn became_owner(&mut self, h: Held) -> Tenure {
        let start = self.lease.clock().mono();
        let tenure = Tenure {
            epoch: h.record.epoch,
            acquired_at: h.record.acquired_at,
            expires_at: h.record.expires_at,
            previous: h.previous.clone(),
        };
        Counters::bump(&self.counters.acquisitions);
        self.lost_epoch = None;
        self.last_error = None;
        self.desire = self.configured_desire();
        self.trust(h);
        let kind = LeaseEventKind::Acquired {
            previous: tenure.previous.clone(),
        };
        self.event(kind, tenure.epoch, start, tenure.expires_at);
        let expires_at = crate::lease::rfc3339(tenure.expires_at);
        tracing::info!(epoch = tenure.epoch, %expires_at, "lease acquired");
        tenure
    }

    /// Open the fence for `h` and publish the owner role.
    fn trust(&mut self, h: Held) {
        let until = self.timing().valid_until(h.sent);
        self.fence.grant(h.record.epoch, until);
        self.next_renew = h.sent + self.timing().renew_every;
        self.set_role(Role::Owner {
            epoch: h.record.epoch,
            acquired_at: h.record.acquired_at,
            expires_at: h.record.expires_at,
            trusted_until: self.lease.clock().wall_at(until),
        });
        self.held = Some(h);
    }

    /// End the tenure without a release.
    fn lose(&mut self, reason: LostReason) {
        let Some(held) = self.held.take() else { return };
        let deadline = self.timing().valid_until(held.sent);
        let end = self.fence.revoke().unwrap_or(deadline).min(deadline);
        let epoch = held.record.epoch;
        Counters::bump(&self.counters.losses);
        self.lease.forget_pending();
        self.lost_epoch = Some(epoch);
        self.desire = self.configured_desire();
        tracing::error!(
            epoch,
            ?reason,
            "lease lost: this node stops acting as owner"
        );
        let kind = LeaseEventKind::Lost {
            reason: reason.clone(),
        };
        self.event(kind, epoch, end, held.record.expires_at);
        self.set_role(Role::Lost { epoch, reason });
    }

    async fn release(&mut self) -> Result<ReleaseOutcome, LeaseError> {
        let Some(held) = self.held.take() else {
            let current = self.lease.read().await?.map(|(r, _)| LeaseView::from(&r));
            return Err(LeaseError::NotHeld { current });
        };
        let end = self
            .fence
            .revoke()
            .unwrap_or_else(|| self.lease.clock().mono());
        let epoch = held.record.epoch;
        Counters::bump(&self.counters.releases);
        self.desire = Desire::Manual;
        self.event(LeaseEventKind::Released, epoch, end, held.record.expires_at);
        self.set_role(Role::Released { epoch });
        let rec = self.lease.release(&held).await.inspect_err(|e| {
            tracing::error!(epoch, error = %e, "could not write the lease release; it frees at its expiry");
        })?;
        tracing::info!(epoch, "lease released");
        Ok(ReleaseOutcome {
            released_epoch: epoch,
            released_at: rec.renewed_at,
        })
    }

    async fn command(&mut self, cmd: Option<Command>) -> Flow {
        match cmd {
            Some(Command::Acquire(reply)) => {
                let r = match &self.held {
                    Some(h) => Ok(Tenure {
                        epoch: h.record.epoch,
                        acquired_at: h.record.acquired_at,
                        expires_at: h.record.expires_at,
                        previous: None,
                    }),
                    None => self.try_acquire().await,
                };
                send(reply, r);
                Flow::Continue
            }
            Some(Command::Release(reply)) => {
                let r = self.release().await;
                send(reply, r);
                Flow::Continue
            }
            Some(Command::Stop { release, reply }) => {
                let r = match (release, self.held.is_some()) {
                    (true, true) => self.release().await.map(Some),
                    _ => Ok(None),
                };
                self.lose(LostReason::Stopped);
                send(reply, r);
                Flow::Stop
            }
            None => {
                self.lose(LostReason::Stopped);
                Flow::Stop
            }
        }
    }

    /// Publish what a look found: another holder makes this node a standby; our own
    /// released or lost record leaves the role as it is.
    fn saw(&mut self, lease: Option<LeaseView>) {
        let ours = lease
            .as_ref()
            .is_some_and(|v| v.holder == self.lease.node_id());
        let keep = matches!(
            *self.role.borrow(),
            Role::Released { .. } | Role::Lost { .. }
        );
        if !(ours && keep) {
            self.set_role(Role::Standby { lease });
        }
    }

    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    fn event(
        &self,
        kind: LeaseEventKind,
        epoch: u64,
        mono: Duration,
        expires_at: time::OffsetDateTime,
    ) {
        let at = self.lease.clock().wall_at(mono);
        let _ = self.events.send(LeaseEvent {
            kind,
            epoch,
            at,
            mono,
            expires_at,
        });
    }

    fn timing(&self) -> crate::lease::Timing {
        *self.lease.timing()
    }

    /// Time from now until monotonic instant `mono`.
    fn until(&self, mono: Duration) -> Duration {
        mono.saturating_sub(self.lease.clock().mono())
    }
}

fn send<T>(reply: oneshot::Sender<T>, value: T) {
    // The asker may have given up waiting; nothing to do then.
    let _ = reply.send(value);
}
