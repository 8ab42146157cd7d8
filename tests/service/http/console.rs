//! `GET /ui`: the console's page and files, served without a token with a strict
//! Content-Security-Policy; `GET /whoami`, which the console signs in with.

use reqwest::StatusCode;
use serde_json::Value;
use state_manager::auth::Scope;

use super::support::{Server, assert_problem};

fn assert_hardened(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{what}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_need_no_token_and_carry_a_strict_policy() {
    let s = Server::start(None).await;
    let r = s.client.get(s.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_hardened(&r, "/ui");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    let mut total = page.len();
    let files: Vec<&str> = page
        .split("\"/ui/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(
        files.contains(&"app.js") && files.contains(&"app.css"),
        "{files:?}"
    );
    let mut scripts = vec!["app.js".to_string()];
    let mut seen = std::collections::BTreeSet::new();
    // The page's files, and every module they import, in turn.
    let mut todo: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let r = s
            .client
            .get(s.url(&format!("/ui/{f}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{f}");
        assert_hardened(&r, &f);
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        total += body.len();
        if f.ends_with(".js") {
            assert_eq!(kind, "text/javascript", "{f}");
            for import in body.split("from \"./").skip(1) {
                let name = import.split('"').next().unwrap().to_string();
                scripts.push(name.clone());
                todo.push(name);
            }
        }
    }
    assert!(total < 150 * 1024, "the console transfers {total} bytes");
    assert!(seen.len() >= 8, "{seen:?}");
    let r = s.client.get(s.url("/ui/nope.js")).send().await.unwrap();
    let body = assert_problem(r, StatusCode::NOT_FOUND).await;
    assert!(
        body["detail"].as_str().unwrap().contains("GET /ui"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_tells_the_scope_and_expiry_of_the_token_presented() {
    let s = Server::start(None).await;
    for (scope, name) in [(Scope::Read, "read"), (Scope::Admin, "admin")] {
        let r = s
            .client
            .get(s.url("/whoami"))
            .bearer_auth(s.token(scope))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["scope"], name, "{v}");
        assert_eq!(v["sub"], "test", "{v}");
        assert!(
            v["expires_at"]
                .as_str()
                .is_some_and(|t| t.starts_with("20")),
            "{v}"
        );
        assert!(v.get("token").is_none(), "{v}");
    }
    let r = s.client.get(s.url("/whoami")).send().await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    s.stop().await;
}
