//! A writer in a separate OS process, so it can be killed with SIGKILL mid-write: it opens the
//! replicated database and commits one event at a time, printing `ack N` after each commit and
//! `synced N` whenever replication reports that every commit up to N is in storage.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::config::StorageConfig;
use state_manager::replication;

const DB: &str = "REPLICATION_CHILD_DB";
const STORAGE: &str = "REPLICATION_CHILD_STORAGE";
const INTERVAL_MS: &str = "REPLICATION_CHILD_INTERVAL_MS";

/// What the parent saw of the child's output.
#[derive(Default)]
pub struct Seen {
    /// (event number, when the parent read its `ack` line).
    pub acks: Vec<(u64, Instant)>,
    pub synced: Option<u64>,
}

/// The running child.
pub struct Writer {
    child: Child,
    pub seen: Arc<Mutex<Seen>>,
}

impl Writer {
    pub fn spawn(db: &Path, storage: &StorageConfig, interval: Duration) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "replication::replication_child_writer",
                "--ignored",
                "--nocapture",
            ])
            .env(DB, db)
            .env(STORAGE, serde_json::to_string(storage).unwrap())
            .env(INTERVAL_MS, interval.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let out = child.stdout.take().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut seen = sink.lock().unwrap();
                if let Some(n) = line.strip_prefix("ack ") {
                    seen.acks.push((n.parse().unwrap(), Instant::now()));
                } else if let Some(n) = line.strip_prefix("synced ") {
                    seen.synced = Some(n.parse().unwrap());
                }
            }
        });
        Writer { child, seen }
    }

    /// SIGKILL; returns when it was sent.
    pub fn kill_9(&mut self) -> Instant {
        let at = Instant::now();
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).unwrap();
        // Reaping may race nothing here, but a test must not depend on wait's result.
        let _ = self.child.wait();
        at
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The child's body, when the parent set the environment; otherwise nothing.
pub fn run_if_asked() {
    let Some(db) = std::env::var_os(DB) else {
        return;
    };
    let storage: StorageConfig = serde_json::from_str(&std::env::var(STORAGE).unwrap()).unwrap();
    let interval: u64 = std::env::var(INTERVAL_MS).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(write_forever(
        Path::new(&db),
        storage,
        Duration::from_millis(interval),
    ));
}

async fn write_forever(db: &Path, storage: StorageConfig, interval: Duration) {
    let objects = super::open_objects(&storage).await;
    let cfg = super::config(interval);
    let (store, rep) = replication::open(db, objects, &cfg, None).await.unwrap();
    let rep = rep.unwrap();
    let acked: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let report = acked.clone();
    let mut status = rep.status();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let Some(through) = status.borrow_and_update().synced_through else {
                continue;
            };
            let acked = report.lock().unwrap();
            if let Some((n, _)) = acked.iter().rev().find(|(_, at)| *at <= through) {
                println!("synced {n}");
            }
        }
    });
    for n in 1.. {
        store.insert_events(&[super::event(n)]).await.unwrap();
        acked.lock().unwrap().push((n, Instant::now()));
        println!("ack {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
