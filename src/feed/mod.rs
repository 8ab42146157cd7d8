//! The event feed: every entry of `GET /events`, its stream and the webhooks, as one typed
//! [`FeedEvent`] — a process's transition ([`Event`]) or a change of the node's storage
//! health ([`StorageEvent`]) — published through one [`Feed`], and its history ([`EventLog`]).
//!
//! Invariants:
//! - Every published event goes to the durable channel (the state database's writer; unbounded,
//!   never drops) before the live broadcast, so a reader that saw it live finds it in history.
//! - A storage event marks a change only: storage starting to fail, the kind of failure
//!   changing, or storage working again; never one per failed request.
//! - The text of `kind` (and of a storage event's `state`) is defined here and in
//!   `objstore::StorageState`; `migrations/0004_node_events.sql` checks the same words.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};

mod history;

pub use history::{EventLog, EventLogError, MEMORY_CAPACITY, MemoryEventLog};

use crate::events::Event;
use crate::objstore::{Failure, StorageState};

/// Events the live broadcast holds for a slow reader before it lags.
pub const LIVE_CAPACITY: usize = 4096;

/// One entry of the event feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedEvent {
    /// A process's state transition, or an operator's change to it.
    Process(Event),
    /// The node's storage started failing, failed another way, or works again.
    Storage(StorageEvent),
}

/// The words of [`FeedEvent`]'s `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    Process,
    Storage,
}

impl FeedKind {
    pub const ALL: [FeedKind; 2] = [FeedKind::Process, FeedKind::Storage];

    /// The stored and displayed form (also the CHECK constraint's list in `migrations/`).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Process => "process",
            FeedKind::Storage => "storage",
        }
    }
}

impl std::str::FromStr for FeedKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FeedKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind of event {s:?}"))
    }
}

impl FeedEvent {
    pub fn kind(&self) -> FeedKind {
        match self {
            FeedEvent::Process(_) => FeedKind::Process,
            FeedEvent::Storage(_) => FeedKind::Storage,
        }
    }

    /// The process it concerns; `None` for an event of the node.
    pub fn process(&self) -> Option<&str> {
        match self {
            FeedEvent::Process(e) => Some(&e.process),
            FeedEvent::Storage(_) => None,
        }
    }

    /// Whether a filter on process names lets it through: without a filter everything does;
    /// with one, only the events of matching processes.
    pub fn matches(&self, process: Option<&glob::Pattern>) -> bool {
        match (process, self.process()) {
            (None, _) => true,
            (Some(g), Some(p)) => g.matches(p),
            (Some(_), None) => false,
        }
    }
}

impl From<Event> for FeedEvent {
    fn from(e: Event) -> FeedEvent {
        FeedEvent::Process(e)
    }
}

/// A change of storage health as this node's requests found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `failing` (with `failure`: a new failure, or another kind of it) or `ok` (it works again).
    pub state: StorageState,
    /// What the failing requests met and what to do, while `failing`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<Failure>,
}

/// Where events are published: the state database's writer and the live readers.
///
/// The live broadcast carries `Arc`s: its ring fills every one of its [`LIVE_CAPACITY`] slots
/// when it is made, and each reader gets a clone of what it reads, so a slot holds a pointer
/// (40 bytes, 160 kB in all) rather than an event (150 bytes, 600 kB), and a read is a
/// reference count.
#[derive(Clone, Debug)]
pub struct Feed {
    durable: mpsc::UnboundedSender<FeedEvent>,
    live: broadcast::Sender<Arc<FeedEvent>>,
}

impl Feed {
    /// A feed, and the receiving end of its durable channel (for the database writer).
    pub fn new() -> (Feed, mpsc::UnboundedReceiver<FeedEvent>) {
        let (durable, rx) = mpsc::unbounded_channel();
        let live = broadcast::channel(LIVE_CAPACITY).0;
        (Feed { durable, live }, rx)
    }

    pub fn publish(&self, event: FeedEvent) {
        let _ = self.durable.send(event.clone());
        let _ = self.live.send(Arc::new(event));
    }

    /// Show `event` to the live readers only: it is already in the state database (written
    /// there directly because it must be durable before the next step).
    pub fn publish_live(&self, event: FeedEvent) {
        let _ = self.live.send(Arc::new(event));
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::FailureKind;

    #[test]
    fn a_storage_event_is_tagged_and_carries_its_failure() {
        let e = FeedEvent::Storage(StorageEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            state: StorageState::Failing,
            failure: Some(Failure::new(FailureKind::Credentials, "bad key", "fix it")),
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "storage");
        assert_eq!(v["state"], "failing");
        assert_eq!(v["failure"]["kind"], "credentials");
        assert_eq!(serde_json::from_value::<FeedEvent>(v).unwrap(), e);
        assert_eq!(e.kind().as_str(), "storage");
        let g = glob::Pattern::new("*").unwrap();
        assert!(e.matches(None) && !e.matches(Some(&g)));
    }
}
