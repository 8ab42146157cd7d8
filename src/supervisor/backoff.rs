//! Restart delay arithmetic: pure functions of the policy, the attempt number and a jitter draw.
//! The exponential growth is [`crate::retry::Backoff`]'s; the policy adds jitter, the reset
//! after a long run and the restart limit.

use std::time::Duration;

use crate::config::RestartPolicy;
use crate::retry::Backoff;

/// Jitter spread: the delay is scaled by a factor in `[1 - JITTER, 1 + JITTER]`.
pub const JITTER: f64 = 0.1;

/// Delay before restart number `attempt` (1 for the first restart after a crash).
///
/// `policy.delay` for the first, doubling each time, capped at `policy.backoff_max` (the cap is
/// never exceeded by jitter). `jitter` is a draw in `[-1, 1]`.
pub fn delay(policy: &RestartPolicy, attempt: u32, jitter: f64) -> Duration {
    let cap = policy.backoff_max.max(policy.delay);
    let capped = Backoff::new(policy.delay, cap).delay(attempt);
    let scaled = capped.as_secs_f64() * (1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    Duration::from_secs_f64(scaled).min(cap)
}

/// The attempt number to use for the next restart, given how long the process stayed up.
/// A process that ran at least `reset_after` starts again from the first attempt.
pub fn next_attempt(policy: &RestartPolicy, previous: u32, uptime: Duration) -> u32 {
    if uptime >= policy.reset_after {
        1
    } else {
        previous.saturating_add(1)
    }
}

/// Whether restart number `attempt` exceeds `max_restarts` (the process then becomes `fatal`).
pub fn exhausted(policy: &RestartPolicy, attempt: u32) -> bool {
    policy.max_restarts.is_some_and(|max| attempt > max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnExit;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            on_exit: OnExit::Restart,
            delay: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_restarts: Some(3),
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let p = policy();
        let d: Vec<u64> = (1..=8).map(|a| delay(&p, a, 0.0).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            delay(&p, 1000, 1.0),
            Duration::from_secs(30),
            "cap holds with jitter"
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let p = policy();
        assert_eq!(delay(&p, 3, 1.0), Duration::from_secs_f64(4.4));
        assert_eq!(delay(&p, 3, -1.0), Duration::from_secs_f64(3.6));
    }

    #[test]
    fn zero_delay_means_immediate() {
        let p = RestartPolicy {
            delay: Duration::ZERO,
            ..policy()
        };
        assert_eq!(delay(&p, 9, 1.0), Duration::ZERO);
    }

    #[test]
    fn resets_after_a_long_run_and_exhausts() {
        let p = policy();
        assert_eq!(next_attempt(&p, 5, Duration::from_secs(1)), 6);
        assert_eq!(next_attempt(&p, 5, Duration::from_secs(31)), 1);
        assert!(!exhausted(&p, 3));
        assert!(exhausted(&p, 4));
        assert!(!exhausted(
            &RestartPolicy {
                max_restarts: None,
                ..p
            },
            u32::MAX
        ));
    }
}
