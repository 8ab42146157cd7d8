//! `GET /` (the status an operator reads first) and `GET /healthz` (liveness, no auth).
//!
//! The environment's sections (role, lease, replication, last checkpoint, operation under way)
//! come from the node once the service is configured; `null` before.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::auth::Claims;
use super::error::{ApiError, Json};
use crate::hooks::HookReport;
use crate::supervisor::Summary;
use crate::webhooks::SinkStats;

#[derive(Serialize)]
pub struct Status<'a> {
    pub configured: bool,
    pub version: &'static str,
    pub uptime_s: f64,
    pub role: Value,
    pub processes: Summary,
    pub lease: Value,
    pub replication: Value,
    pub last_checkpoint: Value,
    /// A checkpoint, restore, release or takeover under way.
    pub operation: Value,
    pub storage: Value,
    /// The last failure to bring the environment up or of a scheduled checkpoint.
    pub node_error: Value,
    /// The latest report of each hook that ran.
    pub hooks: Vec<HookReport>,
    /// The counters of each webhook sink.
    pub webhooks: Vec<SinkStats>,
    /// How this node last became the owner, step by step.
    pub last_takeover: Value,
    pub warnings: &'a [String],
}

/// `GET /`.
pub async fn status(_: Claims, State(state): State<AppState>) -> Result<Response, ApiError> {
    let processes = state.supervisor().summary().await?;
    let node = state
        .node()
        .map(|n| serde_json::to_value(n.overview()).unwrap_or(Value::Null));
    let part = |k: &str| {
        node.as_ref()
            .and_then(|n| n.get(k).cloned())
            .unwrap_or(Value::Null)
    };
    let body = Status {
        configured: state.configured(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (state.uptime().as_secs_f64() * 1000.0).round() / 1000.0,
        role: part("role"),
        processes,
        lease: part("lease"),
        replication: part("replication"),
        last_checkpoint: part("last_checkpoint"),
        operation: part("operation"),
        storage: part("storage"),
        node_error: part("last_error"),
        hooks: state.hooks().reports(),
        webhooks: state.webhooks().stats(),
        last_takeover: part("last_takeover"),
        warnings: state.warnings(),
    };
    Ok(axum::Json(body).into_response())
}

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

/// `GET /healthz`: 200 while the server answers. No auth, no supervisor round trip.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}
