//! History sinks: every event of the feed (processes' transitions, the node's storage health)
//! POSTed as JSON arrays to configured webhook URLs.
//!
//! Per sink, an intake task moves events from the feed's broadcast into a bounded queue
//! and a sender task POSTs them in batches (`batch_size` events, or what arrived within
//! `batch_interval`), in order, with the configured `Authorization` header. A failed batch goes
//! back to the front of the queue and is retried with exponential backoff.
//!
//! Invariants: the supervisor never waits for a sink (a broadcast send does not block); at most
//! `queue_capacity` events wait (plus one batch in flight); beyond it the oldest are dropped and
//! counted, as are events the intake missed from the broadcast. Events are delivered in the
//! order they happened, each at least once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::WebhookConfig;
use crate::feed::FeedEvent;
use crate::retry::Backoff;

/// First retry delay after a failed POST; doubles per failure in a row up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);
const RETRY: Backoff = Backoff::new(RETRY_BASE, RETRY_MAX);
/// How long shutdown waits for the sinks to deliver what is queued.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Counters of one sink, for metrics and status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SinkStats {
    /// The URL without user info or query (which may hold secrets).
    pub url: String,
    /// Events delivered.
    pub sent: u64,
    /// POSTs that failed (each retried later).
    pub failed: u64,
    /// Events dropped: queue full, or missed from the event stream.
    pub dropped: u64,
    /// Events waiting now.
    pub queued: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url}: cannot set up the HTTP client: {source}")]
    Client { url: String, source: reqwest::Error },
}

/// The waiting events, bounded; dropping the oldest beyond capacity.
#[derive(Debug)]
struct Queue {
    events: VecDeque<FeedEvent>,
    capacity: usize,
}

impl Queue {
    /// Add at the back; returns how many old events were dropped to make room.
    fn push(&mut self, e: FeedEvent) -> u64 {
        self.events.push_back(e);
        self.trim()
    }

    /// Put a batch that could not be sent back at the front; returns how many were dropped.
    fn requeue(&mut self, batch: Vec<FeedEvent>) -> u64 {
        for e in batch.into_iter().rev() {
            self.events.push_front(e);
        }
        self.trim()
    }

    fn take(&mut self, n: usize) -> Vec<FeedEvent> {
        let n = n.min(self.events.len());
        self.events.drain(..n).collect()
    }

    fn trim(&mut self) -> u64 {
        let over = self.events.len().saturating_sub(self.capacity);
        self.events.drain(..over);
        over as u64
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    arrived: Notify,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One running history sink.
#[derive(Debug)]
pub struct Sink {
    url: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    intake: JoinHandle<()>,
    sender: JoinHandle<()>,
}

/// Start a sink for `cfg`, fed by `events`.
pub fn start(
    cfg: &WebhookConfig,
    events: broadcast::Receiver<Arc<FeedEvent>>,
) -> Result<Sink, WebhookError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|source| WebhookError::Client {
            url: redact(&cfg.url),
            source,
        })?;
    let http = Http {
        client,
        cfg: cfg.clone(),
    };
    Ok(start_with(cfg, events, http))
}

/// Where a sink's batches go: the receiver over HTTP. A trait only so that the retry loop can
/// be tested under a paused clock, which no socket survives (see the tests).
trait Transport: Send + Sync + 'static {
    fn post(&self, batch: &[FeedEvent]) -> impl Future<Output = Result<(), String>> + Send;
}

/// POSTs a batch as a JSON array, with the configured `Authorization` header.
struct Http {
    client: reqwest::Client,
    cfg: WebhookConfig,
}

impl Transport for Http {
    async fn post(&self, batch: &[FeedEvent]) -> Result<(), String> {
        let mut req = self
            .client
            .post(&self.cfg.url)
            .timeout(self.cfg.timeout.get())
            .json(batch);
        if let Some(auth) = &self.cfg.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("no answer in time".into()),
            Err(e) if e.is_connect() => Err("cannot connect".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn start_with(
    cfg: &WebhookConfig,
    events: broadcast::Receiver<Arc<FeedEvent>>,
    transport: impl Transport,
) -> Sink {
    let url = redact(&cfg.url);
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            events: VecDeque::new(),
            capacity: cfg.queue_capacity.max(1) as usize,
        }),
        arrived: Notify::new(),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let (stop, stopping) = watch::channel(false);
    let intake = tokio::spawn(intake(events, shared.clone(), stopping.clone()));
    let poster = Poster {
        transport,
        cfg: cfg.clone(),
        shared: shared.clone(),
        stopping,
    };
    let sender = tokio::spawn(poster.run());
    Sink {
        url,
        shared,
        stop,
        intake,
        sender,
    }
}

impl Shared {
    fn stats(&self, url: &str) -> SinkStats {
        SinkStats {
            url: url.to_string(),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queue().events.len() as u64,
        }
    }
}

impl Sink {
    pub fn stats(&self) -> SinkStats {
        self.shared.stats(&self.url)
    }

    /// Take the events already emitted, try to deliver everything queued for up to `grace`,
    /// then stop; what is still queued then is counted as dropped.
    pub async fn shutdown(self, grace: Duration) -> SinkStats {
        let _ = self.stop.send(true);
        let _ = self.intake.await;
        self.shared.arrived.notify_one();
        let mut sender = self.sender;
        if tokio::time::timeout(grace, &mut sender).await.is_err() {
            sender.abort();
            let left = self.shared.queue().events.len() as u64;
            self.shared.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(url = %self.url, left, "webhook could not deliver everything before shutdown");
        }
        self.shared.stats(&self.url)
    }
}

/// Every sink of a configuration.
#[derive(Debug, Default)]
pub struct Sinks(Vec<Sink>);

impl Sinks {
    /// Start a sink per configured webhook, each subscribed at once (so no later event is
    /// missed), e.g. `Sinks::start(&config.webhooks, || feed.subscribe())`.
    pub fn start(
        configs: &[WebhookConfig],
        subscribe: impl Fn() -> broadcast::Receiver<Arc<FeedEvent>>,
    ) -> Sinks {
        let sinks = configs
            .iter()
            .filter_map(|c| {
                start(c, subscribe())
                    .map_err(|e| tracing::error!("{e}; its events will not be sent"))
                    .ok()
            })
            .collect();
        Sinks(sinks)
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.0.iter().map(Sink::stats).collect()
    }

    /// A cheap view of the counters that outlives [`Sinks::shutdown`] (for status and metrics).
    pub fn monitor(&self) -> SinksMonitor {
        SinksMonitor(
            self.0
                .iter()
                .map(|s| (s.url.clone(), s.shared.clone()))
                .collect(),
        )
    }

    /// Flush and stop every sink, in parallel, within `grace`.
    pub async fn shutdown(self, grace: Duration) -> Vec<SinkStats> {
        futures::future::join_all(self.0.into_iter().map(|s| s.shutdown(grace))).await
    }
}

/// Read-only counters of every sink.
#[derive(Clone, Debug, Default)]
pub struct SinksMonitor(Vec<(String, Arc<Shared>)>);

impl SinksMonitor {
    pub fn stats(&self) -> Vec<SinkStats> {
        self.0.iter().map(|(url, s)| s.stats(url)).collect()
    }
}

async fn intake(
    mut events: broadcast::Receiver<Arc<FeedEvent>>,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let add = |r: Result<Arc<FeedEvent>, broadcast::error::RecvError>| match r {
        Ok(e) => {
            let dropped = shared.queue().push(Arc::unwrap_or_clone(e));
            shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            shared.arrived.notify_one();
            true
        }
        Err(broadcast::error::RecvError::Lagged(n)) => {
            shared.dropped.fetch_add(n, Ordering::Relaxed);
            true
        }
        Err(broadcast::error::RecvError::Closed) => false,
    };
    loop {
        tokio::select! {
            r = events.recv() => if !add(r) { return },
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    // Stopping: take what was already emitted.
    loop {
        let r = match events.try_recv() {
            Ok(e) => Ok(e),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Err(broadcast::error::RecvError::Lagged(n))
            }
            Err(_) => return,
        };
        add(r);
    }
}

struct Poster<T> {
    transport: T,
    cfg: WebhookConfig,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
}

impl<T: Transport> Poster<T> {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            let Some(batch) = self.next_batch().await else {
                return;
            };
            match self.transport.post(&batch).await {
                Ok(()) => {
                    failures = 0;
                    self.shared
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(why) => {
                    failures += 1;
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    let dropped = self.shared.queue().requeue(batch);
                    self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
                    let delay = RETRY.delay(failures);
                    tracing::warn!(url = %redact(&self.cfg.url), failures, "webhook POST failed, retrying in {delay:?}: {why}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The next batch: as soon as `batch_size` events wait, or `batch_interval` after the
    /// first one arrived (at once when stopping). `None` when stopping and nothing is left.
    async fn next_batch(&mut self) -> Option<Vec<FeedEvent>> {
        let size = self.cfg.batch_size.max(1) as usize;
        loop {
            let waiting = self.shared.queue().events.len();
            if waiting > 0 {
                break;
            }
            if *self.stopping.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.shared.arrived.notified() => {}
                _ = self.stopping.changed() => {}
            }
        }
        let deadline = Instant::now() + self.cfg.batch_interval.get();
        while self.shared.queue().events.len() < size && !*self.stopping.borrow() {
            tokio::select! {
                _ = self.shared.arrived.notified() => {}
                _ = self.stopping.changed() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Some(self.shared.queue().take(size))
    }
}

/// `url` without user info and query, for logs and stats.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, StateName};

    fn ev(n: u32) -> FeedEvent {
        FeedEvent::Process(Event {
            at: time::OffsetDateTime::UNIX_EPOCH,
            process: n.to_string(),
            from: StateName::Stopped,
            to: StateName::Starting,
            pid: Some(n),
            exit: None,
            reason: None,
            change: None,
        })
    }

    fn names(q: &Queue) -> Vec<String> {
        q.events
            .iter()
            .map(|e| e.process().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn the_queue_drops_the_oldest_and_a_failed_batch_goes_back_first() {
        let mut q = Queue {
            events: VecDeque::new(),
            capacity: 3,
        };
        let dropped: u64 = (1..=4).map(|n| q.push(ev(n))).sum();
        assert_eq!(
            (dropped, names(&q)),
            (1, vec!["2".into(), "3".into(), "4".into()])
        );
        let batch = q.take(2);
        q.push(ev(5));
        assert_eq!(q.requeue(batch), 1, "the oldest of the failed batch goes");
        assert_eq!(names(&q), ["3", "4", "5"].map(String::from));
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap_and_urls_lose_secrets() {
        let d: Vec<_> = [1, 2, 3, 30].map(|f| RETRY.delay(f)).to_vec();
        assert_eq!(d[..3], [RETRY_BASE, RETRY_BASE * 2, RETRY_BASE * 4]);
        assert_eq!(d[3], RETRY_MAX);
        assert_eq!(redact("http://u:p@h:1/x?token=s"), "http://h:1/x");
    }

    /// A receiver that refuses the first `refuse` batches; it notes when each attempt came and
    /// what it held.
    ///
    /// A stand-in for a real receiver, which tests/webhooks.rs uses in real time: under a
    /// paused clock tokio moves time to the next timer whenever the runtime waits, with socket
    /// I/O in flight or not, so a real request would run out its timeout in virtual time.
    struct Refusing {
        refuse: usize,
        attempts: Arc<Mutex<Vec<Attempt>>>,
        delivered: Arc<Notify>,
    }

    /// When a batch came, and the processes of its events.
    type Attempt = (Instant, Vec<String>);

    impl Transport for Refusing {
        async fn post(&self, batch: &[FeedEvent]) -> Result<(), String> {
            let mut attempts = self.attempts.lock().unwrap();
            let names = batch
                .iter()
                .map(|e| e.process().unwrap_or_default().to_string())
                .collect();
            attempts.push((Instant::now(), names));
            if attempts.len() <= self.refuse {
                return Err("HTTP 503".into());
            }
            self.delivered.notify_one();
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_batches_are_retried_with_doubling_waits_in_paused_time() {
        let real = std::time::Instant::now();
        let (tx, rx) = broadcast::channel(16);
        let cfg = WebhookConfig {
            url: "http://receiver/hook".into(),
            batch_size: 3,
            ..WebhookConfig::default()
        };
        let receiver = Refusing {
            refuse: 5,
            attempts: Arc::default(),
            delivered: Arc::default(),
        };
        let (attempts, delivered) = (receiver.attempts.clone(), receiver.delivered.clone());
        let sink = start_with(&cfg, rx, receiver);
        for n in 1..=3 {
            tx.send(Arc::new(ev(n))).unwrap();
        }
        delivered.notified().await;

        let attempts = attempts.lock().unwrap().clone();
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let expected: Vec<Duration> = (1..=5).map(|f| RETRY.delay(f)).collect();
        assert_eq!(expected[4], Duration::from_millis(1600));
        for (gap, want) in gaps.iter().zip(&expected) {
            assert!(
                *gap >= *want && *gap <= *want + Duration::from_millis(2),
                "waits {gaps:?}, expected {expected:?}"
            );
        }
        assert_eq!(gaps.len(), 5);
        assert!(
            attempts.iter().all(|(_, b)| b == &["1", "2", "3"]),
            "the refused batch is sent again whole and in order: {attempts:?}"
        );
        let stats = sink.shutdown(SHUTDOWN_GRACE).await;
        assert_eq!(
            (stats.sent, stats.failed, stats.dropped, stats.queued),
            (3, 5, 0, 0)
        );
        assert!(
            real.elapsed() < Duration::from_millis(3100) / 2,
            "{:?}",
            real.elapsed()
        );
    }
}
