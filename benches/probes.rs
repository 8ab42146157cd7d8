//! Probe and port figures for this build (issue targets in brackets):
//!
//! - supervisor CPU with 200 processes, each with a liveness probe every second, over a window
//!   (default 20 s, `PROBE_BENCH_SECS`): tcp probes and exec probes (`true`), against the same 200
//!   processes with no probes [< 5 % of one core]
//! - a managed port held by a stray: time from the holder's discovery to the port being free
//!   (SIGTERM to its group, polling /proc/net/tcp), and the /proc scan that finds the holder
//!
//! CPU is the real binary's (`target/release/state-manager`, utime + stime from
//! `/proc/<pid>/stat`), so the probe targets (200 listeners in this process) and the probe
//! commands themselves are not counted; forking them is. Run: `cargo bench --bench probes`.

#[allow(dead_code)] // each benchmark reads part of it
#[path = "common/server.rs"]
mod server;
use server::{Server, release_binary};

use std::process::Command;
use std::time::{Duration, Instant};

use state_manager::ports;

const N: usize = 200;

fn main() {
    let bin = release_binary();
    let secs: u64 = std::env::var("PROBE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listen_ports = rt.block_on(listeners(N));
    println!("| figure | value | target |");
    println!("|---|---|---|");
    let window = Duration::from_secs(secs);
    let idle = cpu(&bin, &stacks(&listen_ports, Probe::None), window);
    println!("| CPU, {N} processes, no probes ({secs} s) | {idle:.2} % | |");
    let tcp = cpu(&bin, &stacks(&listen_ports, Probe::Tcp), window);
    println!("| CPU, {N} processes, tcp liveness every 1 s | {tcp:.2} % | < 5 % |");
    let exec = cpu(&bin, &stacks(&listen_ports, Probe::Exec), window);
    println!("| CPU, {N} processes, exec liveness (`true`) every 1 s | {exec:.2} % | < 5 % |");
    let (scan, free_p50, free_max) = rt.block_on(reclaim(20));
    println!("| find a port's holder (/proc scan), p50 | {scan:.2} ms | |");
    println!("| holder found → port free, p50 | {free_p50:.2} ms | |");
    println!("| holder found → port free, max of 20 | {free_max:.2} ms | |");
}

/// `n` listeners on 127.0.0.1 that accept and close, for the tcp probes.
async fn listeners(n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        out.push(l.local_addr().unwrap().port());
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                drop(c);
            }
        });
    }
    out
}

#[derive(Clone, Copy)]
enum Probe {
    None,
    Tcp,
    Exec,
}

fn stacks(ports: &[u16], probe: Probe) -> String {
    let entries: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let liveness = match probe {
                Probe::None => String::new(),
                Probe::Tcp => format!(r#", "liveness": {{"tcp": {port}, "period": "1s"}}"#),
                Probe::Exec => r#", "liveness": {"exec": ["true"], "period": "1s"}"#.into(),
            };
            format!(r#"{{"name": "p{i}", "command": "sleep", "args": ["100000"]{liveness}}}"#)
        })
        .collect();
    entries.join(",")
}

/// CPU of the supervisor over `window` once all processes run, in % of one core.
fn cpu(bin: &str, stacks: &str, window: Duration) -> f64 {
    let s = Server::start(bin, stacks);
    let t = Instant::now();
    while s.children() < N {
        assert!(t.elapsed() < Duration::from_secs(60), "not all {N} started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3)); // every probe task under way
    let (t0, c0) = (Instant::now(), s.cpu_ticks());
    std::thread::sleep(window);
    let (dt, dc) = (t0.elapsed().as_secs_f64(), s.cpu_ticks() - c0);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    dc as f64 / hz / dt * 100.0
}

/// Start `n` strays holding a port and free it each time: (scan p50, free p50, free max), ms.
async fn reclaim(n: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let is_ours = |_: &ports::Holder| true;
    let policy = ports::Policy {
        reclaim_foreign: false,
        is_ours: &is_ours,
        grace: Duration::from_secs(5),
    };
    let (mut scans, mut frees) = (Vec::new(), Vec::new());
    for i in 0..n {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        stray(dir.path(), port, i);
        let t = Instant::now();
        assert_eq!(ports::holders(port).unwrap().len(), 1);
        scans.push(t.elapsed().as_secs_f64() * 1000.0);
        let freed = ports::free(&[port], &policy).await.unwrap();
        frees.push(freed[0].took.as_secs_f64() * 1000.0);
    }
    scans.sort_by(f64::total_cmp);
    frees.sort_by(f64::total_cmp);
    (scans[n / 2], frees[n / 2], frees[n - 1])
}

/// A python listener on `port` leading its own group, not our child; waits until it listens.
fn stray(dir: &std::path::Path, port: u16, i: usize) {
    let script = "import os,socket,sys,time\nos.setpgrp()\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(8)\ntime.sleep(1000)\n";
    let _ = Command::new("sh")
        .args([
            "-c",
            r#"python3 -c "$1" "$2" </dev/null >/dev/null 2>&1 &"#,
            "sh",
            script,
        ])
        .arg(port.to_string())
        .current_dir(dir)
        .status();
    let t = Instant::now();
    while !ports::in_use(port).unwrap() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stray {i} never listened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
