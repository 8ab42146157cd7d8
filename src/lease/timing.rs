//! The lease's time rules as pure functions: when a standby may take the lease, until when a
//! holder may trust it, how often to renew, retry and poll. No I/O and no clock reading here:
//! every function takes "now" as an argument, so the arithmetic is tested directly.
//!
//! The rules, with `skew` = `lease.clock_skew` and `margin` = [`Timing::safety_margin`]:
//! - a standby takes a live lease only when its wall clock reads `now > expires_at + skew`;
//!   a released lease at once;
//! - a holder trusts its lease until `sent + ttl - margin` on its monotonic clock, where `sent`
//!   is when the last write that it knows landed (acquire or renewal) was sent.
//!
//! The module header of [`crate::lease`] gives the reasoning.

use std::time::Duration;

use time::OffsetDateTime;

use super::{LeaseError, LeaseRecord};
use crate::config::LeaseConfig;

/// Every duration the lease works with, derived once from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Lifetime of a lease from the moment its write was sent.
    pub ttl: Duration,
    /// A holder renews this long after its last confirmed write: `ttl / 3`.
    pub renew_every: Duration,
    /// After a failed renewal, try again this soon: `ttl / 15`, within 100 ms ..= 2 s.
    pub retry_every: Duration,
    /// Largest disagreement allowed between two nodes' wall clocks.
    pub clock_skew: Duration,
    /// The holder stops trusting its lease this long before `ttl` runs out:
    /// `clock_skew + ttl / 10`.
    pub safety_margin: Duration,
    /// A standby looks at the lease every `poll_interval × [0.5, 1)` (jittered).
    pub poll_interval: Duration,
    /// Bound on one storage request of a standby or a release: `ttl / 3`.
    pub op_timeout: Duration,
    /// The fence process kills this node's processes this long before trust ends: `ttl / 20`,
    /// within 50 ms ..= 500 ms.
    pub fence_lead: Duration,
    /// An owner whose renewals fail stops its processes gracefully within this long, starting
    /// so that they are down `fence_lead` before trust ends: `safety_margin / 2`, at least
    /// 500 ms but under a third of the trust.
    pub stop_within: Duration,
}

/// What a node may do about the lease it just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// There is no lease object: create it (put-if-absent).
    Create,
    /// The lease is released, expired (beyond the skew allowance), or our own lost tenure:
    /// replace it (put-if-match) with the next epoch.
    TakeOver,
    /// Someone holds it; it may be taken after `free_at` unless renewed.
    Wait { free_at: OffsetDateTime },
}

impl Timing {
    /// The timing of `config`; refuses values under which the safety argument fails.
    pub fn new(config: &LeaseConfig) -> Result<Timing, LeaseError> {
        let (ttl, skew, poll) = (
            config.ttl.get(),
            config.clock_skew.get(),
            config.poll_interval.get(),
        );
        let bad =
            |field: &'static str, problem: &'static str| Err(LeaseError::Config { field, problem });
        if ttl < Duration::from_secs(1) {
            return bad("lease.ttl", "must be at least \"1s\"");
        }
        if skew * 3 >= ttl {
            return bad("lease.clock_skew", "must be less than a third of lease.ttl");
        }
        if poll.is_zero() || poll >= ttl {
            return bad(
                "lease.poll_interval",
                "must be greater than zero and shorter than lease.ttl",
            );
        }
        let safety_margin = skew + ttl / 10;
        let fence_lead = (ttl / 20).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let stop_within = (safety_margin / 2)
            .max(Duration::from_millis(500))
            .min((ttl - safety_margin) / 3);
        Ok(Timing {
            ttl,
            fence_lead,
            stop_within,
            renew_every: ttl / 3,
            retry_every: (ttl / 15).clamp(Duration::from_millis(100), Duration::from_secs(2)),
            clock_skew: skew,
            safety_margin,
            poll_interval: poll,
            op_timeout: ttl / 3,
        })
    }

    /// Monotonic instant until which a holder trusts a lease confirmed by a write sent at
    /// monotonic instant `sent`.
    pub fn valid_until(&self, sent: Duration) -> Duration {
        sent + self.ttl - self.safety_margin
    }

    /// How long before the end of trust an owner whose renewals fail starts stopping its
    /// processes, so that they are down before the fence process would kill them.
    pub fn stop_before_trust_ends(&self) -> Duration {
        self.fence_lead + self.stop_within
    }

    /// The wall time after which a standby may take `record` (released: its release time).
    pub fn free_at(&self, record: &LeaseRecord) -> OffsetDateTime {
        if record.released {
            record.renewed_at
        } else {
            record.expires_at + self.clock_skew
        }
    }

    /// What node `me` may do about `current` at wall time `now`. `reclaim` is the epoch this
    /// node held and lost in this process: a record still showing that tenure is known dead.
    pub fn claim(
        &self,
        now: OffsetDateTime,
        current: Option<&LeaseRecord>,
        me: &str,
        reclaim: Option<u64>,
    ) -> Claim {
        self.claim_as(now, current, me, None, reclaim)
    }

    /// [`Timing::claim`] for node `me` on the data directory of instance id `instance`: a live
    /// record naming both is a tenure of an earlier process on this very directory, which is
    /// gone (this one holds the directory's lock), so it is taken at once.
    pub fn claim_as(
        &self,
        now: OffsetDateTime,
        current: Option<&LeaseRecord>,
        me: &str,
        instance: Option<&str>,
        reclaim: Option<u64>,
    ) -> Claim {
        let Some(r) = current else {
            return Claim::Create;
        };
        let ours_lost = r.holder == me && reclaim == Some(r.epoch);
        let our_dir = r.holder == me && instance.is_some() && r.instance.as_deref() == instance;
        if r.released || ours_lost || our_dir || now > r.expires_at + self.clock_skew {
            Claim::TakeOver
        } else {
            Claim::Wait {
                free_at: self.free_at(r),
            }
        }
    }

    /// How long a standby sleeps before its next look: the jittered poll interval (`jitter`
    /// in `[0, 1)`), or less when the lease it saw becomes free sooner.
    pub fn poll_delay(&self, jitter: f64, now: OffsetDateTime, seen: Option<&Claim>) -> Duration {
        let base = self
            .poll_interval
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        let until_free = match seen {
            Some(Claim::Wait { free_at }) => {
                let d = *free_at - now + time::Duration::milliseconds(1);
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            }
            _ => base,
        };
        base.min(until_free).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use time::macros::datetime;

    fn timing(ttl: u64, skew_ms: u64) -> Timing {
        Timing::new(&LeaseConfig {
            ttl: Dur::secs(ttl),
            clock_skew: Dur::millis(skew_ms),
            poll_interval: Dur::secs(1),
            auto_acquire: true,
        })
        .unwrap()
    }

    const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    #[test]
    fn defaults_give_the_documented_figures() {
        let t = Timing::new(&LeaseConfig::default()).unwrap();
        assert_eq!(t.renew_every, Duration::from_secs(10));
        assert_eq!(t.safety_margin, Duration::from_secs(5));
        assert_eq!(t.retry_every, Duration::from_secs(2));
        assert_eq!(t.valid_until(Duration::ZERO), Duration::from_secs(25));
        assert_eq!(t.fence_lead, Duration::from_millis(500));
        assert_eq!(t.stop_within, Duration::from_millis(2500));
    }

    #[test]
    fn processes_stop_before_the_fence_fires_and_after_the_renewals() {
        for (ttl, skew_ms) in [
            (3, 0),
            (3, 900),
            (4, 1000),
            (6, 1200),
            (30, 2000),
            (30, 9000),
        ] {
            let t = timing(ttl, skew_ms);
            let trust = t.ttl - t.safety_margin;
            let stop_at = trust - t.stop_before_trust_ends();
            assert!(t.fence_lead < t.stop_within, "ttl {ttl}s: {t:?}");
            assert!(
                stop_at > t.renew_every,
                "ttl {ttl}s skew {skew_ms}ms: stops at {stop_at:?}, before the first renewal: {t:?}"
            );
        }
    }

    #[test]
    fn unsafe_configs_are_refused_with_the_field() {
        let mut c = LeaseConfig {
            clock_skew: Dur::secs(10),
            ..LeaseConfig::default()
        };
        let e = Timing::new(&c).unwrap_err();
        assert!(matches!(
            e,
            LeaseError::Config {
                field: "lease.clock_skew",
                ..
            }
        ));
        c.clock_skew = Dur::secs(1);
        c.poll_interval = Dur::secs(30);
        let e = Timing::new(&c).unwrap_err();
        assert!(matches!(
            e,
            LeaseError::Config {
                field: "lease.poll_interval",
                ..
            }
        ));
    }

    #[test]
    fn a_live_lease_is_taken_only_after_expiry_plus_skew() {
        let t = timing(30, 2000);
        let r = LeaseRecord::acquired("a", 4, T0, t.ttl);
        let at = |s: f64| T0 + Duration::from_secs_f64(s);
        let free_at = at(32.0);
        assert_eq!(
            t.claim(at(29.0), Some(&r), "b", None),
            Claim::Wait { free_at }
        );
        assert_eq!(
            t.claim(at(31.0), Some(&r), "b", None),
            Claim::Wait { free_at }
        );
        assert_eq!(
            t.claim(at(32.0), Some(&r), "b", None),
            Claim::Wait { free_at }
        );
        assert_eq!(t.claim(at(32.001), Some(&r), "b", None), Claim::TakeOver);
        assert_eq!(t.claim(at(0.0), None, "b", None), Claim::Create);
    }

    #[test]
    fn released_or_own_lost_tenures_are_taken_at_once() {
        let t = timing(30, 2000);
        let r = LeaseRecord::acquired("a", 4, T0, t.ttl);
        let rel = r.released(T0 + Duration::from_secs(1));
        assert_eq!(t.claim(T0, Some(&rel), "b", None), Claim::TakeOver);
        assert_eq!(t.claim(T0, Some(&r), "a", Some(4)), Claim::TakeOver);
        // Our own id with an epoch we did not lose here (a previous process): wait like anyone.
        assert!(matches!(
            t.claim(T0, Some(&r), "a", Some(3)),
            Claim::Wait { .. }
        ));
        assert!(matches!(
            t.claim(T0, Some(&r), "a", None),
            Claim::Wait { .. }
        ));
    }

    #[test]
    fn a_record_of_our_own_data_directory_is_taken_at_once_and_a_twins_is_not() {
        let t = timing(30, 2000);
        let r = LeaseRecord::acquired("a", 4, T0, t.ttl).with_instance(Some("dir-1"));
        let claim = |me, instance| t.claim_as(T0, Some(&r), me, instance, None);
        assert_eq!(claim("a", Some("dir-1")), Claim::TakeOver);
        // The same node id on another data directory (a twin), or without an instance id.
        assert!(matches!(claim("a", Some("dir-2")), Claim::Wait { .. }));
        assert!(matches!(claim("a", None), Claim::Wait { .. }));
        // Another node that happens to see the same instance id.
        assert!(matches!(claim("b", Some("dir-1")), Claim::Wait { .. }));
        let old = LeaseRecord::acquired("a", 4, T0, t.ttl);
        assert!(matches!(
            t.claim_as(T0, Some(&old), "a", Some("dir-1"), None),
            Claim::Wait { .. }
        ));
    }

    /// The safety argument, checked over a grid: for any wall-clock error of holder and standby
    /// within ±skew/2 of true time (so they disagree by at most skew), any truncation, and any
    /// instant the standby looks, the holder's trust ends at least `safety_margin` before the
    /// standby may take the lease.
    #[test]
    fn holder_trust_ends_before_any_standby_may_take_over() {
        for (ttl, skew_ms) in [(3, 500), (10, 1000), (30, 2000), (30, 9000)] {
            let t = timing(ttl, skew_ms);
            let half = skew_ms as i64 / 2;
            for e_holder in [-half, 0, half] {
                for e_standby in [-half, 0, half] {
                    // True time of the write's send: 1000 s (monotonic = true time here).
                    let sent = Duration::from_secs(1000);
                    let holder_wall = T0 + sent + time::Duration::milliseconds(e_holder);
                    let r = LeaseRecord::acquired("a", 1, holder_wall, t.ttl);
                    let trust_end = t.valid_until(sent);
                    // Earliest true instant (ms grid) at which the standby may take over.
                    let first_take = (0..(ttl * 2000))
                        .map(|ms| sent + Duration::from_millis(ms))
                        .find(|&true_t| {
                            let standby_now = T0 + true_t + time::Duration::milliseconds(e_standby);
                            t.claim(standby_now, Some(&r), "b", None) == Claim::TakeOver
                        })
                        .unwrap();
                    assert!(
                        trust_end + t.safety_margin <= first_take + Duration::from_millis(1),
                        "ttl {ttl}s skew {skew_ms}ms holder {e_holder} standby {e_standby}: \
                         trust ends {trust_end:?}, standby takes at {first_take:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn standbys_poll_within_one_interval_and_wake_when_the_lease_frees() {
        let t = timing(30, 2000);
        for j in [0.0, 0.3, 0.999] {
            let d = t.poll_delay(j, T0, None);
            assert!(
                d >= Duration::from_millis(500) && d < Duration::from_secs(1),
                "{d:?}"
            );
        }
        let soon = Claim::Wait {
            free_at: T0 + Duration::from_millis(200),
        };
        assert_eq!(
            t.poll_delay(0.9, T0, Some(&soon)),
            Duration::from_millis(201)
        );
        let past = Claim::Wait { free_at: T0 };
        assert_eq!(
            t.poll_delay(0.9, T0 + Duration::from_secs(1), Some(&past)),
            Duration::from_millis(1)
        );
    }
}
