//! Readiness and liveness probes: what a probe checks ([`Check`]: a command, an HTTP GET, a TCP
//! connect or a line of output) and the tasks that run them for one incarnation of a process
//! (`task.rs`).
//!
//! A probe task never touches process state: it sends a [`Report`] per attempt to the supervisor's
//! actor, which owns the decision. Tasks are tied to one pid and aborted (with any command they
//! run) when that incarnation stops, so a report from an earlier incarnation can only arrive
//! late, and the actor drops it by its pid.

mod check;
mod task;

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{ProbeConfig, ProcessSpec, TcpTarget};
pub use task::{ProbeTask, Report, Target, Verdict, spawn};

/// Which probe of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRole {
    /// Gates `starting → running`, then keeps telling whether the process is ready.
    Readiness,
    /// Restarts the process after `failures` failures in a row.
    Liveness,
}

impl std::fmt::Display for ProbeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeRole::Readiness => "readiness",
            ProbeRole::Liveness => "liveness",
        })
    }
}

/// The outcome of one probe attempt, as the API shows it (`last_probe`).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProbeResult {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub probe: ProbeRole,
    pub ok: bool,
    /// What was seen, in words: "HTTP 200", "connection refused", "exit code 1: not yet".
    pub message: String,
}

/// What one probe checks.
#[derive(Clone, Debug)]
pub enum Check {
    /// Succeeds when the command exits 0. Its stdin is the process's output since it started.
    Exec {
        argv: Vec<String>,
        cwd: Option<PathBuf>,
        env: Vec<(String, String)>,
    },
    /// Succeeds on the expected status (any 2xx when `status` is `None`).
    Http {
        url: reqwest::Url,
        status: Option<u16>,
        client: reqwest::Client,
    },
    /// Succeeds when a TCP connection to `addr` is accepted.
    Tcp { addr: String },
    /// Succeeds when a line of the process's output matches.
    LogLine { regex: Regex },
}

/// A probe, ready to run.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    /// Failures in a row that count: liveness restarts, readiness marks the process not ready.
    pub failures: u32,
    /// Readiness only: not ready this long after the spawn fails the start.
    pub start_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{process}: a probe needs exactly one of exec, http, tcp or log_line")]
    Kind { process: String },
    #[error("{process}: probe regex {regex:?}: {source}")]
    Regex {
        process: String,
        regex: String,
        source: regex::Error,
    },
    #[error("{process}: probe URL {url:?} is not an http(s) URL")]
    Url { process: String, url: String },
    #[error("{process}: the tcp probe names the first of `ports`, but the process has none")]
    NoPort { process: String },
    #[error("{process}: cannot set up the HTTP client for its probe: {source}")]
    Client {
        process: String,
        source: reqwest::Error,
    },
}

impl ProbeSpec {
    /// The probe `cfg` of `process` (commands run in its directory with its environment; `tcp:
    /// true` is its first port).
    pub fn new(cfg: &ProbeConfig, process: &ProcessSpec) -> Result<Self, ProbeError> {
        Ok(ProbeSpec {
            check: check_of(cfg, process)?,
            initial_delay: cfg.initial_delay.get(),
            period: cfg.period.get().max(Duration::from_millis(1)),
            timeout: cfg.timeout.get().max(Duration::from_millis(1)),
            failures: cfg.failures.max(1),
            start_timeout: cfg.start_timeout.map(|d| d.get()),
        })
    }
}

fn check_of(cfg: &ProbeConfig, process: &ProcessSpec) -> Result<Check, ProbeError> {
    let name = || process.name.clone();
    if cfg.kinds().len() != 1 {
        return Err(ProbeError::Kind { process: name() });
    }
    if let Some(cmd) = &cfg.exec {
        let mut env: Vec<(String, String)> = process.env.clone().into_iter().collect();
        env.push(("STATE_MANAGER_PROCESS".into(), process.name.clone()));
        return Ok(Check::Exec {
            argv: cmd.argv(),
            cwd: process.cwd.clone(),
            env,
        });
    }
    if let Some(url) = &cfg.http {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ProbeError::Url {
                process: name(),
                url: url.clone(),
            })?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|source| ProbeError::Client {
                process: name(),
                source,
            })?;
        return Ok(Check::Http {
            url: parsed,
            status: cfg.status,
            client,
        });
    }
    if let Some(t) = &cfg.tcp {
        let addr = match t {
            TcpTarget::Port(p) => format!("127.0.0.1:{p}"),
            TcpTarget::Addr(a) => a.clone(),
            TcpTarget::FirstPort(_) => match process.ports.first() {
                Some(p) => format!("127.0.0.1:{p}"),
                None => return Err(ProbeError::NoPort { process: name() }),
            },
        };
        return Ok(Check::Tcp { addr });
    }
    let re = cfg.log_line.clone().unwrap_or_default();
    let regex = Regex::new(&re).map_err(|source| ProbeError::Regex {
        process: name(),
        regex: re,
        source,
    })?;
    Ok(Check::LogLine { regex })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn spec(json: &str) -> ProcessSpec {
        let c = config::parse(json).unwrap_or_else(|e| panic!("{e}"));
        std::sync::Arc::unwrap_or_clone(config::resolve(&c, std::path::Path::new("/")).remove(0))
    }

    #[test]
    fn tcp_true_is_the_first_port_and_durations_carry_over() {
        let p = spec(
            r#"{"stacks": [{"name": "a", "command": "x", "ports": [5050, 6060],
                "readiness": {"tcp": true, "period": "200ms", "start_timeout": "3s"}}]}"#,
        );
        let probe = ProbeSpec::new(p.readiness.as_ref().unwrap(), &p).unwrap();
        assert!(matches!(&probe.check, Check::Tcp { addr } if addr == "127.0.0.1:5050"));
        assert_eq!(probe.period, Duration::from_millis(200));
        assert_eq!(probe.start_timeout, Some(Duration::from_secs(3)));
        assert_eq!(probe.failures, 3);
    }

    #[test]
    fn an_unvalidated_probe_is_a_typed_error() {
        let p = spec(r#"{"stacks": [{"name": "a", "command": "x"}]}"#);
        let bad = ProbeConfig {
            log_line: Some("(".into()),
            ..ProbeConfig::default()
        };
        let err = ProbeSpec::new(&bad, &p).unwrap_err();
        assert!(matches!(err, ProbeError::Regex { .. }), "{err}");
        let none = ProbeConfig::default();
        assert!(matches!(
            ProbeSpec::new(&none, &p),
            Err(ProbeError::Kind { .. })
        ));
    }
}
