//! What sampling CPU and memory costs (issue target: 1,000 processes every 5 s ≤ 1 % of a core).
//!
//! - one sample of 1,000 process groups (`Sampler::sample`, as the supervisor runs it on a
//!   blocking thread): CPU time of the sampling thread (user + system, so the kernel's work of
//!   producing each `/proc/<pid>/stat` counts), median and worst of 30 samples, and that median
//!   as a share of one core at the default 5 s interval;
//! - the same with 100 groups and with 3,000 groups, to show how the cost grows;
//! - the real binary supervising 1,000 `sleep`s: its own CPU time over 60 s with
//!   `--usage-interval 5s` against `--usage-interval 0s` (sampling off), so the figure includes
//!   the actor's list and the publishing of each sample.
//!
//! Run: `cargo bench --bench usage` (builds the release binary first).

#[allow(dead_code)] // each benchmark reads part of it
#[path = "common/server.rs"]
mod server;
use server::{Server, release_binary};

use std::time::{Duration, Instant};

use state_manager::proc::{self, SpawnRequest, Stdio3, child_env, signal_group};
use state_manager::supervisor::usage::Sampler;

const INTERVAL: Duration = Duration::from_secs(5);

fn main() {
    let bin = release_binary();
    println!("| figure | value | target |");
    println!("|---|---|---|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [100, 1000, 3000] {
        let children = rt.block_on(spawn_sleepers(n));
        let leaders: Vec<(String, u32)> = children
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("p-{i}"), c.pid))
            .collect();
        let known: Vec<String> = leaders.iter().map(|l| l.0.clone()).collect();
        let (median, worst, seen) = sample_cost(&leaders, &known, 30);
        assert_eq!(seen, n, "every group found");
        let share = median.as_secs_f64() / INTERVAL.as_secs_f64() * 100.0;
        let target = if n == 1000 { "≤ 1 % of a core" } else { "" };
        println!(
            "| one sample of {n} groups: CPU median / worst | {:.2} ms / {:.2} ms | |",
            ms(median),
            ms(worst)
        );
        println!("| {n} groups every 5 s | {share:.3} % of a core | {target} |");
        for c in &children {
            let _ = signal_group(c.pid, nix::sys::signal::Signal::SIGKILL);
        }
        rt.block_on(async {
            for c in children {
                let _ = c.exit.await;
            }
        });
    }
    let on = server_cpu(&bin, "5s");
    let off = server_cpu(&bin, "0s");
    let window = 60.0;
    println!(
        "| real server, 1,000 `sleep`s, 60 s: CPU with sampling every 5 s / off | {:.3} s / {:.3} s | |",
        on, off
    );
    println!(
        "| … the difference, as a share of a core | {:.3} % | ≤ 1 % |",
        (on - off).max(0.0) / window * 100.0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn spawn_sleepers(n: usize) -> Vec<proc::Child> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let child = proc::spawn(SpawnRequest {
            argv: vec!["sleep".into(), "1000".into()],
            env: child_env([]),
            cwd: None,
            stdio: Stdio3::Capture,
            die_with_parent: true,
            credentials: None,
        })
        .await
        .unwrap();
        out.push(child);
    }
    out
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Median and worst CPU time of `rounds` samples, and how many groups the last one found.
fn sample_cost(
    leaders: &[(String, u32)],
    known: &[String],
    rounds: usize,
) -> (Duration, Duration, usize) {
    let mut s = Sampler::new();
    s.sample(leaders, known); // warm: buffers and the table of members
    let mut costs = Vec::with_capacity(rounds);
    let mut seen = 0;
    for _ in 0..rounds {
        let start = thread_cpu();
        let table = s.sample(leaders, known);
        costs.push(thread_cpu() - start);
        seen = table.live.len();
    }
    costs.sort();
    (costs[rounds / 2], costs[rounds - 1], seen)
}

/// CPU seconds (user + system) the real server spends over 60 s supervising 1,000 `sleep`s,
/// once they all run, sampling every `interval`.
fn server_cpu(bin: &str, interval: &str) -> f64 {
    let stacks = r#"{"name": "s", "command": "sleep", "args": ["100000"], "instances": 1000, "stop_timeout": "2s"}"#;
    // SAFETY: the benchmark is single-threaded here; the child reads its environment at start.
    unsafe { std::env::set_var("STATE_MANAGER_USAGE_INTERVAL", interval) };
    let server = Server::start(bin, stacks);
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.children() < 1000 {
        assert!(Instant::now() < deadline, "1,000 children did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let start-up settle, then measure a whole number of intervals.
    std::thread::sleep(Duration::from_secs(5));
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(60));
    let ticks = server.cpu_ticks() - before;
    drop(server);
    // SAFETY: sysconf only reads a configuration value.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}
