//! The environment's state: checkpoints (`POST /checkpoint`, `GET /checkpoints`,
//! `GET|DELETE /checkpoints/{id}`) and `POST /restore` (the lease's routes are in [`super::lease`]).
//! Handlers only parse and answer; the node does the work.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::ApiError;
use super::extract::{OptionalJson, Query};
use crate::checkpoint::CheckpointId;
use crate::checkpoint::CheckpointSummary;
use crate::node::{Node, RestoreReport};
use crate::store::CatalogEntry;

pub(super) fn node(state: &AppState) -> Result<Arc<Node>, ApiError> {
    Ok(state.service().environment()?)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// Free text shown in listings, e.g. "before-upgrade": at most 200 characters, none of
    /// them a control character.
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub label: Option<String>,
}

/// Take a checkpoint of the environment directory.
///
/// Runs each process's `checkpoint_command`, freezes the process groups while changed files are
/// staged, uploads new chunks and the manifest. Only the owner of the lease can. The body is
/// optional.
#[utoipa::path(
    post,
    path = "/checkpoint",
    operation_id = "create_checkpoint",
    tag = "checkpoints",
    request_body(content = CheckpointBody, description = "Optional; an empty body takes all defaults", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "The checkpoint", body = CheckpointSummary, headers(("location" = String, description = "`/checkpoints/{id}`"))),
        (status = 400, description = "Malformed JSON or an invalid label"),
        (status = 409, description = "Not configured yet, not the owner of the lease, or another operation is under way"),
        (status = 408, description = "The body was not received whole within 30 s"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The body has the wrong shape"),
        (status = 500, description = "A checkpoint hook or the state database failed"),
        (status = 503, description = "Storage cannot be reached, or a process did not stop for the freeze in time (retry)"),
    )
)]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<CheckpointBody>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let summary = node(&state)?.checkpoint(body.label).await?;
    let location = format!("/checkpoints/{}", summary.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        axum::Json(summary),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many of the newest checkpoints: 1 to 10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// The most checkpoints one `GET /checkpoints` lists.
const MAX_LIMIT: u32 = 10_000;

/// The answer of `GET /checkpoints`.
#[derive(Serialize, ToSchema)]
pub struct CheckpointList {
    /// Newest first.
    pub checkpoints: Vec<CatalogEntry>,
}

/// The checkpoints of the environment, newest first.
#[utoipa::path(
    get,
    path = "/checkpoints",
    operation_id = "list_checkpoints",
    tag = "checkpoints",
    params(ListQuery),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The checkpoints", body = CheckpointList),
        (status = 400, description = "An invalid `limit` or an unknown query parameter"),
        (status = 409, description = "Not configured yet"),
        (status = 500, description = "The state database failed"),
    )
)]
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is out of range; ask for 1 to {MAX_LIMIT} checkpoints"
        )));
    }
    let checkpoints = node(&state)?.checkpoints(limit).await?;
    Ok(axum::Json(CheckpointList { checkpoints }).into_response())
}

/// One checkpoint.
#[utoipa::path(
    get,
    path = "/checkpoints/{id}",
    operation_id = "get_checkpoint",
    tag = "checkpoints",
    params(("id" = CheckpointId, Path, description = "A checkpoint id, e.g. `20260101T120000.000Z-0a1b2c3d`")),
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The checkpoint", body = CatalogEntry),
        (status = 400, description = "Not a checkpoint id"),
        (status = 404, description = "No such checkpoint"),
        (status = 409, description = "Not configured yet"),
        (status = 500, description = "The state database failed"),
    )
)]
pub async fn get(
    _: Claims,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(node(&state)?.checkpoint_info(&id).await?).into_response())
}

/// Delete a checkpoint.
///
/// Its manifest goes at once; chunks no other checkpoint uses are collected later. Only the
/// owner of the lease can.
#[utoipa::path(
    delete,
    path = "/checkpoints/{id}",
    operation_id = "delete_checkpoint",
    tag = "checkpoints",
    params(("id" = CheckpointId, Path, description = "A checkpoint id, e.g. `20260101T120000.000Z-0a1b2c3d`")),
    security(("bearer" = ["admin"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a checkpoint id"),
        (status = 404, description = "No such checkpoint"),
        (status = 409, description = "Not configured yet, not the owner of the lease, or another operation is under way"),
        (status = 500, description = "The state database failed"),
        (status = 503, description = "Storage cannot be reached"),
    )
)]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    node(&state)?.delete_checkpoint(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// In the description: an id (its pattern) or `latest`.
fn checkpoint_or_latest() -> utoipa::openapi::schema::Object {
    let id = crate::checkpoint::ID_PATTERN;
    let inner = &id[1..id.len() - 1];
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("A checkpoint id, or \"latest\"."))
        .pattern(Some(format!("^(latest|{inner})$")))
        .examples(["latest"])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// A checkpoint id, or "latest".
    #[schema(schema_with = checkpoint_or_latest)]
    pub checkpoint: String,
}

/// Restore the environment directory from a checkpoint.
///
/// Stops the processes, takes an undo checkpoint, puts the checkpoint's files in place, runs
/// each `restore_command` and starts the processes again. Only the owner of the lease can.
#[utoipa::path(
    post,
    path = "/restore",
    operation_id = "restore",
    tag = "checkpoints",
    request_body(content = RestoreBody, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Restored", body = RestoreReport),
        (status = 400, description = "Malformed JSON or not a checkpoint id"),
        (status = 404, description = "No such checkpoint (or none at all for `latest`)"),
        (status = 409, description = "Not configured yet, not the owner of the lease, or another operation is under way"),
        (status = 408, description = "The body was not received whole within 30 s"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "No body, a body of the wrong shape, or a damaged checkpoint"),
        (status = 500, description = "A restore hook or the state database failed"),
        (status = 503, description = "Storage cannot be reached"),
    )
)]
pub async fn restore(
    _: Admin,
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<RestoreBody>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| {
        ApiError::Unprocessable(
            "say which checkpoint to restore: {\"checkpoint\": \"<id>\"} or {\"checkpoint\": \"latest\"}".into(),
        )
    })?;
    Ok(axum::Json(node(&state)?.restore(&body.checkpoint).await?).into_response())
}
