//! Unconfigured start → POST /config → 201 → 409; nothing written on any rejected POST; the
//! config survives a restart and its stacks come back; concurrent POSTs cannot both win.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use state_manager::auth::Auth;

use super::support::{SLEEPERS, Server, assert_problem, keys, state};

const WITH_SECRET: &str = r#"{ "env": { "API_TOKEN": "s3cret-value" },
    "stacks": [ { "name": "app", "command": "sleep 1000", "stop_timeout": "10s" } ] }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_then_one_post_configures_and_applies_at_once() {
    let s = Server::start(None).await;
    let status = s.get_json("/").await;
    assert_eq!(status["configured"], false);
    assert_eq!(status["processes"]["total"], 0);
    for key in ["lease", "replication", "last_checkpoint", "role"] {
        assert!(status[key].is_null(), "{key}: {status}");
    }
    assert_eq!(status["warnings"], serde_json::json!([]));
    assert_problem(s.call(Method::GET, "/config").await, StatusCode::NOT_FOUND).await;

    let r = s.post_config(WITH_SECRET).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["processes"], serde_json::json!(["app"]));
    let path = s.config_path();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), WITH_SECRET);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    s.wait_process("app", "running", |p| state(p) == "running")
        .await;
    assert_eq!(s.get_json("/").await["configured"], true);

    let shown = s.call(Method::GET, "/config").await;
    assert_eq!(shown.status(), StatusCode::OK);
    let text = shown.text().await.unwrap();
    assert!(!text.contains("s3cret-value"), "secret leaked: {text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["env"]["API_TOKEN"], "***");
    assert_eq!(shown["stacks"][0]["name"], "app");

    let again = s.post_config(SLEEPERS).await;
    let body = assert_problem(again, StatusCode::CONFLICT).await;
    assert!(
        body["detail"].as_str().unwrap().contains("restart"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), WITH_SECRET);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_posts_write_nothing() {
    let s = Server::start(None).await;
    let path = s.config_path();
    let r = s.post_config(r#"{ "stacks": [ "#).await;
    let body = assert_problem(r, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );

    let invalid = r#"{ "stacks": [ { "name": "a", "command": "" }, { "name": "b", "command": "x", "stop_timeout": "soon" } ], "colour": "blue",
        "storage": { "bucket": "a..b", "region": "us_east_1" } }"#;
    let body = assert_problem(
        s.post_config(invalid).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let problems = body["problems"].as_array().unwrap();
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(problems.len() >= 3, "{body}");
    assert!(paths.contains(&"colour"), "{paths:?}");
    assert!(paths.contains(&"storage.bucket"), "{paths:?}");
    assert!(paths.contains(&"storage.region"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("stacks[1]")),
        "{paths:?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| !p["message"].as_str().unwrap().is_empty())
    );

    let text = s
        .client
        .post(s.url("/config"))
        .bearer_auth(s.token(state_manager::auth::Scope::Admin))
        .header("content-type", "text/plain")
        .body(SLEEPERS)
        .send()
        .await
        .unwrap();
    assert_problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // serde's positional form of a struct is no config, nor a duration out of its range (a zero
    // checkpoint interval used to be written, then panic the service at start).
    for (doc, at) in [
        ("[]", ""),
        (r#"[null, ["web"]]"#, ""),
        (r#"{"lease": [30, 2, true, 2]}"#, "lease"),
        (
            r#"{"checkpoint": {"interval": "0s"}}"#,
            "checkpoint.interval",
        ),
        (
            r#"{"replication": {"interval": "100000000years"}}"#,
            "replication.interval",
        ),
        // A user to run as must exist (validated off the async runtime: it reads /etc/passwd).
        (
            r#"{"stacks": [{"name": "a", "command": "x", "user": "no-such-user-sm"}]}"#,
            "stacks[0].user",
        ),
    ] {
        let body = assert_problem(s.post_config(doc).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        let problems = body["problems"].as_array().unwrap();
        assert!(problems.iter().any(|p| p["path"] == at), "{doc}: {body}");
    }

    let huge = format!(
        r#"{{ "stacks": [], "node_id": "{}" }}"#,
        "x".repeat(2 << 20)
    );
    let r = s.post_config(&huge).await;
    // The unread rest of the body ends the connection; the client is told not to reuse it.
    assert_eq!(r.headers()["connection"], "close");
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;

    assert!(!path.exists(), "a rejected POST wrote {}", path.display());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("config"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(s.get_json("/").await["configured"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_cannot_both_win() {
    let s = Server::start(None).await;
    let posts = (0..6).map(|_| s.post_config(SLEEPERS));
    let codes: Vec<StatusCode> = futures::future::join_all(posts)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    let created = codes.iter().filter(|c| **c == StatusCode::CREATED).count();
    let conflict = codes.iter().filter(|c| **c == StatusCode::CONFLICT).count();
    assert_eq!((created, conflict), (1, 5), "{codes:?}");
    assert_eq!(s.get_json("/").await["processes"]["total"], 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_survives_a_restart_and_its_stacks_come_back() {
    let s = Server::start(None).await;
    assert_eq!(s.post_config(SLEEPERS).await.status(), StatusCode::CREATED);
    let before = s
        .wait_process("worker", "running", |p| state(p) == "running")
        .await;
    let (code, dir) = s.stop().await;
    assert_eq!(code, 0);
    let old_pid = before["pid"].as_i64().unwrap() as i32;
    crate::common::wait_for(
        "the old worker to be gone",
        super::support::DEADLINE,
        || {
            (nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid), None).is_err())
                .then_some(())
        },
    );

    let s = Server::start_in(dir, Auth::Jwt(Box::new(keys()))).await;
    let status = s.get_json("/").await;
    assert_eq!(status["configured"], true);
    assert_eq!(status["processes"]["total"], 4);
    for name in ["web-1", "web-2", "web-3", "worker"] {
        s.wait_process(name, "running", |p| state(p) == "running")
            .await;
    }
    assert_eq!(s.get_json("/config").await["stacks"][1]["name"], "worker");
    assert_problem(s.post_config(SLEEPERS).await, StatusCode::CONFLICT).await;
    s.stop().await;
}
