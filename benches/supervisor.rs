//! Supervisor figures for this build, each beside its floor — what the kernel and the workload
//! cost with no supervisor at all, measured in the same run — and the goal:
//!
//! - restart gap: `sh -c 'date +%s%N >> F; exit 1'` with restart_delay 0, the gap between two
//!   timestamps over 200 restarts, p50 and p99; floor: the same command spawned (posix_spawn) and
//!   waited for in a loop by this process.
//! - crash → new pid running, in-process from `kill(SIGKILL)` to the `running` event: the
//!   supervisor's own reap + decide + spawn, without a shell's start-up.
//! - start 1,000 `sleep`: time until all have exec'd; floor: this process spawning 1,000 into their
//!   own process groups until all have exec'd. The supervisor's RSS then.
//! - stop 100 processes that ignore SIGTERM, stop_timeout 2 s; floor: the 2 s timeout itself.
//! - idle RSS with 10 processes.
//!
//! Everything but the in-process figure runs the real binary (`target/release/state-manager`),
//! so RSS is the supervisor's alone. Run: `cargo bench --bench supervisor` (builds the release
//! binary first). The peers' figures come from `../shared/peer-bench/bench.py` (docs/BENCHMARKS.md).

#[allow(dead_code)] // each benchmark reads part of it
#[path = "common/server.rs"]
mod server;
use server::{Server, release_binary};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::config;
use state_manager::events::StateName;
use state_manager::supervisor::{self, Options};

fn main() {
    let bin = release_binary();
    // Before the in-process supervisor below starts reaping every child of this process.
    let coverage = layout_coverage(&bin);
    // The floors first, while this process has no supervisor reaping its children.
    let floor_gaps = floor::restart_gaps(300);
    let floor_start = floor::start(1000);
    let gaps = restart_gaps(&bin, 200);
    println!("| figure | value | floor | value ÷ floor (above the floor) | goal |");
    println!("|---|---|---|---|---|");
    for (q, name, goal) in [(0.50, "p50", "≤ floor + 1.9 ms"), (0.99, "p99", "")] {
        let (v, f) = (percentile(&gaps, q), percentile(&floor_gaps, q));
        println!(
            "| restart gap `sh -c 'date >> F; exit 1'`, {name} | {v:.2} ms | {f:.2} ms | {:.2}× (+{:.2} ms) | {goal} |",
            v / f,
            v - f
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (p50, p99) = rt.block_on(restart_overhead(200));
    println!("| crash → new pid running (in-process), p50 | {p50:.2} ms | | | < 5 ms |");
    println!("| crash → new pid running (in-process), p99 | {p99:.2} ms | | | |");
    let (t, rss) = start_many(&bin, 1000);
    println!(
        "| start 1,000 sleep: all running | {t:.2} s | {floor_start:.2} s | {:.2}× (+{:.2} s) | ≤ 1.5× |",
        t / floor_start,
        t - floor_start
    );
    println!("| RSS holding 1,000 | {rss:.1} MB | | | ≤ 23 MB |");
    let t = stop_stubborn(&bin, 100);
    println!(
        "| stop 100 ignoring SIGTERM (stop_timeout 2s) | {t:.2} s | 2.00 s | {:.2}× (+{:.2} s) | ≤ 2.05 s |",
        t / 2.0,
        t - 2.0
    );
    let rss = idle_rss(&bin, 10);
    println!("| idle RSS, 10 processes | {rss:.1} MB | | | ≤ Horust (5.3 MB) |");
    if let Some((found, listed)) = coverage {
        println!(
            "| code layout: listed start-up functions found in the binary | {found} of {listed} | | | all (else run build/record-symbol-order.py) |"
        );
    }
}

/// The restart workload of `../shared/peer-bench` under the real binary: sorted gaps (ms)
/// between consecutive timestamps of `n` restarts.
fn restart_gaps(bin: &str, n: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stamps");
    let _s = Server::start(
        bin,
        &format!(
            r#"{{"name": "r", "command": "sh", "args": ["-c", "date +%s%N >> {}; exit 1"], "restart_delay": "0s"}}"#,
            file.display()
        ),
    );
    let stamps = || floor::stamps(&file);
    assert!(
        poll_until(Duration::from_secs(60), || stamps().len() > n),
        "fewer than {n} restarts in 60 s"
    );
    floor::sorted_gaps(&stamps()[..=n])
}

/// What the kernel and the workload cost with no supervisor: this process spawning the same
/// commands (std's `Command` uses posix_spawn for these) and waiting for them.
mod floor {
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Sorted gaps (ms) between the timestamps of `n` runs of the restart workload, each
    /// spawned as soon as the one before was reaped.
    pub fn restart_gaps(n: usize) -> Vec<f64> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stamps");
        let script = format!("date +%s%N >> {}; exit 1", file.display());
        for _ in 0..n {
            let status = Command::new("sh").args(["-c", &script]).status().unwrap();
            assert_eq!(status.code(), Some(1));
        }
        sorted_gaps(&stamps(&file))
    }

    /// Seconds until `n` `sleep 100000`, each in its own process group, have all exec'd.
    pub fn start(n: usize) -> f64 {
        let t = Instant::now();
        let mut children: Vec<_> = (0..n)
            .map(|_| {
                Command::new("sleep")
                    .arg("100000")
                    .process_group(0)
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in &children {
            let comm = format!("/proc/{}/comm", c.id());
            let exec_d = || std::fs::read_to_string(&comm).is_ok_and(|s| s.trim() == "sleep");
            assert!(super::poll_until(Duration::from_secs(60), exec_d));
        }
        let elapsed = t.elapsed().as_secs_f64();
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        elapsed
    }

    /// The nanosecond timestamps written so far (a last, partly written line is left out).
    pub fn stamps(file: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let whole = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
        whole.lines().filter_map(|l| l.parse().ok()).collect()
    }

    pub fn sorted_gaps(stamps: &[u64]) -> Vec<f64> {
        let mut gaps: Vec<f64> = stamps
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]) as f64 / 1e6)
            .collect();
        gaps.sort_by(f64::total_cmp);
        gaps
    }
}

/// How many functions of `build/symbol-order.txt` the binary has, as counted by
/// `build/record-symbol-order.py --check`: the idle RSS above depends on them (a dependency or
/// toolchain update renames some). `None` without python3 or nm.
fn layout_coverage(bin: &str) -> Option<(usize, usize)> {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/build/record-symbol-order.py"
        ))
        .args(["--check", "--binary", bin])
        .output()
        .ok()?;
    // "<found> of <listed> listed functions are in …"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let found = words.next()?.parse().ok()?;
    let listed = words.nth(1)?.parse().ok()?;
    Some((found, listed))
}

async fn restart_overhead(crashes: usize) -> (f64, f64) {
    let c = config::parse(r#"{"stacks": [{"name": "r", "command": "sleep", "args": ["100000"], "restart_delay": "0s"}]}"#)
        .unwrap();
    let h = supervisor::start(Options {
        forward_output: false,
        ..Options::default()
    });
    let mut rx = h.subscribe();
    h.load(config::resolve(&c, Path::new("/"))).await.unwrap();
    let mut samples = Vec::with_capacity(crashes);
    let mut pid = wait_running(&mut rx).await;
    for _ in 0..crashes {
        let t = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let new = wait_running(&mut rx).await;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_ne!(new, pid);
        pid = new;
    }
    h.shutdown().await.unwrap();
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

async fn wait_running(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<state_manager::events::Event>>,
) -> u32 {
    loop {
        let e = rx.recv().await.unwrap();
        if e.to == StateName::Running {
            return e.pid.unwrap();
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn start_many(bin: &str, n: usize) -> (f64, f64) {
    let t = Instant::now();
    let s = Server::start(
        bin,
        &format!(r#"{{"name": "s", "command": "sleep", "args": ["100000"], "instances": {n}}}"#),
    );
    assert!(
        poll_until(Duration::from_secs(60), || s.children() >= n),
        "not all {n} started"
    );
    let elapsed = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    (elapsed, s.rss_mb())
}

fn stop_stubborn(bin: &str, n: usize) -> f64 {
    let mut s = Server::start(
        bin,
        &format!(
            r#"{{"name": "t", "command": "sh", "args": ["-c", "trap '' TERM; while :; do sleep 1; done"],
                "instances": {n}, "stop_timeout": "2s"}}"#
        ),
    );
    assert!(poll_until(Duration::from_secs(60), || s.children() >= n));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    kill(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM).unwrap();
    let _ = s.child.wait();
    t.elapsed().as_secs_f64()
}

fn idle_rss(bin: &str, n: usize) -> f64 {
    let s = Server::start(
        bin,
        &format!(r#"{{"name": "i", "command": "sleep", "args": ["100000"], "instances": {n}}}"#),
    );
    assert!(poll_until(Duration::from_secs(60), || s.children() >= n));
    std::thread::sleep(Duration::from_secs(5));
    s.rss_mb()
}
