//! Hooks around the service's life, through `app::serve` with a real config file and processes.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Json, Router, extract::State, routing::post};
use common::wait_for_async;
use state_manager::app::{self, Settings};
use state_manager::events::{Event, StateName};

const LONG: Duration = Duration::from_secs(30);

type Received = Arc<Mutex<Vec<Event>>>;

/// A webhook receiver on 127.0.0.1:0 that keeps every event; returns its URL.
async fn receiver(got: Received) -> String {
    let app = Router::new()
        .route(
            "/events",
            post(
                |State(got): State<Received>, Json(batch): Json<Vec<Event>>| async move {
                    got.lock().unwrap().extend(batch);
                },
            ),
        )
        .with_state(got);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

fn settings(dir: &Path, config: &serde_json::Value) -> Settings {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    Settings {
        data_dir: dir.join("data"),
        config_path,
        subreaper: false,
        auth: state_manager::auth::Auth::Insecure,
        usage_interval: None,
        limits: Default::default(),
        fence_program: None,
    }
}

/// Resolves once `file` has a line equal to `line`.
async fn line_in(file: PathBuf, line: &'static str) -> i32 {
    wait_for_async(line, LONG, || async {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        text.lines().any(|l| l == line).then_some(0)
    })
    .await
}

/// Run the service with `config` until `log` has the line "app start", then shut it down;
/// returns its exit code.
async fn serve_until_app_starts(dir: &Path, config: &serde_json::Value, log: &Path) -> i32 {
    app::serve(
        settings(dir, config),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        line_in(log.to_path_buf(), "app start"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn hooks_run_in_order_around_the_processes_and_sinks_flush_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order");
    let l = log.display();
    let got: Received = Arc::default();
    let url = receiver(got.clone()).await;
    let config = serde_json::json!({
        "hooks": {
            "pre_start": {"command": format!("echo \"pre_start $STATE_MANAGER_HOOK\" >> {l}"), "timeout": "10s"},
            "post_stop": {"command": format!("echo post_stop >> {l}"), "timeout": "10s"},
            "on_shutdown": {"command": format!("echo on_shutdown >> {l}"), "timeout": "10s"}
        },
        "webhooks": [{"url": url, "batch_interval": "10ms"}],
        "stacks": [{"name": "app", "command": "sh", "stop_timeout": "10s", "args": ["-c",
            format!("echo app start >> {l}; trap 'echo app stop >> {l}; exit 0' TERM; while :; do sleep 0.05; done")]}]
    });
    let code = serve_until_app_starts(dir.path(), &config, &log).await;
    assert_eq!(code, 0);
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        [
            "pre_start pre_start",
            "app start",
            "app stop",
            "post_stop",
            "on_shutdown"
        ]
    );
    let events = got.lock().unwrap().clone();
    let last = events.last().expect("events were delivered");
    assert_eq!(
        (last.process.as_str(), last.to),
        ("app", StateName::Stopped),
        "the last transition was delivered before serve returned: {events:#?}"
    );
}

#[tokio::test]
async fn a_hanging_hook_is_killed_at_its_timeout_and_shutdown_still_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order");
    let pidfile = dir.path().join("hook.pid");
    let config = serde_json::json!({
        "hooks": {
            "post_stop": {"command": format!("echo $$ > {}; exec sleep 1000", pidfile.display()), "timeout": "500ms"},
            "on_shutdown": {"command": format!("echo on_shutdown >> {}", log.display()), "timeout": "10s"}
        },
        "stacks": [{"name": "app", "command": "sh", "args": ["-c",
            format!("echo app start >> {}; exec sleep 1000", log.display())]}]
    });
    let t = Instant::now();
    let code = serve_until_app_starts(dir.path(), &config, &log).await;
    assert_eq!(code, 0);
    assert!(t.elapsed() < LONG, "serve took {:?}", t.elapsed());
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(order.lines().last(), Some("on_shutdown"), "{order}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true);
    assert!(gone, "the hanging hook {pid} was killed");
}
