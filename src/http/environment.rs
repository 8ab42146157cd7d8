//! The environment's state: checkpoints (`POST /checkpoint`, `GET /checkpoints`,
//! `GET|DELETE /checkpoints/{id}`), `POST /restore`, and the lease (`POST /release-lease`,
//! `POST /acquire-lease`). Handlers only parse and answer; the node does the work.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::{Admin, Claims};
use super::error::{ApiError, Query};
use crate::checkpoint::CheckpointError;
use crate::lease::LeaseError;
use crate::node::{Node, NodeError};

fn node(state: &AppState) -> Result<Arc<Node>, ApiError> {
    state.node().ok_or_else(|| {
        ApiError::Conflict(
            "state-manager is not configured yet, so it has no environment; POST /config first"
                .into(),
        )
    })
}

/// A JSON body that may be left out (an empty body means "all defaults"); when present it must
/// be declared as JSON.
pub struct OptionalJson(Option<Bytes>);

impl FromRequest<AppState> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                    "the body is larger than the limit of {} bytes",
                    super::BODY_LIMIT
                )),
                _ => ApiError::BadRequest(r.body_text()),
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be JSON with `Content-Type: application/json`, not {ct:?} (curl: --json '{{...}}')"
            )));
        }
        Ok(OptionalJson(Some(bytes)))
    }
}

impl OptionalJson {
    /// The body parsed as `T`, or `None` when there was no body.
    fn parse<T: DeserializeOwned>(self) -> Result<Option<T>, ApiError> {
        let Some(bytes) = self.0 else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::Unprocessable(e.to_string()),
                _ => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
            })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// Free text shown in listings, e.g. "before-upgrade".
    pub label: Option<String>,
}

/// `POST /checkpoint`: 201 with the checkpoint's summary.
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    body: OptionalJson,
) -> Result<Response, ApiError> {
    let body: CheckpointBody = body.parse()?.unwrap_or_default();
    let summary = node(&state)?.checkpoint(body.label).await?;
    let location = format!("/checkpoints/{}", summary.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        axum::Json(summary),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
}

/// `GET /checkpoints[?limit=N]`: newest first.
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let checkpoints = node(&state)?.checkpoints(limit).await?;
    Ok(axum::Json(serde_json::json!({ "checkpoints": checkpoints })).into_response())
}

/// `GET /checkpoints/{id}`.
pub async fn get(
    _: Claims,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(node(&state)?.checkpoint_info(&id).await?).into_response())
}

/// `DELETE /checkpoints/{id}`: 204.
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    node(&state)?.delete_checkpoint(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// A checkpoint id, or "latest".
    pub checkpoint: String,
}

/// `POST /restore`.
pub async fn restore(
    _: Admin,
    State(state): State<AppState>,
    body: OptionalJson,
) -> Result<Response, ApiError> {
    let body: RestoreBody = body.parse()?.ok_or_else(|| {
        ApiError::Unprocessable(
            "say which checkpoint to restore: {\"checkpoint\": \"<id>\"} or {\"checkpoint\": \"latest\"}".into(),
        )
    })?;
    Ok(axum::Json(node(&state)?.restore(&body.checkpoint).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// Take a final checkpoint before releasing (default true).
    #[serde(default = "yes")]
    pub checkpoint: bool,
}

impl Default for ReleaseBody {
    fn default() -> Self {
        ReleaseBody { checkpoint: true }
    }
}

fn yes() -> bool {
    true
}

/// `POST /release-lease`.
pub async fn release(
    _: Admin,
    State(state): State<AppState>,
    body: OptionalJson,
) -> Result<Response, ApiError> {
    let body: ReleaseBody = body.parse()?.unwrap_or_default();
    Ok(axum::Json(node(&state)?.release(body.checkpoint).await?).into_response())
}

/// `POST /acquire-lease`.
pub async fn acquire(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
    let tenure = node(&state)?.acquire().await.map_err(NodeError::from)?;
    Ok(axum::Json(tenure).into_response())
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let text = e.to_string();
        match e {
            NodeError::NotOwner { .. } | NodeError::Busy { .. } => ApiError::Conflict(text),
            NodeError::NoCheckpoint => ApiError::NotFound(text),
            NodeError::Checkpoint(c) => checkpoint_error(c, text),
            NodeError::Lease(l) => lease_error(l, text),
            NodeError::Storage(_) | NodeError::Replication(_) => ApiError::Unavailable(format!(
                "{text}; is storage reachable? GET / shows the node's state"
            )),
            NodeError::Supervisor(s) => s.into(),
            NodeError::Hook(_) | NodeError::Database(_) | NodeError::Io { .. } => {
                ApiError::Internal {
                    detail: text.clone(),
                    cause: text,
                }
            }
        }
    }
}

fn checkpoint_error(e: CheckpointError, text: String) -> ApiError {
    match e {
        CheckpointError::InvalidId { .. } | CheckpointError::InvalidLabel { .. } => {
            ApiError::BadRequest(text)
        }
        CheckpointError::NotFound { .. } => ApiError::NotFound(text),
        CheckpointError::Unreadable { .. }
        | CheckpointError::CorruptChunk { .. }
        | CheckpointError::MissingChunk { .. }
        | CheckpointError::SizeMismatch { .. } => ApiError::Unprocessable(text),
        CheckpointError::Busy
        | CheckpointError::GcBusy { .. }
        | CheckpointError::ConcurrentGc { .. }
        | CheckpointError::GcWaitTimeout { .. }
        | CheckpointError::Fenced { .. } => ApiError::Conflict(text),
        CheckpointError::Store(_) => {
            ApiError::Unavailable(format!("{text}; is storage reachable?"))
        }
        _ => ApiError::Internal {
            detail: text.clone(),
            cause: text,
        },
    }
}

fn lease_error(e: LeaseError, text: String) -> ApiError {
    match e {
        LeaseError::Held { .. } | LeaseError::NotHeld { .. } | LeaseError::Superseded { .. } => {
            ApiError::Conflict(text)
        }
        LeaseError::Storage { .. } | LeaseError::Timeout { .. } | LeaseError::Stopped => {
            ApiError::Unavailable(text)
        }
        _ => ApiError::Internal {
            detail: text.clone(),
            cause: text,
        },
    }
}
