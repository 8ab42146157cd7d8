//! Every error the router itself produces is problem+json: unknown path, wrong method, and
//! request ids on every answer.

use reqwest::{Method, StatusCode};

use super::support::{SLEEPERS, Server, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_are_problem_json() {
    let s = Server::start(Some(SLEEPERS)).await;
    let body = assert_problem(s.call(Method::GET, "/nope").await, StatusCode::NOT_FOUND).await;
    assert!(body["detail"].as_str().unwrap().contains("/nope"), "{body}");
    assert_problem(
        s.call(Method::GET, "/processes/web-1/logs/extra").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for (method, path) in [
        (Method::DELETE, "/"),
        (Method::PATCH, "/config"),
        (Method::PATCH, "/processes"),
        (Method::GET, "/processes/web-1/stop"),
        (Method::POST, "/metrics"),
        (Method::POST, "/healthz"),
    ] {
        let r = s.call(method.clone(), path).await;
        let body = assert_problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
        assert!(
            body["detail"].as_str().unwrap().contains(method.as_str()),
            "{body}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id() {
    let s = Server::start(None).await;
    let r = s.call(Method::GET, "/").await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "runbook-step-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "runbook-step-7");
    s.stop().await;
}

/// Bodies are objects where objects are meant: `POST /release-lease` with `[]` once released the
/// lease (its fields all have defaults, and serde took the array as the struct's positional
/// form). It is refused with 422 and the node keeps the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_body_is_refused_and_changes_nothing() {
    let s = Server::start(Some(SLEEPERS)).await;
    crate::common::wait_for_async(
        "the node to own the lease",
        super::support::DEADLINE,
        || async { (s.get_json("/").await["role"] == "owner").then_some(()) },
    )
    .await;
    for (path, body) in [
        ("/release-lease", "[]"),
        ("/release-lease", "[false]"),
        ("/checkpoint", "[]"),
        ("/release-lease", "null"),
    ] {
        let r = s
            .client
            .post(s.url(path))
            .bearer_auth(s.token(state_manager::auth::Scope::Admin))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            p["detail"].as_str().unwrap().contains("JSON object"),
            "{path} {body}: {p}"
        );
    }
    assert_eq!(s.get_json("/").await["role"], "owner");
    s.stop().await;
}
