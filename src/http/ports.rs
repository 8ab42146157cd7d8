//! `GET /ports`: every managed port (the `ports` of each process) with whether it is in use, the
//! process holding it (pid and command line, found through /proc) and whether that is the
//! owning process itself.

use axum::extract::State;

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use super::extract::Json;
use crate::ports::PortInfo;

/// The managed ports.
///
/// Every port of every process's `ports`, whether it is in use, by which process (pid and
/// command line) and whether that is the owning process itself.
#[utoipa::path(
    get,
    path = "/ports",
    operation_id = "list_ports",
    tag = "processes",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The managed ports", body = Vec<PortInfo>))
)]
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
) -> Result<Json<Vec<PortInfo>>, ApiError> {
    Ok(Json(state.supervisor().ports().await?))
}
