//! Lease figures for this build, on the local backend and on S3 (a moto server on loopback):
//!
//! - acquire (read + conditional write, taking over a released lease), renew (one conditional
//!   write), release: p50 and p99 over 100 operations;
//! - planned handoff: `release()` on the owner → the standby's `Acquired` event, poll interval
//!   1 s (a standby looks every 0.5–1 s), over 5 handoffs [≤ one poll interval];
//! - unplanned failover, TTL 10 s, clock_skew 1 s: the owner's task stops renewing (as if
//!   killed) → the standby owns, over 3 failovers [≤ TTL + one poll interval].
//!
//! Run: `MOTO_SERVER=/path/to/moto_server cargo bench --bench lease` (about two minutes).

#[allow(dead_code)]
#[path = "../tests/common/moto.rs"]
mod moto;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use state_manager::config::{Dur, LeaseConfig, StorageConfig};
use state_manager::lease::{Lease, LeaseEventKind, Leaser, Role, SystemClock, Timing};
use state_manager::objstore::{self, DynStore};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | figure | value | target |");
    println!("|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let local = StorageConfig {
        endpoint: Some(format!("file://{}", dir.path().display())),
        key_prefix: Some("bench".into()),
        ..StorageConfig::default()
    };
    rt.block_on(run("local", &local));
    let server = moto::MotoServer::start();
    server.create_bucket("bench");
    rt.block_on(run("s3 (moto)", &server.storage_config("bench", "bench")));
}

async fn run(backend: &str, storage: &StorageConfig) {
    let open = || async {
        objstore::open(Some(storage), Path::new("/nonexistent"))
            .await
            .unwrap()
    };
    let (acq, renew, rel) = operations(open().await).await;
    for (name, samples) in [("acquire", acq), ("renew", renew), ("release", rel)] {
        let (p50, p99) = percentiles(samples);
        println!("| {backend} | {name} p50 / p99 | {p50:.2} / {p99:.2} ms | |");
    }
    let cfg = config(5000, 500, 1000);
    let handoffs = handoff(open().await, open().await, &cfg, 5).await;
    let (mean, max) = mean_max(&handoffs);
    println!(
        "| {backend} | release → successor owns (poll 1 s), mean / max of 5 | {mean:.2} / {max:.2} s | ≤ 1 s + requests |"
    );
    let cfg = config(10_000, 1000, 1000);
    let failovers = failover(open().await, open().await, &cfg, 3).await;
    let (mean, max) = mean_max(&failovers);
    println!(
        "| {backend} | holder stops → standby owns (TTL 10 s, skew 1 s, poll 1 s), mean / max of 3 | {mean:.2} / {max:.2} s | ≤ 11 s |"
    );
}

fn config(ttl_ms: u64, skew_ms: u64, poll_ms: u64) -> LeaseConfig {
    LeaseConfig {
        ttl: Dur::millis(ttl_ms),
        clock_skew: Dur::millis(skew_ms),
        poll_interval: Dur::millis(poll_ms),
        auto_acquire: true,
    }
}

/// Milliseconds of 100 acquire / renew / release cycles.
async fn operations(store: DynStore) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let timing = Timing::new(&config(30_000, 2000, 2000)).unwrap();
    let mut lease = Lease::new(store, "bench-node".into(), Arc::new(SystemClock), timing);
    let (mut a, mut r, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..100 {
        let t = Instant::now();
        let held = lease.acquire(None).await.unwrap();
        a.push(ms(t));
        let t = Instant::now();
        let held = lease.renew(&held).await.unwrap();
        r.push(ms(t));
        let t = Instant::now();
        lease.release(&held).await.unwrap();
        l.push(ms(t));
    }
    (a, r, l)
}

/// Seconds from `release()` on the owner to a standby's acquisition, `rounds` times; each
/// round's standby (a fresh node that takes the lease on its own) is the next round's owner.
async fn handoff(s1: DynStore, s2: DynStore, cfg: &LeaseConfig, rounds: usize) -> Vec<f64> {
    let stores = [s1, s2];
    let mut owner = Leaser::new(stores[0].clone(), "node-0".into(), cfg)
        .spawn()
        .unwrap();
    wait_owner(std::slice::from_ref(&owner)).await;
    let mut out = Vec::new();
    for round in 1..=rounds {
        let standby = Leaser::new(stores[round % 2].clone(), format!("node-{round}"), cfg);
        let mut ev = standby.subscribe();
        let standby = standby.spawn().unwrap();
        while !matches!(standby.role(), Role::Standby { lease: Some(_) }) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        owner.release().await.unwrap();
        loop {
            let e = ev.recv().await.unwrap();
            if matches!(e.kind, LeaseEventKind::Acquired { .. }) {
                break;
            }
        }
        out.push(t.elapsed().as_secs_f64());
        owner.stop(false).await.unwrap();
        owner = standby;
    }
    owner.stop(true).await.unwrap();
    out
}

/// Seconds from the owner's task stopping (no release) to the standby owning, `rounds` times.
async fn failover(s1: DynStore, s2: DynStore, cfg: &LeaseConfig, rounds: usize) -> Vec<f64> {
    let stores = [s1, s2];
    let mut out = Vec::new();
    for round in 0..rounds {
        let names = [format!("owner-{round}"), format!("standby-{round}")];
        let owner = Leaser::new(stores[0].clone(), names[0].clone(), cfg)
            .spawn()
            .unwrap();
        wait_owner(std::slice::from_ref(&owner)).await;
        let standby = Leaser::new(stores[1].clone(), names[1].clone(), cfg);
        let mut ev = standby.subscribe();
        let standby = standby.spawn().unwrap();
        // Stop at a random point of the renewal cycle.
        tokio::time::sleep(Duration::from_millis(rand::random_range(500..3300))).await;
        owner.stop(false).await.unwrap();
        let t = Instant::now();
        loop {
            let e = ev.recv().await.unwrap();
            if matches!(e.kind, LeaseEventKind::Acquired { .. }) {
                break;
            }
        }
        out.push(t.elapsed().as_secs_f64());
        standby.stop(true).await.unwrap();
    }
    out
}

async fn wait_owner(nodes: &[state_manager::lease::LeaseHandle]) -> usize {
    loop {
        if let Some(i) = nodes.iter().position(|n| n.role().is_owner()) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn mean_max(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v.iter().cloned().fold(0.0, f64::max))
}
