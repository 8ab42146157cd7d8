//! Lease cases run against both backends (see `both_backends!` in `tests/lease.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use state_manager::lease::LEASE_KEY;
use state_manager::lease::{
    Claim, Clock, FakeClock, Lease, LeaseError, LeaseEvent, LeaseEventKind, LeaseView, Role, Timing,
};
use time::OffsetDateTime;

use crate::child::ChildHolder;
use crate::{Backend, Node, lease_config, node, stored};

const LONG: Duration = Duration::from_secs(60);

fn holder_of(role: &Role) -> Option<&str> {
    match role {
        Role::Standby { lease: Some(v) } => Some(&v.holder),
        _ => None,
    }
}

pub async fn second_node_is_standby_while_the_first_owns(b: &Backend) {
    let cfg = lease_config(4000, 500, 200);
    let a = node(b, "node-a", &cfg).await;
    a.wait_role("owner", LONG, |r| r.owned_epoch() == Some(1))
        .await;
    let bn = node(b, "node-b", &cfg).await;
    let seen = bn
        .wait_role("standby", LONG, |r| holder_of(r).is_some())
        .await;
    let Role::Standby { lease: Some(v) } = seen else {
        unreachable!()
    };
    assert_eq!(
        (v.holder.as_str(), v.epoch, v.released),
        ("node-a", 1, false)
    );
    assert_eq!(a.handle.fence().check(), Ok(1));
    assert!(bn.handle.fence().check().is_err());

    // Several renewals later the first still owns, at the same epoch, and the second waits.
    let store = b.store().await;
    crate::common::wait_for_async("three renewals", LONG, || async {
        let (r, _) = stored(&store).await.unwrap();
        (r.renew_count >= 3).then_some(())
    })
    .await;
    let (r, _) = stored(&store).await.unwrap();
    assert_eq!(
        (r.holder.as_str(), r.epoch, r.released),
        ("node-a", 1, false)
    );
    assert!(a.handle.role().is_owner());
    assert_eq!(holder_of(&bn.handle.role()), Some("node-a"));
    assert_eq!(bn.handle.stats().acquisitions, 0);
    assert!(a.handle.stats().renewals >= 3);

    // Explicit requests on the standby are refused, naming the holder.
    match bn.handle.acquire().await {
        Err(LeaseError::Held { holder, .. }) => assert_eq!(holder.holder, "node-a"),
        other => panic!("acquire on a standby: {other:?}"),
    }
    match bn.handle.release().await {
        Err(LeaseError::NotHeld { current: Some(v) }) => assert_eq!(v.holder, "node-a"),
        other => panic!("release on a standby: {other:?}"),
    }
    let e = bn.handle.release().await.unwrap_err();
    assert!(e.to_string().contains("held by node-a"), "{e}");
}

pub async fn release_hands_over_within_one_poll_interval(b: &Backend) {
    let poll = Duration::from_millis(1000);
    let cfg = lease_config(10_000, 1000, poll.as_millis() as u64);
    let mut a = node(b, "node-a", &cfg).await;
    a.wait_role("owner", LONG, |r| r.is_owner()).await;
    let mut bn = node(b, "node-b", &cfg).await;
    bn.wait_role("standby", LONG, |r| holder_of(r) == Some("node-a"))
        .await;

    let out = a.handle.release().await.unwrap();
    let released = Instant::now();
    assert_eq!(out.released_epoch, 1);
    assert_eq!(a.handle.role(), Role::Released { epoch: 1 });
    assert!(a.handle.fence().check().is_err());

    let got = bn.next_event(LONG).await;
    let took = released.elapsed();
    let LeaseEventKind::Acquired {
        previous: Some(prev),
    } = &got.kind
    else {
        panic!("expected an acquisition, got {got:?}");
    };
    assert_eq!(got.epoch, 2);
    assert!(
        prev.released && prev.holder == "node-a" && prev.epoch == 1,
        "{prev:?}"
    );
    // One poll interval, plus a little for the two storage requests on a loaded machine.
    assert!(took < poll + Duration::from_millis(1500), "took {took:?}");
    // Taken long before the released tenure would have expired.
    assert!(got.at < a_expiry(&mut a).await - time::Duration::seconds(5));
    assert_eq!(bn.handle.fence().check(), Ok(2));

    // The node that released waits for an explicit acquire; it does not bounce back.
    a.wait_role("standby behind b", LONG, |r| holder_of(r) == Some("node-b"))
        .await;
    bn.handle.release().await.unwrap();
    let free = bn.handle.timing().poll_interval * 3;
    tokio::time::sleep(free).await; // a negative: nothing may happen in three poll intervals
    assert!(!a.handle.role().is_owner(), "{:?}", a.handle.role());
    let t = a.handle.acquire().await.unwrap();
    assert_eq!(t.epoch, 3);
    assert_eq!(a.handle.fence().check(), Ok(3));
}

/// The `expires_at` of the tenure `a` released (from its release event).
async fn a_expiry(a: &mut Node) -> OffsetDateTime {
    loop {
        let e = a.next_event(LONG).await;
        if e.kind == LeaseEventKind::Released {
            return e.expires_at;
        }
    }
}

pub async fn killed_owner_is_taken_over_after_the_ttl_and_never_before(b: &Backend) {
    let cfg = lease_config(3000, 500, 200);
    let skew = time::Duration::milliseconds(500);
    let mut c = ChildHolder::start(b, "node-c", &cfg);
    c.wait_line("FENCE ok 1", LONG);
    let mut bn = node(b, "node-b", &cfg).await;
    bn.wait_role("standby", LONG, |r| holder_of(r) == Some("node-c"))
        .await;

    c.kill9();
    let killed_at = OffsetDateTime::now_utc();
    let got = bn.next_event(LONG).await;
    let LeaseEventKind::Acquired {
        previous: Some(prev),
    } = &got.kind
    else {
        panic!("the standby's first event must be its takeover: {got:?}");
    };
    assert_eq!(
        (prev.holder.as_str(), prev.epoch, prev.released),
        ("node-c", 1, false)
    );
    assert_eq!(got.epoch, 2);
    // Never before: the standby's own clock was past the dead holder's expiry plus the skew.
    assert!(
        got.at > prev.expires_at + skew,
        "took over at {} but the lease ran to {}",
        got.at,
        prev.expires_at
    );
    // And not much later: within a poll interval and some slack of the earliest moment.
    assert!(
        got.at < prev.expires_at + skew + time::Duration::seconds(3),
        "{got:?}"
    );
    assert!(
        prev.expires_at > killed_at - time::Duration::seconds(3),
        "{prev:?} vs kill at {killed_at}"
    );
    let (r, _) = stored(&b.store().await).await.unwrap();
    assert_eq!((r.holder.as_str(), r.epoch), ("node-b", 2));
    assert!(r.acquired_at > prev.expires_at + skew);
}

pub async fn frozen_owner_wakes_up_fenced_and_its_late_write_is_refused(b: &Backend) {
    let cfg = lease_config(3000, 500, 200);
    let c = ChildHolder::start(b, "node-c", &cfg);
    c.wait_line("FENCE ok 1", LONG);
    let mut bn = node(b, "node-b", &cfg).await;
    bn.wait_role("standby", LONG, |r| holder_of(r) == Some("node-c"))
        .await;

    // Freeze right after a renewal (not in the middle of a write), then read its last write.
    c.wait_line("ROLE {\"role\":\"owner\"", LONG);
    c.signal(Signal::SIGSTOP);
    let store = b.store().await;
    let (frozen_rec, frozen_etag) = stored(&store).await.unwrap();
    assert_eq!(frozen_rec.holder, "node-c");

    let got = bn.next_event(LONG).await;
    assert!(
        matches!(got.kind, LeaseEventKind::Acquired { .. }),
        "{got:?}"
    );
    assert_eq!(got.epoch, 2);
    assert!(got.at > frozen_rec.expires_at + time::Duration::milliseconds(500));

    // The stale owner's write with its old ETag is refused by storage.
    let late = frozen_rec.renewed(OffsetDateTime::now_utc(), Duration::from_secs(3));
    let e = store
        .put_if_match(LEASE_KEY, late.encode(), &frozen_etag)
        .await
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");

    // Woken up, the old owner refuses to write at once, reports the loss and stands by.
    c.signal(Signal::SIGCONT);
    let fence = c.wait_line("FENCE refused", LONG);
    assert!(fence.contains("epoch 1"), "{fence}");
    let lost = c.wait_line("EVENT", LONG);
    let lost: serde_json::Value = serde_json::from_str(&lost).unwrap();
    assert_eq!(
        (lost["kind"].as_str(), lost["epoch"].as_u64()),
        (Some("lost"), Some(1)),
        "{lost}"
    );
    c.wait_line(
        "ROLE {\"role\":\"standby\",\"lease\":{\"holder\":\"node-b\"",
        LONG,
    );
    let (r, _) = stored(&store).await.unwrap();
    assert_eq!((r.holder.as_str(), r.epoch), ("node-b", 2));
    assert_eq!(bn.handle.fence().check(), Ok(2));
}

/// One node's tenure as its events tell it.
#[derive(Debug, Clone)]
struct Span {
    node: String,
    epoch: u64,
    start: LeaseEvent,
    end: LeaseEvent,
}

pub async fn three_nodes_racing_never_own_at_once(b: &Backend) {
    const ROUNDS: usize = 200;
    let cfg = lease_config(6000, 500, 50);
    let rounds = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let n = node(b, id, &cfg).await;
        let rounds = Arc::clone(&rounds);
        tasks.push(tokio::spawn(churn(n, rounds, ROUNDS)));
    }
    let mut spans = Vec::new();
    for t in tasks {
        spans.extend(
            tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(spans.len() >= ROUNDS, "only {} tenures", spans.len());
    spans.sort_by_key(|s| s.start.mono);
    let skew = time::Duration::milliseconds(500);
    for w in spans.windows(2) {
        let (p, n) = (&w[0], &w[1]);
        assert!(
            n.epoch > p.epoch,
            "epochs must grow with time: {p:?} then {n:?}"
        );
        // Same process, same monotonic clock: the next tenure starts after the previous ended.
        assert!(p.end.mono < n.start.mono, "overlap: {p:?} and {n:?}");
        assert!(
            p.end.at < n.start.at + skew,
            "overlap in wall time: {p:?} and {n:?}"
        );
    }
    let mut epochs: Vec<u64> = spans.iter().map(|s| s.epoch).collect();
    epochs.dedup();
    assert_eq!(epochs.len(), spans.len(), "an epoch was owned twice");
    let (r, _) = stored(&b.store().await).await.unwrap();
    assert_eq!(r.epoch, spans.last().unwrap().epoch);
    let owners: std::collections::BTreeSet<_> = spans.iter().map(|s| s.node.clone()).collect();
    assert_eq!(
        owners.len(),
        3,
        "every node should have owned at least once"
    );
}

/// Acquire, hold briefly (the fence must say yes throughout), release; until `total` rounds.
/// Returns this node's tenures.
async fn churn(mut n: Node, rounds: Arc<AtomicUsize>, total: usize) -> Vec<Span> {
    while rounds.load(Ordering::SeqCst) < total {
        let epoch = match n.handle.role().owned_epoch() {
            Some(e) => e,
            None => match n.handle.acquire().await {
                Ok(t) => t.epoch,
                Err(LeaseError::Held { .. }) => {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(1..8))).await;
                    continue;
                }
                Err(e) => panic!("{}: {e}", n.handle.node_id()),
            },
        };
        assert_eq!(n.handle.fence().check(), Ok(epoch));
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
        assert_eq!(n.handle.fence().check(), Ok(epoch));
        n.handle.release().await.unwrap();
        rounds.fetch_add(1, Ordering::SeqCst);
    }
    n.handle.stop(true).await.unwrap();
    let mut spans = Vec::new();
    let mut open: Option<LeaseEvent> = None;
    while let Ok(e) = n.events.try_recv() {
        match (&e.kind, open.take()) {
            (LeaseEventKind::Acquired { .. }, None) => open = Some(e),
            (_, Some(start)) if start.epoch == e.epoch => spans.push(Span {
                node: n.handle.node_id().to_string(),
                epoch: e.epoch,
                start,
                end: e,
            }),
            (_, start) => panic!("events out of order: {start:?} then {e:?}"),
        }
    }
    assert!(open.is_none(), "a tenure never ended: {open:?}");
    spans
}

pub async fn expiry_and_skew_with_a_fake_clock(b: &Backend) {
    let cfg = lease_config(10_000, 1000, 1000);
    let timing = Timing::new(&cfg).unwrap();
    let t0 = time::macros::datetime!(2030-01-01 0:00 UTC);
    let clock = FakeClock::new(t0);
    // The standby's clock runs a full skew ahead: the worst case for the holder.
    let ahead = clock.skewed(time::Duration::milliseconds(1000));
    let mut a = Lease::new(
        b.store().await,
        "node-a".into(),
        Arc::new(clock.clone()),
        timing,
    );
    let mut s = Lease::new(b.store().await, "node-b".into(), Arc::new(ahead), timing);

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
    let store = b.store().await;
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
    let store = b.store().await;
    let mut a = Lease::new(
        b.store().await,
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
        b.store().await,
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
