//! A real server for one test: `app::serve` on 127.0.0.1:0 in a temporary directory, a client
//! with tokens, and a stop that waits for the graceful shutdown (a dropped server is told to stop).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use state_manager::app::{self, AppError, Settings};
use state_manager::auth::{Auth, Keys, Scope};
use state_manager::http::listen::Limits;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &[u8] = b"test-secret-0123456789abcdef-0123456789";
/// Generous: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Server {
    pub base: String,
    pub dir: Option<TempDir>,
    pub client: reqwest::Client,
    keys: Keys,
    stop: Option<oneshot::Sender<i32>>,
    task: Option<JoinHandle<Result<i32, AppError>>>,
}

pub fn keys() -> Keys {
    Keys::hs256(SECRET, "test").unwrap()
}

impl Server {
    /// A server in a new directory, with `config` as its config file if given.
    pub async fn start(config: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(dir.path().join("config.json"), c).unwrap();
        }
        Server::start_in(dir, Auth::Jwt(Box::new(keys()))).await
    }

    /// A server on an existing directory (its data dir; the config is `config.json` in it).
    pub async fn start_in(dir: TempDir, auth: Auth) -> Server {
        Server::start_limited(dir, auth, Limits::default()).await
    }

    /// [`Server::start_in`] with connection limits of its own.
    pub async fn start_limited(dir: TempDir, auth: Auth, limits: Limits) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            config_path: dir.path().join("config.json"),
            subreaper: false,
            usage_interval: Some(Duration::from_millis(250)),
            auth,
            limits,
            fence_program: None,
        };
        let (stop, rx) = oneshot::channel::<i32>();
        let task = tokio::spawn(app::serve(settings, listener, async move {
            rx.await.unwrap_or(0)
        }));
        Server {
            base,
            dir: Some(dir),
            client: reqwest::Client::new(),
            keys: keys(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.as_ref().unwrap().path().join("config.json")
    }

    pub fn token(&self, scope: Scope) -> String {
        self.keys
            .mint("test", scope, Duration::from_secs(600))
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an admin token.
    pub async fn call(&self, method: Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(self.token(Scope::Admin))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.call(Method::GET, path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.call(Method::POST, path).await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// POST a config body as JSON with an admin token.
    pub async fn post_config(&self, body: &str) -> Response {
        self.client
            .post(self.url("/config"))
            .bearer_auth(self.token(Scope::Admin))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// One process by name, from `GET /processes/{name}`.
    pub async fn process(&self, name: &str) -> Value {
        self.get_json(&format!("/processes/{name}")).await
    }

    /// Wait until process `name` satisfies `cond`; returns its info.
    pub async fn wait_process(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::common::wait_for_async(&format!("{name}: {what}"), DEADLINE, || async {
            let p = self.process(name).await;
            cond(&p).then_some(p)
        })
        .await
    }

    /// Stop the server gracefully and wait for it; returns its exit code and its directory.
    pub async fn stop(mut self) -> (i32, TempDir) {
        let _ = self.stop.take().unwrap().send(0);
        let task = self.task.take().unwrap();
        let code = tokio::time::timeout(DEADLINE * 2, task)
            .await
            .expect("the server did not shut down in time")
            .unwrap()
            .unwrap();
        (code, self.dir.take().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(0);
        }
    }
}

pub fn state(p: &Value) -> &str {
    p["state"].as_str().unwrap_or("")
}

/// Assert that `r` is a problem+json answer with `status`; returns its body.
pub async fn assert_problem(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:state-manager:problem:"),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    body
}

/// A config of `sleep` processes: `web` ×3 and `worker`.
pub const SLEEPERS: &str = r#"{ "stacks": [
    { "name": "web", "command": "sleep", "args": ["1000"], "instances": 3, "stop_timeout": "10s" },
    { "name": "worker", "command": "sleep 1000", "restart_delay": "100ms", "stop_timeout": "10s" }
] }"#;
