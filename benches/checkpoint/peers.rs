//! What the checkpoint is compared with: `tar | zstd` plus a plain upload of the archive through
//! the same storage client, and restic backing up to the same server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use state_manager::objstore::DynStore;

/// `tar -cf - . | zstd -3`, then `put_file` of the archive. Returns (compress, upload, size).
pub async fn tar_zstd_upload(
    env: &Path,
    scratch: &Path,
    store: &DynStore,
) -> (Duration, Duration, u64) {
    let archive = scratch.join("env.tar.zst");
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -cf - . | zstd -q -3 -o '{}'",
            env.display(),
            archive.display()
        ))
        .status()
        .expect("tar and zstd are installed");
    assert!(status.success(), "tar | zstd failed");
    let compress = start.elapsed();
    let start = Instant::now();
    store.put_file("bench/env.tar.zst", &archive).await.unwrap();
    let upload = start.elapsed();
    let size = std::fs::metadata(&archive).unwrap().len();
    std::fs::remove_file(&archive).unwrap();
    (compress, upload, size)
}

/// A restic repository on the same server (or directory).
pub struct Restic {
    pub repo: String,
    pub env: Vec<(String, String)>,
    pub cache: PathBuf,
}

/// What one `restic backup` reported.
pub struct ResticRun {
    pub wall: Duration,
    pub data_added: u64,
}

impl Restic {
    fn cmd(&self) -> Command {
        let mut c = Command::new("restic");
        c.arg("-r")
            .arg(&self.repo)
            .arg("--cache-dir")
            .arg(&self.cache);
        c.env("RESTIC_PASSWORD", "bench");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn init(&self) {
        let out = self
            .cmd()
            .arg("init")
            .output()
            .expect("restic is installed (apt-get install restic)");
        assert!(
            out.status.success(),
            "restic init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn backup(&self, env: &Path) -> ResticRun {
        let start = Instant::now();
        let out = self
            .cmd()
            .current_dir(env)
            .args(["backup", "--json", "."])
            .output()
            .unwrap();
        let wall = start.elapsed();
        assert!(
            out.status.success(),
            "restic backup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .expect("restic prints a summary");
        ResticRun {
            wall,
            data_added: summary["data_added"].as_u64().unwrap_or(0),
        }
    }

    pub fn restore(&self, target: &Path) {
        let out = self
            .cmd()
            .args(["restore", "latest", "--target"])
            .arg(target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
