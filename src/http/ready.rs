//! `GET /readyz`: readiness for load balancers and Kubernetes Services, no token.
//!
//! Where `/healthz` says the server answers, `/readyz` says this node should get the
//! environment's traffic: 200 only when it owns the lease, the environment is up (not still
//! being restored) and every process that is meant to run is running with its readiness probe
//! passing. Anything else is a 503 problem+json whose `detail` starts with the node and its role
//! (`node-b is not ready (role standby): …`), so a load balancer sends traffic to the owner only
//! and a person reading the answer sees why.
//!
//! Storage health (docs/STORAGE.md, "Readiness"): on a node that does not own the environment,
//! failing storage is the reason given (`storage is failing (<kind>): <sentence>; fix: …`),
//! ahead of what the role alone would say: a standby that cannot read the lease can never take
//! over, and the last holder it saw may be long gone. The owner stays ready while storage
//! fails: its processes still serve, and taking the only ready node out of a load balancer
//! would turn a storage outage into an outage of the service. Its lease decides instead: an
//! owner that cannot renew stops its stacks before the lease expires and answers 503 (role
//! `lost`) from then on. The 200 body carries `storage` (`ok`, `unknown`, `failing`) and, while
//! failing, `storage_failure`, so the owner's degraded state is visible to whoever reads it.
//!
//! Invariants: no authentication and no round trip to the supervisor or to storage (the role,
//! the process counts and storage health come from watch channels), so a probe every second
//! costs nothing; processes stopped on purpose or exited by their policy do not hold readiness
//! back, while one starting, in backoff, failed or waiting for its dependencies does.

use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::Json;
use crate::node::{NodeRole, not_owner};
use crate::objstore::{Failure, StorageHealth, StorageState};
use crate::supervisor::Summary;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `true` (a node that is not ready answers 503).
    ready: bool,
    /// Always `owner`.
    #[schema(examples("owner"))]
    role: &'static str,
    #[schema(examples("node-a"))]
    node_id: String,
    /// Processes meant to run (all of them but those stopped on purpose or exited by policy).
    processes: usize,
    /// Storage as the node's last request found it; the owner stays ready while it fails.
    storage: StorageState,
    /// While `storage` is `failing`: what happened and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_failure: Option<String>,
}

/// Readiness: 200 only on the owner with its processes ready.
///
/// No authentication. 503 on a standby, a node taking over, an owner whose processes are not
/// all ready yet, and an unconfigured server; its `detail` names the node, its role and why
/// (failing storage first, on a node that is not the owner).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "status",
    responses(
        (status = 200, description = "This node owns the environment and its processes are ready", body = Ready),
        (status = 503, description = "Not ready: the detail starts with `<node> is not ready (role <role>)` and says why"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let Some(node) = state.node() else {
        return Err(ApiError::NotReady(
            "this server is not ready (role unconfigured): it runs no environment until POST /config"
                .into(),
        ));
    };
    let node_id = node.node_id().to_string();
    let role = node.overview().role;
    let word = serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let not_ready =
        |why: String| ApiError::NotReady(format!("{node_id} is not ready (role {word}): {why}"));
    let storage = node.storage_health();
    let failing = failing(&storage);
    match (role, failing) {
        (NodeRole::Owner, _) => {}
        (NodeRole::TakingOver, Some(f)) => {
            return Err(not_ready(format!(
                "it holds the lease but cannot bring the environment up: {}",
                storage_reason(f)
            )));
        }
        (NodeRole::TakingOver, None) => {
            return Err(not_ready(
                "it holds the lease and is restoring and starting the environment; retry in a moment".into(),
            ));
        }
        (_, Some(f)) => return Err(not_ready(storage_reason(f))),
        (_, None) => return Err(not_ready(not_owner(&node_id, &node.role()))),
    }
    let summary = state.supervisor().summary().await?;
    let meant = meant_to_run(&summary);
    if summary.ready < meant {
        return Err(not_ready(format!(
            "{} of {meant} processes are not ready yet ({} starting, {} in backoff, {} failed, {} waiting for dependencies, {} running but not passing readiness); GET /processes shows which",
            meant - summary.ready,
            summary.starting,
            summary.backoff,
            summary.failed,
            summary.waiting,
            summary.running.saturating_sub(summary.ready),
        )));
    }
    Ok(Json(Ready {
        ready: true,
        role: "owner",
        node_id,
        processes: meant,
        storage: storage.state,
        storage_failure: failing.map(storage_reason),
    }))
}

fn failing(h: &StorageHealth) -> Option<&Failure> {
    h.failure.as_ref().filter(|_| h.is_failing())
}

/// `storage is failing (<kind>): <what happened>; fix: <what to do>`.
fn storage_reason(f: &Failure) -> String {
    format!(
        "storage is failing ({}): {}; fix: {}",
        f.kind.as_str(),
        f.message,
        f.fix
    )
}

/// The processes that should be up and ready: every one except those stopped on purpose (a
/// process waiting for its dependencies is stopped too, and is meant to run) and those that
/// exited by their policy.
fn meant_to_run(s: &Summary) -> usize {
    let at_rest = s.stopped.saturating_sub(s.waiting) + s.exited;
    s.total.saturating_sub(at_rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_and_exited_processes_are_not_meant_to_run_but_waiting_ones_are() {
        let s = Summary {
            total: 6,
            running: 2,
            ready: 2,
            stopped: 2,
            waiting: 1,
            exited: 1,
            failed: 1,
            ..Summary::default()
        };
        assert_eq!(meant_to_run(&s), 4);
        assert_eq!(meant_to_run(&Summary::default()), 0);
    }
}
