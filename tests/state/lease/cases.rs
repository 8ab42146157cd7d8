//! Two nodes in real time: standby while the other owns, planned handoff, and an owner
//! killed (SIGKILL) or frozen (SIGSTOP) in a child process.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use state_manager::lease::{LEASE_KEY, LeaseError, LeaseEventKind, Role};
use time::OffsetDateTime;

use super::child::ChildHolder;
use super::{Backend, Node, PREFIX, lease_config, node, stored};

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
    let store = b.store(PREFIX).await;
    crate::common::wait_for_async("three renewals", LONG, || async {
        let (r, _) = stored(&store).await.unwrap();
        (r.renew_count >= 3 && a.handle.stats().renewals >= 3).then_some(())
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

    // The node that released does not take back the lease it gave up; once a successor holds
    // it, it is an ordinary standby again and takes over when the successor lets go.
    a.wait_role("standby behind b", LONG, |r| holder_of(r) == Some("node-b"))
        .await;
    assert_eq!(a.handle.stats().acquisitions, 1);
    bn.handle.release().await.unwrap();
    a.wait_role("owner again", LONG, |r| r.owned_epoch() == Some(3))
        .await;
    assert_eq!(a.handle.fence().check(), Ok(3));
    assert_eq!(a.handle.stats().acquisitions, 2);
}

pub async fn released_node_stays_passive_until_someone_else_holds(b: &Backend) {
    let cfg = lease_config(10_000, 1000, 1000);
    let a = node(b, "node-a", &cfg).await;
    a.wait_role("owner", LONG, |r| r.is_owner()).await;
    a.handle.release().await.unwrap();
    // Nobody else is there: the node that released leaves the lease free.
    let looked = Instant::now();
    while looked.elapsed() < Duration::from_secs(3) {
        assert!(
            !a.handle.role().is_owner(),
            "took back the lease it released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = a.handle.acquire().await.unwrap();
    assert_eq!(t.epoch, 2);
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
    let (r, _) = stored(&b.store(PREFIX).await).await.unwrap();
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
    let store = b.store(PREFIX).await;
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
    let standby = "ROLE {\"role\":\"standby\",\"lease\":{\"holder\":\"node-b\"";
    let first = |lines: &[String], p: &str| lines.iter().find(|l| l.starts_with(p)).cloned();
    let lines = c.collect(LONG, |l| {
        first(l, "FENCE").is_some() && first(l, "EVENT").is_some() && first(l, standby).is_some()
    });
    let fence = first(&lines, "FENCE").unwrap();
    assert!(
        fence.starts_with("FENCE refused"),
        "first fence answer after waking: {fence}"
    );
    let lost = first(&lines, "EVENT ").unwrap();
    let lost: serde_json::Value = serde_json::from_str(&lost["EVENT ".len()..]).unwrap();
    assert_eq!(
        (lost["kind"].as_str(), lost["epoch"].as_u64()),
        (Some("lost"), Some(1)),
        "{lost}"
    );
    let (r, _) = stored(&store).await.unwrap();
    assert_eq!((r.holder.as_str(), r.epoch), ("node-b", 2));
    assert_eq!(bn.handle.fence().check(), Ok(2));
}
