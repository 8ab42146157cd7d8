//! A real state-manager node for a test: `app::serve` on 127.0.0.1:0 with its own data
//! directory, or the real binary as a separate process (for kill -9), plus a JSON client.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use state_manager::app::{self, AppError, Settings};
use state_manager::auth::{Auth, Keys, Scope};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "node-test-secret-0123456789abcdef-0123456789";
pub const LONG: Duration = Duration::from_secs(60);

pub fn keys() -> Keys {
    Keys::hs256(SECRET.as_bytes(), "test").unwrap()
}

/// How a node runs.
enum Runner {
    InProcess {
        stop: Option<oneshot::Sender<i32>>,
        task: Option<JoinHandle<Result<i32, AppError>>>,
    },
    Binary(std::process::Child),
}

pub struct Node {
    pub base: String,
    pub data_dir: PathBuf,
    client: reqwest::Client,
    token: String,
    runner: Runner,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    /// A node in-process on `data_dir` with `config` written to `<data_dir>/config.json`.
    pub async fn start(data_dir: &Path, config: &Value) -> Node {
        write_config(data_dir, config);
        Node::start_unconfigured(data_dir).await
    }

    /// A node in-process on `data_dir` with whatever config it holds (none: unconfigured).
    pub async fn start_unconfigured(data_dir: &Path) -> Node {
        std::fs::create_dir_all(data_dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = Settings {
            data_dir: data_dir.to_path_buf(),
            config_path: data_dir.join("config.json"),
            subreaper: false,
            usage_interval: Some(Duration::from_millis(250)),
            limits: Default::default(),
            fence_program: None,
            auth: Auth::Jwt(Box::new(keys())),
        };
        let (stop, rx) = oneshot::channel::<i32>();
        let task = tokio::spawn(app::serve(settings, listener, async move {
            rx.await.unwrap_or(0)
        }));
        Node::new(
            base,
            data_dir,
            Runner::InProcess {
                stop: Some(stop),
                task: Some(task),
            },
        )
    }

    /// The real binary as a separate process on `data_dir`.
    pub async fn spawn_binary(data_dir: &Path, config: &Value) -> Node {
        let cmd = std::process::Command::new(env!("CARGO_BIN_EXE_state-manager"));
        Node::spawn_with(cmd, Ipv4Addr::LOCALHOST, data_dir, config).await
    }

    /// The real binary started by `launcher` (`ip netns exec NS`, `unshare -m`: a command that
    /// sets up a namespace and execs the rest, so [`Node::pid`] is the server's), listening on
    /// `ip`.
    pub async fn spawn_binary_via(
        launcher: &[&str],
        ip: Ipv4Addr,
        data_dir: &Path,
        config: &Value,
    ) -> Node {
        let mut cmd = std::process::Command::new(launcher[0]);
        cmd.args(&launcher[1..])
            .arg(env!("CARGO_BIN_EXE_state-manager"));
        Node::spawn_with(cmd, ip, data_dir, config).await
    }

    /// `cmd` (the binary, or a launcher followed by it) with `serve` on `ip` and a free port.
    async fn spawn_with(
        mut cmd: std::process::Command,
        ip: Ipv4Addr,
        data_dir: &Path,
        config: &Value,
    ) -> Node {
        write_config(data_dir, config);
        let listen = SocketAddr::from((ip, free_port()));
        let child = cmd
            .args(["serve", "--listen", &listen.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("STATE_MANAGER_JWT_SECRET", SECRET)
            .env("STATE_MANAGER_LOG_FORMAT", "json")
            .env_remove("STATE_MANAGER_CONFIG")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let node = Node::new(format!("http://{listen}"), data_dir, Runner::Binary(child));
        node.wait("the API to answer", LONG, |n| async move {
            n.try_get("/").await.map(|_| ())
        })
        .await;
        node
    }

    fn new(base: String, data_dir: &Path, runner: Runner) -> Node {
        let token = keys()
            .mint("test", Scope::Admin, Duration::from_secs(3600))
            .unwrap();
        Node {
            base,
            data_dir: data_dir.to_path_buf(),
            client: reqwest::Client::new(),
            token,
            runner,
        }
    }

    pub fn env_dir(&self) -> PathBuf {
        self.data_dir.join("env")
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.runner {
            Runner::Binary(c) => Some(c.id()),
            Runner::InProcess { .. } => None,
        }
    }

    /// Send a request; `body` as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, v) = self.send_full(method, path, body).await;
        (status, v)
    }

    /// [`Node::send`] with the answer's headers.
    pub async fn send_full(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Node::send_full`] with request headers of its own (`If-Match`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.timeout(Duration::from_secs(300)).send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path` as a stream (server-sent events): the response, once its headers came.
    pub async fn stream(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let resp = self.client.get(url).bearer_auth(&self.token).send();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// `GET path` as text (e.g. `/metrics`), asserting 200.
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.text().await.unwrap()
    }

    /// `GET path`, or `None` if the node does not answer.
    pub async fn try_get(&self, path: &str) -> Option<Value> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(Method::POST, path, body).await
    }

    pub async fn role(&self) -> String {
        self.get("/").await["role"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Poll `cond` until it gives `Some`, or panic after `deadline`.
    pub async fn wait<'a, T, F, Fut>(&'a self, what: &str, deadline: Duration, mut cond: F) -> T
    where
        F: FnMut(&'a Node) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = cond(self).await {
                return v;
            }
            assert!(
                start.elapsed() < deadline,
                "{}: timed out after {deadline:?} waiting for {what}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_role(&self, role: &str) {
        self.wait(&format!("role {role}"), LONG, |n| async move {
            (n.role().await == role).then_some(())
        })
        .await;
    }

    /// Wait until process `name` is running; returns its pid.
    pub async fn wait_running(&self, name: &str) -> u64 {
        let path = format!("/processes/{name}");
        self.wait(&format!("{name} running"), LONG, |n| {
            let path = path.clone();
            async move {
                let p = n.try_get(&path).await?;
                (p["state"] == "running")
                    .then(|| p["pid"].as_u64())
                    .flatten()
            }
        })
        .await
    }

    /// Stop gracefully and wait for the exit code.
    pub async fn stop(mut self) -> i32 {
        match &mut self.runner {
            Runner::InProcess { stop, task } => {
                let _ = stop.take().unwrap().send(143);
                task.take().unwrap().await.unwrap().unwrap()
            }
            Runner::Binary(child) => {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
                let status = tokio::task::block_in_place(|| child.wait()).unwrap();
                status.code().unwrap_or(-1)
            }
        }
    }

    /// SIGKILL a binary node.
    pub fn kill(&mut self) {
        if let Runner::Binary(child) = &mut self.runner {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::InProcess { stop, task } => {
                if let Some(s) = stop.take() {
                    let _ = s.send(143);
                }
                // Wait for the graceful shutdown, so no child outlives the test (and its
                // directories); only a multi-threaded runtime can block here.
                if let Some(t) = task.take() {
                    let rt = tokio::runtime::Handle::current();
                    if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                        let _ = tokio::task::block_in_place(|| rt.block_on(t));
                    } else {
                        t.abort();
                    }
                }
            }
            Runner::Binary(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn write_config(data_dir: &Path, config: &Value) {
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(
        data_dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
}

/// Every file, directory and symlink under `root` with its content hash, mode and link target,
/// sorted, for byte-for-byte tree comparison.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let what = if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(entry.path()).unwrap().display()
            )
        } else if meta.is_dir() {
            format!("dir {mode:o}")
        } else {
            let bytes = std::fs::read(entry.path()).unwrap();
            format!("file {mode:o} {}", blake3::hash(&bytes).to_hex())
        };
        out.push((rel, what));
    }
    out
}
