//! Three real nodes (binaries) on one environment, each running a writer that appends
//! `<node> <epoch> <unix ns>` to one shared file every 50 ms, while the owner is SIGSTOPped for
//! 2–15 s, killed with SIGKILL (and started again), or made to release the lease, at random for
//! `CHAOS_SECONDS` (default 180) seconds. The file must never show two tenures writing in
//! overlapping windows; the longest time with no writer is reported. The seed is printed
//! (`CHAOS_SEED` repeats a run).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::node::Node;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn writer(node: &str, file: &Path) -> Value {
    json!({"name": "writer", "command": "sh", "env": {"NODE": node, "OUT": file},
           "args": ["-c", "while :; do echo \"$NODE $STATE_MANAGER_LEASE_EPOCH $(date +%s%N)\" >> \"$OUT\"; sleep 0.05; done"]})
}

struct Member {
    name: &'static str,
    dir: PathBuf,
    config: Value,
    node: Option<Node>,
}

impl Member {
    async fn status(&self) -> Option<Value> {
        let n = self.node.as_ref()?;
        tokio::time::timeout(Duration::from_secs(2), n.try_get("/"))
            .await
            .ok()
            .flatten()
    }
}

async fn owner(members: &[Member]) -> Option<usize> {
    for (i, m) in members.iter().enumerate() {
        if let Some(s) = m.status().await
            && s["role"] == "owner"
        {
            return Some(i);
        }
    }
    None
}

fn env_seconds() -> u64 {
    std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

pub async fn three_nodes_never_run_the_environment_at_once(b: &Backend) {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("writers");
    let mut members = Vec::new();
    for name in NODES {
        let dir = tmp.path().join(name);
        let mut cfg = config(b, &dir, vec![writer(name, &file)]);
        cfg["node_id"] = json!(name);
        let node = Some(Node::spawn_binary(&dir, &cfg).await);
        members.push(Member {
            name,
            dir,
            config: cfg,
            node,
        });
    }
    let end = Instant::now() + Duration::from_secs(env_seconds());
    let mut actions = 0;
    while Instant::now() < end {
        let Some(i) = owner(&members).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        actions += 1;
        let m = &mut members[i];
        match rng.random_range(0..3) {
            0 => {
                let pause = Duration::from_millis(rng.random_range(2000..=15000));
                eprintln!("chaos: SIGSTOP {} for {pause:?}", m.name);
                let pid = Pid::from_raw(m.node.as_ref().unwrap().pid().unwrap() as i32);
                kill(pid, Signal::SIGSTOP).unwrap();
                tokio::time::sleep(pause).await;
                kill(pid, Signal::SIGCONT).unwrap();
            }
            1 => {
                eprintln!("chaos: kill -9 {} and start it again", m.name);
                m.node.as_mut().unwrap().kill();
                drop(m.node.take());
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..3000))).await;
                m.node = Some(Node::spawn_binary(&m.dir, &m.config).await);
            }
            _ => {
                eprintln!("chaos: {} releases the lease", m.name);
                let n = m.node.as_ref().unwrap();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    n.post("/release-lease", Some(json!({"checkpoint": false}))),
                )
                .await;
            }
        }
        // A released node waits for POST /acquire-lease: let every node take it again.
        for m in &members {
            if let Some(s) = m.status().await
                && s["role"] == "released"
            {
                let _ = m.node.as_ref().unwrap().post("/acquire-lease", None).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
    }
    for m in &mut members {
        if let Some(n) = &mut m.node {
            n.kill();
        }
    }
    let backend = match b {
        Backend::Local(_) => "local",
        Backend::Moto(_) => "moto",
        Backend::S3s(_) => "s3s-fs",
    };
    check(backend, &file, actions);
}

/// Every tenure's lines (node, epoch) in one window, the windows in epoch order and apart.
fn check(backend: &str, file: &Path, actions: u32) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<(String, u64, i128)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (node, epoch, t) = (f.next()?, f.next()?, f.next()?);
            Some((
                node.to_string(),
                epoch.parse().ok()?,
                t.trim().parse().ok()?,
            ))
        })
        .collect();
    assert!(lines.len() > 100, "too few lines: {}", lines.len());
    lines.sort_by_key(|l| l.2);
    let mut windows: Vec<((String, u64), i128, i128)> = Vec::new();
    for (node, epoch, t) in &lines {
        let key = (node.clone(), *epoch);
        match windows.iter_mut().find(|w| w.0 == key) {
            Some(w) => w.2 = *t,
            None => windows.push((key, *t, *t)),
        }
    }
    windows.sort_by_key(|w| w.1);
    for pair in windows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.2 < b.1,
            "{:?} wrote until {} ns, after {:?} began at {} ns",
            a.0,
            a.2,
            b.0,
            b.1
        );
        assert!(
            a.0.1 <= b.0.1,
            "epochs out of order: {:?} before {:?}",
            a.0,
            b.0
        );
    }
    let longest = lines.windows(2).map(|p| p[1].2 - p[0].2).max().unwrap_or(0);
    eprintln!(
        "chaos ({backend}): {actions} actions, {} lines, {} tenures, longest time with no writer {:.2} s",
        lines.len(),
        windows.len(),
        longest as f64 / 1e9
    );
}
