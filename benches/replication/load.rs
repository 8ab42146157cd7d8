//! Steady write load: commit → in-storage lag as replication itself reports it, and write
//! throughput with replication off and on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use state_manager::config::{Dur, ReplicationConfig, StorageConfig};
use state_manager::events::{Event, StateName};
use state_manager::replication::{self, Replicator};
use state_manager::store::Store;
use time::OffsetDateTime;

use super::{Row, ms, objects, window};

/// Commits per second of the steady load (a busy supervisor emits far fewer events).
const RATE: u32 = 50;

pub fn event(n: u64) -> Event {
    Event {
        at: OffsetDateTime::now_utc(),
        process: format!("web-{}", n % 16),
        from: StateName::Starting,
        to: StateName::Running,
        pid: Some(1000 + (n % 30000) as u32),
        exit: None,
        reason: Some(format!("started by the API (request {n})")),
    }
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

pub async fn throughput_rows(backends: &[(&'static str, StorageConfig)]) -> Vec<Row> {
    let mut rows = Vec::new();
    let length = window().min(Duration::from_secs(10));
    for batch in [1usize, 100] {
        // Off runs before and after the others; their mean is the baseline (fsync-bound rates
        // drift on a shared machine).
        let first = throughput(None, batch, length).await;
        let mut on_rates = Vec::new();
        for (_, storage) in backends {
            on_rates.push(throughput(Some(storage), batch, length).await);
        }
        let off = (first + throughput(None, batch, length).await) / 2.0;
        rows.push(Row {
            what: format!("write throughput, {batch} event(s) per commit, replication off"),
            backend: "-",
            value: format!("{off:.0} events/s"),
        });
        for ((name, _), on) in backends.iter().zip(on_rates) {
            eprintln!("throughput batch {batch} on {name}: off {off:.0}/s, on {on:.0}/s");
            rows.push(Row {
                what: format!(
                    "write throughput, {batch} event(s) per commit, replication on (1 s)"
                ),
                backend: name,
                value: format!(
                    "{on:.0} events/s ({:+.1}% vs off)",
                    (on / off - 1.0) * 100.0
                ),
            });
        }
    }
    rows
}

/// Events per second committed back to back for `length`.
async fn throughput(storage: Option<&StorageConfig>, batch: usize, length: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Duration::from_secs(1));
    cfg.enabled = storage.is_some();
    let local = super::local_storage(dir.path(), "unused");
    let (store, rep) = open(&dir.path().join("s.db"), storage.unwrap_or(&local), &cfg).await;
    if let Some(rep) = &rep {
        rep.sync_now().await.unwrap();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < length {
        let events: Vec<Event> = (0..batch as u64).map(|i| event(n + i)).collect();
        store.insert_events(&events).await.unwrap();
        n += batch as u64;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    if let Some(rep) = rep {
        rep.shutdown().await.unwrap();
    }
    rate
}
