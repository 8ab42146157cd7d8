//! The HTTP control plane: the router, the shared [`AppState`], and the layers every request
//! goes through (request id, tracing, metrics, body limit, per-route timeouts); the connections
//! under it (how many, how long a client may take to send a request) are `listen.rs`'s.
//!
//! One file per resource; handlers talk to the supervisor only through its handle. Invariants:
//! every route except `GET /healthz`, `GET /readyz` and the console's page and files (`GET /ui`,
//! `/ui/{file}`: static, the same for everyone) authenticates through the [`auth`] extractors;
//! every error (including 404, 405 and extractor rejections) is `application/problem+json`;
//! streaming routes (server-sent events) have no request timeout but end when the server shuts
//! down.

pub mod auth;
#[cfg(test)]
mod body_proptests;
pub mod config;
pub mod console;
pub mod environment;
pub mod error;
pub mod events;
pub mod extract;
pub mod lease;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod ports;
pub mod processes;
pub mod procset;
pub mod ready;
pub mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::feed::EventLog;
use crate::hooks::Hooks;
use crate::node::Node;
use crate::service::Service;
use crate::supervisor::SupervisorHandle;
use crate::webhooks::SinksMonitor;
use error::ApiError;
use metrics::Metrics;

/// Largest request body accepted (a config is a few kB).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Time allowed to an ordinary request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to a request that waits for processes (stop waits up to their stop timeout)
/// and, later, for checkpoints and restores.
pub const LONG_REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Interval of SSE keep-alive comments, so proxies keep idle streams open.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    supervisor: SupervisorHandle,
    auth: Auth,
    service: Service,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    webhooks: SinksMonitor,
    warnings: Vec<String>,
    started: Instant,
    closing: CancellationToken,
}

/// Everything [`AppState::new`] needs.
pub struct StateParts {
    pub supervisor: SupervisorHandle,
    pub auth: Auth,
    /// The config and the environment, once configured; also the history for `GET /events`.
    pub service: Service,
    /// The hooks, for their latest reports in `GET /`.
    pub hooks: Hooks,
    /// The webhook sinks' counters, for `GET /`.
    pub webhooks: SinksMonitor,
    /// Shown in `GET /` (e.g. running without authentication).
    pub warnings: Vec<String>,
}

impl AppState {
    pub fn new(p: StateParts) -> AppState {
        let metrics = Metrics::spawn(p.supervisor.subscribe());
        AppState {
            inner: Arc::new(Inner {
                supervisor: p.supervisor,
                auth: p.auth,
                service: p.service,
                metrics,
                hooks: p.hooks,
                webhooks: p.webhooks,
                warnings: p.warnings,
                started: Instant::now(),
                closing: CancellationToken::new(),
            }),
        }
    }

    pub fn hooks(&self) -> &Hooks {
        &self.inner.hooks
    }
    pub fn webhooks(&self) -> &SinksMonitor {
        &self.inner.webhooks
    }
    pub fn supervisor(&self) -> &SupervisorHandle {
        &self.inner.supervisor
    }
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }
    pub fn service(&self) -> &Service {
        &self.inner.service
    }
    pub fn configured(&self) -> bool {
        self.inner.service.configured()
    }
    pub fn events(&self) -> &dyn EventLog {
        &self.inner.service
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The environment, once the service is configured.
    pub fn node(&self) -> Option<Arc<Node>> {
        self.inner.service.node()
    }
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// End every open stream: called when the server starts shutting down, so that graceful
    /// shutdown does not wait for clients that would never hang up.
    pub fn close_streams(&self) {
        self.inner.closing.cancel();
    }

    /// A server-sent-event response of `stream`, with keep-alives, that ends at shutdown.
    pub fn sse<S>(&self, stream: S) -> Response
    where
        S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
    {
        let closing = self.inner.closing.clone().cancelled_owned();
        Sse::new(stream.take_until(closing))
            .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
            .into_response()
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api();
    routes
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(Extension(openapi::Served::new(&doc)))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::x_request_id())
        // ApiError logs each 5xx once, at the level its kind deserves (a standby's 503 from
        // /readyz is no fault); the trace layer's own line would repeat it at ERROR.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Every route with its description: the only place routes are registered. Each `routes!`
/// registers handlers under the path and methods of their `#[utoipa::path]`, so the router and
/// the OpenAPI document come from the same list.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let quick = OpenApiRouter::new()
        .routes(routes!(status::status))
        .routes(routes!(console::whoami))
        .routes(routes!(config::get, config::post))
        .routes(routes!(processes::list))
        .routes(routes!(processes::get))
        .routes(routes!(ports::list))
        .routes(routes!(events::list))
        .routes(routes!(metrics::scrape))
        .routes(routes!(openapi::serve));
    let long = OpenApiRouter::new()
        .routes(routes!(config::put))
        .routes(routes!(procset::create))
        .routes(routes!(procset::delete, procset::replace))
        .routes(routes!(procset::scale))
        .routes(routes!(processes::start))
        .routes(routes!(processes::stop))
        .routes(routes!(processes::restart))
        .routes(routes!(environment::create))
        .routes(routes!(environment::list))
        .routes(routes!(environment::get, environment::delete))
        .routes(routes!(environment::restore))
        .routes(routes!(lease::release))
        .routes(routes!(lease::acquire));
    // Streams: no timeout; they end when the client leaves or at shutdown.
    let streams = OpenApiRouter::new()
        .routes(routes!(logs::logs))
        .routes(routes!(events::stream));
    let (routes, mut doc) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(status::healthz))
        .routes(routes!(ready::readyz))
        .routes(routes!(console::page))
        .routes(routes!(console::file))
        .merge(openapi::with_deadline(quick, REQUEST_TIMEOUT))
        .merge(openapi::with_deadline(long, LONG_REQUEST_TIMEOUT))
        .merge(streams)
        .split_for_parts();
    openapi::finish(&mut doc);
    (routes, doc)
}

fn span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id = id)
}

/// Answer 503 (problem+json) when the route's time limit passes.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout(format!(
            "the request did not finish within {}; what it started may still be going on, check GET /processes",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Payload {
        n: u32,
    }

    /// POST `body` to a route taking `extract::Json<Payload>` with a 64-byte body limit.
    async fn send(content_type: &str, body: impl Into<Body>) -> (StatusCode, serde_json::Value) {
        let app: Router = Router::new()
            .route(
                "/",
                post(|extract::Json(p): extract::Json<Payload>| async move { extract::Json(p) }),
            )
            .layer(DefaultBodyLimit::max(64));
        let req = Request::post("/")
            .header("content-type", content_type)
            .body(body.into())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        if status != StatusCode::OK {
            assert_eq!(resp.headers()["content-type"], error::PROBLEM_JSON);
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn json_rejections_are_problem_json_with_their_status() {
        let json = "application/json";
        assert_eq!(
            send(json, r#"{"n": 1}"#).await.1,
            serde_json::json!({"n": 1})
        );
        for (ct, body, status) in [
            (json, r#"{"n": "#.to_string(), StatusCode::BAD_REQUEST),
            (
                "text/plain",
                r#"{"n": 1}"#.to_string(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                json,
                format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(100)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                json,
                r#"{"n": "one"}"#.to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (got, problem) = send(ct, body).await;
            assert_eq!(got, status, "{problem}");
            assert_eq!(problem["status"], status.as_u16());
            assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[tokio::test]
    async fn a_slow_route_gets_a_problem_json_503_at_its_deadline() {
        let app: Router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "done"
                }),
            )
            .layer(from_fn_with_state(Duration::from_millis(50), deadline));
        let req = Request::get("/slow").body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["content-type"], error::PROBLEM_JSON);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["detail"].as_str().unwrap().contains("50ms"), "{v}");
    }
}
