//! Supervisor figures for this build (issue targets in brackets):
//!
//! - crash → new pid running, restart_delay 0, over 200 crashes: p50, p99 [p50 < 5 ms]
//! - start 1,000 `sleep` processes: time until all run [< 2 s], supervisor RSS then [< 50 MB]
//! - stop 100 processes that ignore SIGTERM, stop_timeout 2 s [≈ 2 s: in parallel]
//! - idle RSS with 10 processes [< 15 MB]
//!
//! The restart figure is measured in-process from `kill(SIGKILL)` to the `running` event of the
//! new pid, so it is the supervisor's own overhead (reap + decide + spawn), not a shell's start-up.
//! The others run the real binary (`target/release/state-manager`) so that RSS is the
//! supervisor's alone. Run: `cargo bench --bench supervisor` (builds the release binary first).

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
    println!("| figure | value | target |");
    println!("|---|---|---|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (p50, p99) = rt.block_on(restart_overhead(200));
    println!("| crash → new pid running, p50 | {p50:.2} ms | < 5 ms |");
    println!("| crash → new pid running, p99 | {p99:.2} ms | |");
    let (t, rss) = start_many(&bin, 1000);
    println!("| start 1,000 sleep: all running | {t:.2} s | < 2 s |");
    println!("| RSS holding 1,000 | {rss:.1} MB | < 50 MB |");
    let t = stop_stubborn(&bin, 100);
    println!("| stop 100 ignoring SIGTERM (stop_timeout 2s) | {t:.2} s | ≈ 2 s |");
    let rss = idle_rss(&bin, 10);
    println!("| idle RSS, 10 processes | {rss:.1} MB | < 15 MB |");
    if let Some((found, listed)) = coverage {
        println!(
            "| code layout: listed start-up functions found in the binary | {found} of {listed} | all (else run build/record-symbol-order.py) |"
        );
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
    rx: &mut tokio::sync::broadcast::Receiver<state_manager::events::Event>,
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
