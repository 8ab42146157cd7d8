//! The real `state-manager serve` binary started for a benchmark with a list of inline stacks,
//! and what the benchmarks read of it from /proc. Stopped with SIGTERM when dropped.

use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Build the release binary (no-op when current) and return its path.
pub fn release_binary() -> String {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "state-manager"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success());
    format!(
        "{}/target/release/state-manager",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub struct Server {
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `serve` with `{"stacks": [<stacks>]}`, its data in a temporary directory, warnings only.
    pub fn start(bin: &str, stacks: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("config.json");
        std::fs::write(&conf, format!(r#"{{"stacks": [{stacks}]}}"#)).unwrap();
        let child = Command::new(bin)
            .args(["serve", "--config", conf.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env(
                "STATE_MANAGER_JWT_SECRET",
                "bench-secret-0123456789abcdef0123456789",
            )
            .env("STATE_MANAGER_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Server { child, _dir: dir }
    }

    /// Live children, over all threads (the spawner threads fork them, not the main one).
    pub fn children(&self) -> usize {
        let pid = self.child.id();
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
            .map(|s| s.split_whitespace().count())
            .sum()
    }

    /// Resident memory (VmRSS) in MB.
    pub fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        kb / 1024.0
    }

    /// CPU time used so far (utime + stime), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // utime and stime: fields 14 and 15, i.e. 11 and 12 after the command name.
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
