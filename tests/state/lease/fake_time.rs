//! The lease's time arithmetic on real storage with a fake clock (expiry, skew, stale writes
//! and read-back), and the holder's task under a paused clock (renewals, retries, the loss),
//! without waiting.

use std::sync::Arc;
use std::time::Duration;

use state_manager::lease::{
    Claim, Clock, FakeClock, LEASE_KEY, Lease, LeaseError, LeaseEventKind, LeaseView, Leaser,
    LostReason, Role, RuntimeClock, Timing,
};

use super::{Backend, PREFIX, lease_config, refuse_writes, stored};

pub async fn expiry_and_skew_with_a_fake_clock(b: &Backend) {
    let cfg = lease_config(10_000, 1000, 1000);
    let timing = Timing::new(&cfg).unwrap();
    let t0 = time::macros::datetime!(2030-01-01 0:00 UTC);
    let clock = FakeClock::new(t0);
    // The standby's clock runs a full skew ahead: the worst case for the holder.
    let ahead = clock.skewed(time::Duration::milliseconds(1000));
    let mut a = Lease::new(
        b.store(PREFIX).await,
        "node-a".into(),
        Arc::new(clock.clone()),
        timing,
    );
    let mut s = Lease::new(
        b.store(PREFIX).await,
        "node-b".into(),
        Arc::new(ahead),
        timing,
    );

    let held = a.acquire(None).await.unwrap();
    assert_eq!((held.record.epoch, held.previous.clone()), (1, None));
    clock.advance(Duration::from_secs(3));
    let held = a.renew(&held).await.unwrap();
    assert_eq!((held.record.epoch, held.record.renew_count), (1, 1));
    let trust_end = timing.valid_until(held.sent);

    // Up to the record's expiry (by the holder's clock) the standby must wait…
    clock.advance(Duration::from_secs(10));
    match s.acquire(None).await {
        Err(LeaseError::Held { holder, free_at }) => {
            assert_eq!(holder.holder, "node-a");
            assert_eq!(free_at, held.record.expires_at + time::Duration::seconds(1));
        }
        other => panic!("taken at the expiry instant: {other:?}"),
    }
    // …and one millisecond later it may take over, with the next epoch.
    clock.advance(Duration::from_millis(1));
    let taken_at = clock.mono();
    let new = s.acquire(None).await.unwrap();
    assert_eq!(new.record.epoch, 2);
    let prev = new.previous.clone().unwrap();
    assert_eq!((prev.holder.as_str(), prev.epoch), ("node-a", 1));
    assert!(
        trust_end + timing.safety_margin <= taken_at,
        "holder trusted until {trust_end:?}, taken at {taken_at:?}"
    );

    // The old holder's renewal is refused and names the new holder; its old ETag no longer
    // matches anything.
    match a.renew(&held).await {
        Err(LeaseError::Superseded {
            current: Some(LeaseView {
                holder, epoch: 2, ..
            }),
        }) => {
            assert_eq!(holder, "node-b")
        }
        other => panic!("stale renewal: {other:?}"),
    }
    let store = b.store(PREFIX).await;
    let late = held.record.renewed(clock.now(), timing.ttl);
    let e = store
        .put_if_match(LEASE_KEY, late.encode(), &held.etag)
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");

    // A release frees the lease at once, whatever the time.
    s.release(&new).await.unwrap();
    let (r, _) = stored(&store).await.unwrap();
    assert!(r.released && r.epoch == 2);
    assert_eq!(
        timing.claim(clock.now(), Some(&r), "node-a", None),
        Claim::TakeOver
    );
    let back = a.acquire(None).await.unwrap();
    assert_eq!(back.record.epoch, 3);
}

pub async fn a_retried_write_that_landed_counts_as_done(b: &Backend) {
    // What an S3 client retry after a lost answer looks like: the first attempt landed, the
    // retry fails its precondition. Here the first attempt is made directly on storage with the
    // exact bytes the renewal will send (the fake clock makes them deterministic).
    let cfg = lease_config(10_000, 1000, 1000);
    let timing = Timing::new(&cfg).unwrap();
    let clock = FakeClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let store = b.store(PREFIX).await;
    let mut a = Lease::new(
        b.store(PREFIX).await,
        "node-a".into(),
        Arc::new(clock.clone()),
        timing,
    );
    let held = a.acquire(None).await.unwrap();
    clock.advance(Duration::from_secs(3));

    let first_attempt = held.record.renewed(clock.now(), timing.ttl);
    let landed = store
        .put_if_match(LEASE_KEY, first_attempt.encode(), &held.etag)
        .await
        .unwrap();
    let renewed = a.renew(&held).await.unwrap();
    assert_eq!(renewed.record, first_attempt);
    assert_eq!(renewed.etag, landed);

    // The same for a release.
    let release_attempt = renewed.record.released(clock.now());
    store
        .put_if_match(LEASE_KEY, release_attempt.encode(), &renewed.etag)
        .await
        .unwrap();
    assert_eq!(a.release(&renewed).await.unwrap(), release_attempt);

    // A record that differs (another holder's) is not mistaken for ours.
    let mut s = Lease::new(
        b.store(PREFIX).await,
        "node-b".into(),
        Arc::new(clock.clone()),
        timing,
    );
    let theirs = s.acquire(None).await.unwrap();
    assert_eq!(theirs.record.epoch, 2);
    assert!(matches!(
        a.renew(&renewed).await,
        Err(LeaseError::Superseded { .. })
    ));
}

/// The leaser task in paused time (STYLE §6): it renews every `ttl / 3`; when storage refuses
/// writes it retries every `retry_every` and, with no renewal confirmed, stops trusting the lease
/// exactly `ttl - margin` after the last one was sent, which is `margin` before the record
/// expires. Local storage only: a paused clock runs a socket's timeouts out while it waits.
pub async fn renewals_and_the_loss_follow_the_ttl_in_paused_time(b: &Backend) {
    let real = std::time::Instant::now();
    let cfg = lease_config(30_000, 2000, 2000);
    let timing = Timing::new(&cfg).unwrap();
    let leaser = Leaser::new(b.store(PREFIX).await, "node-a".into(), &cfg)
        .with_clock(Arc::new(RuntimeClock::new()));
    let mut events = leaser.subscribe();
    let lease = leaser.spawn().unwrap();
    let acquired = events.recv().await.unwrap();
    assert!(matches!(acquired.kind, LeaseEventKind::Acquired { .. }));

    tokio::time::sleep(timing.renew_every * 3 + timing.renew_every / 2).await;
    assert_eq!(lease.stats().renewals, 3, "renewed at 10, 20 and 30 s");
    assert_eq!(lease.fence().check(), Ok(acquired.epoch));

    refuse_writes(b);
    let broke = tokio::time::Instant::now();
    let lost = events.recv().await.unwrap();
    let lost_after = broke.elapsed();
    let LeaseEventKind::Lost {
        reason: LostReason::NotRenewed { last_error },
    } = &lost.kind
    else {
        panic!("{lost:?}");
    };
    assert!(last_error.is_some(), "the refused write is named");
    let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(10);
    // The last renewal was sent at 30 s; storage broke at 35 s; trust ends at 30 + ttl - margin.
    let trusted_for = timing.ttl - timing.safety_margin;
    assert!(
        close(lost_after, trusted_for - Duration::from_secs(5)),
        "lost {lost_after:?} after storage broke"
    );
    let before_expiry: Duration = (lost.expires_at - lost.at).try_into().unwrap();
    assert!(
        close(before_expiry, timing.safety_margin),
        "lost {before_expiry:?} before the record expires"
    );
    // Failed renewals at 40, 42, … 54 s.
    assert_eq!(lease.stats().renew_failures, 8);
    assert!(lease.fence().check().is_err());
    assert!(matches!(lease.role(), Role::Lost { .. }));
    assert!(real.elapsed() < trusted_for / 2, "{:?}", real.elapsed());
    lease.stop(false).await.unwrap();
}
