//! `PUT /config` reloads the config file with a plan: only the difference is acted on
//! (untouched processes keep their pids), stacks added through the API are kept, a new global
//! `env` reaches untouched processes at their next start, and a reload that is invalid, a dry
//! run, a node-only change or a stale `If-Match` changes nothing at all.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::node::Node;

fn sleeper(name: &str) -> Value {
    json!({"name": name, "command": "sleep", "args": ["100000"]})
}

fn old_stacks() -> Vec<Value> {
    let mut c = sleeper("c");
    c["env"] = json!({"X": "1"});
    let mut web = sleeper("web");
    web["instances"] = json!(2);
    vec![sleeper("a"), sleeper("b"), c, web]
}

/// The old config with `b` removed, `c` changed (command and env), `d` added and a global env.
fn new_config(b: &Backend, n: &Node) -> Value {
    let mut stacks = old_stacks();
    stacks.remove(1);
    stacks[1] = json!({"name": "c", "command": "sleep", "args": ["200000"], "env": {"X": "2"}});
    stacks.push(sleeper("d"));
    let mut cfg = config(b, &n.data_dir, stacks);
    cfg["env"] = json!({"G": "1"});
    cfg
}

async fn revision(n: &Node) -> u64 {
    n.get("/").await["revision"].as_u64().unwrap()
}

async fn pids(n: &Node, names: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for name in names {
        out.push(n.wait_running(name).await);
    }
    out
}

/// The environment of `pid`, one `KEY=value\n` line per variable.
async fn environ(pid: u64) -> String {
    let vars = crate::common::environ(pid as u32).await;
    vars.iter().map(|v| format!("{v}\n")).collect()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

pub async fn a_reload_applies_only_the_difference(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(b, d.path(), old_stacks())).await;
    n.wait_role("owner").await;
    let (code, added) = n.post("/processes", Some(sleeper("extra"))).await;
    assert_eq!(code, StatusCode::CREATED, "{added}");
    let untouched = ["a", "web-1", "web-2", "extra"];
    let before = pids(&n, &untouched).await;
    let c = n.wait_running("c").await;
    let start = revision(&n).await;

    let new = new_config(b, &n);
    let (code, headers, plan) = n.send_full(Method::PUT, "/config", Some(new.clone())).await;
    assert_eq!(code, StatusCode::OK, "{plan}");
    assert_eq!(plan["dry_run"], false);
    assert_eq!(names(&plan["added"]), ["d"]);
    assert_eq!(names(&plan["removed"]), ["b"]);
    assert_eq!(
        plan["changed"],
        json!([{"name": "c", "fields": ["args", "env"]}])
    );
    assert_eq!(names(&plan["unchanged"]), ["a", "web"]);
    assert_eq!(
        names(&plan["kept"]),
        ["extra"],
        "added through the API: kept"
    );
    assert_eq!(names(&plan["env_affected"]), untouched);
    assert_eq!(plan["revision"], start + 1);
    assert_eq!(headers["etag"], format!("\"{}\"", start + 1).as_str());
    assert_eq!(revision(&n).await, start + 1);

    assert_eq!(
        pids(&n, &untouched).await,
        before,
        "untouched pids never change"
    );
    let c2 = n.wait_running("c").await;
    assert_ne!(c2, c, "c restarted with its new spec");
    let env = environ(c2).await;
    assert!(env.contains("X=2\n") && env.contains("G=1\n"), "{env}");
    n.wait_running("d").await;
    let (code, _) = n.send(Method::GET, "/processes/b", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "b is gone");
    assert!(
        !environ(before[0]).await.contains("G=1"),
        "a keeps its environment while it runs"
    );

    // The file is the new config, written 0600; GET /config shows it.
    let path = d.path().join("config.json");
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written, new);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(n.get("/config").await["env"]["G"], "1");

    // The new global env reaches `a` at its next start.
    let (code, _) = n.post("/processes/a/restart", None).await;
    assert_eq!(code, StatusCode::OK);
    let old_a = before[0];
    let a = n
        .wait("a restarted", crate::common::node::LONG, |n| async move {
            let p = n.try_get("/processes/a").await?;
            let pid = p["pid"].as_u64()?;
            (p["state"] == "running" && pid != old_a).then_some(pid)
        })
        .await;
    let env = environ(a).await;
    assert!(env.contains("G=1\n"), "{env}");

    // The same config again plans nothing and commits nothing.
    let (code, again) = n.send(Method::PUT, "/config", Some(new)).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["changed"], json!([]));
    assert_eq!(again["env_affected"], json!([]));
    assert_eq!(again["revision"], revision(&n).await);
    n.stop().await;

    // After a restart the node runs the reloaded set.
    let n = Node::start_unconfigured(d.path()).await;
    n.wait_role("owner").await;
    for name in ["a", "c", "d", "extra", "web-2"] {
        n.wait_running(name).await;
    }
    let (code, _) = n.send(Method::GET, "/processes/b", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

pub async fn a_refused_reload_changes_nothing(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let n = Node::start(d.path(), &config(b, d.path(), old_stacks())).await;
    n.wait_role("owner").await;
    let all = ["a", "b", "c", "web-1", "web-2"];
    let before = pids(&n, &all).await;
    let path = d.path().join("config.json");
    let file = std::fs::read(&path).unwrap();
    let start = revision(&n).await;
    let unchanged = |why: &'static str| {
        let (n, file, path, before) = (&n, &file, &path, &before);
        async move {
            assert_eq!(&std::fs::read(path).unwrap(), file, "{why}: the file");
            assert_eq!(revision(n).await, start, "{why}: the revision");
            assert_eq!(&pids(n, &all).await, before, "{why}: the pids");
        }
    };

    let (code, plan) = n
        .send(Method::PUT, "/config?dry_run=true", Some(new_config(b, &n)))
        .await;
    assert_eq!(code, StatusCode::OK, "{plan}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(names(&plan["added"]), ["d"]);
    assert_eq!(names(&plan["removed"]), ["b"]);
    assert_eq!(plan["revision"], start);
    unchanged("a dry run").await;

    let mut bad = new_config(b, &n);
    bad["stacks"][0]["depends_on"] = json!(["nope"]);
    bad["stacks"][1]["command"] = json!("");
    bad["restart_delay"] = json!("soon");
    let (code, problem) = n.send(Method::PUT, "/config", Some(bad)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    super::assert_problems_at(
        &problem,
        &["stacks[0].depends_on", "stacks[1].command", "restart_delay"],
    );
    unchanged("an invalid config").await;

    let mut moved = new_config(b, &n);
    moved["node_id"] = json!("somewhere-else");
    moved["lease"]["ttl"] = json!("9s");
    let (code, problem) = n.send(Method::PUT, "/config", Some(moved)).await;
    assert_eq!(code, StatusCode::CONFLICT, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("node_id") && detail.contains("lease"),
        "{detail}"
    );
    assert!(detail.contains("restart"), "says what to do: {detail}");
    unchanged("a node-only change").await;

    let stale = format!("\"{}\"", start + 7);
    let if_match = [("if-match", stale.as_str())];
    for (method, path, body) in [
        (Method::PUT, "/config", Some(new_config(b, &n))),
        (Method::PUT, "/processes/a", Some(sleeper("a"))),
        (Method::DELETE, "/processes/b", None),
    ] {
        let (code, _, problem) = n.send_with(method, path, body, &if_match).await;
        assert_eq!(code, StatusCode::PRECONDITION_FAILED, "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("revision {start}")), "{detail}");
    }
    let (code, _, problem) = n
        .send_with(
            Method::PUT,
            "/config",
            Some(new_config(b, &n)),
            &[("if-match", "soon")],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{problem}");
    unchanged("a stale If-Match").await;

    let (_, headers, _) = n.send_full(Method::GET, "/", None).await;
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{start}\""));
    let (code, _, plan) = n
        .send_with(
            Method::PUT,
            "/config",
            Some(new_config(b, &n)),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{plan}");
    assert_eq!(plan["revision"], start + 1);
    assert_eq!(n.wait_running("a").await, before[0]);

    // A stack added through the API that depends on one the new file removes: the reload is
    // refused and says which, rather than keeping the stack without its dependency.
    let mut e = sleeper("e");
    e["depends_on"] = json!(["d"]);
    let (code, added) = n.send(Method::POST, "/processes", Some(e)).await;
    assert!(code.is_success(), "{code}: {added}");
    let (at, file) = (revision(&n).await, std::fs::read(&path).unwrap());
    let kept = pids(&n, &["a", "d", "e"]).await;
    let without_d = config(b, &n.data_dir, old_stacks());
    for dry_run in ["?dry_run=true", ""] {
        let (code, problem) = n
            .send(
                Method::PUT,
                &format!("/config{dry_run}"),
                Some(without_d.clone()),
            )
            .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        super::assert_problems_at(&problem, &["stacks"]);
        let message = problem["problems"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(r#""e""#) && message.contains(r#""d""#),
            "names both: {message}"
        );
        assert!(
            message.contains("DELETE /processes/e"),
            "says what to do: {message}"
        );
    }
    assert_eq!(revision(&n).await, at, "the revision");
    assert_eq!(std::fs::read(&path).unwrap(), file, "the file");
    assert_eq!(pids(&n, &["a", "d", "e"]).await, kept, "the pids");
}
