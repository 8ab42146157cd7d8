//! The process set and the operator's intent follow the environment: a process stopped, added
//! or removed through the API is what the node runs after a restart on the same data directory,
//! and what the next owner runs after a release-lease handoff or a kill -9 failover.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::node::Node;

fn sleeper(name: &str) -> Value {
    json!({"name": name, "command": "sleep", "args": ["100000"]})
}

fn stacks() -> Vec<Value> {
    vec![sleeper("a"), sleeper("b")]
}

async fn revision(n: &Node) -> u64 {
    n.get("/").await["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no revision in GET /"))
}

async fn state(n: &Node, name: &str) -> Value {
    n.get(&format!("/processes/{name}")).await["state"].clone()
}

/// On the owner `n`: stop `a`, add `c` (2 instances) and `d`, remove `d`. Returns the revision
/// after the last change; each answer carries the next revision.
async fn change_the_set(n: &Node) -> u64 {
    let start = revision(n).await;
    let (code, stopped) = n.post("/processes/a/stop", None).await;
    assert_eq!(code, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["processes"], json!(["a"]));
    assert_eq!(stopped["revision"], start + 1);
    let (code, added) = n
        .post(
            "/processes",
            Some(json!({"name": "c", "command": "sleep", "args": ["100000"], "instances": 2})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{added}");
    assert_eq!(added["created"], json!(["c-1", "c-2"]));
    assert_eq!(added["started"], json!(["c-1", "c-2"]));
    assert_eq!(added["revision"], start + 2);
    let (code, added) = n.post("/processes", Some(sleeper("d"))).await;
    assert_eq!(code, StatusCode::CREATED, "{added}");
    n.wait_running("d").await;
    let (code, headers, removed) = n.send_full(Method::DELETE, "/processes/d", None).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{removed}");
    assert_eq!(removed, json!(""), "no body");
    let a = n.get("/processes/a").await;
    assert_eq!(
        (&a["origin"], &a["intent"]),
        (&json!("file"), &json!("stopped")),
        "{a}"
    );
    let c = n.get("/processes/c-1").await;
    assert_eq!(
        (&c["origin"], &c["intent"]),
        (&json!("api"), &Value::Null),
        "{c}"
    );
    assert_eq!(headers["etag"], format!("\"{}\"", start + 4).as_str());
    assert_eq!(revision(n).await, start + 4);
    n.wait_running("c-2").await;
    start + 4
}

/// `n` runs what [`change_the_set`] left: `b` and `c-*` running, `a` stopped, no `d`.
async fn runs_the_changed_set(n: &Node, rev: u64) {
    n.wait_running("b").await;
    n.wait_running("c-1").await;
    n.wait_running("c-2").await;
    // `a` would be starting by now (nothing it waits for): it stays stopped.
    assert_eq!(state(n, "a").await, "stopped");
    let list = n.get("/processes?pattern=%5Bac%5D*").await;
    let shown: Vec<(&Value, &Value, &Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (&p["name"], &p["origin"], &p["intent"]))
        .collect();
    let (file, api, stopped) = (json!("file"), json!("api"), json!("stopped"));
    assert_eq!(
        shown,
        [
            (&json!("a"), &file, &stopped),
            (&json!("c-1"), &api, &Value::Null),
            (&json!("c-2"), &api, &Value::Null),
        ],
        "the origin and the intent follow the environment"
    );
    let (code, _) = n.send(Method::GET, "/processes/d", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(revision(n).await, rev);
}

pub async fn the_set_and_intent_survive_a_restart(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(b, d.path(), stacks());
    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    n.wait_running("a").await;
    assert_eq!(revision(&n).await, 1, "seeded from the config file");
    let rev = change_the_set(&n).await;

    let events = n.get("/events?process=a&limit=100").await;
    let stop = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change"]["action"] == "stop")
        .unwrap_or_else(|| panic!("no stop change in {events}"));
    assert_eq!(stop["change"]["by"], "test");
    assert_eq!(stop["change"]["revision"], 2);
    let metrics = n.get_text("/metrics").await;
    assert!(
        metrics.contains("state_manager_process_set_changes_total{action=\"add\"} 3"),
        "{metrics}"
    );
    n.stop().await;

    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    runs_the_changed_set(&n, rev).await;
}

pub async fn the_set_and_intent_follow_a_release_lease_handoff(b: &Backend) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(da.path(), &config(b, da.path(), stacks())).await;
    a.wait_role("owner").await;
    a.wait_running("a").await;
    let bn = Node::start(db.path(), &config(b, db.path(), stacks())).await;
    bn.wait_role("standby").await;
    let rev = change_the_set(&a).await;

    // A standby changes nothing and says who owns the environment.
    let owner = a.get("/").await["lease"]["node_id"].clone();
    for (method, path, body) in [
        (Method::POST, "/processes/b/stop", None),
        (Method::POST, "/processes", Some(sleeper("e"))),
        (Method::DELETE, "/processes/b", None),
    ] {
        let (code, problem) = bn.send(method, path, body).await;
        assert_eq!(code, StatusCode::CONFLICT, "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(owner.as_str().unwrap()), "{detail}");
    }

    let (code, released) = a.post("/release-lease", None).await;
    assert_eq!(code, StatusCode::OK, "{released}");
    bn.wait_role("owner").await;
    runs_the_changed_set(&bn, rev).await;
}

pub async fn the_set_and_intent_follow_a_kill_9_failover(b: &Backend) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::spawn_binary(da.path(), &config(b, da.path(), stacks())).await;
    a.wait_role("owner").await;
    a.wait_running("a").await;
    let bn = Node::start(db.path(), &config(b, db.path(), stacks())).await;
    bn.wait_role("standby").await;
    let rev = change_the_set(&a).await;
    // Killed right after the last answer: each change was shipped before it was answered.
    a.kill();
    bn.wait_role("owner").await;
    runs_the_changed_set(&bn, rev).await;
}

pub async fn concurrent_changes_are_ordered_and_none_is_lost(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(b, d.path(), stacks());
    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    n.wait_running("a").await;
    let start = revision(&n).await;
    let adds = (0..4).map(|i| n.post("/processes", Some(sleeper(&format!("p{i}")))));
    let stop = n.post("/processes/b/stop", None);
    let (added, (code, stopped)) = tokio::join!(futures::future::join_all(adds), stop);
    assert_eq!(code, StatusCode::OK, "{stopped}");
    let mut revisions = vec![stopped["revision"].as_u64().unwrap()];
    for (code, a) in &added {
        assert_eq!(*code, StatusCode::CREATED, "{a}");
        revisions.push(a["revision"].as_u64().unwrap());
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (start + 1..=start + 5).collect();
    assert_eq!(revisions, expected, "each change has its own revision");
    assert_eq!(revision(&n).await, start + 5);
    n.stop().await;

    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    for i in 0..4 {
        n.wait_running(&format!("p{i}")).await;
    }
    n.wait_running("a").await;
    assert_eq!(state(&n, "b").await, "stopped");
}

pub async fn invalid_and_conflicting_changes_change_nothing(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let mut web = sleeper("web");
    web["depends_on"] = json!(["a"]);
    let cfg = config(b, d.path(), vec![sleeper("a"), web]);
    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    let pid = n.wait_running("web").await;
    let start = revision(&n).await;

    let (code, problem) = n
        .post(
            "/processes",
            Some(json!({"name": "bad name", "command": "sleep 1", "depends_on": ["nope"]})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    super::assert_problems_at(&problem, &["name", "depends_on"]);
    let (code, problem) = n.post("/processes", Some(sleeper("a"))).await;
    assert_eq!(code, StatusCode::CONFLICT, "{problem}");
    let (code, problem) = n
        .post(
            "/processes",
            Some(json!({"name": "x", "command": "sleep 1", "colour": "red"})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (code, problem) = n.send(Method::DELETE, "/processes/nope", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{problem}");
    let (code, problem) = n.send(Method::DELETE, "/processes/a", None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("web"),
        "{problem}"
    );
    assert_eq!(problem["dependants"], json!(["web"]), "{problem}");
    assert_eq!(revision(&n).await, start, "nothing was committed");
    assert_eq!(n.wait_running("web").await, pid, "nothing was touched");

    let (code, problem) = n
        .send(Method::DELETE, "/processes/a?force=true&timeout=soon", None)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("timeout"),
        "{problem}"
    );
    assert_eq!(revision(&n).await, start, "nothing was committed");
    let (code, removed) = n
        .send(Method::DELETE, "/processes/a?force=true&timeout=2s", None)
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{removed}");
    assert_eq!(revision(&n).await, start + 1);
    assert_eq!(
        n.wait_running("web").await,
        pid,
        "a dependant is not stopped"
    );
    n.stop().await;

    // The file still declares `a`: removed through the API, it stays removed.
    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    n.wait_running("web").await;
    let (code, _) = n.send(Method::GET, "/processes/a", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

pub async fn scaling_touches_only_the_instances_it_adds_or_stops(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let mut web = sleeper("web");
    web["instances"] = json!(2);
    let cfg = config(b, d.path(), vec![sleeper("a"), web]);
    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    let a = n.wait_running("a").await;
    let w1 = n.wait_running("web-1").await;
    let w2 = n.wait_running("web-2").await;
    let start = revision(&n).await;

    let (code, up) = n
        .post("/processes/web/scale", Some(json!({"instances": 4})))
        .await;
    assert_eq!(code, StatusCode::OK, "{up}");
    assert_eq!(up["started"], json!(["web-3", "web-4"]));
    assert_eq!(up["stopped"], json!([]));
    assert_eq!(up["revision"], start + 1);
    n.wait_running("web-4").await;
    let (code, down) = n
        .post("/processes/web/scale", Some(json!({"instances": 1})))
        .await;
    assert_eq!(code, StatusCode::OK, "{down}");
    assert_eq!(down["stopped"], json!(["web-2", "web-3", "web-4"]));
    assert_eq!(down["revision"], start + 2);
    for gone in ["web-2", "web-4"] {
        let (code, _) = n
            .send(Method::GET, &format!("/processes/{gone}"), None)
            .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{gone}");
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{w2}")).exists() || crate::common::zombie(w2 as u32)
    );
    assert_eq!(n.wait_running("web-1").await, w1, "web-1 untouched");
    assert_eq!(n.wait_running("a").await, a, "a untouched");
    let (code, problem) = n
        .post("/processes/web/scale", Some(json!({"instances": 0})))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (code, problem) = n
        .post("/processes/nope/scale", Some(json!({"instances": 2})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(revision(&n).await, start + 2);
    n.stop().await;

    let n = Node::start(d.path(), &cfg).await;
    n.wait_role("owner").await;
    n.wait_running("web-1").await;
    let listed = n.get("/processes?pattern=web-*").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// `web`: 3 instances, each ready 300 ms after it starts (when it writes a file named by its
/// pid, which its readiness probe looks for).
fn ready_web(v: &str, cwd: &std::path::Path) -> Value {
    json!({
        "name": "web", "instances": 3, "env": {"V": v}, "cwd": cwd,
        "command": "sleep 0.3; touch ready-$$; exec sleep 100000",
        "readiness": {"exec": "test -f ready-$STATE_MANAGER_PID", "period": "50ms"},
    })
}

async fn ready_count(n: &Node) -> usize {
    let listed = n.get("/processes?pattern=web-*").await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ready"] == true)
        .count()
}

async fn pids(n: &Node, names: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for name in names {
        out.push(n.wait_running(name).await);
    }
    out
}

pub async fn a_replaced_stack_restarts_rolling_and_keeps_intents(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(
        d.path(),
        &config(
            b,
            d.path(),
            vec![sleeper("a"), ready_web("1", &d.path().join("env"))],
        ),
    )
    .await;
    n.wait_role("owner").await;
    let webs = ["web-1", "web-2", "web-3"];
    let before = pids(&n, &webs).await;
    let a = n.wait_running("a").await;
    let start = revision(&n).await;

    let done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        let mut least = usize::MAX;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            least = least.min(ready_count(&n).await);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        least
    };
    let put = async {
        let r = n
            .send(
                Method::PUT,
                "/processes/web",
                Some(ready_web("2", &n.env_dir())),
            )
            .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let (least, (code, replaced)) = tokio::join!(watch, put);
    assert_eq!(code, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["fields"], json!(["env"]));
    assert_eq!(replaced["restarted"], json!(webs));
    assert_eq!(replaced["revision"], start + 1);
    assert!(
        least >= 2,
        "only {least} of 3 instances were ready during the rolling update"
    );
    let after = pids(&n, &webs).await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "every instance restarted");
    }
    assert_eq!(n.wait_running("a").await, a, "a untouched");

    // A process stopped on purpose stays stopped with the new spec.
    let (code, _) = n.post("/processes/web-1/stop", None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, replaced) = n
        .send(
            Method::PUT,
            "/processes/web",
            Some(ready_web("3", &n.env_dir())),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["restarted"], json!(["web-2", "web-3"]));
    assert_eq!(state(&n, "web-1").await, "stopped");
    // The same spec again changes nothing.
    let (code, same) = n
        .send(
            Method::PUT,
            "/processes/web",
            Some(ready_web("3", &n.env_dir())),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{same}");
    assert_eq!(same["fields"], json!([]));
    assert_eq!(same["revision"], start + 3);
    let (code, problem) = n
        .send(
            Method::PUT,
            "/processes/web",
            Some(json!({"name": "web", "command": ""})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(revision(&n).await, start + 3);
}
