//! `/processes`: list and inspect supervised processes; start, stop and restart them by glob.
//!
//! Handlers only ask the supervisor through its handle, or the environment (which records the
//! operator's intent — stopped or started — in the state database before it asks the
//! supervisor); they never touch a process. A pattern that matches nothing is 404, an invalid
//! glob 400 (both decided by the supervisor); a standby refuses with 409 naming the owner.

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::node::Operate;
use crate::supervisor::ProcessInfo;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the processes whose name matches this glob, e.g. `web-*`.
    #[param(value_type = Option<crate::config::NameGlob>)]
    pattern: Option<String>,
}

/// The supervised processes.
///
/// Each with its state, pid, restarts, uptime, last exit, readiness and health, where its spec
/// comes from (`origin`) and what the operator last asked of it (`intent`).
#[utoipa::path(
    get,
    path = "/processes",
    operation_id = "list_processes",
    tag = "processes",
    params(ListQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The processes, in configuration order", body = Vec<ProcessInfo>),
        (status = 400, description = "An invalid glob or an unknown query parameter"),
    )
)]
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ProcessInfo>>, ApiError> {
    let mut list = state.supervisor().list(q.pattern.as_deref()).await?;
    if let Some(node) = state.node() {
        node.annotate(&mut list);
    }
    Ok(Json(list))
}

/// One process.
#[utoipa::path(
    get,
    path = "/processes/{name}",
    operation_id = "get_process",
    tag = "processes",
    params(("name" = String, Path, description = "The process name, e.g. `web-1`")),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The process", body = ProcessInfo),
        (status = 404, description = "No process has this name"),
    )
)]
pub async fn get(
    _: Claims,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    let mut one = [state.supervisor().get(&name).await?];
    if let Some(node) = state.node() {
        node.annotate(&mut one);
    }
    let [one] = one;
    Ok(Json(one))
}

/// What start, stop and restart did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessAction {
    Start,
    Stop,
    Restart,
}

/// The answer of start, stop and restart: which processes the pattern selected.
#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    pub action: ProcessAction,
    /// The names of the processes the pattern selected.
    pub processes: Vec<String>,
    /// The revision of the process set after recording the operator's intent (`null` while
    /// the service is unconfigured).
    pub revision: Option<u64>,
}

/// Carry out `op` on `pattern`: through the environment, which records the operator's intent
/// first, once configured; straight to the supervisor before.
async fn operate(
    state: &AppState,
    op: Operate,
    pattern: &str,
    timeout: Option<Duration>,
    by: Option<String>,
) -> Result<Json<Affected>, ApiError> {
    let action = match op {
        Operate::Start => ProcessAction::Start,
        Operate::Stop => ProcessAction::Stop,
        Operate::Restart => ProcessAction::Restart,
    };
    if let Some(node) = state.node() {
        let done = node.change_intent(op, pattern, timeout, by).await?;
        return Ok(Json(Affected {
            action,
            processes: done.processes,
            revision: Some(done.revision),
        }));
    }
    let s = state.supervisor();
    let processes = match op {
        Operate::Start => s.start(pattern).await?,
        Operate::Stop => s.stop(pattern, timeout).await?,
        Operate::Restart => s.restart(pattern).await?,
    };
    Ok(Json(Affected {
        action,
        processes,
        revision: None,
    }))
}

/// Start the processes matching a glob.
///
/// Answers once they are spawned.
#[utoipa::path(
    post,
    path = "/processes/{pattern}/start",
    operation_id = "start_processes",
    tag = "processes",
    params(("pattern" = crate::config::NameGlob, Path, description = "A process name, or a glob over names such as `web-*`")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The processes started", body = Affected),
        (status = 400, description = "An invalid glob"),
        (status = 404, description = "No process matches the pattern"),
        (status = 409, description = "This node does not own the environment"),
    )
)]
pub async fn start(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
) -> Result<Json<Affected>, ApiError> {
    operate(&state, Operate::Start, &pattern, None, who.sub).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StopQuery {
    /// Overrides each process's stop timeout (time between the stop signal and SIGKILL): a
    /// number and a unit (`ms`, `s`, `m`, `h`), e.g. `10s`.
    #[param(pattern = r"^[0-9]{1,6}(ms|s|m|h)$")]
    timeout: Option<String>,
}

/// Stop the processes matching a glob.
///
/// Sends each its stop signal, then SIGKILL after the stop timeout; answers once they are all
/// down.
#[utoipa::path(
    post,
    path = "/processes/{pattern}/stop",
    operation_id = "stop_processes",
    tag = "processes",
    params(("pattern" = crate::config::NameGlob, Path, description = "A process name, or a glob over names such as `web-*`"), StopQuery),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The processes stopped", body = Affected),
        (status = 400, description = "An invalid glob or timeout"),
        (status = 404, description = "No process matches the pattern"),
        (status = 409, description = "This node does not own the environment"),
    )
)]
pub async fn stop(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<Json<Affected>, ApiError> {
    let timeout = q.timeout.as_deref().map(parse_timeout).transpose()?;
    operate(&state, Operate::Stop, &pattern, timeout, who.sub).await
}

/// The stop timeout of a query: exactly the documented pattern (one number of up to six digits
/// and one unit), so what the description allows and what the server takes are the same.
pub(super) fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: Option<u64> =
        (!digits.is_empty() && digits.len() <= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten();
    let d = match (n, unit) {
        (Some(n), "ms") => Duration::from_millis(n),
        (Some(n), "s") => Duration::from_secs(n),
        (Some(n), "m") => Duration::from_secs(n * 60),
        (Some(n), "h") => Duration::from_secs(n * 3600),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "timeout: {text:?} is not a duration; write a number and a unit (ms, s, m, h) like \"500ms\", \"10s\" or \"2m\""
            )));
        }
    };
    Ok(d)
}

/// Restart the processes matching a glob.
///
/// Stops them, then starts them again; answers once they are started.
#[utoipa::path(
    post,
    path = "/processes/{pattern}/restart",
    operation_id = "restart_processes",
    tag = "processes",
    params(("pattern" = crate::config::NameGlob, Path, description = "A process name, or a glob over names such as `web-*`")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The processes restarted", body = Affected),
        (status = 400, description = "An invalid glob"),
        (status = 404, description = "No process matches the pattern"),
        (status = 409, description = "This node does not own the environment"),
    )
)]
pub async fn restart(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(pattern): Path<String>,
) -> Result<Json<Affected>, ApiError> {
    operate(&state, Operate::Restart, &pattern, None, who.sub).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_answered_as_the_verbs_of_their_routes() {
        let words: Vec<_> = [
            ProcessAction::Start,
            ProcessAction::Stop,
            ProcessAction::Restart,
        ]
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
        assert_eq!(words, ["start", "stop", "restart"]);
    }
}
