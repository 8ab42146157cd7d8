//! `GET /ports`: every managed port (the `ports` of each process) with whether it is in use, the
//! process holding it (pid and command line, found through /proc) and whether that is the
//! owning process itself.

use axum::extract::State;

use super::AppState;
use super::auth::Claims;
use super::error::{ApiError, Json};
use crate::ports::PortInfo;

/// `GET /ports`.
pub async fn list(
    _: Claims,
    State(state): State<AppState>,
) -> Result<Json<Vec<PortInfo>>, ApiError> {
    Ok(Json(state.supervisor().ports().await?))
}
