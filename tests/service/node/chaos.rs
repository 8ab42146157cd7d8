//! Three real nodes (binaries) on one environment, each running a writer that appends
//! `<node> <epoch> <unix ns>` to one shared file every 50 ms, while the owner is SIGSTOPped for
//! 2–15 s, killed with SIGKILL (and started again), made to release the lease, or cut off from
//! storage for 2–15 s, at random for `CHAOS_SECONDS` (default 180) seconds. The file must never
//! show two tenures writing in overlapping windows; the longest time with no writer is
//! reported. The seed is printed (`CHAOS_SEED` repeats a run).
//!
//! The cuts are real. On S3 each node runs in a network namespace of its own, linked to this
//! one by a veth pair, and the cut takes the link down: a partition. On the local backend each
//! node runs in a mount namespace of its own, and the cut mounts the storage directory
//! read-only there, as a disk remounted read-only after an error. Both need root (and iproute2
//! for `ip netns`); `CHAOS_PARTITION=0` runs without the cuts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::node::Node;
use crate::common::wait_for_async;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn writer(node: &str, file: &Path) -> Value {
    json!({"name": "writer", "command": "sh", "env": {"NODE": node, "OUT": file},
           "args": ["-c", "while :; do echo \"$NODE $STATE_MANAGER_LEASE_EPOCH $(date +%s%N)\" >> \"$OUT\"; sleep 0.05; done"]})
}

/// What the chaos does to the owner.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Stop,
    Kill,
    Release,
    Partition,
}

/// How a node is cut off from storage.
enum Cut {
    /// It runs in a network namespace of its own.
    Net(Netns),
    /// It runs in a mount namespace of its own (`unshare -m`), where the cut mounts `objects`
    /// (the local backend's directory) read-only over itself.
    Mount { objects: PathBuf },
}

/// A node's own network namespace, linked to the test's by a veth pair: the node listens on
/// `inner`, and reaches the S3 server through `outer` (this side's end). Removed on drop.
struct Netns {
    name: String,
    link: String,
    outer: Ipv4Addr,
    inner: Ipv4Addr,
}

/// `ip ARGS`; its stderr on failure.
async fn ip(args: &[&str]) -> Result<(), String> {
    let mut argv = vec!["ip"];
    argv.extend(args);
    run(&argv).await
}

/// Run `argv` through the crate's own runner (a concurrent test's supervisor reaps every child
/// of this process, and `proc::run` is the one place that knows); its stderr on failure.
async fn run(argv: &[&str]) -> Result<(), String> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let out = state_manager::proc::run(
        &argv,
        state_manager::proc::RunOptions {
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    match out.status {
        state_manager::events::ExitStatus::Code(0) => Ok(()),
        s => Err(format!("{}: {s:?}: {}", argv.join(" "), out.stderr.trim())),
    }
}

impl Netns {
    /// Namespace `i` of this test process, on 10.X.i.0/30 (X from the pid, so that two test
    /// processes do not share a subnet).
    async fn create(i: u8) -> Netns {
        let pid = std::process::id();
        let tag = format!("smc{}", pid % 100_000);
        let net = [10, 100 + (pid % 150) as u8, i, 0];
        let ns = Netns {
            name: format!("{tag}n{i}"),
            link: format!("{tag}h{i}"),
            outer: Ipv4Addr::new(net[0], net[1], net[2], 1),
            inner: Ipv4Addr::new(net[0], net[1], net[2], 2),
        };
        let peer = format!("{tag}p{i}");
        let (outer, inner) = (format!("{}/30", ns.outer), format!("{}/30", ns.inner));
        let steps: [&[&str]; 8] = [
            &["netns", "add", &ns.name],
            &[
                "link", "add", &ns.link, "type", "veth", "peer", "name", &peer,
            ],
            &["link", "set", &peer, "netns", &ns.name],
            &["addr", "add", &outer, "dev", &ns.link],
            &["link", "set", &ns.link, "up"],
            &["-n", &ns.name, "addr", "add", &inner, "dev", &peer],
            &["-n", &ns.name, "link", "set", &peer, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step).await {
                panic!(
                    "the partition case needs root and iproute2 (`ip netns`): {e}; \
                     CHAOS_PARTITION=0 runs the chaos without it"
                );
            }
        }
        ns
    }

    /// Take the link down (`up: false`: the node reaches nothing) or bring it back.
    async fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.link, state]).await.unwrap();
    }
}

impl Cut {
    /// Cut the node with server pid `pid` off (`off: true`) or undo it.
    async fn set(&self, pid: u32, off: bool) {
        match self {
            Cut::Net(net) => net.set_link(!off).await,
            Cut::Mount { objects } => {
                let (pid, dir) = (pid.to_string(), objects.to_str().unwrap());
                let script = if off {
                    format!(
                        "mount --bind '{dir}' '{dir}' && mount -o remount,bind,ro '{dir}' '{dir}'"
                    )
                } else {
                    format!("umount '{dir}'")
                };
                run(&["nsenter", "-t", &pid, "-m", "--", "sh", "-c", &script])
                    .await
                    .unwrap();
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of the pair deletes both. The statuses are not needed (and may be
        // reaped by a concurrent test's supervisor).
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

struct Member {
    name: &'static str,
    dir: PathBuf,
    config: Value,
    cut: Option<Cut>,
    node: Option<Node>,
}

impl Member {
    async fn start(&self) -> Node {
        let (dir, cfg) = (&self.dir, &self.config);
        match &self.cut {
            Some(Cut::Net(n)) => {
                Node::spawn_binary_via(&["ip", "netns", "exec", &n.name], n.inner, dir, cfg).await
            }
            Some(Cut::Mount { .. }) => {
                let unshare = ["unshare", "-m", "--propagation", "private"];
                Node::spawn_binary_via(&unshare, Ipv4Addr::LOCALHOST, dir, cfg).await
            }
            None => Node::spawn_binary(dir, cfg).await,
        }
    }

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

/// Wait (up to 30 s, else panic) for an owner with an epoch above `before`.
async fn epoch_after(members: &[Member], before: u64, what: &str) {
    wait_for_async(what, Duration::from_secs(30), || async {
        for m in members {
            if let Some(s) = m.status().await
                && s["role"] == "owner"
                && s["lease"]["epoch"].as_u64().is_some_and(|e| e > before)
            {
                return Some(());
            }
        }
        None
    })
    .await
}

fn env_seconds() -> u64 {
    std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

/// The chaos on `b` (local, or an S3 server listening on every address), the owner cut off from
/// storage at random too unless `CHAOS_PARTITION=0`.
pub async fn three_nodes_never_run_the_environment_at_once(b: &Backend) {
    let partitions = std::env::var("CHAOS_PARTITION").as_deref() != Ok("0");
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("writers");
    let mut members = Vec::new();
    for (i, name) in (1..).zip(NODES) {
        let dir = tmp.path().join(name);
        let mut cfg = config(b, &dir, vec![writer(name, &file)]);
        cfg["node_id"] = json!(name);
        let cut = match (partitions, b) {
            (false, _) => None,
            (true, Backend::Moto(moto)) => {
                let net = Netns::create(i).await;
                cfg["storage"]["endpoint"] = json!(format!("http://{}:{}", net.outer, moto.port()));
                Some(Cut::Net(net))
            }
            (true, Backend::Local(objects)) => Some(Cut::Mount {
                objects: objects.path().join("objects"),
            }),
            (true, Backend::S3s(_)) => panic!("the chaos runs on the local backend and moto"),
        };
        let mut m = Member {
            name,
            dir,
            config: cfg,
            cut,
            node: None,
        };
        m.node = Some(m.start().await);
        members.push(m);
    }
    let mut kinds = vec![Action::Stop, Action::Kill, Action::Release];
    if partitions {
        kinds.push(Action::Partition);
    }
    // Every kind once in a random order first, then at random: each is sure to happen.
    let mut first = kinds.clone();
    rand::seq::SliceRandom::shuffle(&mut first[..], &mut rng);
    let seconds = env_seconds();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut done: Vec<Action> = Vec::new();
    while Instant::now() < end {
        let Some(i) = owner(&members).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let action = match first.get(done.len()) {
            Some(a) => *a,
            None => kinds[rng.random_range(0..kinds.len())],
        };
        done.push(action);
        let m = &mut members[i];
        match action {
            Action::Stop => {
                let pause = Duration::from_millis(rng.random_range(2000..=15000));
                eprintln!("chaos: SIGSTOP {} for {pause:?}", m.name);
                let pid = Pid::from_raw(m.node.as_ref().unwrap().pid().unwrap() as i32);
                kill(pid, Signal::SIGSTOP).unwrap();
                tokio::time::sleep(pause).await;
                kill(pid, Signal::SIGCONT).unwrap();
            }
            Action::Kill => {
                eprintln!("chaos: kill -9 {} and start it again", m.name);
                m.node.as_mut().unwrap().kill();
                drop(m.node.take());
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..3000))).await;
                m.node = Some(m.start().await);
            }
            Action::Partition => {
                let cut = Duration::from_millis(rng.random_range(2000..=15000));
                eprintln!("chaos: cut {} off for {cut:?}", m.name);
                let before = m.status().await.and_then(|s| s["lease"]["epoch"].as_u64());
                let (how, pid) = (
                    m.cut.as_ref().unwrap(),
                    m.node.as_ref().unwrap().pid().unwrap(),
                );
                how.set(pid, true).await;
                tokio::time::sleep(cut).await;
                how.set(pid, false).await;
                // Longer than ttl + skew + a poll: a standby must have taken the lease (the
                // cut was real).
                if let Some(before) = before
                    && cut > Duration::from_secs(7)
                {
                    let what = format!("the lease to move past epoch {before} after a {cut:?} cut");
                    epoch_after(&members, before, &what).await;
                }
            }
            Action::Release => {
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
    let count = |k: Action| done.iter().filter(|a| **a == k).count();
    eprintln!(
        "chaos ({backend}): {} SIGSTOP, {} kill -9, {} release, {} cut",
        count(Action::Stop),
        count(Action::Kill),
        count(Action::Release),
        count(Action::Partition)
    );
    // A full run is long enough for every kind (each takes at most ~35 s with its waits).
    if seconds >= 150 {
        for k in &kinds {
            assert!(count(*k) > 0, "no {k:?} in {done:?}");
        }
    }
    check(backend, &file, done.len());
}

/// Every tenure's lines (node, epoch) in one window, the windows in epoch order and apart.
fn check(backend: &str, file: &Path, actions: usize) {
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
