//! `ctl status` (`GET /`) and `ctl health` (`GET /healthz`, the container's liveness probe).
//!
//! The status sections owned by other subsystems (role, lease, replication, last checkpoint)
//! are read field by field and shown as `-` when absent, so a server that does not run them
//! yet, or reports more than this version knows, still prints.

use serde_json::Value;
use time::OffsetDateTime;

use super::args::Global;
use super::client::{Client, Wait};
use super::error::{CtlError, exit};
use super::output::{self, NONE, kv};

/// Process states in the order they are listed (the API's count names).
const STATES: [&str; 8] = [
    "running", "starting", "stopping", "stopped", "backoff", "exited", "failed", "waiting",
];

pub async fn status(client: &Client) -> Result<(), CtlError> {
    let answer = client.get(&[""]).send().await?;
    output::print(client.json, answer, |v| {
        render(v, OffsetDateTime::now_utc())
    });
    Ok(())
}

/// The status as `key  value` lines.
pub fn render(v: &Value, now: OffsetDateTime) -> String {
    let mut pairs = vec![
        ("configured", output::yes_no(&v["configured"])),
        ("version", output::text(&v["version"])),
        ("uptime", output::secs(&v["uptime_s"])),
        ("role", role(&v["role"])),
        ("lease", lease(&v["lease"], now)),
        ("storage", output::text(&v["storage"])),
        ("storage health", storage_health(&v["storage_health"], now)),
        ("processes", processes(&v["processes"])),
        ("replication", replication(&v["replication"], now)),
        ("last checkpoint", checkpoint(&v["last_checkpoint"], now)),
        ("operation", operation(&v["operation"], now)),
        ("last error", output::text(&v["node_error"])),
    ];
    if let Some(fix) = v["storage_health"]["failure"]["fix"].as_str() {
        pairs.insert(7, ("storage fix", fix.to_string()));
    }
    let warnings = v["warnings"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for w in warnings {
        pairs.push(("warning", output::text(w)));
    }
    kv(&pairs)
}

/// `owner`, `standby`…; also the older form `{"role": "owner", "epoch": 3}`.
fn role(v: &Value) -> String {
    let name = match v {
        Value::Object(_) => output::text(&v["role"]),
        other => output::text(other),
    };
    match v.get("epoch").and_then(Value::as_u64) {
        Some(epoch) => format!("{name}, epoch {epoch}"),
        None => name,
    }
}

fn lease(v: &Value, now: OffsetDateTime) -> String {
    if !v.is_object() {
        return output::text(v);
    }
    let epoch = v["epoch"].as_u64().map(|e| format!("epoch {e}"));
    let mut parts = match (v["released"].as_bool(), v["holder"].as_str()) {
        (Some(true), _) => vec!["released".to_string()],
        (_, Some(holder)) => vec![format!("held by {holder}")],
        (_, None) => vec!["not held".to_string()],
    };
    parts.extend(epoch);
    if v["released"].as_bool() != Some(true) && v["expires_at"].is_string() {
        parts.push(format!("expires {}", output::age(&v["expires_at"], now)));
    }
    parts.join(", ")
}

/// `ok`, `unknown`, or `failing for 3s: <what happened>` (the fix is its own line).
fn storage_health(v: &Value, now: OffsetDateTime) -> String {
    if !v.is_object() {
        return output::text(v);
    }
    let state = output::text(&v["state"]);
    let Some(message) = v["failure"]["message"].as_str() else {
        return state;
    };
    match output::parse_time(&v["since"]) {
        Some(since) => {
            let took = (now - since).max(time::Duration::ZERO);
            let took = std::time::Duration::from_secs(took.whole_seconds() as u64);
            format!("{state} for {}: {message}", output::duration(took))
        }
        None => format!("{state}: {message}"),
    }
}

/// `{"kind": "checkpoint", "since": …}` as `checkpoint, for 3s`.
fn operation(v: &Value, now: OffsetDateTime) -> String {
    if !v.is_object() {
        return output::text(v);
    }
    let kind = output::text(&v["kind"]);
    match output::parse_time(&v["since"]) {
        Some(since) => {
            let took = (now - since).max(time::Duration::ZERO);
            let took = std::time::Duration::from_secs(took.whole_seconds() as u64);
            format!("{kind}, for {}", output::duration(took))
        }
        None => kind,
    }
}

fn processes(v: &Value) -> String {
    let Some(total) = v["total"].as_u64() else {
        return NONE.into();
    };
    let counts: Vec<String> = STATES
        .iter()
        .filter_map(|s| {
            v[*s]
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| format!("{n} {s}"))
        })
        .collect();
    match counts.is_empty() {
        true => format!("{total} total"),
        false => format!("{total} total: {}", counts.join(", ")),
    }
}

fn replication(v: &Value, now: OffsetDateTime) -> String {
    if !v.is_object() {
        return output::text(v);
    }
    let mut parts = vec![format!("lag {}", output::millis(&v["lag_ms"]))];
    if v["last_sync_at"].is_string() {
        parts.push(format!(
            "last sync {}",
            output::age(&v["last_sync_at"], now)
        ));
    }
    if let Some(e) = v["last_error"].as_str() {
        parts.push(format!("last error: {e}"));
    }
    parts.join(", ")
}

fn checkpoint(v: &Value, now: OffsetDateTime) -> String {
    if !v.is_object() {
        return output::text(v);
    }
    let mut s = output::checkpoint_ref(v);
    if let Some(label) = v["label"].as_str() {
        s.push_str(&format!(" ({label})"));
    }
    if v["created_at"].is_string() {
        s.push_str(&format!(", {}", output::age(&v["created_at"], now)));
    }
    s
}

/// `ctl health`: exit 0 when `/healthz` answers with a success, 1 for anything else (an
/// unreachable server or a bad `--url` included: Docker reserves other codes). No token is read
/// or sent. Failing storage is said on stderr and does not fail it: this is liveness, and a
/// restart mends no credentials or endpoint (docs/STORAGE.md, "Readiness").
pub async fn health(global: &Global) -> i32 {
    let global = Global {
        token_file: None,
        ..global.clone()
    };
    let checked = async {
        let client = Client::new(&global, None)?;
        let answer = client
            .get(&["healthz"])
            .no_auth()
            .wait(Wait::Health)
            .send()
            .await?;
        if let Some(warning) = storage_warning(&answer.value) {
            eprintln!("state-manager: {warning}");
        }
        output::print(client.json, answer, |v| output::text(&v["status"]));
        Ok::<_, CtlError>(())
    };
    match checked.await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("state-manager: not healthy: {e}");
            exit::SERVER
        }
    }
}

/// What `ctl health` says beside `ok` when `/healthz` reports failing storage.
fn storage_warning(v: &Value) -> Option<String> {
    (v["storage"] == "failing").then(|| {
        let kind = v["storage_failure"].as_str().unwrap_or("unknown");
        format!(
            "storage is failing ({kind}); `state-manager ctl status` says what happened and the fix"
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn a_full_status_reads_as_one_line_per_section() {
        let now = OffsetDateTime::parse("2026-11-23T20:20:00Z", &Rfc3339).unwrap();
        let v = json!({
            "configured": true, "version": "0.1.0", "uptime_s": 192.5, "role": "owner",
            "processes": {"total": 4, "running": 3, "backoff": 1, "stopped": 0, "ready": 3},
            "lease": {"node_id": "node-a", "holder": "node-a", "epoch": 3,
                      "expires_at": "2026-11-23T20:20:25Z", "released": false},
            "storage": "s3://bucket/env-1",
            "storage_health": {"state": "ok", "since": "2026-11-23T20:15:00Z", "failure": null},
            "replication": {"lag_ms": 0, "last_sync_at": "2026-11-23T20:19:58Z", "last_error": null},
            "last_checkpoint": {"id": "20261123T201500.000Z-0a1b2c3d", "label": "nightly",
                                "created_at": "2026-11-23T20:15:00Z"},
            "operation": {"kind": "checkpoint", "since": "2026-11-23T20:19:57Z"},
            "node_error": null,
            "warnings": ["authentication is disabled"],
            "something_new": 1
        });
        assert_eq!(
            render(&v, now),
            "\
configured       yes
version          0.1.0
uptime           3m 12s
role             owner
lease            held by node-a, epoch 3, expires in 25s
storage          s3://bucket/env-1
storage health   ok
processes        4 total: 3 running, 1 backoff
replication      lag 0ms, last sync 2s ago
last checkpoint  20261123T201500.000Z-0a1b2c3d (nightly), 5m ago
operation        checkpoint, for 3s
last error       -
warning          authentication is disabled
"
        );
    }

    #[test]
    fn a_released_or_unheld_lease_and_the_older_role_form() {
        let now = OffsetDateTime::now_utc();
        let released = json!({"holder": null, "epoch": 1, "released": true, "expires_at": "2026-11-23T20:20:25Z"});
        assert_eq!(lease(&released, now), "released, epoch 1");
        assert_eq!(
            lease(&json!({"holder": null, "released": false}), now),
            "not held"
        );
        assert_eq!(
            role(&json!({"role": "owner", "epoch": 3})),
            "owner, epoch 3"
        );
        assert_eq!(role(&json!("standby")), "standby");
    }

    #[test]
    fn failing_storage_says_what_happened_and_what_to_do() {
        let now = OffsetDateTime::parse("2026-11-23T20:20:00Z", &Rfc3339).unwrap();
        let v = json!({
            "storage": "s3://bk/env-1",
            "storage_health": {"state": "failing", "since": "2026-11-23T20:19:50Z",
                "failure": {"kind": "credentials", "message": "the secret key is wrong",
                            "fix": "check storage.secret_key"}}
        });
        let out = render(&v, now);
        assert!(
            out.contains("storage health   failing for 10s: the secret key is wrong\nstorage fix      check storage.secret_key\n"),
            "{out}"
        );
    }

    #[test]
    fn missing_sections_are_dashes() {
        let now = OffsetDateTime::now_utc();
        let out = render(&json!({"configured": false}), now);
        assert!(out.contains("role             -\n"), "{out}");
        assert!(out.contains("processes        -\n"), "{out}");
        assert!(!out.contains("warning "), "{out}");
    }

    #[test]
    fn health_names_failing_storage_and_nothing_else() {
        let failing =
            json!({"status": "ok", "storage": "failing", "storage_failure": "credentials"});
        let w = storage_warning(&failing).unwrap();
        assert!(w.starts_with("storage is failing (credentials);"), "{w}");
        assert!(w.contains("ctl status"), "{w}");
        for quiet in [
            json!({"status": "ok", "storage": "ok"}),
            json!({"status": "ok", "storage": null}),
        ] {
            assert_eq!(storage_warning(&quiet), None, "{quiet}");
        }
    }
}
