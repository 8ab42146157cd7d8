//! `ctl processes`, `start`, `stop` and `restart`: the `/processes` endpoints.
//!
//! Patterns go into the URL as one percent-encoded path segment, so `web-[12]` needs no
//! escaping by the operator. `stop --timeout` is passed to the server as the stop timeout, and
//! the request is allowed that long plus [`STOP_MARGIN`].

use std::time::Duration;

use serde_json::Value;

use super::client::{Client, Wait};
use super::error::CtlError;
use super::output::{self, NONE, Table};

/// What a stop may take beyond its stop timeout: the SIGKILL, reaping, the answer.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);

/// Which process action, as the API names it.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Action::Start => "starting",
            Action::Stop => "stopping",
            Action::Restart => "restarting",
        }
    }
}

pub async fn list(client: &Client, pattern: Option<&str>) -> Result<(), CtlError> {
    let mut req = client.get(&["processes"]);
    if let Some(p) = pattern {
        req = req.query("pattern", p);
    }
    let answer = req.send().await?;
    output::print(client.json, answer, table);
    Ok(())
}

/// The processes as a table: CPU (percent of one core over the last sample) and MEM (resident
/// memory) of each process group; a HEALTH column only when the server reports health.
pub fn table(v: &Value) -> String {
    let list = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        return "no processes\n".into();
    }
    let health = list.iter().any(|p| p.get("healthy").is_some());
    let mut header = vec!["NAME", "STATE", "PID", "RESTARTS", "UPTIME", "CPU", "MEM"];
    if health {
        header.push("HEALTH");
    }
    header.extend(["LAST EXIT", "REASON"]);
    let mut t = Table::new(&header);
    for p in list {
        let mut row = vec![
            output::text(&p["name"]),
            output::text(&p["state"]),
            output::count(&p["pid"]),
            output::count(&p["restarts"]),
            output::secs(&p["uptime_s"]),
            output::percent(&p["usage"]["cpu_percent"]),
            output::bytes(&p["usage"]["rss_bytes"]),
        ];
        if health {
            row.push(health_of(p));
        }
        row.push(output::exit_status(&p["last_exit"]));
        row.push(output::text(&p["reason"]));
        t.row(row);
    }
    t.render()
}

fn health_of(p: &Value) -> String {
    if p["state"] != "running" {
        return NONE.into();
    }
    match (p["ready"].as_bool(), p["healthy"].as_bool()) {
        (Some(false), _) => "not ready".into(),
        (_, Some(true)) => "healthy".into(),
        (_, Some(false)) => "unhealthy".into(),
        _ => NONE.into(),
    }
}

/// Start, stop or restart the processes matching `pattern`.
pub async fn act(client: &Client, action: Action, pattern: &str) -> Result<(), CtlError> {
    let mut req = client
        .post(&["processes", pattern, action.path()])
        .progress(&format!("{} {pattern}", action.doing()));
    if let (Action::Stop, Some(t)) = (action, client.timeout()) {
        let text = humantime::format_duration(t).to_string();
        req = req
            .query("timeout", &text)
            .wait(Wait::Exactly(t + STOP_MARGIN));
    }
    let answer = req.send().await?;
    output::print(client.json, answer, affected);
    Ok(())
}

/// `{"action": "stop", "processes": [...]}` as `stopped web-1, web-2`.
pub fn affected(v: &Value) -> String {
    let names: Vec<String> = v["processes"]
        .as_array()
        .map(|l| l.iter().map(output::text).collect())
        .unwrap_or_default();
    let done = match v["action"].as_str() {
        Some("start") => "started".to_string(),
        Some("stop") => "stopped".to_string(),
        Some("restart") => "restarted".to_string(),
        Some(other) => format!("{other}:"),
        None => "done:".to_string(),
    };
    match names.is_empty() {
        true => format!("{done} {NONE}\n"),
        false => format!("{done} {}\n", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_humanises_and_tolerates_missing_fields() {
        let v = json!([
            {"name": "web-1", "stack": "web", "state": "running", "pid": 19040, "restarts": 0,
             "uptime_s": 192.0, "last_exit": null, "reason": "ready",
             "usage": {"cpu_percent": 12.5, "rss_bytes": 5_452_595, "processes": 2}},
            {"name": "worker", "state": "backoff", "pid": null, "restarts": 3,
             "last_exit": {"code": 1}, "reason": "exited with code 1; restarting in 4s"},
            {"name": "odd"}
        ]);
        assert_eq!(
            table(&v),
            "\
NAME    STATE    PID    RESTARTS  UPTIME  CPU    MEM      LAST EXIT  REASON
web-1   running  19040  0         3m 12s  12.5%  5.2 MiB  -          ready
worker  backoff  -      3         -       -      -        code 1     exited with code 1; restarting in 4s
odd     -        -      -         -       -      -        -          -
"
        );
        assert_eq!(table(&json!([])), "no processes\n");
    }

    #[test]
    fn health_shows_only_when_reported() {
        let v = json!([{"name": "db", "state": "running", "ready": true, "healthy": false}]);
        let out = table(&v);
        assert!(
            out.starts_with("NAME  STATE    PID  RESTARTS  UPTIME  CPU  MEM  HEALTH"),
            "{out}"
        );
        assert!(out.contains("unhealthy"), "{out}");
    }

    #[test]
    fn affected_processes_in_words() {
        let v = json!({"action": "restart", "processes": ["web-1", "web-2"]});
        assert_eq!(affected(&v), "restarted web-1, web-2\n");
        assert_eq!(affected(&json!({})), "done: -\n");
    }
}
