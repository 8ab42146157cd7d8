//! Replication figures, printed as a markdown table:
//! - commit → in-storage lag (p50, p99) under a steady write load, at the default 1 s interval
//!   and at 100 ms, on the local backend and on S3 (moto);
//! - store write throughput with replication off and on;
//! - restore time of a 100 MB database;
//! - the same lag measured from outside (by restoring) for state-manager and for Litestream on
//!   the same moto server, and the storage requests each makes.
//!
//! `cargo bench --bench replication`. Environment: `MOTO_SERVER` (see tests/common/moto.rs),
//! `LITESTREAM` (path of the litestream binary; default `.venv/bin/litestream` or PATH),
//! `BENCH_SECONDS` (length of each load window, default 20), `BENCH_ONLY` (comma-separated
//! sections: lag, throughput, restore, litestream).

#[path = "replication/litestream.rs"]
mod litestream;
#[path = "replication/load.rs"]
mod load;
#[path = "../tests/common/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "replication/restore.rs"]
mod restore;

use std::time::Duration;

use moto::MotoServer;
use state_manager::config::StorageConfig;
use state_manager::objstore::{self, DynStore};

pub const BUCKET: &str = "bench";

/// One row of the result table.
pub struct Row {
    pub what: String,
    pub backend: &'static str,
    pub value: String,
}

pub fn local_storage(dir: &std::path::Path, prefix: &str) -> StorageConfig {
    StorageConfig {
        endpoint: Some(format!("file://{}", dir.join("objects").display())),
        key_prefix: Some(prefix.to_string()),
        ..StorageConfig::default()
    }
}

pub async fn objects(storage: &StorageConfig) -> DynStore {
    objstore::open(Some(storage), std::path::Path::new("/nonexistent"))
        .await
        .expect("open storage")
}

pub fn window() -> Duration {
    let secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // Where moto's request recorder (used to count requests) writes; set while this process is
    // still single-threaded, inherited by the moto child.
    unsafe { std::env::set_var("MOTO_RECORDER_FILEPATH", dir.path().join("moto_recording")) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = MotoServer::start();
    moto.create_bucket(BUCKET);
    let backends = [
        ("local", local_storage(dir.path(), "bench")),
        ("S3 (moto)", moto.storage_config(BUCKET, "bench")),
    ];
    let mut rows = Vec::new();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |section: &str| only.is_empty() || only.split(',').any(|s| s == section);
    rt.block_on(async {
        if run("lag") {
            rows.extend(load::lag_rows(&backends).await);
        }
        if run("throughput") {
            rows.extend(load::throughput_rows(&backends).await);
        }
        if run("restore") {
            rows.extend(restore::rows(&backends).await);
        }
        if run("litestream") {
            rows.extend(litestream::rows(&moto).await);
        }
    });
    println!("\n| measure | storage | result |\n|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.backend, r.value);
    }
}
