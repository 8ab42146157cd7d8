//! The lease's routes: `POST /release-lease` (hand the environment over) and
//! `POST /acquire-lease` (take it now). Handlers only parse and answer; the node does the work.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Admin;
use super::environment::node;
use super::error::ApiError;
use super::extract::OptionalJson;
use crate::lease::Tenure;
use crate::node::ReleaseReport;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// Take a final checkpoint before releasing (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
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

/// Hand the environment over: release the lease.
///
/// Stops the processes, takes a final checkpoint (unless told not to), flushes replication and
/// releases the lease so that a standby takes over at once. The body is optional.
#[utoipa::path(
    post,
    path = "/release-lease",
    operation_id = "release_lease",
    tag = "lease",
    request_body(content = ReleaseBody, description = "Optional; an empty body takes a final checkpoint", content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Released", body = ReleaseReport),
        (status = 400, description = "Malformed JSON"),
        (status = 409, description = "Not configured yet, not the owner of the lease, or another operation is under way"),
        (status = 408, description = "The body was not received whole within 30 s"),
        (status = 413, description = "The body is larger than 1 MiB"),
        (status = 415, description = "The body is not declared as JSON"),
        (status = 422, description = "The body has the wrong shape"),
        (status = 500, description = "A hook or the state database failed"),
        (status = 503, description = "Storage cannot be reached"),
    )
)]
pub async fn release(
    _: Admin,
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<ReleaseBody>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    Ok(axum::Json(node(&state)?.release(body.checkpoint).await?).into_response())
}

/// Take the lease now.
///
/// For a node that released the lease (it never takes it back by itself) or a standby that
/// should not wait for its next poll. Fails while another node holds it.
#[utoipa::path(
    post,
    path = "/acquire-lease",
    operation_id = "acquire_lease",
    tag = "lease",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "This node holds the lease", body = Tenure),
        (status = 409, description = "Not configured yet, or another node holds the lease"),
        (status = 503, description = "Storage cannot be reached"),
    )
)]
pub async fn acquire(_: Admin, State(state): State<AppState>) -> Result<Response, ApiError> {
    let tenure = node(&state)?.acquire().await?;
    Ok(axum::Json(tenure).into_response())
}
