//! The storage lease against real storage: the local-directory backend and S3 (a real moto
//! server). Nodes are leasers in this process, or (to be killed with SIGKILL or frozen with
//! SIGSTOP) this test binary re-run as a child process holding the lease
//! ([`child_lease_holder`]). Time is real where the behaviour is about time passing (TTLs of a
//! few seconds) across processes, a fake clock where only the arithmetic matters, and a paused
//! clock for the holder's own renewals and loss.

use crate::common;

mod cases;
mod child;
mod fake_time;
mod race;
mod s3_faults;

use std::time::Duration;

use common::backend::Backend;
use state_manager::config::{Dur, LeaseConfig};
use state_manager::lease::{LeaseEvent, LeaseHandle, LeaseRecord, Leaser, Role};
use state_manager::objstore::{DynStore, ETag};
use tokio::sync::broadcast;

/// The key prefix every case keeps its lease under.
pub const PREFIX: &str = "env-1";

/// Make the local backend refuse every write from now on, for real: its lock file (taken by
/// every conditional write) becomes a directory. Reads still work.
pub fn refuse_writes(b: &Backend) {
    let Backend::Local(dir) = b else {
        panic!("only the local backend can be made to refuse writes this way")
    };
    let lock = dir.path().join("objects/\\lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
}

/// Lease settings in milliseconds; standbys take the lease on their own.
pub fn lease_config(ttl_ms: u64, skew_ms: u64, poll_ms: u64) -> LeaseConfig {
    LeaseConfig {
        ttl: Dur::millis(ttl_ms),
        clock_skew: Dur::millis(skew_ms),
        poll_interval: Dur::millis(poll_ms),
        auto_acquire: true,
    }
}

/// A node in this process: its handle and every tenure event since it started.
pub struct Node {
    pub handle: LeaseHandle,
    pub events: broadcast::Receiver<LeaseEvent>,
}

pub async fn node(b: &Backend, id: &str, cfg: &LeaseConfig) -> Node {
    let leaser = Leaser::new(b.store(PREFIX).await, id.to_string(), cfg);
    let events = leaser.subscribe();
    Node {
        handle: leaser.spawn().unwrap(),
        events,
    }
}

impl Node {
    /// Wait until the role satisfies `pred`.
    pub async fn wait_role(
        &self,
        what: &str,
        within: Duration,
        pred: impl FnMut(&Role) -> bool,
    ) -> Role {
        let mut rx = self.handle.watch();
        match tokio::time::timeout(within, rx.wait_for(pred)).await {
            Ok(r) => r.expect("the lease task is running").clone(),
            Err(_) => panic!(
                "{}: timed out after {within:?} waiting for {what}; role is {:?}",
                self.handle.node_id(),
                self.handle.role()
            ),
        }
    }

    /// The next tenure event.
    pub async fn next_event(&mut self, within: Duration) -> LeaseEvent {
        match tokio::time::timeout(within, self.events.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("{}: event stream: {e}", self.handle.node_id()),
            Err(_) => panic!(
                "{}: no lease event within {within:?}; role is {:?}",
                self.handle.node_id(),
                self.handle.role()
            ),
        }
    }
}

/// The lease record as stored now, with its ETag.
pub async fn stored(store: &DynStore) -> Option<(LeaseRecord, ETag)> {
    match store.get(state_manager::lease::LEASE_KEY).await {
        Ok(o) => Some((LeaseRecord::decode(&o.body).unwrap(), o.etag)),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("read lease.json: {e}"),
    }
}

/// One test per case and backend.
macro_rules! both_backends {
    ($($module:ident::$case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$module::$case(&super::Backend::local()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$module::$case(&super::Backend::moto()).await;
                }
            )*
        }
    };
}

both_backends!(
    cases::second_node_is_standby_while_the_first_owns,
    cases::release_hands_over_within_one_poll_interval,
    cases::released_node_stays_passive_until_someone_else_holds,
    cases::killed_owner_is_taken_over_after_the_ttl_and_never_before,
    cases::frozen_owner_wakes_up_fenced_and_its_late_write_is_refused,
    race::three_nodes_racing_never_own_at_once,
    fake_time::expiry_and_skew_with_a_fake_clock,
    fake_time::a_retried_write_that_landed_counts_as_done,
);

/// Local storage only: under a paused clock a request to S3 would run out its timeouts in
/// virtual time while it waits on the socket.
#[tokio::test(start_paused = true)]
async fn renewals_and_the_loss_follow_the_ttl_in_paused_time() {
    fake_time::renewals_and_the_loss_follow_the_ttl_in_paused_time(&Backend::local()).await;
}

/// Not a test on its own: the lease holder that the kill and freeze cases run as a child
/// process (see `lease/child.rs`). Does nothing unless `LEASE_CHILD` is set.
#[test]
#[ignore = "run as a child process by other tests"]
fn child_lease_holder() {
    child::run_if_asked();
}
