//! Lifecycle events: `GET /events` (recent history, from the app state's
//! [`crate::feed::EventLog`]) and `GET /events/stream` (live, as server-sent events).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use super::extract::Query;
use crate::feed::{FeedEvent, MEMORY_CAPACITY};
use crate::supervisor::{Usage, UsageTable};

/// Events `GET /events` returns when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// How many of the latest events (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only the events of processes whose name matches this glob, e.g. `web-*`.
    #[param(value_type = Option<crate::config::NameGlob>)]
    process: Option<String>,
}

/// A glob from a query parameter, or 400 naming it.
pub fn glob_param(name: &str, value: Option<&str>) -> Result<Option<glob::Pattern>, ApiError> {
    value
        .map(|v| {
            crate::config::name_glob(v).map_err(|e| {
                ApiError::BadRequest(format!("{name}: invalid glob pattern {v:?}: {e}"))
            })
        })
        .transpose()
}

/// Recent lifecycle events.
///
/// The latest events, oldest first: state transitions of the processes (`kind: process`) and
/// changes of the node's storage health (`kind: storage`: failing, failing another way, working
/// again). With `process`, only the events of matching processes.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "list_events",
    tag = "events",
    params(EventsQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The events, oldest first", body = Vec<FeedEvent>),
        (status = 400, description = "A `limit` out of range, an invalid glob or an unknown query parameter"),
        (status = 500, description = "The event history cannot be read"),
    )
)]
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MEMORY_CAPACITY {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MEMORY_CAPACITY}, not {limit}"
        )));
    }
    let pattern = glob_param("process", q.process.as_deref())?;
    let events = state.events().recent(limit, pattern.as_ref()).await?;
    Ok(axum::Json(events).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only the events of processes whose name matches this glob, e.g. `web-*`.
    #[param(value_type = Option<crate::config::NameGlob>)]
    process: Option<String>,
    /// Also send `event: usage` after every CPU and memory sample.
    #[serde(default)]
    usage: bool,
}

/// One process's CPU and memory in an `event: usage` of `GET /events/stream?usage=true`.
#[derive(Serialize, ToSchema)]
pub struct UsageEvent<'a> {
    pub process: &'a str,
    /// The pid of the incarnation sampled.
    pub pid: u32,
    #[serde(flatten)]
    pub usage: &'a Usage,
}

/// Lifecycle events as they happen.
///
/// Server-sent events: `event: transition` with one process event as JSON (the schema
/// `Event`); `event: storage` with a change of the node's storage health (the schema
/// `StorageEvent`; none with `process`); if the reader falls behind, `event: lagged` with
/// `{"missed": n}`. With `usage=true`, also `event: usage` after every CPU and memory sample:
/// a JSON array of `UsageEvent`, one per process that is up. The stream ends when the client
/// leaves or the server shuts down.
#[utoipa::path(
    get,
    path = "/events/stream",
    operation_id = "stream_events",
    tag = "events",
    params(StreamQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The stream of events", body = String, content_type = "text/event-stream"),
        (status = 400, description = "An invalid glob or an unknown query parameter"),
    )
)]
pub async fn stream(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let pattern = glob_param("process", q.process.as_deref())?;
    let rx = state.service().feed().subscribe();
    let only = pattern.clone();
    let events = BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(e) if e.matches(only.as_ref()) => Some(match &*e {
                FeedEvent::Process(p) => sse_json("transition", p),
                FeedEvent::Storage(s) => sse_json("storage", s),
            }),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(sse_json("lagged", &serde_json::json!({ "missed": n })))
            }
        };
        std::future::ready(out.map(Ok::<_, Infallible>))
    });
    if !q.usage {
        return Ok(state.sse(events));
    }
    let samples = WatchStream::from_changes(state.supervisor().usage())
        .map(move |table| Ok(usage_event(&table, pattern.as_ref())));
    Ok(state.sse(futures::stream::select(events, samples)))
}

/// The `event: usage` of one sample: the processes matching `pattern`, by name.
fn usage_event(table: &UsageTable, pattern: Option<&glob::Pattern>) -> SseEvent {
    let mut list: Vec<UsageEvent> = table
        .live
        .iter()
        .filter(|(name, _)| pattern.is_none_or(|g| g.matches(name)))
        .map(|(name, usage)| UsageEvent {
            process: name,
            pid: usage.pid,
            usage,
        })
        .collect();
    list.sort_by(|a, b| a.process.cmp(b.process));
    sse_json("usage", &list)
}

/// One SSE event named `name` carrying `value` as JSON.
pub fn sse_json<T: serde::Serialize>(name: &str, value: &T) -> SseEvent {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    SseEvent::default().event(name).data(data)
}
