//! `GET /` (the status an operator reads first) and `GET /healthz` (liveness, no auth).
//!
//! The environment's sections (role, lease, replication, last checkpoint, operation under way)
//! come from the node once the service is configured; `null` before.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use super::extract::Json;
use crate::checkpoint::CheckpointSummary;
use crate::hooks::HookReport;
use crate::node::{LastRestore, LeaseOverview, NodeRole, Operation, Takeover};
use crate::objstore::{FailureKind, StorageHealth, StorageState};
use crate::replication::ReplicationStatus;
use crate::supervisor::Summary;
use crate::webhooks::SinkStats;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status<'a> {
    /// A config was applied (from the file at start or by `POST /config`).
    pub configured: bool,
    /// The version of state-manager.
    pub version: &'static str,
    pub uptime_s: f64,
    /// This node's part in the environment; `null` while unconfigured.
    pub role: Option<NodeRole>,
    pub processes: Summary,
    /// Who holds the lease, as this node sees it; `null` while unconfigured.
    pub lease: Option<LeaseOverview>,
    /// The state database's replication to storage; `null` unless this node owns the lease.
    pub replication: Option<ReplicationStatus>,
    pub last_checkpoint: Option<CheckpointSummary>,
    /// A checkpoint, restore, release or takeover under way.
    pub operation: Option<Operation>,
    /// Where checkpoints, the database and the lease are kept (no secrets); `null` while
    /// unconfigured.
    pub storage: Option<String>,
    /// Whether storage works as this node's last request found it: `ok`, `unknown` (nothing
    /// asked yet) or `failing` with the failure's kind, sentence and fix. A standby that cannot
    /// read the lease shows it here within one poll interval. `null` while unconfigured.
    pub storage_health: Option<StorageHealth>,
    /// The last failure to bring the environment up or of a scheduled checkpoint.
    pub node_error: Option<String>,
    /// The latest report of each hook that ran.
    pub hooks: Vec<HookReport>,
    /// The counters of each webhook sink.
    pub webhooks: Vec<SinkStats>,
    /// How this node last became the owner, step by step.
    pub last_takeover: Option<Takeover>,
    /// How the last restore on this node ended, or how one a crash interrupted was settled at
    /// the next start (`interrupted_rolled_back`, `interrupted_completed`).
    pub last_restore: Option<LastRestore>,
    /// The revision of the environment's process set (incremented by every change of the set
    /// or of an operator's intent); `null` until this node has owned the environment.
    pub revision: Option<u64>,
    /// Things the operator should know, e.g. that authentication is off.
    #[schema(value_type = Vec<String>)]
    pub warnings: &'a [String],
}

/// The status an operator reads first.
///
/// The service (configured, version, uptime), the processes by state, and the environment's
/// sections: role, lease, replication, last checkpoint, operation under way, hooks, webhooks and
/// the last takeover. The environment's sections are `null` until the service is configured.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "status",
    tag = "status",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The status", body = Status, headers(("etag" = String, description = "The revision of the process set, quoted (`\"7\"`), once it is loaded: what `If-Match` takes"))))
)]
pub async fn status(_: Claims, State(state): State<AppState>) -> Result<Response, ApiError> {
    let processes = state.supervisor().summary().await?;
    let overview = state.node().map(|n| n.overview());
    let node = overview.as_ref();
    let body = Status {
        configured: state.configured(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (state.uptime().as_secs_f64() * 1000.0).round() / 1000.0,
        role: node.map(|n| n.role),
        processes,
        lease: node.map(|n| n.lease.clone()),
        replication: node.and_then(|n| n.replication.clone()),
        last_checkpoint: node.and_then(|n| n.last_checkpoint.clone()),
        operation: node.and_then(|n| n.operation.clone()),
        storage: node.map(|n| n.storage.clone()),
        storage_health: node.map(|n| n.storage_health.clone()),
        node_error: node.and_then(|n| n.last_error.clone()),
        hooks: state.hooks().reports(),
        webhooks: state.webhooks().stats(),
        last_takeover: node.and_then(|n| n.last_takeover.clone()),
        last_restore: node.and_then(|n| n.last_restore.clone()),
        revision: node.and_then(|n| n.revision),
        warnings: state.warnings(),
    };
    Ok(match body.revision {
        Some(r) => super::procset::with_etag(r, axum::Json(body)),
        None => axum::Json(body).into_response(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    status: &'static str,
    /// Storage as the node's last request found it (`ok`, `unknown`, `failing`); absent while
    /// unconfigured. Failing storage does not fail liveness: restarting does not mend it.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<StorageState>,
    /// While `storage` is `failing`: the failure's kind, for `ctl health` to name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_failure: Option<FailureKind>,
}

/// Liveness: 200 while the server answers.
///
/// No authentication and no round trip to the supervisor or to storage: for container health
/// checks. It says whether storage is failing, and stays 200 while it is (see `/readyz`).
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "status",
    responses((status = 200, description = "The server answers", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let storage = state.node().map(|n| n.storage_health());
    Json(Health {
        status: "ok",
        storage: storage.as_ref().map(|h| h.state),
        storage_failure: storage
            .filter(|h| h.is_failing())
            .and_then(|h| h.failure.map(|f| f.kind)),
    })
}
