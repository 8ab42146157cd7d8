//! `GET /openapi.json` against the real router: every route is documented with its method and
//! scope, every documented operation is answered by its handler, and no route is registered
//! outside the documented builder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use state_manager::auth::Scope;

use super::support::{DEADLINE, SLEEPERS, Server, assert_problem};
use crate::common::wait_for_async;

/// The methods an OpenAPI path item can hold that axum routes.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// One harmless request per documented operation (by operation id), in an order that works: a
/// checkpoint exists before it is read, restored and deleted; the lease is released before it
/// is acquired. `{id}` stands for the checkpoint taken. The status is what our handler answers.
const PROBES: &[(&str, &str, Option<&str>, u16)] = &[
    ("healthz", "/healthz", None, 200),
    ("console", "/ui", None, 200),
    ("console_file", "/ui/app.js", None, 200),
    ("whoami", "/whoami", None, 200),
    ("status", "/", None, 200),
    ("openapi", "/openapi.json", None, 200),
    ("get_config", "/config", None, 200),
    ("configure", "/config", Some(SLEEPERS), 409),
    ("reload_config", "/config?dry_run=true", Some(SLEEPERS), 200),
    ("list_processes", "/processes?pattern=web-*", None, 200),
    ("get_process", "/processes/web-1", None, 200),
    ("process_logs", "/processes/web-1/logs?tail=5", None, 200),
    (
        "stop_processes",
        "/processes/worker/stop?timeout=10s",
        None,
        200,
    ),
    ("start_processes", "/processes/worker/start", None, 200),
    ("restart_processes", "/processes/worker/restart", None, 200),
    (
        "add_process",
        "/processes",
        Some(r#"{"name": "extra", "command": "sleep", "args": ["1000"]}"#),
        201,
    ),
    (
        "scale_process",
        "/processes/extra/scale",
        Some(r#"{"instances": 2}"#),
        200,
    ),
    (
        "replace_process",
        "/processes/extra",
        Some(r#"{"name": "extra", "command": "sleep", "args": ["999"], "instances": 2}"#),
        200,
    ),
    ("remove_process", "/processes/extra?timeout=5s", None, 204),
    ("list_ports", "/ports", None, 200),
    ("list_events", "/events?limit=5&process=web-*", None, 200),
    ("stream_events", "/events/stream?process=web-*", None, 200),
    ("metrics", "/metrics", None, 200),
    (
        "create_checkpoint",
        "/checkpoint",
        Some(r#"{"label": "openapi"}"#),
        201,
    ),
    ("list_checkpoints", "/checkpoints?limit=5", None, 200),
    ("get_checkpoint", "/checkpoints/{id}", None, 200),
    (
        "restore",
        "/restore",
        Some(r#"{"checkpoint": "{id}"}"#),
        200,
    ),
    ("delete_checkpoint", "/checkpoints/{id}", None, 204),
    (
        "release_lease",
        "/release-lease",
        Some(r#"{"checkpoint": false}"#),
        200,
    ),
    // Released: not the owner, so not ready.
    ("readyz", "/readyz", None, 503),
    ("acquire_lease", "/acquire-lease", None, 200),
];

/// An operation of the document.
struct Op {
    method: String,
    path: String,
    scope: Option<String>,
}

/// Every operation of `doc` by operation id.
fn operations(doc: &Value) -> BTreeMap<String, Op> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let id = op["operationId"].as_str().unwrap().to_string();
            let scope = op["security"][0]["bearer"][0].as_str().map(str::to_string);
            let op = Op {
                method: method.to_uppercase(),
                path: path.clone(),
                scope,
            };
            assert!(ops.insert(id.clone(), op).is_none(), "{id} twice");
        }
    }
    ops
}

/// `concrete` (query left out) fits the template `path` segment by segment.
fn fits(path: &str, concrete: &str) -> bool {
    let concrete = concrete.split('?').next().unwrap();
    let (a, b): (Vec<_>, Vec<_>) = (path.split('/').collect(), concrete.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(t, c)| t == c || (t.starts_with('{') && t.ends_with('}')))
}

/// The template with every parameter filled with a harmless value.
fn filled(path: &str) -> String {
    path.replace("{name}", "web-1")
        .replace("{pattern}", "nothing-matches")
        .replace("{id}", "20260101T000000.000Z-00000000")
        .replace("{file}", "app.js")
}

async fn document(s: &Server) -> Value {
    let doc = s.get_json("/openapi.json").await;
    assert_eq!(
        doc,
        serde_json::to_value(state_manager::http::openapi::document()).unwrap(),
        "the served document is the one built with the router"
    );
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_of_this_version_and_needs_a_token() {
    let s = Server::start(None).await;
    let r = s.client.get(s.url("/openapi.json")).send().await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = s
        .client
        .get(s.url("/openapi.json"))
        .bearer_auth(s.token(Scope::Read))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(document(&s).await, doc);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_answered_by_its_handler() {
    let s = Server::start(Some(SLEEPERS)).await;
    let ops = operations(&document(&s).await);
    let probed: BTreeSet<&str> = PROBES.iter().map(|p| p.0).collect();
    let documented: BTreeSet<&str> = ops.keys().map(String::as_str).collect();
    assert_eq!(
        probed, documented,
        "every operation has a probe, and no more"
    );
    wait_for_async("the node to own the lease", DEADLINE, || async {
        (s.get_json("/").await["role"] == "owner").then_some(())
    })
    .await;
    let mut checkpoint = String::new();
    for (id, concrete, body, status) in PROBES {
        let op = &ops[*id];
        assert!(fits(&op.path, concrete), "{id}: {concrete} vs {}", op.path);
        let path = concrete.replace("{id}", &checkpoint);
        let mut req = s
            .client
            .request(op.method.parse().unwrap(), s.url(&path))
            .bearer_auth(s.token(Scope::Admin));
        if let Some(b) = body {
            let b = b.replace("{id}", &checkpoint);
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.unwrap();
        let what = format!("{} {path} ({id})", op.method);
        if *status >= 400 {
            let got = StatusCode::from_u16(*status).unwrap();
            let body = assert_problem(r, got).await;
            let detail = body["detail"].as_str().unwrap();
            assert!(!detail.starts_with("no endpoint at"), "{what}: {body}");
            continue;
        }
        assert_eq!(r.status().as_u16(), *status, "{what}");
        if *id == "create_checkpoint" {
            let v: Value = r.json().await.unwrap();
            checkpoint = v["id"].as_str().unwrap().to_string();
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_that_are_not_documented_are_not_routed() {
    let s = Server::start(None).await;
    let ops = operations(&document(&s).await);
    let mut routed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for op in ops.values() {
        routed.entry(&op.path).or_default().insert(&op.method);
    }
    for (path, methods) in routed {
        for method in METHODS.map(str::to_uppercase) {
            if methods.contains(method.as_str()) {
                continue;
            }
            let r = s.call(method.parse().unwrap(), &filled(path)).await;
            let body = assert_problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
            assert!(body["detail"].as_str().unwrap().contains(&method), "{body}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_names_the_scope_the_server_enforces() {
    let s = Server::start(None).await;
    let read = s.token(Scope::Read);
    for (id, op) in operations(&document(&s).await) {
        let path = filled(&op.path);
        let method: Method = op.method.parse().unwrap();
        let send = |token: Option<&str>| {
            let mut req = s.client.request(method.clone(), s.url(&path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let scope = op.scope.as_deref();
        match (id.as_str(), scope) {
            ("healthz" | "console" | "console_file", None) => {
                assert_eq!(send(None).await.unwrap().status(), StatusCode::OK, "{id}");
                continue;
            }
            ("readyz", None) => {
                // Unconfigured, so not ready: answered without a token all the same.
                let r = send(None).await.unwrap();
                assert_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
                continue;
            }
            (_, Some("read")) => assert_eq!(op.method, "GET", "{id}: only GETs are read"),
            (_, Some("admin")) => assert_ne!(op.method, "GET", "{id}: a GET needs only read"),
            _ => panic!("{id}: unexpected scope {scope:?}"),
        }
        let r = send(None).await.unwrap();
        assert!(r.headers().contains_key("www-authenticate"), "{id}");
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
        let r = send(Some(&read)).await.unwrap();
        if scope == Some("admin") {
            assert_problem(r, StatusCode::FORBIDDEN).await;
        } else {
            let status = r.status();
            assert!(status != 401 && status != 403, "{id} with read: {status}");
        }
    }
    s.stop().await;
}

/// A tripwire: routes are registered only through `utoipa_axum::routes!` in `http::api`, which
/// documents them. A plain `Router` or a `.route(...)` anywhere else in the library would serve
/// an undocumented route.
#[test]
fn routes_are_registered_only_through_the_documented_builder() {
    let plain = regex::Regex::new(
        r"(^|[^A-Za-z_])Router::new\(|\.(route|route_service|nest|nest_service|fallback_service)\(",
    )
    .unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        // Unit tests (at the end of each file) build their own routers.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            if plain.is_match(line) {
                found.push(format!("{}:{}: {line}", entry.path().display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "routes registered outside the documented builder (use `.routes(routes!(handler))` \
         in http::api with a #[utoipa::path] on the handler):\n{}",
        found.join("\n")
    );
}
