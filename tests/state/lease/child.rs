//! A lease holder in a separate process, so that tests can kill it with SIGKILL or freeze it
//! with SIGSTOP like a crashed or stalled node. The parent re-runs this test binary with
//! `LEASE_CHILD` set (storage, lease settings and node id as JSON); the child reports on stdout,
//! one `LEASE-CHILD <WHAT> <detail>` line per change: `ROLE` (JSON), `EVENT` (JSON), `FENCE`.
//! It exits by itself after two minutes, or when its stdout is closed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::config::{LeaseConfig, StorageConfig};
use state_manager::lease::Leaser;

use super::{Backend, PREFIX};

const ENV: &str = "LEASE_CHILD";
const TAG: &str = "LEASE-CHILD ";

/// The parent's side: a running child holder.
pub struct ChildHolder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildHolder {
    pub fn start(b: &Backend, node_id: &str, cfg: &LeaseConfig) -> ChildHolder {
        let spec =
            serde_json::json!({ "storage": b.storage(PREFIX), "lease": cfg, "node": node_id });
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lease::child_lease_holder",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(ENV, spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("re-run the test binary as a lease holder");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(l) = line.strip_prefix(TAG)
                    && tx.send(l.to_string()).is_err()
                {
                    return;
                }
            }
        });
        ChildHolder { child, lines }
    }

    /// The next report starting with `prefix` (earlier ones are skipped), without the prefix.
    pub fn wait_line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("the child holder did not report {prefix:?} within {within:?}"),
            }
        }
    }

    /// Every report from now on until `done` says the ones so far are enough.
    pub fn collect(&self, within: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => panic!("the child holder's reports stopped short: {got:#?}"),
            }
        }
        got
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal the child holder");
    }

    /// SIGKILL and reap (an ECHILD from the reap is ignored).
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for ChildHolder {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[derive(serde::Deserialize)]
struct Spec {
    storage: StorageConfig,
    lease: LeaseConfig,
    node: String,
}

fn say(what: &str, detail: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{TAG}{what} {detail}")
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// The child's side: hold the lease and report until killed.
pub fn run_if_asked() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let spec: Spec = serde_json::from_str(&spec).expect("LEASE_CHILD is the spec");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = state_manager::objstore::open(Some(&spec.storage), std::path::Path::new("/x"))
            .await
            .unwrap();
        let leaser = Leaser::new(store, spec.node, &spec.lease);
        let mut events = leaser.subscribe();
        let handle = leaser.spawn().unwrap();
        let mut role = handle.watch();
        let fence = handle.fence();
        let mut last_fence = String::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let end = tokio::time::sleep(Duration::from_secs(120));
        tokio::pin!(end);
        say(
            "ROLE",
            serde_json::to_string(&*role.borrow_and_update()).unwrap(),
        );
        loop {
            tokio::select! {
                _ = &mut end => std::process::exit(0),
                Ok(()) = role.changed() => {
                    say("ROLE", serde_json::to_string(&*role.borrow_and_update()).unwrap());
                }
                Ok(e) = events.recv() => say("EVENT", serde_json::to_string(&e).unwrap()),
                _ = tick.tick() => {
                    let now = match fence.check() {
                        Ok(epoch) => format!("ok {epoch}"),
                        Err(e) => format!("refused {e}"),
                    };
                    if now != last_fence {
                        say("FENCE", &now);
                        last_fence = now;
                    }
                }
            }
        }
    });
}
