//! `GET /processes/{name}/logs?tail=N[&follow=true]`: the last lines a process wrote, as JSON;
//! with `follow`, the same lines then every new one as server-sent events, until the client
//! goes away or the server shuts down.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use super::events::sse_json;
use super::extract::{Json, Path, Query};
use crate::logs::{LogLine, RING_LINES};

/// Lines returned when no `tail` is given.
pub const DEFAULT_TAIL: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the last lines (default 100, at most 1000: the lines kept per process).
    #[param(maximum = 1000)]
    tail: Option<usize>,
    /// Keep the stream open: the lines, then every new one, as server-sent events.
    #[serde(default)]
    follow: bool,
}

/// The last lines a process wrote.
///
/// As a JSON array; with `follow=true`, the same lines and then every new one as server-sent
/// events (`event: log`, data one line as JSON; `event: lagged`, data `{"missed": n}` when the
/// reader fell behind) until the client leaves or the server shuts down.
#[utoipa::path(
    get,
    path = "/processes/{name}/logs",
    operation_id = "process_logs",
    tag = "processes",
    params(("name" = String, Path, description = "The process name, e.g. `web-1`"), LogsQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The lines, oldest first (JSON), or a stream of them (`follow=true`)", content(
            (Vec<LogLine> = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "`tail` too large or an unknown query parameter"),
        (status = 404, description = "No process has this name"),
        (status = 503, description = "The service is shutting down"),
    )
)]
pub async fn logs(
    _: Claims,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let tail = q.tail.unwrap_or(DEFAULT_TAIL);
    if tail > RING_LINES {
        return Err(ApiError::BadRequest(format!(
            "tail must be at most {RING_LINES} (the lines kept per process), not {tail}"
        )));
    }
    let buffer = state.supervisor().logs(&name).await?;
    if !q.follow {
        return Ok(Json(buffer.tail(tail)).into_response());
    }
    let (past, rx) = buffer.follow(tail);
    let past = futures::stream::iter(past).map(|l| sse_json("log", &l));
    let live = BroadcastStream::new(rx).map(|item| match item {
        Ok(l) => sse_json("log", &l),
        Err(BroadcastStreamRecvError::Lagged(n)) => {
            sse_json("lagged", &serde_json::json!({ "missed": n }))
        }
    });
    Ok(state.sse(past.chain(live).map(Ok::<_, Infallible>)))
}
