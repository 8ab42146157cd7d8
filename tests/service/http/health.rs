//! Health over HTTP: `GET /ports` with the holders of managed ports, the health fields of
//! `GET /processes` and the summary and hook reports of `GET /`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use state_manager::auth::Scope;

use super::support::{Server, state};

const LISTENER: &str = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(16)\nwhile True:\n    c,_=s.accept()\n    c.close()\n";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_lists_each_managed_port_with_its_holder() {
    let (held, free) = (free_port(), free_port());
    let config = json!({"stacks": [
        {"name": "api", "command": "python3", "args": ["-c", LISTENER, held.to_string()],
         "ports": [held], "stop_timeout": "10s",
         "readiness": {"tcp": true, "period": "50ms", "start_timeout": "60s"}},
        {"name": "idle", "command": "sleep", "args": ["1000"], "ports": [free], "stop_timeout": "10s"}]});
    let s = Server::start(Some(&config.to_string())).await;
    let api = s
        .wait_process("api", "running", |p| state(p) == "running")
        .await;
    s.wait_process("idle", "running", |p| state(p) == "running")
        .await;
    let r = s
        .client
        .get(s.url("/ports"))
        .bearer_auth(s.token(Scope::Read))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a read token may list ports");
    let ports: Value = r.json().await.unwrap();
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 2, "{ports:?}");
    let (a, i) = (&ports[0], &ports[1]);
    assert_eq!(
        (&a["port"], &a["process"], &a["in_use"]),
        (&json!(held), &json!("api"), &json!(true))
    );
    assert_eq!(a["holder"]["pid"], api["pid"], "{a}");
    assert!(
        a["holder"]["command"].as_str().unwrap().contains("python"),
        "{a}"
    );
    assert_eq!(a["held_by_owner"], true);
    assert_eq!(
        i,
        &json!({"port": free, "process": "idle", "in_use": false, "holder": null, "held_by_owner": false})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_processes_show_readiness_health_and_hooks() {
    let config = json!({
        "hooks": {"pre_start": {"command": "true", "timeout": "10s"}},
        "stacks": [
            {"name": "db", "command": "sleep", "args": ["1000"], "stop_timeout": "10s",
             "readiness": {"exec": "true", "period": "100ms"},
             "liveness": {"exec": "true", "period": "100ms"}},
            {"name": "app", "command": "sleep", "args": ["1000"], "depends_on": ["db"], "stop_timeout": "10s"}]});
    let s = Server::start(Some(&config.to_string())).await;
    let db = s
        .wait_process("db", "a liveness result", |p| {
            p["last_probe"]["probe"] == "liveness"
        })
        .await;
    assert_eq!(
        (&db["ready"], &db["healthy"]),
        (&json!(true), &json!(true)),
        "{db}"
    );
    assert_eq!(db["last_probe"]["ok"], true, "{db}");
    assert!(db["last_probe"]["at"].is_string() && db["last_probe"]["message"].is_string());
    let app = s
        .wait_process("app", "running", |p| state(p) == "running")
        .await;
    assert_eq!(
        (&app["ready"], &app["healthy"], &app["last_probe"]),
        (&json!(true), &json!(true), &Value::Null)
    );
    let all = s.get_json("/processes").await;
    assert!(
        all.as_array().unwrap().iter().all(|p| p["healthy"] == true),
        "{all}"
    );
    let status = s.get_json("/").await;
    let p = &status["processes"];
    for (key, want) in [
        ("total", 2),
        ("running", 2),
        ("ready", 2),
        ("healthy", 2),
        ("waiting", 0),
        ("restart_queue", 0),
        ("backoff", 0),
        ("failed", 0),
    ] {
        assert_eq!(p[key], want, "{key}: {p}");
    }
    let hooks = status["hooks"].as_array().expect("hook reports");
    assert_eq!(
        (&hooks[0]["point"], &hooks[0]["ok"]),
        (&json!("pre_start"), &json!(true)),
        "{status}"
    );
    assert_eq!(status["webhooks"], json!([]));
    s.stop().await;
}
