//! The fence: the one question every storage writer asks before it writes, "do we still own
//! the lease, and under which epoch?". It is the only fence type: replication stamps its
//! objects with the epoch it answers, checkpoints check it before they publish, and a refusal
//! carries its reason ([`Fenced`]) to wherever the write was refused.
//!
//! The leaser grants the fence an epoch and a monotonic deadline each time a write of the
//! lease is confirmed, and revokes it when it releases or loses the lease. [`Fence::check`]
//! compares the deadline with the monotonic clock itself, so the fence closes on time even if
//! the leaser task is late, stuck on a request, or gone.
//!
//! With a [`Watchdog`] attached, every grant also arms the fence process with the same
//! deadline and every revoke disarms it, so the processes are held to the same trust as the
//! writes even when this process cannot run ([`super::watchdog`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::DynClock;
use super::watchdog::Watchdog;

/// Why a write must not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    #[error("this node does not hold the storage lease; only the owner may write")]
    NotOwner,
    #[error(
        "the storage lease (epoch {epoch}) could not be renewed in time and is no longer \
         trusted; the node stops writing and goes standby"
    )]
    Expired { epoch: u64 },
    #[error(
        "the storage lease moved from epoch {expected} to {current:?} since this work began; \
         start it again under the new epoch"
    )]
    EpochChanged { expected: u64, current: Option<u64> },
}

#[derive(Clone, Copy, Debug)]
struct Grant {
    epoch: u64,
    /// Monotonic deadline (exclusive).
    until: Duration,
}

/// A cheap, cloneable handle on the holder's confidence in its lease.
#[derive(Clone, Debug)]
pub struct Fence {
    clock: DynClock,
    grant: Arc<Mutex<Option<Grant>>>,
    watchdog: Option<Arc<Watchdog>>,
}

impl Fence {
    /// A closed fence reading `clock`.
    pub fn new(clock: DynClock) -> Fence {
        Fence {
            clock,
            grant: Arc::new(Mutex::new(None)),
            watchdog: None,
        }
    }

    /// Arm and disarm `watchdog` with every grant and revoke of this fence.
    pub fn with_watchdog(mut self, watchdog: Option<Arc<Watchdog>>) -> Fence {
        self.watchdog = watchdog;
        self
    }

    /// The fence process's page, if one is attached.
    pub fn watchdog(&self) -> Option<&Arc<Watchdog>> {
        self.watchdog.as_ref()
    }

    /// The epoch to stamp a write with, while the lease is confirmed valid.
    pub fn check(&self) -> Result<u64, Fenced> {
        match *self.lock() {
            None => Err(Fenced::NotOwner),
            Some(g) if self.clock.mono() < g.until => Ok(g.epoch),
            Some(g) => Err(Fenced::Expired { epoch: g.epoch }),
        }
    }

    /// Like [`Fence::check`], and the epoch must still be `expected`: for work that began
    /// under one epoch and must not be finished under another.
    pub fn check_epoch(&self, expected: u64) -> Result<(), Fenced> {
        match self.check() {
            Ok(e) if e == expected => Ok(()),
            Ok(e) => Err(Fenced::EpochChanged {
                expected,
                current: Some(e),
            }),
            Err(Fenced::NotOwner) => Err(Fenced::EpochChanged {
                expected,
                current: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// How long the lease stays trusted without another renewal (`None` when not owner), to
    /// bound a write's own timeout.
    pub fn remaining(&self) -> Option<Duration> {
        let g = (*self.lock())?;
        g.until
            .checked_sub(self.clock.mono())
            .filter(|d| !d.is_zero())
    }

    /// Open (or extend) the fence for `epoch` until monotonic instant `until` of its clock.
    /// The leaser does, after each confirmed write of the lease; so may a holder of storage by
    /// other means (a tool that owns a bucket outright, under a fixed epoch).
    pub fn grant(&self, epoch: u64, until: Duration) {
        let mut grant = self.lock();
        *grant = Some(Grant { epoch, until });
        if let Some(w) = &self.watchdog {
            w.arm(epoch, until.saturating_sub(self.clock.mono()));
        }
    }

    /// Close the fence; returns the monotonic instant at which trust ended (now, or the
    /// deadline if that came first).
    pub(super) fn revoke(&self) -> Option<Duration> {
        let mut grant = self.lock();
        if let Some(w) = &self.watchdog {
            w.disarm();
        }
        let g = grant.take()?;
        Some(g.until.min(self.clock.mono()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Grant>> {
        self.grant.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::clock::{Clock, FakeClock};
    use time::macros::datetime;

    #[test]
    fn open_until_the_deadline_then_expired_then_closed() {
        let clock = FakeClock::new(datetime!(2030-01-01 0:00 UTC));
        let f = Fence::new(Arc::new(clock.clone()));
        assert_eq!(f.check(), Err(Fenced::NotOwner));
        f.grant(3, clock.mono() + Duration::from_secs(2));
        assert_eq!(f.check(), Ok(3));
        assert_eq!(f.remaining(), Some(Duration::from_secs(2)));
        assert_eq!(f.check_epoch(3), Ok(()));
        assert_eq!(
            f.check_epoch(2),
            Err(Fenced::EpochChanged {
                expected: 2,
                current: Some(3)
            })
        );
        clock.advance(Duration::from_millis(1999));
        assert_eq!(f.clone().check(), Ok(3));
        clock.advance(Duration::from_millis(1));
        assert_eq!(f.check(), Err(Fenced::Expired { epoch: 3 }));
        assert_eq!(f.remaining(), None);
        let ended = f.revoke().unwrap();
        assert_eq!(ended, clock.mono());
        assert_eq!(f.check(), Err(Fenced::NotOwner));
    }

    #[test]
    fn revoking_early_closes_every_clone_at_once() {
        let clock = FakeClock::new(datetime!(2030-01-01 0:00 UTC));
        let f = Fence::new(Arc::new(clock.clone()));
        let writer = f.clone();
        f.grant(9, clock.mono() + Duration::from_secs(20));
        clock.advance(Duration::from_secs(1));
        assert_eq!(f.revoke(), Some(clock.mono()));
        assert_eq!(writer.check(), Err(Fenced::NotOwner));
        assert_eq!(
            writer.check_epoch(9),
            Err(Fenced::EpochChanged {
                expected: 9,
                current: None
            })
        );
    }
}
