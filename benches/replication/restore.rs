//! Restore time of a 100 MB state database: built locally, replicated (one snapshot plus a few
//! WAL segments), then restored to a new file.

use std::time::{Duration, Instant};

use state_manager::config::StorageConfig;
use state_manager::feed::FeedEvent;
use state_manager::replication::restore_db;
use state_manager::store::{Checkpoints, Store, StoreOptions};

use super::load::{config, event, open};
use super::{Row, objects};

const TARGET_BYTES: u64 = 100 << 20;
const WORDS: [&str; 16] = [
    "started",
    "stopped",
    "crashed",
    "exit",
    "code",
    "signal",
    "restarting",
    "in",
    "backoff",
    "probe",
    "failed",
    "ready",
    "by",
    "API",
    "request",
    "after",
];

pub async fn rows(backends: &[(&'static str, StorageConfig)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, storage) in backends {
        let (db_bytes, stored, took) = restore_100mb(storage).await;
        eprintln!("restore on {name}: {db_bytes} bytes from {stored} stored in {took:?}");
        rows.push(Row {
            what: format!(
                "restore a {:.0} MB database ({:.0} MB stored)",
                db_bytes as f64 / 1e6,
                stored as f64 / 1e6
            ),
            backend: name,
            value: format!("{:.2} s", took.as_secs_f64()),
        });
    }
    rows
}

/// Returns (database size, bytes stored for it, restore time).
async fn restore_100mb(storage: &StorageConfig) -> (u64, u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    fill(&db).await;
    let (store, rep) = open(&db, storage, &config(Duration::from_secs(1))).await;
    let rep = rep.unwrap();
    rep.sync_now().await.unwrap();
    for k in 0..10u64 {
        let batch: Vec<FeedEvent> = (0..100).map(|i| event(k * 100 + i)).collect();
        store.insert_events(&batch).await.unwrap();
    }
    rep.shutdown().await.unwrap();
    store.close().await.unwrap();
    let stored: u64 = objects(storage)
        .await
        .list("db/")
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum();

    let to = dir.path().join("restored.db");
    let start = Instant::now();
    let info = restore_db(&objects(storage).await, &to, None)
        .await
        .unwrap();
    (info.bytes, stored, start.elapsed())
}

/// Events with varied text until the file holds about 100 MB.
async fn fill(db: &std::path::Path) {
    let options = StoreOptions {
        checkpoints: Checkpoints::Auto,
    };
    let store = Store::open_with(db, options).await.unwrap();
    let mut n = 0u64;
    while std::fs::metadata(db).map(|m| m.len()).unwrap_or(0) < TARGET_BYTES {
        let batch: Vec<FeedEvent> = (0..5000)
            .map(|_| {
                n += 1;
                let mut e = event(n);
                if let FeedEvent::Process(p) = &mut e {
                    p.reason = Some(sentence(n));
                }
                e
            })
            .collect();
        store.insert_events(&batch).await.unwrap();
    }
    store.close().await.unwrap();
}

fn sentence(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = String::with_capacity(400);
    while s.len() < 360 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(' ');
        s.push_str(&(x % 100_000).to_string());
        s.push(' ');
    }
    s
}
