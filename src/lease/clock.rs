//! Time for the lease, behind a trait so that expiry and skew can be tested without waiting.
//!
//! Two clocks are read. The **wall clock** (UTC) is what goes into the lease record and what a
//! standby compares the record's `expires_at` with; nodes' wall clocks may disagree by up to
//! `lease.clock_skew`. The **monotonic clock** is what the holder measures its own validity
//! with: it never jumps, so a wall-clock step on the holder cannot extend its belief that it owns
//! the lease.
//!
//! [`SystemClock`] reads the real clocks (its monotonic clock is CLOCK_BOOTTIME, which counts a
//! suspend); its monotonic origin is shared by the whole process,
//! so monotonic readings of different clocks in one process are comparable. [`FakeClock`] moves
//! only when told to, and can be skewed per node. [`RuntimeClock`] reads the tokio runtime's
//! clock, so that under a paused test clock the lease task's readings and its sleeps agree.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;

/// The two clocks the lease reads.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The wall clock, UTC.
    fn now(&self) -> OffsetDateTime;
    /// Monotonic time since an origin fixed for the life of the process.
    fn mono(&self) -> Duration;

    /// The wall time corresponding to monotonic reading `mono`, as far as this clock knows.
    fn wall_at(&self, mono: Duration) -> OffsetDateTime {
        let (now, m) = (self.now(), self.mono());
        if mono >= m {
            now + (mono - m)
        } else {
            now - (m - mono)
        }
    }
}

/// The shared handle the lease holds.
pub type DynClock = Arc<dyn Clock>;

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// CLOCK_BOOTTIME: monotonic like `Instant`, but it also counts time the machine spent
/// suspended, which the lease's time did too. So a holder resumed from a suspend finds its trust
/// gone at once instead of `Instant` resuming where it stopped.
fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec given; CLOCK_BOOTTIME exists on every Linux we run on.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_origin() -> Duration {
    static ORIGIN: OnceLock<Duration> = OnceLock::new();
    *ORIGIN.get_or_init(boottime)
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn mono(&self) -> Duration {
        boottime().saturating_sub(process_origin())
    }
}

/// A clock that moves only on [`FakeClock::advance`]. Clones share the same time; a
/// [`FakeClock::skewed`] copy shares it too but reads its wall clock off by a fixed amount, like
/// another node whose clock is wrong.
#[derive(Clone, Debug)]
pub struct FakeClock {
    shared: Arc<Mutex<(OffsetDateTime, Duration)>>,
    wall_offset: time::Duration,
}

impl FakeClock {
    /// A clock reading `start` on the wall and one hour on the monotonic clock.
    pub fn new(start: OffsetDateTime) -> FakeClock {
        FakeClock {
            shared: Arc::new(Mutex::new((start, Duration::from_secs(3600)))),
            wall_offset: time::Duration::ZERO,
        }
    }

    /// Move both clocks forward by `d`, for every clone.
    pub fn advance(&self, d: Duration) {
        let mut t = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += d;
        t.1 += d;
    }

    /// The same time, but this copy's wall clock reads `offset` ahead (negative: behind).
    pub fn skewed(&self, offset: time::Duration) -> FakeClock {
        FakeClock {
            shared: Arc::clone(&self.shared),
            wall_offset: self.wall_offset + offset,
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).0 + self.wall_offset
    }
    fn mono(&self) -> Duration {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Both clocks from the tokio runtime's: real time, or virtual time while the runtime's clock
/// is paused (`#[tokio::test(start_paused = true)]`), where the lease task's timers and the
/// times it reads move together when time is advanced instead of waited for. The wall clock is
/// the system's at creation plus the runtime time since (it does not follow steps of the system
/// clock, which is what a test of the holder's own timing wants).
#[derive(Clone, Copy, Debug)]
pub struct RuntimeClock {
    wall_origin: OffsetDateTime,
    origin: tokio::time::Instant,
}

impl RuntimeClock {
    /// A clock reading the system's wall time now and zero on its monotonic clock.
    pub fn new() -> RuntimeClock {
        RuntimeClock {
            wall_origin: OffsetDateTime::now_utc(),
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for RuntimeClock {
    fn default() -> Self {
        RuntimeClock::new()
    }
}

impl Clock for RuntimeClock {
    fn now(&self) -> OffsetDateTime {
        self.wall_origin + self.mono()
    }
    fn mono(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[tokio::test(start_paused = true)]
    async fn the_runtime_clock_moves_with_paused_time() {
        let c = RuntimeClock::new();
        let (wall, mono) = (c.now(), c.mono());
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(c.mono() - mono, Duration::from_secs(90));
        assert_eq!(c.now() - wall, time::Duration::seconds(90));
    }

    #[test]
    fn fake_clock_moves_only_when_told_and_skew_is_wall_only() {
        let c = FakeClock::new(datetime!(2030-01-01 0:00 UTC));
        let fast = c.skewed(time::Duration::seconds(2));
        let m0 = c.mono();
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), datetime!(2030-01-01 0:00:05 UTC));
        assert_eq!(fast.now(), datetime!(2030-01-01 0:00:07 UTC));
        assert_eq!(fast.mono(), c.mono());
        assert_eq!(c.mono() - m0, Duration::from_secs(5));
        assert_eq!(c.wall_at(m0), datetime!(2030-01-01 0:00 UTC));
    }

    #[test]
    fn system_clocks_share_one_monotonic_origin() {
        let a = SystemClock.mono();
        let b = SystemClock.mono();
        assert!(b >= a);
    }
}
