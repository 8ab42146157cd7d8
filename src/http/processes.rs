//! `/processes`: list and inspect supervised processes; start, stop and restart them by glob.
//!
//! Handlers only ask the supervisor through its handle; they never touch a process. A pattern
//! that matches nothing is 404, an invalid glob 400 (both decided by the supervisor).

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::{ApiError, Json, Path, Query};
use crate::supervisor::ProcessInfo;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pattern: Option<String>,
}

/// `GET /processes[?pattern=GLOB]`.
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ProcessInfo>>, ApiError> {
    Ok(Json(state.supervisor().list(q.pattern.as_deref()).await?))
}

/// `GET /processes/{name}`.
pub async fn get(
    _: Claims,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    Ok(Json(state.supervisor().get(&name).await?))
}

/// The answer of start, stop and restart: which processes the pattern selected.
#[derive(Debug, Serialize)]
pub struct Affected {
    pub action: &'static str,
    pub processes: Vec<String>,
}

/// `POST /processes/{pattern}/start`: returns once they are spawned.
pub async fn start(
    _: Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
) -> Result<Json<Affected>, ApiError> {
    let processes = state.supervisor().start(&pattern).await?;
    Ok(Json(Affected {
        action: "start",
        processes,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopQuery {
    timeout: Option<String>,
}

/// `POST /processes/{pattern}/stop[?timeout=DUR]`: returns once they are all down. `timeout`
/// overrides each process's stop timeout (time between the stop signal and SIGKILL).
pub async fn stop(
    _: Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<Json<Affected>, ApiError> {
    let timeout = q.timeout.as_deref().map(parse_timeout).transpose()?;
    let processes = state.supervisor().stop(&pattern, timeout).await?;
    Ok(Json(Affected {
        action: "stop",
        processes,
    }))
}

fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|e| {
        ApiError::BadRequest(format!(
            "timeout: {text:?} is not a duration ({e}); write it like \"500ms\", \"10s\" or \"2m\""
        ))
    })
}

/// `POST /processes/{pattern}/restart`: returns once they are started again.
pub async fn restart(
    _: Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
) -> Result<Json<Affected>, ApiError> {
    let processes = state.supervisor().restart(&pattern).await?;
    Ok(Json(Affected {
        action: "restart",
        processes,
    }))
}
