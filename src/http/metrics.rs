//! `GET /metrics`: Prometheus text exposition (format 0.0.4), rendered here.
//!
//! The families are few and fixed, so they are written out directly rather than through a
//! metrics registry crate: per-process `up`, restarts, CPU and memory and per-state counts are
//! read from the supervisor at scrape time (no second copy of process state to keep in sync); transitions are
//! counted from the supervisor's event broadcast; HTTP requests are counted and timed by the
//! [`track`] middleware, labelled by route *template* (`/processes/{name}`), never by raw path,
//! so cardinality stays bounded.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

use super::AppState;
use super::auth::Claims;
use super::error::ApiError;
use crate::events::{ChangeAction, Event, StateName};
use crate::node::NodeRole;
use crate::supervisor::{ProcessInfo, Usage, UsageTable};

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters shared by the middleware, the event counter task and the scrape handler.
#[derive(Default)]
pub struct Metrics {
    http: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    transitions: [AtomicU64; StateName::ALL.len()],
    changes: [AtomicU64; ChangeAction::ALL.len()],
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    route: String,
    method: String,
    status: u16,
}

#[derive(Default)]
struct Series {
    count: AtomicU64,
    sum_ns: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf` only.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

impl Metrics {
    /// Metrics whose transition counters are fed from `rx` until the supervisor ends.
    pub fn spawn(mut rx: broadcast::Receiver<Arc<Event>>) -> Arc<Self> {
        let m = Arc::new(Metrics::default());
        let feed = m.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await.as_deref() {
                    Ok(Event {
                        change: Some(c), ..
                    }) => feed.count_change(c.action),
                    Ok(e) => feed.count_transition(e.to),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("transition metrics missed {n} events")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        m
    }

    fn count_transition(&self, to: StateName) {
        if let Some(i) = StateName::ALL.iter().position(|s| *s == to) {
            self.transitions[i].fetch_add(1, Relaxed);
        }
    }

    fn count_change(&self, action: ChangeAction) {
        if let Some(i) = ChangeAction::ALL.iter().position(|a| *a == action) {
            self.changes[i].fetch_add(1, Relaxed);
        }
    }

    fn observe(&self, key: SeriesKey, secs: f64) {
        let series = {
            let read = self.http.read().unwrap_or_else(|p| p.into_inner());
            read.get(&key).cloned()
        };
        let series = series.unwrap_or_else(|| {
            let mut write = self.http.write().unwrap_or_else(|p| p.into_inner());
            write.entry(key).or_default().clone()
        });
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        series.buckets[slot].fetch_add(1, Relaxed);
        series.count.fetch_add(1, Relaxed);
        series.sum_ns.fetch_add((secs * 1e9) as u64, Relaxed);
    }
}

/// Middleware counting and timing every request by method, route template and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    let key = SeriesKey {
        route,
        method,
        status: resp.status().as_u16(),
    };
    state.metrics().observe(key, start.elapsed().as_secs_f64());
    resp
}

/// Prometheus metrics.
///
/// Text exposition format 0.0.4: the service, the lease, replication and checkpoints, each
/// process (`up`, restarts, states), transitions, and HTTP requests by route template.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "status",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn scrape(_: Claims, State(state): State<AppState>) -> Result<Response, ApiError> {
    let procs = state.supervisor().list(None).await?;
    let usage = tokio::task::spawn_blocking(crate::proc::procfs::self_usage)
        .await
        .ok()
        .and_then(Result::ok);
    let mut out = String::with_capacity(4096 + procs.len() * 200);
    if let Some(u) = usage {
        render_self(&mut out, &u);
    }
    render_service(&mut out, &state);
    if let Some(node) = state.node() {
        render_node(&mut out, &node);
    }
    render_processes(&mut out, &procs);
    render_usage(&mut out, &procs, &state.supervisor().usage().borrow());
    render_transitions(&mut out, state.metrics());
    render_http(&mut out, state.metrics());
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// The standard process metrics every exporter has (the Prometheus client libraries' names and
/// units), about state-manager itself; left out when `/proc` cannot be read.
fn render_self(out: &mut String, u: &crate::proc::procfs::SelfUsage) {
    let rows = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            u.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            u.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            u.virtual_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            u.open_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            u.start_time_seconds,
        ),
    ];
    for (name, kind, help, v) in rows {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    if let Some(max) = u.max_fds {
        family(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

/// The environment: lease, replication, checkpoints.
fn render_node(out: &mut String, node: &crate::node::Node) {
    let o = node.overview();
    let stats = node.lease().stats();
    let one = |out: &mut String, name: &str, kind: &str, help: &str, value: f64| {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        out,
        "state_manager_lease_role",
        "gauge",
        "1 for this node's current lease role.",
    );
    for role in NodeRole::ALL {
        let v = u8::from(o.role == role);
        let name = role.as_str();
        let _ = writeln!(out, "state_manager_lease_role{{role=\"{name}\"}} {v}");
    }
    let epoch = o.lease.epoch.unwrap_or(0) as f64;
    one(
        out,
        "state_manager_lease_epoch",
        "gauge",
        "Epoch (fencing token) of the lease as last seen.",
        epoch,
    );
    let expires = o
        .lease
        .expires_at
        .map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9);
    one(
        out,
        "state_manager_lease_expires_timestamp_seconds",
        "gauge",
        "When the lease expires unless renewed.",
        expires,
    );
    let counters = [
        (
            "state_manager_lease_acquisitions_total",
            "Leases this node acquired.",
            stats.acquisitions,
        ),
        (
            "state_manager_lease_renewals_total",
            "Successful lease renewals.",
            stats.renewals,
        ),
        (
            "state_manager_lease_renew_failures_total",
            "Failed lease renewals.",
            stats.renew_failures,
        ),
        (
            "state_manager_lease_releases_total",
            "Leases this node released.",
            stats.releases,
        ),
        (
            "state_manager_lease_losses_total",
            "Leases this node lost without releasing.",
            stats.losses,
        ),
    ];
    for (name, help, v) in counters {
        one(out, name, "counter", help, v as f64);
    }
    if let Some(r) = &o.replication {
        one(
            out,
            "state_manager_replication_lag_seconds",
            "gauge",
            "Age of the oldest commit not yet in storage.",
            r.lag_ms as f64 / 1000.0,
        );
        one(
            out,
            "state_manager_replication_pending_bytes",
            "gauge",
            "WAL bytes committed and not yet in storage.",
            r.pending_bytes as f64,
        );
        let ok = u8::from(r.last_error.is_none()) as f64;
        one(
            out,
            "state_manager_replication_healthy",
            "gauge",
            "1 when the last replication sync succeeded.",
            ok,
        );
    }
    render_storage(out, &o.storage_health);
    if let Some(c) = &o.last_checkpoint {
        let at = c.created_at.unix_timestamp_nanos() as f64 / 1e9;
        one(
            out,
            "state_manager_last_checkpoint_timestamp_seconds",
            "gauge",
            "When the newest checkpoint was taken.",
            at,
        );
        one(
            out,
            "state_manager_last_checkpoint_bytes",
            "gauge",
            "Bytes of env_dir in the newest checkpoint.",
            c.bytes as f64,
        );
    }
}

/// Storage health: up (0 only while failing), and the kind of the current failure.
fn render_storage(out: &mut String, h: &crate::objstore::StorageHealth) {
    family(
        out,
        "state_manager_storage_up",
        "gauge",
        "0 while storage requests fail (GET / says why), else 1.",
    );
    let _ = writeln!(
        out,
        "state_manager_storage_up {}",
        u8::from(!h.is_failing())
    );
    family(
        out,
        "state_manager_storage_error",
        "gauge",
        "1 for the kind of the current storage failure.",
    );
    let current = h.failure.as_ref().map(|f| f.kind);
    for kind in crate::objstore::FailureKind::ALL {
        let v = u8::from(current == Some(kind));
        let name = kind.as_str();
        let _ = writeln!(out, "state_manager_storage_error{{kind=\"{name}\"}} {v}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn render_service(out: &mut String, state: &AppState) {
    family(
        out,
        "state_manager_build_info",
        "gauge",
        "Version of state-manager.",
    );
    let _ = writeln!(
        out,
        "state_manager_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        out,
        "state_manager_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
    );
    let _ = writeln!(
        out,
        "state_manager_uptime_seconds {:.3}",
        state.uptime().as_secs_f64()
    );
    family(
        out,
        "state_manager_configured",
        "gauge",
        "1 once a configuration is applied.",
    );
    let _ = writeln!(
        out,
        "state_manager_configured {}",
        u8::from(state.configured())
    );
}

fn render_processes(out: &mut String, procs: &[ProcessInfo]) {
    family(
        out,
        "state_manager_process_up",
        "gauge",
        "1 if the process is running.",
    );
    for p in procs {
        let up = u8::from(p.state == StateName::Running);
        let _ = writeln!(
            out,
            "state_manager_process_up{{process=\"{}\"}} {up}",
            esc(&p.name)
        );
    }
    family(
        out,
        "state_manager_process_restarts_total",
        "counter",
        "Restarts of the process since state-manager started.",
    );
    for p in procs {
        let _ = writeln!(
            out,
            "state_manager_process_restarts_total{{process=\"{}\"}} {}",
            esc(&p.name),
            p.restarts
        );
    }
    family(
        out,
        "state_manager_processes",
        "gauge",
        "Processes in each state.",
    );
    for s in StateName::ALL {
        let n = procs.iter().filter(|p| p.state == s).count();
        let _ = writeln!(out, "state_manager_processes{{state=\"{s}\"}} {n}");
    }
}

/// CPU and memory of each process group at the latest sample (only the processes that are up),
/// and the CPU seconds each process used over its life (every incarnation).
fn render_usage(out: &mut String, procs: &[ProcessInfo], table: &UsageTable) {
    let up: Vec<(&str, &Usage)> = procs
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.usage.as_ref()?)))
        .collect();
    family(
        out,
        "state_manager_process_cpu_seconds_total",
        "counter",
        "CPU time (user and system) used by the process's group, over every incarnation.",
    );
    for p in procs {
        if let Some(secs) = table.cpu_seconds.get(&p.name) {
            let _ = writeln!(
                out,
                "state_manager_process_cpu_seconds_total{{process=\"{}\"}} {secs:.2}",
                esc(&p.name)
            );
        }
    }
    family(
        out,
        "state_manager_process_cpu_usage_ratio",
        "gauge",
        "CPU used by the process's group over the last sampling interval, in cores (1 = one core busy).",
    );
    for (name, u) in &up {
        if let Some(cpu) = u.cpu_percent {
            let _ = writeln!(
                out,
                "state_manager_process_cpu_usage_ratio{{process=\"{}\"}} {}",
                esc(name),
                cpu / 100.0
            );
        }
    }
    let gauges = [
        (
            "state_manager_process_resident_memory_bytes",
            "Resident memory of the process's group (sum over its processes) at the last sample.",
            (|u: &Usage| u.rss_bytes) as fn(&Usage) -> u64,
        ),
        (
            "state_manager_process_group_processes",
            "Live processes in the process's group at the last sample.",
            |u: &Usage| u64::from(u.processes),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        for (process, u) in &up {
            let _ = writeln!(out, "{name}{{process=\"{}\"}} {}", esc(process), value(u));
        }
    }
}

fn render_transitions(out: &mut String, m: &Metrics) {
    family(
        out,
        "state_manager_process_transitions_total",
        "counter",
        "State transitions of all processes, by the state entered.",
    );
    for (i, s) in StateName::ALL.iter().enumerate() {
        let n = m.transitions[i].load(Relaxed);
        let _ = writeln!(
            out,
            "state_manager_process_transitions_total{{state=\"{s}\"}} {n}"
        );
    }
    family(
        out,
        "state_manager_process_set_changes_total",
        "counter",
        "Changes of the process set and of operators' intents, by action (one per process).",
    );
    for (i, a) in ChangeAction::ALL.iter().enumerate() {
        let n = m.changes[i].load(Relaxed);
        let a = a.as_str();
        let _ = writeln!(
            out,
            "state_manager_process_set_changes_total{{action=\"{a}\"}} {n}"
        );
    }
}

fn render_http(out: &mut String, m: &Metrics) {
    let mut series: Vec<(SeriesKey, Arc<Series>)> = {
        let read = m.http.read().unwrap_or_else(|p| p.into_inner());
        read.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let labels = |k: &SeriesKey| {
        format!(
            "method=\"{}\",route=\"{}\",status=\"{}\"",
            esc(&k.method),
            esc(&k.route),
            k.status
        )
    };
    family(
        out,
        "state_manager_http_requests_total",
        "counter",
        "HTTP requests answered.",
    );
    for (k, s) in &series {
        let _ = writeln!(
            out,
            "state_manager_http_requests_total{{{}}} {}",
            labels(k),
            s.count.load(Relaxed)
        );
    }
    let name = "state_manager_http_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time to answer an HTTP request (to the response head).",
    );
    for (k, s) in &series {
        let l = labels(k);
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += s.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {cumulative}");
        }
        cumulative += s.buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {cumulative}");
        let sum = s.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{l}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{l}}} {cumulative}");
    }
}
