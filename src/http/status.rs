//! `GET /` (the status an operator reads first) and `GET /healthz` (liveness, no auth).
//!
//! Sections that later subsystems own (role, lease, replication, last checkpoint) come from
//! optional [`Section`] providers in the app state: `null` until one is plugged in.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::auth::Claims;
use super::error::{ApiError, Json};
use crate::supervisor::Summary;

/// A part of `GET /` owned by another subsystem; read on every request, so it must be cheap
/// and must not block (a `watch::Receiver` of the subsystem's latest state is the usual form).
pub trait Section: Send + Sync + 'static {
    fn snapshot(&self) -> Value;
}

impl<T: Serialize + Send + Sync + 'static> Section for tokio::sync::watch::Receiver<T> {
    fn snapshot(&self) -> Value {
        serde_json::to_value(&*self.borrow()).unwrap_or(Value::Null)
    }
}

/// A section computed by a function on every request (it must be cheap and must not block).
pub struct FnSection<F>(pub F);

impl<F: Fn() -> Value + Send + Sync + 'static> Section for FnSection<F> {
    fn snapshot(&self) -> Value {
        (self.0)()
    }
}

/// The optional providers of `GET /`'s sections.
#[derive(Clone, Default)]
pub struct Sections {
    pub role: Option<Arc<dyn Section>>,
    pub lease: Option<Arc<dyn Section>>,
    pub replication: Option<Arc<dyn Section>>,
    pub last_checkpoint: Option<Arc<dyn Section>>,
    /// The latest report of each hook that ran.
    pub hooks: Option<Arc<dyn Section>>,
    /// The counters of each webhook sink.
    pub webhooks: Option<Arc<dyn Section>>,
}

fn snap(s: &Option<Arc<dyn Section>>) -> Value {
    s.as_ref().map_or(Value::Null, |s| s.snapshot())
}

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
    pub hooks: Value,
    pub webhooks: Value,
    pub warnings: &'a [String],
}

/// `GET /`.
pub async fn status(_: Claims, State(state): State<AppState>) -> Result<Response, ApiError> {
    let processes = state.supervisor().summary().await?;
    let s = state.sections();
    let body = Status {
        configured: state.configured(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (state.uptime().as_secs_f64() * 1000.0).round() / 1000.0,
        role: snap(&s.role),
        processes,
        lease: snap(&s.lease),
        replication: snap(&s.replication),
        last_checkpoint: snap(&s.last_checkpoint),
        hooks: snap(&s.hooks),
        webhooks: snap(&s.webhooks),
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
