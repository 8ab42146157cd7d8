//! Top-level hooks: commands run at fixed points of the service's life — `pre_start` before any
//! process starts, `post_stop` once every process is down, `on_shutdown` last.
//!
//! A hook runs through [`crate::proc::run`] in the data directory with the global `env` and
//! `STATE_MANAGER_HOOK=<point>`. It is bounded by its timeout (its whole process group is killed
//! then), so a hanging hook can delay shutdown by that timeout and no more. A failure is logged
//! and kept as the point's latest [`HookReport`] (for the status API); it does not stop the
//! service or its processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Config, HookConfig, HooksConfig};
use crate::proc::{self, CommandError, RunOptions};

/// Extra time allowed beyond a hook's timeout for killing and collecting it.
const KILL_SLACK: Duration = Duration::from_secs(5);

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    PreStart,
    PostStop,
    OnShutdown,
}

impl HookPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PreStart => "pre_start",
            HookPoint::PostStop => "post_stop",
            HookPoint::OnShutdown => "on_shutdown",
        }
    }
}

/// How a hook's run went.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HookReport {
    pub point: HookPoint,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub ok: bool,
    /// "exit code 0", or what went wrong with the first line the hook wrote to stderr.
    pub message: String,
    pub duration_ms: u64,
}

/// The configured hooks and their latest reports. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    config: HooksConfig,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    reports: Mutex<BTreeMap<HookPoint, HookReport>>,
}

impl Hooks {
    /// The hooks of `config` (none without one), run in `data_dir`.
    pub fn new(config: Option<&Config>, data_dir: &Path) -> Self {
        let (hooks, env) = config
            .map(|c| (c.hooks.clone(), c.env.clone()))
            .unwrap_or_default();
        Hooks {
            inner: Arc::new(Inner {
                config: hooks,
                cwd: Some(data_dir.to_path_buf()),
                env,
                reports: Mutex::default(),
            }),
        }
    }

    fn hook(&self, point: HookPoint) -> Option<&HookConfig> {
        let c = &self.inner.config;
        match point {
            HookPoint::PreStart => c.pre_start.as_ref(),
            HookPoint::PostStop => c.post_stop.as_ref(),
            HookPoint::OnShutdown => c.on_shutdown.as_ref(),
        }
    }

    /// Run the hook of `point`, if one is configured; returns how it went. Never takes much
    /// longer than the hook's timeout.
    pub async fn run(&self, point: HookPoint) -> Option<HookReport> {
        let hook = self.hook(point)?;
        let started = Instant::now();
        let at = OffsetDateTime::now_utc();
        let (ok, message) = self.execute(point, hook).await;
        let report = HookReport {
            point,
            at,
            ok,
            message,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if ok {
            tracing::info!(
                hook = point.as_str(),
                duration_ms = report.duration_ms,
                "hook done"
            );
        } else {
            tracing::error!(hook = point.as_str(), "hook failed: {}", report.message);
        }
        self.inner
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(point, report.clone());
        Some(report)
    }

    async fn execute(&self, point: HookPoint, hook: &HookConfig) -> (bool, String) {
        let mut env: Vec<(String, String)> = self.inner.env.clone().into_iter().collect();
        env.push(("STATE_MANAGER_HOOK".into(), point.as_str().into()));
        let timeout = hook.timeout.get();
        let opts = RunOptions {
            env,
            cwd: self.inner.cwd.clone(),
            stdin: None,
            timeout,
        };
        let argv = hook.command.argv();
        let bounded = tokio::time::timeout(timeout + KILL_SLACK, proc::run(&argv, opts));
        match bounded.await {
            Ok(Ok(out)) => {
                for line in out.stdout.lines().chain(out.stderr.lines()) {
                    tracing::info!(hook = point.as_str(), "{line}");
                }
                let said = out.stderr.lines().find(|l| !l.trim().is_empty());
                match (out.status.success(), said) {
                    (true, _) => (true, out.status.to_string()),
                    (false, Some(l)) => (false, format!("{}: {}", out.status, l.trim())),
                    (false, None) => (false, out.status.to_string()),
                }
            }
            Ok(Err(CommandError::Timeout { timeout, .. })) => (
                false,
                format!(
                    "did not finish within {} and was killed",
                    humantime::format_duration(timeout)
                ),
            ),
            Ok(Err(e)) => (false, e.to_string()),
            // Dropping the run kills the hook's group.
            Err(_) => (false, "could not be collected after its timeout".into()),
        }
    }

    /// The latest report of each hook that has run, in the order of their points.
    pub fn reports(&self) -> Vec<HookReport> {
        let reports = self.inner.reports.lock().unwrap_or_else(|p| p.into_inner());
        reports.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        let c = crate::config::parse(json).unwrap_or_else(|e| panic!("{e}"));
        Hooks::new(Some(&c), Path::new("/tmp"))
    }

    #[tokio::test]
    async fn a_failing_hook_is_reported_with_its_stderr() {
        let h = hooks(
            r#"{"env": {"WHO": "hook"}, "hooks": {"pre_start": {"command": ["sh", "-c",
                "[ \"$STATE_MANAGER_HOOK.$WHO.$(pwd)\" = pre_start.hook./tmp ] && echo boom >&2; exit 3"]}}}"#,
        );
        assert_eq!(h.run(HookPoint::PostStop).await, None, "not configured");
        let r = h.run(HookPoint::PreStart).await.unwrap();
        assert!(!r.ok);
        assert_eq!(r.message, "exit code 3: boom");
        assert_eq!(h.reports(), [r]);
    }

    #[tokio::test]
    async fn a_hanging_hook_is_killed_at_its_timeout() {
        let h =
            hooks(r#"{"hooks": {"on_shutdown": {"command": "sleep 1000", "timeout": "300ms"}}}"#);
        let t = Instant::now();
        let r = h.run(HookPoint::OnShutdown).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert_eq!(
            (r.ok, r.message.as_str()),
            (false, "did not finish within 300ms and was killed")
        );
    }
}
