//! The answers of the process-set changes, as the API returns them: what each change did to
//! which processes, and the revision of the set after it (unchanged when nothing changed).

use serde::Serialize;

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
