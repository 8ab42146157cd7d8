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
use super::error::{ApiError, Json, Path, Query};
use super::events::sse_json;
use crate::supervisor::logs::RING_LINES;

/// Lines returned when no `tail` is given.
pub const DEFAULT_TAIL: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// `GET /processes/{name}/logs`.
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
