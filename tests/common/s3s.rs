//! A signature-checking S3 server for tests: s3s-fs 0.14.1 from crates.io, started on a free
//! loopback port with given keys over a temporary directory, killed (by pid) on drop.
//!
//! moto checks no signature, so a signing or addressing bug would pass every moto test; s3s-fs
//! rejects a wrong secret with `SignatureDoesNotMatch` as AWS does. Its conditional writes are
//! not atomic under a race, so lease races stay on moto.
//!
//! [`S3sServer::restart_with_clock`] runs it with its clock shifted (libfaketime, Debian's
//! `libfaketime`, which `.ci/run` installs): s3s refuses a request whose signed time is more
//! than 15 minutes from its own (`RequestTimeTooSkewed`), as a real server whose clock is off.
//!
//! The binary comes from `S3S_FS`, else `<repo>/.cache/s3s-fs-0.14.1/bin/s3s-fs` (where
//! `.ci/run` installs it), else `s3s-fs` on `PATH`. Without one the test panics with the
//! install command: these tests never skip.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::config::StorageConfig;

pub const ACCESS_KEY: &str = "AKS3SFSTEST";
pub const SECRET_KEY: &str = "s3s-fs-test-secret";

/// libfaketime as Debian's `libfaketime` package installs it on amd64.
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const INSTALL: &str = "the signature-checking S3 tests need s3s-fs: `cargo install s3s-fs@0.14.1 \
    --features binary --locked --root .cache/s3s-fs-0.14.1` in the repository (what .ci/run \
    does), or set S3S_FS=/path/to/s3s-fs";

/// A running s3s-fs; killed on drop.
pub struct S3sServer {
    port: u16,
    child: Option<Child>,
    root: tempfile::TempDir,
}

impl S3sServer {
    /// Start on a free loopback port with the test keys and wait until it accepts connections.
    pub fn start() -> S3sServer {
        S3sServer::start_with_secret(SECRET_KEY)
    }

    /// Start with `secret` as the server's secret key for [`ACCESS_KEY`].
    pub fn start_with_secret(secret: &str) -> S3sServer {
        let root = tempfile::tempdir().expect("temp dir for s3s-fs");
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        let mut log = String::new();
        // A port found free can be taken before s3s-fs binds it: try another.
        for _ in 0..3 {
            let port = free_port();
            match spawn(root.path(), port, secret, None) {
                Ok(child) => {
                    return S3sServer {
                        port,
                        child: Some(child),
                        root,
                    };
                }
                Err(l) => log = l,
            }
        }
        panic!("s3s-fs did not start:\n{log}");
    }

    /// Start again on the same port over the same objects, with `secret` as the server's key.
    pub fn restart_with_secret(&mut self, secret: &str) {
        self.restart(secret, None);
    }

    /// Start again on the same port over the same objects with the test keys, its clock
    /// shifted by `offset` (libfaketime's `FAKETIME`, e.g. `"+2h"`), or the real clock (`None`).
    pub fn restart_with_clock(&mut self, offset: Option<&str>) {
        self.restart(SECRET_KEY, offset);
    }

    fn restart(&mut self, secret: &str, clock: Option<&str>) {
        self.stop();
        match spawn(self.root.path(), self.port, secret, clock) {
            Ok(child) => self.child = Some(child),
            Err(log) => panic!("s3s-fs did not restart on port {}:\n{log}", self.port),
        }
    }

    /// What the running server logged (its refusals among it).
    pub fn log(&self) -> String {
        let path = self.root.path().join(format!("s3s-fs-{}.log", self.port));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket is a directory of the server's root.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join("data").join(name)).unwrap();
    }

    /// A storage section for this server with the right keys.
    pub fn storage_config(&self, bucket: &str, key_prefix: &str) -> StorageConfig {
        StorageConfig {
            bucket: Some(bucket.to_string()),
            endpoint: Some(self.endpoint()),
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            region: Some("us-east-1".into()),
            key_prefix: (!key_prefix.is_empty()).then(|| key_prefix.to_string()),
            ..StorageConfig::default()
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Run s3s-fs over `<root>/data` on `port` (its clock shifted by `clock`, if given) and wait
/// until it listens; `Err` holds its log.
fn spawn(root: &Path, port: u16, secret: &str, clock: Option<&str>) -> Result<Child, String> {
    let bin = find_binary();
    let log_path = root.join(format!("s3s-fs-{port}.log"));
    let out = std::fs::File::create(&log_path).expect("create s3s-fs log");
    let mut cmd = Command::new(&bin);
    if let Some(offset) = clock {
        assert!(
            Path::new(FAKETIME_LIB).is_file(),
            "{FAKETIME_LIB} is missing: `apt-get install libfaketime` (what .ci/run does)"
        );
        cmd.env("LD_PRELOAD", FAKETIME_LIB).env("FAKETIME", offset);
    }
    let mut child = cmd
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", secret])
        .arg(root.join("data"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", bin.display()));
    if wait_listening(port, &mut child) {
        return Ok(child);
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    Err(std::fs::read_to_string(&log_path).unwrap_or_default())
}

/// Poll until `port` accepts connections; `false` if the child exits or 30 s pass.
fn wait_listening(port: u16, child: &mut Child) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "S3S_FS={} does not exist; {INSTALL}",
            p.display()
        );
        return p;
    }
    let cached = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/s3s-fs-0.14.1/bin/s3s-fs");
    if cached.is_file() {
        return cached;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| panic!("s3s-fs not found; {INSTALL}"))
}
