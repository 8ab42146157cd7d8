//! The one fake storage fault of the tests: throttling. Neither moto nor s3s-fs can be made to
//! answer `503 SlowDown` on demand, so this small HTTP proxy stands in front of a real server:
//! while [`ThrottleProxy::set`] is on it answers every request as S3 does when it throttles
//! (503 with S3's XML error body, code `SlowDown`); otherwise it forwards the request as it
//! came and returns the server's answer. Everything else the node meets is the real server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// S3's answer when it throttles.
const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
    <Message>Please reduce your request rate.</Message><RequestId>throttle-proxy</RequestId>\
    </Error>";

/// Headers of one hop, not forwarded (the client on each side sets its own). A response keeps
/// its `Content-Length`: a HEAD's is the object's size.
const HOP: [HeaderName; 3] = [header::HOST, header::CONNECTION, header::TRANSFER_ENCODING];
const REQUEST_HOP: [HeaderName; 2] = [header::CONTENT_LENGTH, header::EXPECT];

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    on: Arc<AtomicBool>,
    throttled: Arc<AtomicU64>,
}

/// A proxy on a loopback port; stops when dropped.
pub struct ThrottleProxy {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottleProxy {
    /// Forward to `upstream` (`http://host:port`), not throttling yet.
    pub async fn start(upstream: &str) -> ThrottleProxy {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            on: Arc::default(),
            throttled: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ThrottleProxy { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `503 SlowDown` to every request from now on (`true`), or forward again.
    pub fn set(&self, on: bool) {
        self.shared.on.store(on, Ordering::SeqCst);
    }

    /// Requests answered `503 SlowDown` so far.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    if s.on.load(Ordering::SeqCst) {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        let xml = [(header::CONTENT_TYPE, "application/xml")];
        return (StatusCode::SERVICE_UNAVAILABLE, xml, SLOW_DOWN).into_response();
    }
    match forward(&s, req).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("throttle proxy: {e}")).into_response(),
    }
}

async fn forward(s: &Shared, req: Request) -> Result<Response, Box<dyn std::error::Error>> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = s
        .client
        .request(parts.method, format!("{}{path}", s.upstream));
    let hop = |n: &HeaderName| HOP.contains(n) || REQUEST_HOP.contains(n);
    for (name, value) in parts.headers.iter().filter(|(n, _)| !hop(n)) {
        out = out.header(name, value);
    }
    let answer = out.body(body).send().await?;
    let mut back = Response::builder().status(answer.status());
    for (name, value) in answer.headers().iter().filter(|(n, _)| !HOP.contains(n)) {
        back = back.header(name, value);
    }
    Ok(back.body(Body::from(answer.bytes().await?))?)
}
