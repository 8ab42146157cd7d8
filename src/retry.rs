//! Exponential backoff: the one place its arithmetic is written. A wait starts at `first`,
//! doubles per attempt and stops growing at `max`. Pure functions of the attempt number, so
//! that every loop that retries (webhook POSTs, replication syncs, bringing the environment up,
//! waiting for frozen processes or a running GC) and the supervisor's restart policy compute the
//! same thing, and tests check it without waiting.
//!
//! Jitter is not applied here: the supervisor draws it itself so that its state machine stays a
//! pure function of its inputs; the other loops run one at a time and need none.

use std::time::Duration;

/// First wait and cap of an exponential backoff (factor 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Attempts past this one wait as long as it (2^31 times `first` is far past any cap).
const MAX_EXPONENT: u32 = 31;

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before retry number `attempt` (1 for the first): `first · 2^(attempt - 1)`,
    /// capped at `max`. Attempt 0 waits as long as attempt 1.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(MAX_EXPONENT);
        self.first.saturating_mul(1 << exp).min(self.max)
    }

    /// The waits of a loop that retries until it succeeds: `first`, `2 · first`, … `max`, `max`…
    pub fn delays(self) -> Delays {
        Delays {
            backoff: self,
            attempt: 0,
        }
    }
}

/// Successive waits of a [`Backoff`]; never ends.
#[derive(Clone, Debug)]
pub struct Delays {
    backoff: Backoff,
    attempt: u32,
}

impl Delays {
    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.backoff.delay(self.attempt)
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let d: Vec<u64> = (1..=6).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(0), b.delay(1));
        assert_eq!(b.delay(u32::MAX), 1000 * MS, "no overflow far out");
    }

    #[test]
    fn a_cap_below_the_first_wait_wins() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(b.delay(1), Duration::from_secs(5));
        assert_eq!(Backoff::new(Duration::ZERO, MS).delay(9), Duration::ZERO);
    }

    #[test]
    fn delays_follow_the_attempts() {
        let b = Backoff::new(MS, 4 * MS);
        let d: Vec<Duration> = b.delays().take(5).collect();
        assert_eq!(d, [MS, 2 * MS, 4 * MS, 4 * MS, 4 * MS]);
        let mut waits = b.delays();
        assert_eq!((waits.next_delay(), waits.next_delay()), (MS, 2 * MS));
    }

    #[test]
    fn huge_waits_saturate() {
        let b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(b.delay(3), Duration::MAX);
    }
}
