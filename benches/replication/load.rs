//! Steady write load: commit → in-storage lag as replication itself reports it, and write
//! throughput with replication off and on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_manager::config::{Dur, ReplicationConfig, StorageConfig};
use state_manager::events::{Event, StateName};
use state_manager::feed::FeedEvent;
use state_manager::replication::{self, Replicator};
use state_manager::store::Store;
use time::OffsetDateTime;

use super::{Row, ms, objects, window};

/// Commits per second of the steady load (a busy supervisor emits far fewer events).
const RATE: u32 = 50;

pub fn event(n: u64) -> FeedEvent {
    FeedEvent::Process(Event {
        at: OffsetDateTime::now_utc(),
        process: format!("web-{}", n % 16),
        from: StateName::Starting,
        to: StateName::Running,
        pid: Some(1000 + (n % 30000) as u32),
        exit: None,
        reason: Some(format!("started by the API (request {n})")),
        change: None,
    })
}

pub fn config(interval: Duration) -> ReplicationConfig {
    ReplicationConfig {
        interval: Dur(interval),
        ..ReplicationConfig::default()
    }
}

pub async fn open(
    path: &std::path::Path,
    storage: &StorageConfig,
    cfg: &ReplicationConfig,
) -> (Store, Option<Replicator>) {
    replication::open(path, objects(storage).await, cfg, None)
        .await
        .expect("open the replicated store")
}

pub async fn lag_rows(backends: &[(&'static str, StorageConfig)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for interval in [Duration::from_secs(1), Duration::from_millis(100)] {
        for (name, storage) in backends {
            let lags = lag(storage, interval).await;
            let (p50, p99) = (percentile(&lags, 50), percentile(&lags, 99));
            eprintln!(
                "lag at {interval:?} on {name}: p50 {p50:?} p99 {p99:?} ({} commits)",
                lags.len()
            );
            rows.push(Row {
                what: format!(
                    "commit → in storage, interval {}, {RATE} commits/s (p50 / p99)",
                    ms(interval)
                ),
                backend: name,
                value: format!("{} / {}", ms(p50), ms(p99)),
            });
        }
    }
    rows
}

/// Lag of every commit of a steady load: from its acknowledgement to the first status update
/// saying everything acknowledged before it is in storage.
async fn lag(storage: &StorageConfig, interval: Duration) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let (store, rep) = open(&dir.path().join("s.db"), storage, &config(interval)).await;
    let rep = rep.unwrap();
    rep.sync_now().await.unwrap();
    let seen: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let mut status = rep.status();
    let sink = seen.clone();
    let watcher = tokio::spawn(async move {
        while status.changed().await.is_ok() {
            if let Some(t) = status.borrow_and_update().synced_through {
                sink.lock().unwrap().push((t, Instant::now()));
            }
        }
    });
    let acks = steady_load(&store, window()).await;
    rep.wait_synced(*acks.last().unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    watcher.abort();
    rep.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    acks.iter()
        .filter_map(|ack| {
            seen.iter()
                .find(|(t, _)| t >= ack)
                .map(|(_, at)| *at - *ack)
        })
        .collect()
}

/// Commit one event every 1/RATE s for `length`; returns the acknowledgement times.
async fn steady_load(store: &Store, length: Duration) -> Vec<Instant> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / RATE);
    let end = Instant::now() + length;
    let mut acks = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        ticker.tick().await;
        n += 1;
        store.insert_events(&[event(n)]).await.unwrap();
        acks.push(Instant::now());
    }
    acks
}

pub fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Short runs per mode, alternated, and the median: rates of fsync-bound writes drift on a
/// shared machine, and alternation spreads the drift over every mode alike.
const ROUNDS: usize = 5;
const RUN: Duration = Duration::from_secs(2);

pub async fn throughput_rows(backends: &[(&'static str, StorageConfig)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in [1usize, 100] {
        let dir = tempfile::tempdir().unwrap();
        let mut modes = vec![("-", Writer::open(dir.path(), "off", None).await)];
        for (name, storage) in backends {
            modes.push((*name, Writer::open(dir.path(), name, Some(storage)).await));
        }
        let mut rates = vec![Vec::new(); modes.len()];
        for round in 0..=ROUNDS {
            for k in 0..modes.len() {
                let i = (k + round) % modes.len();
                let rate = modes[i].1.run(batch, RUN).await;
                if round > 0 {
                    rates[i].push(rate); // round 0 warms up
                }
            }
        }
        let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
        for (i, (name, writer)) in modes.into_iter().enumerate() {
            writer.close().await;
            let state = if i == 0 { "off" } else { "on (1 s)" };
            let vs = if i == 0 {
                String::new()
            } else {
                format!(" ({:+.1}% vs off)", (medians[i] / medians[0] - 1.0) * 100.0)
            };
            eprintln!(
                "throughput batch {batch}, {name}, replication {state}: {:?}",
                rates[i]
            );
            rows.push(Row {
                what: format!("write throughput, {batch} event(s) per commit, replication {state}"),
                backend: name,
                value: format!("{:.0} events/s{vs}", medians[i]),
            });
        }
    }
    rows
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A store kept open across runs (so its WAL is in steady state), with or without replication.
struct Writer {
    store: Store,
    rep: Option<Replicator>,
    n: u64,
}

impl Writer {
    async fn open(dir: &std::path::Path, name: &str, storage: Option<&StorageConfig>) -> Writer {
        let mut cfg = config(Duration::from_secs(1));
        cfg.enabled = storage.is_some();
        let local = super::local_storage(dir, "unused");
        let path = dir.join(format!(
            "{}.db",
            name.replace(|c: char| !c.is_alphanumeric(), "")
        ));
        let (store, rep) = open(&path, storage.unwrap_or(&local), &cfg).await;
        if let Some(rep) = &rep {
            rep.sync_now().await.unwrap();
        }
        Writer { store, rep, n: 0 }
    }

    /// Events per second committed back to back for `length`.
    async fn run(&mut self, batch: usize, length: Duration) -> f64 {
        let start = Instant::now();
        let mut written = 0u64;
        while start.elapsed() < length {
            let events: Vec<FeedEvent> = (0..batch as u64).map(|i| event(self.n + i)).collect();
            self.store.insert_events(&events).await.unwrap();
            self.n += batch as u64;
            written += batch as u64;
        }
        written as f64 / start.elapsed().as_secs_f64()
    }

    async fn close(self) {
        if let Some(rep) = self.rep {
            rep.shutdown().await.unwrap();
        }
        self.store.close().await.unwrap();
    }
}
