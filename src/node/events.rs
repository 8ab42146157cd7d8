//! Lifecycle events into the state database, and read back from it for `GET /events`.
//!
//! The supervisor sends every event on an unbounded channel; the persister writes them in
//! batches into the database while one is open (this node owns the environment). With no
//! database open, the service answers `GET /events` from its in-memory history instead.

use tokio::sync::{mpsc, oneshot};

use super::Node;
use crate::events::Event;
use crate::store::{Store, StoreError};

/// Most events written in one transaction.
const BATCH: usize = 512;

enum Msg {
    Store(Option<Store>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the task that persists events.
pub(super) struct Persister {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Persister {
    pub fn spawn(events: mpsc::UnboundedReceiver<Event>) -> Persister {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(events, rx));
        Persister { tx }
    }

    /// Write into `store` from now on (`None`: hold nothing, the database is closed).
    pub fn set_store(&self, store: Option<Store>) {
        let _ = self.tx.send(Msg::Store(store));
    }

    /// Returns once every event sent before the call is written (or dropped for lack of a store).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut control: mpsc::UnboundedReceiver<Msg>,
) {
    let mut store: Option<Store> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(Msg::Store(s)) => {
                    // What came before a database closes goes into it; with none open, what is
                    // waiting goes into the new one.
                    if store.is_some() {
                        write(&store, &mut batch, &mut events).await;
                    }
                    store = s;
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

/// Write `batch` plus whatever is already waiting on the channel.
async fn write(
    store: &Option<Store>,
    batch: &mut Vec<Event>,
    events: &mut mpsc::UnboundedReceiver<Event>,
) {
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
        if let Some(s) = store
            && let Err(e) = s.insert_events(batch).await
        {
            tracing::warn!(events = batch.len(), "cannot persist lifecycle events: {e}");
        }
        let full = batch.len() == BATCH;
        batch.clear();
        if !full {
            return;
        }
    }
}

impl Node {
    /// The last `limit` events of the processes matching `process` from the state database,
    /// oldest first; `None` while the database is not open here.
    pub async fn recent_events(
        &self,
        limit: usize,
        process: Option<&glob::Pattern>,
    ) -> Option<Result<Vec<Event>, StoreError>> {
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
