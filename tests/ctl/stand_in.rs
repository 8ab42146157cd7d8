//! A stand-in for the checkpoint, restore and lease endpoints, which the state-manager server
//! does not serve yet: a small real axum server on 127.0.0.1:0 answering with the documented
//! shapes (`POST /checkpoint` → 201 summary; `GET /checkpoints` → `{"checkpoints": [...]}`;
//! `GET`/`DELETE /checkpoints/{id}`; `POST /restore`; `POST /release-lease`;
//! `POST /acquire-lease`) and problem+json errors (401, 404, 409, 422 with `problems`). Bodies
//! go through axum's `Json` extractor, so a request without a JSON body is refused as the real
//! server would. Once the real routes exist, these tests should run against the real server.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The only token the stand-in accepts.
pub const TOKEN: &str = "stand-in-token";

#[derive(Default)]
struct Node {
    /// Newest first.
    checkpoints: Vec<Value>,
    held: bool,
    epoch: u64,
    taken: u32,
}

type Shared = Arc<Mutex<Node>>;

pub struct StandIn {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Serving, with the lease held at epoch 3 and no checkpoints.
    pub fn start() -> StandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let node = Arc::new(Mutex::new(Node {
            held: true,
            epoch: 3,
            ..Node::default()
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router(node))
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        StandIn {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(JoinHandle::join);
    }
}

fn router(node: Shared) -> Router {
    Router::new()
        .route("/checkpoint", post(checkpoint))
        .route("/checkpoints", get(list))
        .route("/checkpoints/{id}", get(show).delete(delete))
        .route("/restore", post(restore))
        .route("/release-lease", post(release))
        .route("/acquire-lease", post(acquire))
        .layer(from_fn(auth))
        .with_state(node)
}

fn problem(status: StatusCode, detail: &str, problems: Option<Value>) -> Response {
    let mut body = json!({
        "type": "urn:state-manager:problem:x", "title": status.canonical_reason(),
        "status": status.as_u16(), "detail": detail,
    });
    if let Some(p) = problems {
        body["problems"] = p;
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

async fn auth(req: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    match req.headers().get(header::AUTHORIZATION) {
        Some(v) if v == expected.as_str() => next.run(req).await,
        _ => problem(StatusCode::UNAUTHORIZED, "invalid bearer token", None),
    }
}

/// A new catalog entry, newest first.
fn take(node: &mut Node, label: Option<&str>) -> Value {
    node.taken += 1;
    let n = node.taken;
    let mut c = json!({
        "id": format!("20261123T2018{n:02}.000Z-{n:08x}"),
        "created_at": format!("2026-11-23T20:18:{n:02}Z"),
        "files": 12, "bytes": 1_258_291, "uploaded_bytes": 307_200, "chunks_new": 4,
        "freeze_ms": 12, "duration_ms": 1300, "epoch": node.epoch,
    });
    if let Some(l) = label {
        c["label"] = json!(l);
    }
    node.checkpoints.insert(0, c.clone());
    c
}

fn not_held() -> Response {
    problem(
        StatusCode::CONFLICT,
        "this node does not hold the lease; acquire it first",
        None,
    )
}

async fn checkpoint(State(node): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut node = node.lock().unwrap();
    if !node.held {
        return not_held();
    }
    let c = take(&mut node, body["label"].as_str());
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn list(State(node): State<Shared>) -> Response {
    let node = node.lock().unwrap();
    Json(json!({ "checkpoints": node.checkpoints })).into_response()
}

fn unknown(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        &format!("no checkpoint {id:?}; list them with GET /checkpoints"),
        None,
    )
}

async fn show(State(node): State<Shared>, Path(id): Path<String>) -> Response {
    let node = node.lock().unwrap();
    match node.checkpoints.iter().find(|c| c["id"] == id.as_str()) {
        Some(c) => Json(c.clone()).into_response(),
        None => unknown(&id),
    }
}

async fn delete(State(node): State<Shared>, Path(id): Path<String>) -> Response {
    let mut node = node.lock().unwrap();
    let before = node.checkpoints.len();
    node.checkpoints.retain(|c| c["id"] != id.as_str());
    match node.checkpoints.len() < before {
        true => StatusCode::NO_CONTENT.into_response(),
        false => unknown(&id),
    }
}

async fn restore(State(node): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut node = node.lock().unwrap();
    let wanted = body["checkpoint"].as_str().unwrap_or_default();
    if wanted.is_empty() {
        let problems =
            json!([{"path": "checkpoint", "message": "must be a checkpoint id or \"latest\""}]);
        let detail = "the request has 1 problem(s)";
        return problem(StatusCode::UNPROCESSABLE_ENTITY, detail, Some(problems));
    }
    let found = match wanted {
        "latest" => node.checkpoints.first(),
        id => node.checkpoints.iter().find(|c| c["id"] == id),
    };
    let Some(restored) = found.map(|c| c["id"].clone()) else {
        return unknown(wanted);
    };
    let undo = take(&mut node, Some("undo"));
    let answer = json!({
        "restored": restored, "undo_checkpoint": undo["id"], "files": 12,
        "bytes": 1_258_291, "duration_ms": 2100,
    });
    Json(answer).into_response()
}

async fn release(State(node): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut node = node.lock().unwrap();
    if !node.held {
        return not_held();
    }
    let last = match body["checkpoint"].as_bool() {
        Some(true) => take(&mut node, Some("final")),
        _ => Value::Null,
    };
    node.held = false;
    Json(json!({ "released_epoch": node.epoch, "final_checkpoint": last })).into_response()
}

async fn acquire(State(node): State<Shared>, Json(_): Json<Value>) -> Response {
    let mut node = node.lock().unwrap();
    if node.held {
        return problem(
            StatusCode::CONFLICT,
            "this node already holds the lease",
            None,
        );
    }
    node.held = true;
    node.epoch += 1;
    Json(json!({ "role": "owner", "epoch": node.epoch, "unknown_field": [1, 2] })).into_response()
}
