//! Changing the process set at runtime: `POST /processes` adds a stack (a process, or
//! `instances` copies of it), `DELETE /processes/{name}` removes one, `POST
//! /processes/{name}/scale` changes how many instances it has.
//!
//! The environment (`node/procset/`) validates the spec with the whole set exactly like a
//! config file (every problem at once, 422, nothing changed), commits the change to the state
//! database (incrementing the revision), then has the supervisor act. A standby refuses with 409
//! naming the owner.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::extract::{IfMatch, Json, Path, Query};
use super::processes::parse_timeout;
use crate::config::ProcessConfig;
use crate::node::{Added, RemoveOptions, Replaced, Scaled};

/// Add a stack: one process, or `instances` copies of it.
///
/// The body is a process as the config file's `stacks` write it. It is validated with the rest
/// of the set like a config file; once committed, its processes are registered and started
/// (unless `autostart: false`), each after its dependencies run.
#[utoipa::path(
    post,
    path = "/processes",
    operation_id = "add_process",
    tag = "processes",
    request_body(content = ProcessConfig, description = "A process, as in the config's `stacks`", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Added (and started unless `autostart: false`)", body = Added, headers(("location" = String, description = "`/processes/{name}` of the first process"), ("etag" = String, description = "The revision of the process set after the change, quoted: `\"7\"`"))),
        (status = 400, description = "The body is not JSON"),
        (status = 409, description = "A stack of this name exists, or this node does not own the environment"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The spec is not valid: `problems` lists every problem"),
        (status = 503, description = "The state database cannot be written"),
    )
)]
pub async fn create(
    Admin(who): Admin,
    State(state): State<AppState>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let node = state.service().environment()?;
    let added = node.add_stack(body, who.sub).await?;
    let location = format!(
        "/processes/{}",
        added
            .created
            .first()
            .map_or(added.stack.as_str(), |s| s.as_str())
    );
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::ETAG, format!("\"{}\"", added.revision)),
        ],
        axum::Json(added),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Overrides each process's stop timeout (time between the stop signal and SIGKILL): a
    /// number and a unit (`ms`, `s`, `m`, `h`), e.g. `10s`.
    #[param(pattern = r"^[0-9]{1,6}(ms|s|m|h)$")]
    timeout: Option<String>,
    /// Remove it even though other stacks depend on it.
    #[serde(default)]
    force: bool,
}

/// Remove a stack.
///
/// Stops its processes (stop signal, then SIGKILL of the group after the timeout) and removes
/// them from the set. Refused while other stacks depend on it, unless `force=true`. The answer
/// has no body: the `ETag` header carries the revision of the set after the change.
#[utoipa::path(
    delete,
    path = "/processes/{name}",
    operation_id = "remove_process",
    tag = "processes",
    params(("name" = String, Path, description = "The stack's name (`web` for `web-1`, `web-2`)"), DeleteQuery, ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#, description = "Change only if the process set is still at this revision (the `ETag` of `GET /`, e.g. `\"7\"`); 412 otherwise")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 204, description = "Removed: its processes are down and gone from the set", headers(("etag" = String, description = "The revision of the process set after the change, quoted: `\"7\"`"))),
        (status = 400, description = "An invalid timeout or query parameter"),
        (status = 404, description = "No stack has this name"),
        (status = 409, description = "Other stacks depend on it, or this node does not own the environment"),
        (status = 412, description = "`If-Match` names a revision the set has moved on from"),
        (status = 503, description = "The state database cannot be written"),
    )
)]
pub async fn delete(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
    IfMatch(expected): IfMatch,
) -> Result<Response, ApiError> {
    let timeout = q.timeout.as_deref().map(parse_timeout).transpose()?;
    let node = state.service().environment()?;
    let opts = RemoveOptions {
        force: q.force,
        timeout,
        expected,
    };
    let removed = node.remove_stack(&name, opts, who.sub).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::ETAG, format!("\"{}\"", removed.revision))],
    )
        .into_response())
}

/// The body of `POST /processes/{name}/scale`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    /// How many instances the stack should have (1 to 10,000). A whole number; JSON's `3.0`
    /// is the number 3 and is taken as such.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub instances: u32,
}

/// A JSON number that is a whole number within `u32` (`3` or `3.0`), as JSON Schema's
/// `integer` allows; anything else is the body's 422.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    });
    whole.and_then(|w| u32::try_from(w).ok()).ok_or_else(|| {
        serde::de::Error::custom(format!("{n} is not a whole number from 1 to 10,000"))
    })
}

/// Scale a stack.
///
/// Adds `name-(k+1)…` and starts them, or stops and drops the highest numbered instances; the
/// others keep running untouched.
#[utoipa::path(
    post,
    path = "/processes/{name}/scale",
    operation_id = "scale_process",
    tag = "processes",
    params(("name" = String, Path, description = "The stack's name (`web` for `web-1`, `web-2`)")),
    request_body(content = ScaleBody, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Scaled", body = Scaled, headers(("etag" = String, description = "The revision of the process set after the change, quoted: `\"7\"`"))),
        (status = 400, description = "The body is not JSON"),
        (status = 404, description = "No stack has this name"),
        (status = 409, description = "This node does not own the environment"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "An invalid count, or a directory stack"),
        (status = 503, description = "The state database cannot be written"),
    )
)]
pub async fn scale(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<ScaleBody>,
) -> Result<Response, ApiError> {
    let node = state.service().environment()?;
    let scaled = node.scale_stack(&name, body.instances, who.sub).await?;
    Ok(with_etag(scaled.revision, axum::Json(scaled)))
}

/// Replace a stack's spec.
///
/// The body is the whole new spec (its `name` is the stack's). Changed instances restart with it
/// one at a time, each waiting for readiness before the next; a process stopped on purpose stays
/// stopped; unchanged processes are untouched. The answer lists the changed fields.
#[utoipa::path(
    put,
    path = "/processes/{name}",
    operation_id = "replace_process",
    tag = "processes",
    params(("name" = String, Path, description = "The stack's name (`web` for `web-1`, `web-2`)"), ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#, description = "Change only if the process set is still at this revision (the `ETag` of `GET /`, e.g. `\"7\"`); 412 otherwise")),
    request_body(content = ProcessConfig, description = "The whole new spec", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Replaced", body = Replaced, headers(("etag" = String, description = "The revision of the process set after the change, quoted: `\"7\"`"))),
        (status = 400, description = "The body is not JSON"),
        (status = 404, description = "No stack has this name"),
        (status = 409, description = "This node does not own the environment"),
        (status = 412, description = "`If-Match` names a revision the set has moved on from"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The spec is not valid: `problems` lists every problem"),
        (status = 503, description = "The state database cannot be written"),
    )
)]
pub async fn replace(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatch(expected): IfMatch,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let node = state.service().environment()?;
    let replaced = node.replace_stack(&name, body, expected, who.sub).await?;
    Ok(with_etag(replaced.revision, axum::Json(replaced)))
}

/// `body` with the revision of the set as its `ETag` (`"7"`), which `If-Match` takes back.
pub fn with_etag(revision: u64, body: impl IntoResponse) -> Response {
    ([(header::ETAG, format!("\"{revision}\""))], body).into_response()
}
