//! The event feed into the state database, and read back from it for `GET /events`; and the
//! node's own events: a change of storage health, published on the feed.
//!
//! The supervisor (and this node) publish every event on the feed, whose durable channel is
//! unbounded; the persister writes them in batches into the database while one is open (this
//! node owns the environment). With no database open, the service answers `GET /events` from
//! its in-memory history instead.

use tokio::sync::{mpsc, oneshot, watch};

use super::Node;
use crate::feed::{Feed, FeedEvent, StorageEvent};
use crate::objstore::{FailureKind, StorageHealth, StorageState};
use crate::store::{Store, StoreError};

/// Most events written in one transaction.
const BATCH: usize = 512;
/// Most events held while no database is open (a standby's storage events, say): the latest
/// are written into the next database this node opens.
const HELD: usize = 1024;

enum Msg {
    Store(Option<Store>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the task that persists events.
pub(super) struct Persister {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Persister {
    pub fn spawn(events: mpsc::UnboundedReceiver<FeedEvent>) -> Persister {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(events, rx));
        Persister { tx }
    }

    /// Write into `store` from now on (`None`: hold nothing, the database is closed).
    pub fn set_store(&self, store: Option<Store>) {
        let _ = self.tx.send(Msg::Store(store));
    }

    /// Returns once every event sent before the call is written (or held for lack of a store).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut events: mpsc::UnboundedReceiver<FeedEvent>,
    mut control: mpsc::UnboundedReceiver<Msg>,
) {
    let mut store: Option<Store> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(Msg::Store(s)) => {
                    // What came before a database closes goes into it; what came while none
                    // was open goes into the next one.
                    write(&store, &mut batch, &mut events).await;
                    store = s;
                    write(&store, &mut batch, &mut events).await;
                }
                Some(Msg::Flush(done)) => {
                    write(&store, &mut batch, &mut events).await;
                    let _ = done.send(());
                }
                None => break,
            },
            e = events.recv() => match e {
                Some(e) => {
                    batch.push(e);
                    write(&store, &mut batch, &mut events).await;
                }
                None => break,
            },
        }
    }
}

/// Write `batch` plus whatever is already waiting on the channel; with no database open, hold
/// the latest [`HELD`] of them for the next one.
async fn write(
    store: &Option<Store>,
    batch: &mut Vec<FeedEvent>,
    events: &mut mpsc::UnboundedReceiver<FeedEvent>,
) {
    let Some(s) = store else {
        while let Ok(e) = events.try_recv() {
            batch.push(e);
        }
        if batch.len() > HELD {
            batch.drain(..batch.len() - HELD);
        }
        return;
    };
    loop {
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        if let Err(e) = s.insert_events(batch).await {
            tracing::warn!(events = batch.len(), "cannot persist events: {e}");
        }
        let full = batch.len() >= BATCH;
        batch.clear();
        if !full {
            return;
        }
    }
}

impl Node {
    /// The last `limit` events from the state database (only those of the processes matching
    /// `process`, if given), oldest first; `None` while the database is not open here.
    pub async fn recent_events(
        &self,
        limit: usize,
        process: Option<&glob::Pattern>,
    ) -> Option<Result<Vec<FeedEvent>, StoreError>> {
        // Read your writes: what the supervisor emitted before this request is in.
        self.persist.flush().await;
        let store = self.store().await?;
        let limit = limit.min(crate::store::MAX_PAGE as usize) as u32;
        let rows = store
            .recent_events(limit, process.map(|p| p.as_str()), None)
            .await;
        Some(rows.map(|rows| rows.into_iter().rev().map(|r| r.event).collect()))
    }
}

/// Publish a [`StorageEvent`] on `feed` for each change of `health` that is news: storage
/// starting to fail, failing another way, working again. The first request that works is no
/// news, and the health channel itself wakes watchers only on a change of state or kind.
/// Ends when the storage handle is dropped.
pub(super) async fn publish_storage_changes(
    mut health: watch::Receiver<StorageHealth>,
    feed: Feed,
) {
    let mut told: (StorageState, Option<FailureKind>) = (StorageState::Unknown, None);
    while health.changed().await.is_ok() {
        let h = health.borrow_and_update().clone();
        let now = (h.state, h.failure.as_ref().map(|f| f.kind));
        let news = match h.state {
            StorageState::Unknown => false,
            StorageState::Ok => told.0 == StorageState::Failing,
            StorageState::Failing => now != told,
        };
        told = now;
        if news {
            feed.publish(FeedEvent::Storage(StorageEvent {
                at: h.since,
                state: h.state,
                failure: h.failure,
            }));
        }
    }
}
