//! The answers of the process-set changes, as the API returns them: what each change did to
//! which processes, and the revision of the set after it (unchanged when nothing changed).

use serde::Serialize;

use crate::config::ChangedStack;

/// The answer of a change of intent (start, stop, restart).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct IntentChange {
    pub processes: Vec<String>,
    /// The revision of the process set after the change.
    pub revision: u64,
}

/// The answer of `POST /processes`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Added {
    /// The stack's name.
    pub stack: String,
    /// The processes created (`web-1`, `web-2`, … with instances).
    pub created: Vec<String>,
    /// The processes asked to start (all of them unless `autostart: false`).
    pub started: Vec<String>,
    pub revision: u64,
}

/// What `POST /processes/{name}/scale` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Scaled {
    pub stack: String,
    pub instances: u32,
    /// The processes added and started.
    pub started: Vec<String>,
    /// The processes stopped and dropped (the highest numbered).
    pub stopped: Vec<String>,
    /// The revision after the change (unchanged when it already had that many).
    pub revision: u64,
}

/// What `PUT /processes/{name}` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Replaced {
    pub stack: String,
    /// The fields of the spec that changed (`command`, `env`, …); empty: nothing changed and
    /// nothing was touched.
    pub fields: Vec<String>,
    /// The instances restarted with the new spec, one at a time.
    pub restarted: Vec<String>,
    /// Instances added (more `instances`) and started unless `autostart: false`.
    pub added: Vec<String>,
    /// Instances stopped and dropped (fewer `instances`).
    pub removed: Vec<String>,
    pub revision: u64,
}

/// What `DELETE /processes/{name}` did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub stack: String,
    pub removed: Vec<String>,
    pub revision: u64,
}

/// What a config reload (`PUT /config`, SIGHUP) did, or would do (`dry_run`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// The revision of the set after the reload (unchanged by a dry run, or when it changed
    /// nothing).
    pub revision: u64,
    /// `true`: nothing was changed, this is what the reload would do.
    pub dry_run: bool,
    /// Stacks the new file adds: started (unless `autostart: false`).
    pub added: Vec<String>,
    /// Stacks the new file no longer has: stopped and removed.
    pub removed: Vec<String>,
    /// Stacks whose spec differs, with the fields that differ: restarted one instance at a
    /// time, each ready before the next.
    pub changed: Vec<ChangedStack>,
    /// Stacks of the file whose spec is the same: untouched, same pids.
    pub unchanged: Vec<String>,
    /// Stacks added or changed through the API: kept as they are, whatever the file says.
    pub kept: Vec<String>,
    /// Untouched processes whose environment (or other global default) the new file changes:
    /// they get it at their next start.
    pub env_affected: Vec<String>,
    /// Settings that differ and take effect when state-manager next starts (`hooks`,
    /// `webhooks`, `replication`, `checkpoint`).
    pub next_start: Vec<String>,
}
