//! `state-manager ctl` end to end: the real binary against the real server (`serve` on an
//! ephemeral port with a JWT secret, `sleep` processes and local storage) for every command, in
//! table and `--json` form, and the exit codes scripts rely on.

use crate::common;

mod checkpoints;
mod procset;
mod reload;
mod storage;
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;
use support::{CONFIG, DEADLINE, Server, column, ctl, ctl_command, token};

#[test]
fn status_and_processes_print_aligned_tables_and_json() {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    let list = s.wait_all_running(&admin);
    assert_eq!(list.len(), 4);

    let run = s.ctl(Some(&admin), &["status"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("configured       yes\n"), "{run:?}");
    assert!(
        run.stdout.contains("processes        4 total: 4 running\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("role             owner\n"), "{run:?}");
    assert!(run.stdout.contains("lease            held by "), "{run:?}");
    let doc = s.ctl(Some(&admin), &["status", "--json"]).json();
    assert_eq!(doc["configured"], true);
    assert_eq!(doc["processes"]["running"], 4);

    let run = s.ctl(Some(&admin), &["processes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let table = &run.stdout;
    let (state_at, pid_at) = (column(table, "STATE"), column(table, "PID"));
    assert!(table.starts_with("NAME"), "{table}");
    for p in &list {
        let name = p["name"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"));
        assert_eq!(&row[state_at..state_at + 7], "running", "{table}");
        let pid = p["pid"].as_u64().unwrap().to_string();
        assert_eq!(&row[pid_at..pid_at + pid.len()], pid, "{table}");
    }

    let run = s.ctl(Some(&admin), &["--json", "processes", "web-*"]);
    let names: Vec<Value> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
}

#[test]
fn stop_start_and_restart_act_and_report_what_they_touched() {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    s.wait_all_running(&admin);

    let run = s.ctl(Some(&admin), &["stop", "worker", "--timeout", "2s"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "stopped worker\n"),
        "{run:?}"
    );
    let worker = s
        .ctl(Some(&admin), &["--json", "processes", "worker"])
        .json();
    assert_eq!(worker[0]["state"], "stopped");
    let table = s.ctl(Some(&admin), &["processes", "worker"]).stdout;
    assert!(table.contains("signal 15 (SIGTERM)"), "{table}");

    let run = s.ctl(Some(&admin), &["--json", "start", "worker"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json(),
        // Revision 1 is the seed; the stop recorded the intent at 2, the start at 3.
        serde_json::json!({"action": "start", "processes": ["worker"], "revision": 3})
    );

    let run = s.ctl(Some(&admin), &["restart", "web-*"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "restarted web-1, web-2\n"),
        "{run:?}"
    );
    let list = s.wait_all_running(&admin);
    let web1 = list.iter().find(|p| p["name"] == "web-1").unwrap();
    assert_eq!(web1["restarts"], 1, "{web1}");

    let run = s.ctl(Some(&admin), &["--json", "stop", "web-[12]"]);
    assert_eq!(
        run.json()["processes"],
        serde_json::json!(["web-1", "web-2"])
    );
}

#[test]
fn logs_print_the_tail_and_follow_new_lines() {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    let tail = common::wait_for("three lines from talker", DEADLINE, || {
        let run = s.ctl(Some(&admin), &["--json", "logs", "talker", "--tail", "3"]);
        let v = run.json();
        (v.as_array()?.len() == 3).then_some(v)
    });
    assert_eq!(tail[2]["stream"], "stdout");

    let run = s.ctl(Some(&admin), &["logs", "talker", "--tail", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    let shape =
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stdout (hello|tick)$").unwrap();
    assert!(lines.iter().all(|l| shape.is_match(l)), "{lines:?}");

    for json in [false, true] {
        let mut args = vec!["logs", "talker", "--tail", "1", "--follow"];
        if json {
            args.push("--json");
        }
        let got = follow(&s.url, &admin, &args, 3);
        for line in &got {
            match json {
                true => assert!(serde_json::from_str::<Value>(line).unwrap()["line"].is_string()),
                false => assert!(shape.is_match(line), "{line}"),
            }
        }
    }
}

/// Run `ctl ARGS`, read `n` lines of its stdout, then kill it.
fn follow(url: &str, token: &str, args: &[&str], n: usize) -> Vec<String> {
    let mut child = ctl_command(url, Some(token), args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let got: Vec<String> = (0..n)
        .map(|i| {
            rx.recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("line {i} of {args:?} never came"))
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
fn exit_codes_tell_scripts_what_went_wrong() {
    let s = Server::start(CONFIG);
    let (admin, read) = (token("admin"), token("read"));
    s.wait_all_running(&admin);

    let run = s.ctl(None, &["status"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("STATE_MANAGER_TOKEN"), "{run:?}");
    assert_eq!(s.ctl(Some("not-a-token"), &["status"]).code, 4);
    let run = s.ctl(Some(&read), &["stop", "worker"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("`admin` scope"), "{run:?}");

    let run = s.ctl(Some(&admin), &["stop", "db-*"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stderr.contains("no process matches \"db-*\""),
        "{run:?}"
    );
    let run = s.ctl(Some(&admin), &["--json", "logs", "nope"]);
    assert_eq!(
        (run.code, &run.json()["status"]),
        (5, &Value::from(404)),
        "{run:?}"
    );

    let run = s.ctl(Some(&admin), &["logs", "talker", "--tail", "5000"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("tail must be at most 1000"), "{run:?}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = support::file(dir.path(), "token", &format!("{read}\n"));
    let run = s.ctl(None, &["--token-file", &token_file, "--json", "processes"]);
    assert_eq!(run.json().as_array().unwrap().len(), 4, "{run:?}");
    for args in [
        &["stop"][..],
        &["--token-file", "/nonexistent/token", "status"],
        &["logs", ".."],
        &["bogus"],
    ] {
        let run = s.ctl(Some(&admin), args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    assert_eq!(ctl("ftp://127.0.0.1:1", None, &["status"]).code, 2);
}

#[test]
fn unreachable_and_silent_servers_are_exit_3_and_health_says_1() {
    let s = Server::start(CONFIG);
    // The exact form of the Dockerfile's HEALTHCHECK, with no token anywhere.
    let run = support::bin()
        .args(["ctl", "health", "--url", &s.url])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok\n");
    let run = ctl(&s.url, None, &["health", "--json"]);
    assert_eq!(run.json()["status"], "ok");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let run = ctl(&closed, Some("t"), &["status"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("cannot reach state-manager"), "{run:?}");
    assert_eq!(ctl(&closed, None, &["health"]).code, 1);

    // Accepts connections (the kernel's backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let run = ctl(&silent_url, Some("t"), &["--timeout", "1s", "processes"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("within 1s"), "{run:?}");
    let run = ctl(&silent_url, None, &["health", "--timeout", "500ms"]);
    assert_eq!(run.code, 1, "{run:?}");
    drop(silent);
}
