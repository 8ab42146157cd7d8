//! The real binary on both ends: `state-manager serve` on an ephemeral port (its address read
//! from its JSON log), and `state-manager ctl` run against it with a clean environment.
//!
//! No supervisor runs in this test process, so waiting for the binary with `Command` is safe.
//! The server is killed by its pid on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_state-manager");
pub const SECRET: &str = "ctl-test-secret-0123456789abcdef0123456789";
/// Generous: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Every variable that could leak into a run from the developer's shell.
const VARS: [&str; 10] = [
    "STATE_MANAGER_URL",
    "STATE_MANAGER_TOKEN",
    "STATE_MANAGER_TOKEN_FILE",
    "STATE_MANAGER_JWT_SECRET",
    "STATE_MANAGER_JWT_SECRET_FILE",
    "STATE_MANAGER_JWT_PUBLIC_KEY_FILE",
    "STATE_MANAGER_INSECURE_NO_AUTH",
    "STATE_MANAGER_CONFIG",
    "STATE_MANAGER_DATA_DIR",
    "RUST_LOG",
];

/// The binary with none of [`VARS`] set.
pub fn bin() -> Command {
    let mut c = Command::new(BIN);
    for v in VARS {
        c.env_remove(v);
    }
    c
}

/// `sleep` processes (`web` ×2, `worker`) and `talker`, which writes a line every 200 ms.
pub const CONFIG: &str = r#"{ "stacks": [
    { "name": "web", "command": "sleep", "args": ["1000"], "instances": 2, "stop_timeout": "10s" },
    { "name": "worker", "command": "sleep 1000", "stop_timeout": "10s" },
    { "name": "talker", "command": "sh",
      "args": ["-c", "echo hello; while :; do echo tick; sleep 0.2; done"], "stop_timeout": "10s" }
] }"#;

/// `state-manager serve` in a temporary data directory.
pub struct Server {
    child: Child,
    pub url: String,
    dir: TempDir,
    /// The lines of its JSON log after "HTTP API listening".
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// A server with `config`, once it listens.
    pub fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let mut child = bin()
            .env("STATE_MANAGER_JWT_SECRET", SECRET)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (addr, log) = listening_address(&mut child);
        Server {
            child,
            url: format!("http://{addr}"),
            dir,
            log,
        }
    }

    /// The server's pid, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file it was started with (`<data-dir>/config.json`).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.json")
    }

    /// The next line of its log whose `message` satisfies `want`, and the lines before it;
    /// panics after [`DEADLINE`].
    pub fn wait_log(&self, want: impl Fn(&str) -> bool) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let line = self
                .log
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("no such log line; the log since: {before:#?}"));
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if want(v["message"].as_str().unwrap_or("")) {
                return (v, before);
            }
            before.push(v);
        }
    }

    /// The environment directory checkpoints capture (the default, `<data-dir>/env`).
    pub fn env_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("env")
    }

    /// `ctl ARGS --url URL` with `token` in STATE_MANAGER_TOKEN.
    pub fn ctl(&self, token: Option<&str>, args: &[&str]) -> Run {
        ctl(&self.url, token, args)
    }

    /// `--json processes`, parsed.
    pub fn processes(&self, token: &str) -> Vec<Value> {
        let run = self.ctl(Some(token), &["--json", "processes"]);
        assert_eq!(run.code, 0, "{run:?}");
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// Wait until every process is running.
    pub fn wait_all_running(&self, token: &str) -> Vec<Value> {
        crate::common::wait_for("every process running", DEADLINE, || {
            let list = self.processes(token);
            let all = !list.is_empty() && list.iter().all(|p| p["state"] == "running");
            all.then_some(list)
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read the child's JSON log until "HTTP API listening"; its `addr`, and the lines after.
fn listening_address(child: &mut Child) -> (String, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("the server never listened; its log: {seen:#?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "HTTP API listening" {
            return (v["addr"].as_str().unwrap().to_string(), rx);
        }
        seen.push(line);
    }
}

/// A token minted by the binary with [`SECRET`].
pub fn token(scope: &str) -> String {
    let out = bin()
        .env("STATE_MANAGER_JWT_SECRET", SECRET)
        .args(["token", "--scope", scope])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What one `ctl` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("ctl was killed by a signal"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

impl Run {
    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

/// `ctl ARGS --url URL` with `token` in STATE_MANAGER_TOKEN.
pub fn ctl(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut c = ctl_command(url, token, args);
    c.output().unwrap().into()
}

/// The command of [`ctl`], to spawn by hand.
pub fn ctl_command(url: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("ctl").args(args).args(["--url", url]);
    if let Some(t) = token {
        c.env("STATE_MANAGER_TOKEN", t);
    }
    c
}

/// The column at which `header`'s `name` starts in a table's first line.
pub fn column(table: &str, name: &str) -> usize {
    let header = table.lines().next().unwrap();
    header
        .find(name)
        .unwrap_or_else(|| panic!("no column {name}: {table}"))
}

/// A file holding `text`, in `dir`.
pub fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}
