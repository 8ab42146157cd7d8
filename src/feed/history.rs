//! Where the history of the event feed is kept ([`EventLog`]), so that `GET /events` does not
//! care: an in-memory bounded ring fed from the feed's broadcast ([`MemoryEventLog`]), or
//! the state database while the node has it open (the service implements the trait, choosing
//! between the two).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::FeedEvent;

/// Events the in-memory history keeps (and the largest `limit`).
pub const MEMORY_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("the event history cannot be read: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the history of lifecycle events is kept.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The last `limit` events, oldest first: all of them when `process` is `None`, else only
    /// those of the processes matching it.
    async fn recent(
        &self,
        limit: usize,
        process: Option<&glob::Pattern>,
    ) -> Result<Vec<FeedEvent>, EventLogError>;
}

/// The last [`MEMORY_CAPACITY`] events, in memory; lost on restart.
#[derive(Default)]
pub struct MemoryEventLog {
    ring: Mutex<VecDeque<Arc<FeedEvent>>>,
}

impl MemoryEventLog {
    /// A log fed by a task reading `rx` until the feed ends.
    pub fn spawn(mut rx: broadcast::Receiver<Arc<FeedEvent>>) -> Arc<Self> {
        let log = Arc::new(MemoryEventLog::default());
        let feed = log.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => feed.push(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("event history missed {n} events (too many at once)")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        log
    }

    pub fn push(&self, event: Arc<FeedEvent>) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == MEMORY_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(event);
    }
}

#[async_trait::async_trait]
impl EventLog for MemoryEventLog {
    async fn recent(
        &self,
        limit: usize,
        process: Option<&glob::Pattern>,
    ) -> Result<Vec<FeedEvent>, EventLogError> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<FeedEvent> = ring
            .iter()
            .rev()
            .filter(|e| e.matches(process))
            .take(limit)
            .map(|e| FeedEvent::clone(e))
            .collect();
        out.reverse();
        Ok(out)
    }
}
