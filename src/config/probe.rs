//! Probes: how readiness and liveness are checked (one of exec, http, tcp or a log line), with
//! their rules.

use serde::{Deserialize, Serialize};

use super::command::CommandSpec;
use super::{Dur, Problem};

/// A probe names its kind by its key: `exec`, `http`, `tcp` or `log_line`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<CommandSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Port on 127.0.0.1, `host:port`, or `true` for the first of the process's `ports`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTarget>,
    /// Regex matched against each line of the process's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_line: Option<String>,
    /// Expected HTTP status (default: any 2xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub initial_delay: Dur,
    pub period: Dur,
    pub timeout: Dur,
    /// Consecutive failures that count (liveness: restart after this many).
    pub failures: u32,
    /// Readiness only: not ready within this long after start fails the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Dur>,
}

impl ProbeConfig {
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.exec.is_some() {
            k.push("exec");
        }
        if self.http.is_some() {
            k.push("http");
        }
        if self.tcp.is_some() {
            k.push("tcp");
        }
        if self.log_line.is_some() {
            k.push("log_line");
        }
        k
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            exec: None,
            http: None,
            tcp: None,
            log_line: None,
            status: None,
            initial_delay: Dur::secs(0),
            period: Dur::secs(1),
            timeout: Dur::secs(1),
            failures: 3,
            start_timeout: None,
        }
    }
}

/// `5050`, `"host:5050"`, or `true` for the first of the process's `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TcpTarget {
    Port(u16),
    Addr(String),
    /// `true`: 127.0.0.1 on the first of the process's `ports` (`false` is rejected).
    FirstPort(bool),
}

/// Exactly one kind, each well formed (periods and counts are bounded in `limits`).
pub(super) fn check_probe(pr: &ProbeConfig, base: &str, p: &mut Vec<Problem>) {
    let kinds = pr.kinds();
    if kinds.len() != 1 {
        p.push(Problem::new(
            base,
            format!(
                "a probe needs exactly one of \"exec\", \"http\", \"tcp\" or \"log_line\" (found {})",
                if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }
            ),
        ));
    }
    if pr.exec.as_ref().is_some_and(CommandSpec::is_empty) {
        p.push(Problem::new(
            format!("{base}.exec"),
            "the command must not be empty",
        ));
    }
    if let Some(url) = &pr.http {
        match reqwest::Url::parse(&url.replace("{instance}", "1")) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => p.push(Problem::new(
                format!("{base}.http"),
                format!("invalid URL {url:?}: expected e.g. \"http://127.0.0.1:8080/health\""),
            )),
        }
    }
    if let Some(TcpTarget::Addr(a)) = &pr.tcp
        && a.rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
    {
        p.push(Problem::new(
            format!("{base}.tcp"),
            format!("invalid address {a:?}: use a port (5050) or \"host:5050\""),
        ));
    }
    if let Some(re) = &pr.log_line
        && let Err(e) = regex::Regex::new(re)
    {
        p.push(Problem::new(
            format!("{base}.log_line"),
            format!("invalid regex: {e}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::problems_of as problems;

    #[test]
    fn probes_need_exactly_one_kind() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "readiness": {"tcp": 1, "http": "http://h/"}}]}"#,
        );
        assert!(
            p.iter()
                .any(|p| p.path == "stacks[0].readiness" && p.message.contains("exactly one")),
            "{p:#?}"
        );
    }
}
