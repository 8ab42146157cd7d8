//! A real Prometheus server (Debian `prometheus`) scrapes `GET /metrics` with a bearer token read
//! from a 0600 file, as an operator would configure it: the target is `up` and a query returns
//! the value the API shows. A second job with a token of another key sees the target `down`
//! with a 401.
//!
//! Prometheus is started through `state_manager::proc`, the one place that reaps children in
//! this test process, and killed (its process group) on drop. Without a `prometheus` on `PATH`
//! the test fails and says how to install it: it never skips.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::Value;
use state_manager::auth::{Keys, Scope};
use state_manager::proc::{self, SpawnRequest, Stdio3};
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::support::{SLEEPERS, Server, state};

/// Prometheus's own start (TSDB, rule manager, web) and first scrapes, on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(90);

const INSTALL: &str = "the Prometheus scrape test needs the prometheus server: apt-get install prometheus \
     (.ci/run installs it)";

/// A running Prometheus on a free loopback port; its process group is killed on drop.
struct Prometheus {
    base: String,
    pid: u32,
    log: PathBuf,
    client: reqwest::Client,
}

impl Prometheus {
    /// Start with `config` (a prometheus.yml) in `dir`, and wait until it is ready.
    async fn start(dir: &Path, config: &str) -> Prometheus {
        let bin = find_binary();
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut failures = String::new();
        // A port found free can be taken before Prometheus binds it: try another.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let argv = [
                "sh".to_string(),
                "-c".into(),
                "exec \"$0\" \"$@\" >\"$PROMETHEUS_LOG\" 2>&1".into(),
                bin.display().to_string(),
                format!("--config.file={}", config_path.display()),
                format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{attempt}")).display()
                ),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ];
            let log_text = log.display().to_string();
            let child = proc::spawn(SpawnRequest {
                argv: argv.to_vec(),
                env: proc::child_env([("PROMETHEUS_LOG", log_text.as_str())]),
                cwd: Some(dir.to_path_buf()),
                stdio: Stdio3::Capture,
                die_with_parent: true,
                credentials: None,
            })
            .await
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", bin.display()));
            let p = Prometheus {
                base: format!("http://127.0.0.1:{port}"),
                pid: child.pid,
                log,
                client: reqwest::Client::new(),
            };
            if p.ready(child.exit).await {
                return p;
            }
            failures.push_str(&p.log_text());
        }
        panic!("prometheus did not start:\n{failures}");
    }

    /// Poll `/-/ready` until 200; `false` if Prometheus exits first or the deadline passes.
    async fn ready(&self, mut exit: oneshot::Receiver<state_manager::events::ExitStatus>) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < DEADLINE {
            if exit.try_recv().is_ok() {
                return false;
            }
            let r = self
                .client
                .get(format!("{}/-/ready", self.base))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == StatusCode::OK) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path_and_query}");
        r.json().await.unwrap()
    }

    /// Wait until the target of `job` has `health` (`up`, `down`); returns it as the API shows it.
    async fn wait_target(&self, job: &str, health: &str) -> Value {
        let what = format!("the {job} target to be {health}");
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                let v = self.api("/api/v1/targets?state=active").await;
                let target = v["data"]["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["labels"]["job"] == job && t["health"] == health);
                if let Some(t) = target {
                    return t.clone();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        match found {
            Ok(t) => t,
            Err(_) => {
                let targets = self.api("/api/v1/targets").await;
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; targets: {targets}\nlog:\n{}",
                    self.log_text()
                )
            }
        }
    }

    /// The value of the instant query `q`, once it has one.
    async fn wait_value(&self, q: &str) -> f64 {
        let url = format!("/api/v1/query?query={}", encode(q));
        crate::common::wait_for_async(&format!("a value for {q}"), DEADLINE, || async {
            let v = self.api(&url).await;
            assert_eq!(v["status"], "success", "{v}");
            let result = v["data"]["result"].as_array()?.first()?.clone();
            result["value"][1].as_str()?.parse::<f64>().ok()
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = proc::signal_group(self.pid, Signal::SIGKILL);
    }
}

fn find_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("prometheus not found on PATH; {INSTALL}"))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// Percent-encoding of a PromQL query for the query string.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `secret` in a new file of mode 0600, as a credentials file should be.
fn credentials_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(secret.as_bytes()).unwrap();
    path
}

fn scrape_config(target: &str, good: &Path, wrong: &Path) -> String {
    let job = |name: &str, token: &Path| {
        format!(
            "  - job_name: {name}\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            token.display()
        )
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("state-manager", good),
        job("wrong-token", wrong)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_metrics_with_a_bearer_token() {
    let s = Server::start(Some(SLEEPERS)).await;
    for n in ["web-1", "web-2", "web-3", "worker"] {
        s.wait_process(n, "running", |p| state(p) == "running")
            .await;
    }
    let dir = TempDir::new().unwrap();
    // A read token is all a scraper needs; the wrong one is signed with another key.
    let good = credentials_file(dir.path(), "token", &s.token(Scope::Read));
    let other = Keys::hs256(b"another-secret-0123456789abcdef-012345", "test").unwrap();
    let wrong_token = other
        .mint("test", Scope::Read, Duration::from_secs(600))
        .unwrap();
    let wrong = credentials_file(dir.path(), "wrong-token", &wrong_token);
    let target = s.base.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(dir.path(), &scrape_config(&target, &good, &wrong)).await;

    let up = prometheus.wait_target("state-manager", "up").await;
    assert_eq!(up["scrapeUrl"], format!("{}/metrics", s.base), "{up}");
    assert_eq!(up["lastError"], "", "{up}");
    let web = prometheus
        .wait_value(r#"state_manager_process_up{job="state-manager",process="web-2"}"#)
        .await;
    assert_eq!(web, 1.0);
    let running = prometheus
        .wait_value(r#"state_manager_processes{job="state-manager",state="running"}"#)
        .await;
    assert_eq!(running, 4.0);
    let rss = prometheus
        .wait_value(r#"process_resident_memory_bytes{job="state-manager"}"#)
        .await;
    assert!(rss > f64::from(1 << 20), "{rss}");

    let down = prometheus.wait_target("wrong-token", "down").await;
    let error = down["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("401"), "{down}");
    assert_eq!(prometheus.wait_value(r#"up{job="wrong-token"}"#).await, 0.0);
    drop(prometheus);
    s.stop().await;
}
