//! Faults only a network store has: an owner partitioned from storage (the moto server
//! frozen with SIGSTOP), and a write whose answer never came but which landed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use state_manager::lease::{Lease, LeaseError, LeaseEventKind, LostReason, SystemClock, Timing};
use time::OffsetDateTime;

use super::{Backend, PREFIX, lease_config, node, stored};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_owner_loses_before_its_lease_expires() {
    let b = Backend::moto();
    let cfg = lease_config(3000, 500, 200);
    let mut a = node(&b, "node-a", &cfg).await;
    a.wait_role("owner", LONG, |r| r.is_owner()).await;
    assert!(matches!(
        a.next_event(LONG).await.kind,
        LeaseEventKind::Acquired { .. }
    ));
    let stats = a.handle.stats();
    crate::common::wait_for_async("two renewals", LONG, || async {
        (a.handle.stats().renewals >= stats.renewals + 2).then_some(())
    })
    .await;

    // Watch the fence from another thread, as a writer would.
    let (fence, stop) = (a.handle.fence(), Arc::new(AtomicBool::new(false)));
    let stop2 = Arc::clone(&stop);
    let watcher = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            if fence.check().is_err() {
                return Some(OffsetDateTime::now_utc());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    });

    b.moto_server().pause();
    let lost = a.next_event(LONG).await;
    let refused_at = watcher.join().unwrap().expect("the fence refused");
    stop.store(true, Ordering::SeqCst);
    b.moto_server().resume();

    let LeaseEventKind::Lost {
        reason: LostReason::NotRenewed { .. },
    } = &lost.kind
    else {
        panic!("expected a loss for want of renewal: {lost:?}");
    };
    assert_eq!(lost.epoch, 1);
    // The fence closed and the loss was published before the lease it last wrote expired.
    assert!(
        lost.at < lost.expires_at,
        "lost at {} after expiry {}",
        lost.at,
        lost.expires_at
    );
    assert!(
        refused_at < lost.expires_at,
        "fence still open at {refused_at}, expiry {}",
        lost.expires_at
    );
    let margin = time::Duration::try_from(a.handle.timing().safety_margin).unwrap();
    assert!(
        lost.at <= lost.expires_at - margin + time::Duration::milliseconds(50),
        "{lost:?}"
    );
    assert!(
        a.handle.stats().renew_failures >= 1,
        "{:?}",
        a.handle.stats()
    );
    assert!(a.handle.fence().check().is_err());

    // Storage back: the node takes the lease again under a new epoch.
    let again = a.next_event(LONG).await;
    assert!(
        matches!(again.kind, LeaseEventKind::Acquired { .. }),
        "{again:?}"
    );
    assert_eq!(again.epoch, 2);
    assert_eq!(a.handle.fence().check(), Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_renewal_that_landed_is_adopted() {
    let b = Backend::moto();
    let timing = Timing::new(&lease_config(3000, 500, 200)).unwrap();
    let mut a = Lease::new(
        b.store(PREFIX).await,
        "node-a".into(),
        Arc::new(SystemClock),
        timing,
    );
    let held = a.acquire(None).await.unwrap();

    // The renewal is sent into a frozen server and times out; the server then wakes up and
    // applies it.
    b.moto_server().pause();
    let e = a.renew(&held).await.unwrap_err();
    assert!(matches!(e, LeaseError::Timeout { .. }), "{e}");
    b.moto_server().resume();
    let store = b.store(PREFIX).await;
    let landed = crate::common::wait_for_async("the late renewal to land", LONG, || async {
        stored(&store).await.filter(|(r, _)| r.renew_count == 1)
    })
    .await;

    // The next renewal finds it, recognises its own write, and adopts it.
    let adopted = a.renew(&held).await.unwrap();
    assert_eq!(adopted.record, landed.0);
    assert_eq!(adopted.etag, landed.1);
    assert!(adopted.sent > held.sent);
    let next = a.renew(&adopted).await.unwrap();
    assert_eq!(next.record.renew_count, 2);
}
