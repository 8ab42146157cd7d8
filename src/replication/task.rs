//! The replication task and its handle: syncs every `interval` (backing off while storage
//! fails), on demand, early when a burst of commits has grown the WAL past
//! [`crate::store::EARLY_SYNC_PAGES`] (at most every `interval / 2`), and a final time at
//! shutdown. Shipping a busy WAL early bounds its size, and the lag, under a burst of commits.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::shipper::{Continuation, Shipper};
use super::writer::FencedWriter;
use super::{ReplicationError, ReplicationStatus, sidecar};
use crate::config::ReplicationConfig;
use crate::lease::Fence;
use crate::objstore::DynStore;
use crate::retry::Backoff;
use crate::store::Store;

/// The longest wait between retries while storage keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<(), ReplicationError>>;

enum Command {
    Sync(Reply),
    Shutdown(Reply),
}

/// Handle to the replication task. Cheap to clone; the task ends with a final sync when
/// [`Replicator::shutdown`] is called or every handle is dropped.
#[derive(Clone)]
pub struct Replicator {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<ReplicationStatus>,
}

impl Replicator {
    /// Start replicating `store` (which must use manual checkpoints) to `objects`.
    pub(super) fn start(
        store: Store,
        objects: DynStore,
        cfg: &ReplicationConfig,
        fence: Option<Fence>,
        continuation: Option<Continuation>,
    ) -> Replicator {
        let location = objects.describe();
        let wal_grew = store.wal_grew().clone();
        let shipper = Shipper::new(store, FencedWriter::new(objects, fence), cfg, continuation);
        let (status_tx, status) = watch::channel(ReplicationStatus::default());
        let (commands, rx) = mpsc::channel(8);
        let interval = cfg.interval.get().max(Duration::from_millis(10));
        tokio::spawn(run(shipper, rx, status_tx, interval, wal_grew, location));
        Replicator { commands, status }
    }

    /// The status, updated after every sync attempt (for `GET /`).
    pub fn status(&self) -> watch::Receiver<ReplicationStatus> {
        self.status.clone()
    }

    /// Sync now and wait for the outcome (for example before releasing the lease).
    pub async fn sync_now(&self) -> Result<(), ReplicationError> {
        self.ask(Command::Sync).await
    }

    /// Wait until every commit acknowledged before `since` is in storage.
    pub async fn wait_synced(&self, since: Instant) -> Result<(), ReplicationError> {
        let mut status = self.status.clone();
        status
            .wait_for(|s| s.synced_through.is_some_and(|t| t >= since))
            .await
            .map(|_| ())
            .map_err(|_| ReplicationError::Stopped)
    }

    /// Final sync, truncate the WAL and record continuity for the next start, then stop. Stop
    /// writing to the store first: later writes are still safe but cost a new generation.
    pub async fn shutdown(&self) -> Result<(), ReplicationError> {
        self.ask(Command::Shutdown).await
    }

    async fn ask(&self, make: fn(Reply) -> Command) -> Result<(), ReplicationError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ReplicationError::Stopped)?;
        rx.await.map_err(|_| ReplicationError::Stopped)?
    }
}

async fn run(
    mut shipper: Shipper,
    mut commands: mpsc::Receiver<Command>,
    status: watch::Sender<ReplicationStatus>,
    interval: Duration,
    wal_grew: std::sync::Arc<tokio::sync::Notify>,
    location: String,
) {
    let mut failures = 0u32;
    let mut next = tokio::time::Instant::now();
    let mut last = next;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                last = tokio::time::Instant::now();
                let result = shipper.sync_once().await;
                failures = publish(&shipper, &status, &result, failures).await;
                next = tokio::time::Instant::now() + delay(interval, failures);
            }
            // Never while failing: the backoff holds whatever the load.
            _ = wal_grew.notified(), if failures == 0 => {
                next = next.min(last + interval / 2);
            }
            command = commands.recv() => match command {
                Some(Command::Sync(reply)) => {
                    let result = shipper.sync_once().await;
                    failures = publish(&shipper, &status, &result, failures).await;
                    let _ = reply.send(result);
                }
                Some(Command::Shutdown(reply)) => {
                    let _ = reply.send(finish(&mut shipper, &status, &location).await);
                    return;
                }
                None => {
                    let _ = finish(&mut shipper, &status, &location).await;
                    return;
                }
            }
        }
    }
}

async fn publish(
    shipper: &Shipper,
    status: &watch::Sender<ReplicationStatus>,
    result: &Result<(), ReplicationError>,
    failures: u32,
) -> u32 {
    status.send_replace(shipper.status(result.as_ref().err()).await);
    match result {
        Ok(()) => 0,
        Err(e) => {
            if failures == 0 {
                tracing::warn!(error = %e, "replication sync failed; retrying with backoff");
            }
            failures.saturating_add(1)
        }
    }
}

/// The pause before the next sync: the interval, doubled per consecutive failure up to
/// [`MAX_BACKOFF`] (never below the interval).
fn delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let first = interval.saturating_mul(2);
    Backoff::new(first, MAX_BACKOFF)
        .delay(failures)
        .max(interval)
}

async fn finish(
    shipper: &mut Shipper,
    status: &watch::Sender<ReplicationStatus>,
    location: &str,
) -> Result<(), ReplicationError> {
    let result = final_sync(shipper, location).await;
    status.send_replace(shipper.status(result.as_ref().err()).await);
    shipper.discard_queue();
    result
}

async fn final_sync(shipper: &mut Shipper, location: &str) -> Result<(), ReplicationError> {
    shipper.sync_once().await?;
    let Some((generation, next_index, fingerprint)) = shipper.seal().await? else {
        return Ok(());
    };
    let record = sidecar::Sidecar::new(location.to_string(), generation, next_index, fingerprint);
    let db = shipper.store.path().to_path_buf();
    tokio::task::spawn_blocking(move || sidecar::write(&db, &record))
        .await
        .map_err(|_| ReplicationError::Stopped)?
        .map_err(|source| ReplicationError::Io {
            what: "writing the replication record of",
            path: shipper.store.path().to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let i = Duration::from_millis(100);
        assert_eq!(delay(i, 0), i);
        assert_eq!(delay(i, 1), Duration::from_millis(200));
        assert_eq!(delay(i, 3), Duration::from_millis(800));
        assert_eq!(delay(i, 30), MAX_BACKOFF);
        assert_eq!(delay(Duration::from_secs(10), 2), Duration::from_secs(10));
    }
}
