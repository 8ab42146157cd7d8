//! SIGHUP to `state-manager serve` reads the config file again and applies it with a plan,
//! logging a line per stack added, removed or changed; a file with problems is logged problem
//! by problem and changes nothing.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::support::{CONFIG, Server, token};

/// CONFIG with `talker` removed, `worker`'s command changed and `extra` added.
pub const RELOADED: &str = r#"{ "stacks": [
    { "name": "web", "command": "sleep", "args": ["1000"], "instances": 2, "stop_timeout": "10s" },
    { "name": "worker", "command": "sleep 2000", "stop_timeout": "10s" },
    { "name": "extra", "command": "sleep 1000", "stop_timeout": "10s" }
] }"#;

fn pid_of(list: &[Value], name: &str) -> Option<u64> {
    list.iter()
        .find(|p| p["name"] == name && p["state"] == "running")
        .and_then(|p| p["pid"].as_u64())
}

fn hup(s: &Server) {
    kill(Pid::from_raw(s.pid() as i32), Signal::SIGHUP).unwrap();
}

#[test]
fn sighup_reloads_the_config_file_and_logs_the_plan() {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    let before = s.wait_all_running(&admin);
    let webs = [pid_of(&before, "web-1"), pid_of(&before, "web-2")];
    let worker = pid_of(&before, "worker");

    std::fs::write(s.config_path(), RELOADED).unwrap();
    hup(&s);
    let (done, lines) = s.wait_log(|m| m == "reloaded the config file on SIGHUP");
    assert_eq!(done["revision"], 2, "{done}");
    let said: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["message"].as_str())
        .filter(|m| m.starts_with("reload: "))
        .collect();
    assert_eq!(
        said,
        [
            "reload: + extra (added)",
            "reload: - talker (removed)",
            "reload: ~ worker: command"
        ]
    );
    let after = crate::common::wait_for("extra running", super::DEADLINE, || {
        let list = s.processes(&admin);
        pid_of(&list, "extra").is_some().then_some(list)
    });
    assert_eq!(
        [pid_of(&after, "web-1"), pid_of(&after, "web-2")],
        webs,
        "untouched"
    );
    let worker2 = crate::common::wait_for("worker running", super::DEADLINE, || {
        pid_of(&s.processes(&admin), "worker")
    });
    assert_ne!(
        Some(worker2),
        worker,
        "worker restarted with its new command"
    );
    assert!(!after.iter().any(|p| p["name"] == "talker"), "{after:?}");

    // A file with problems: each is logged, nothing changes.
    std::fs::write(
        s.config_path(),
        r#"{"stacks": [{"name": "web", "command": ""}], "restart_delay": "soon"}"#,
    )
    .unwrap();
    hup(&s);
    let (refused, lines) = s.wait_log(|m| m.starts_with("the config file has problems"));
    assert_eq!(refused["problems"], 2, "{refused}");
    let fields: Vec<&str> = lines.iter().filter_map(|l| l["field"].as_str()).collect();
    assert!(fields.contains(&"restart_delay"), "{lines:?}");
    assert!(
        fields.iter().any(|f| f.starts_with("stacks[0]")),
        "{lines:?}"
    );
    let now = s.processes(&admin);
    assert_eq!(now.len(), after.len(), "{now:?}");
    assert_eq!(pid_of(&now, "extra"), pid_of(&after, "extra"));
    assert_eq!(pid_of(&now, "web-1"), webs[0]);
}
