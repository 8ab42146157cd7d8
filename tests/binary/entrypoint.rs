//! The real binary: `run` exit codes and signals, PID 1 reaping in a fresh PID namespace, the
//! data-directory lock, children dying with a killed supervisor, and `check`.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{alive, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_state-manager");
const LONG: Duration = Duration::from_secs(30);

fn sm(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("STATE_MANAGER_LOG_FORMAT", "json")
        .env("STATE_MANAGER_JWT_SECRET", "cli-test-secret")
        .env_remove("STATE_MANAGER_CONFIG");
    c
}

/// Wait for a child with a deadline; kill it and panic if it overstays.
fn wait_exit(child: &mut Child, deadline: Duration) -> i32 {
    let status = wait_for("process exit", deadline, || child.try_wait().ok().flatten());
    status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {status:?}"))
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn read_pid(path: &Path) -> u32 {
    wait_for("pid file", LONG, || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

#[test]
fn run_exits_with_the_childs_code() {
    let out = sm(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out\n",
        "output passes through unprefixed"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    let out = sm(&["run", "--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "128 + SIGKILL");
}

#[test]
fn sigterm_to_run_stops_the_child_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let mut child = sm(&["run", "--", "sh", "-c", &script]).spawn().unwrap();
    let pid = read_pid(&pidfile);
    let t = Instant::now();
    signal(&child, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child, LONG), 143);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(!alive(pid), "the child was stopped too");
}

#[test]
fn sigint_exits_130_and_sighup_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let hup = dir.path().join("hup");
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo got >> {h}' HUP; touch {r}; while :; do sleep 0.05; done",
        h = hup.display(),
        r = ready.display()
    );
    let mut child = sm(&["run", "--stop-timeout", "5s", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for("child ready", LONG, || ready.exists().then_some(()));
    signal(&child, Signal::SIGHUP);
    wait_for("HUP forwarded", LONG, || {
        std::fs::read_to_string(&hup)
            .ok()
            .filter(|s| s.contains("got"))
    });
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_exit(&mut child, LONG), 130);
}

#[test]
fn children_die_with_a_killed_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let mut child = sm(&["run", "--", "sh", "-c", &script]).spawn().unwrap();
    let pid = read_pid(&pidfile);
    signal(&child, Signal::SIGKILL);
    let _ = child.wait();
    wait_for("orphan killed by PDEATHSIG", LONG, || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn a_watched_file_change_restarts_run_and_the_exit_code_still_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("app.conf");
    let pidfile = dir.path().join("pid");
    std::fs::write(&conf, "v1").unwrap();
    // Exits 5 on its own once the config says "stop".
    let script = format!(
        "echo $$ > {p}; while :; do grep -q stop {c} && exit 5; sleep 0.05; done",
        p = pidfile.display(),
        c = conf.display()
    );
    let mut child = sm(&[
        "run",
        "--watch",
        conf.to_str().unwrap(),
        "--stop-timeout",
        "5s",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .spawn()
    .unwrap();
    let first = read_pid(&pidfile);
    let tmp = dir.path().join("app.conf.tmp");
    std::fs::write(&tmp, "v2").unwrap();
    std::fs::rename(&tmp, &conf).unwrap();
    let second = wait_for("restarted child", LONG, || {
        let p: u32 = std::fs::read_to_string(&pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (p != first).then_some(p)
    });
    assert!(!alive(first));
    assert!(alive(second));
    std::fs::write(&conf, "stop").unwrap();
    assert_eq!(wait_exit(&mut child, LONG), 5);
}

#[test]
fn as_pid_1_thousands_of_orphans_leave_no_zombies() {
    // Each `(sleep 0.2 &)` subshell exits at once, orphaning its sleep to PID 1 (us).
    let script = r#"
        for i in $(seq 1000); do (sleep 0.2 &); done
        zombies() { grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat 2>/dev/null | wc -l; }
        others() { ls -d /proc/[0-9]* | wc -l; }
        echo "spawned"
        n=0
        while [ $n -lt 300 ]; do
            z=$(zombies); o=$(others)
            [ "$z" -eq 0 ] && [ "$o" -le 4 ] && break
            sleep 0.1; n=$((n+1))
        done
        echo "zombies=$(zombies) procs=$(others)"
    "#;
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            BIN,
            "run",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("STATE_MANAGER_LOG_LEVEL", "warn")
        .output()
        .expect("unshare (util-linux) is needed; these tests run as root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("spawned"), "{stdout}");
    // Left: state-manager, sh, and the processes counting.
    assert!(stdout.contains("zombies=0"), "{stdout}");
}

#[test]
fn a_second_instance_on_the_same_data_dir_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut first = sm(&["serve", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("lock file with pid", LONG, || {
        let s = std::fs::read_to_string(dir.path().join("state-manager.lock")).ok()?;
        (s.trim() == first.id().to_string()).then_some(())
    });
    let mut second = sm(&["serve", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut second, LONG);
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    signal(&first, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut first, LONG), 143);
}

#[test]
fn check_accepts_the_example_and_reports_every_problem() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.json");
    let out = sm(&["check", "--config", example]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"stop_timeout": "ninety", "colour": 1,
            "storage": {"bucket": "Bad_Bucket", "region": "US East", "endpoint": "http://h:9000/x"},
            "stacks": [{"name": "a", "command": ""}, {"name": "a", "command": "x"}, {"name": "b", "command": "y", "instances": 0}]}"#,
    )
    .unwrap();
    let out = sm(&["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "stop_timeout: invalid duration \"ninety\"",
        "colour: unknown field",
        "stacks[0].command: a command is required",
        "stacks[1].name: duplicate name \"a\"",
        "stacks[2].instances: must be between 1 and",
        "storage.bucket: invalid bucket name \"Bad_Bucket\": only lowercase letters",
        "storage.region: invalid region \"US East\"",
        "storage.endpoint: invalid endpoint \"http://h:9000/x\": give only scheme, host and port",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let out = sm(&["check", "--config", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

/// `user` and `group` need a service running as root: `check` run as an unprivileged user
/// (setpriv, from util-linux) refuses a switch to another user at its path, and accepts the
/// user it runs as.
#[test]
fn check_as_a_user_refuses_to_switch_to_another() {
    use std::os::unix::fs::PermissionsExt;
    assert!(nix::unistd::Uid::effective().is_root(), "run as root");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"stacks": [{"name": "a", "command": "sleep 1", "user": "root"},
                       {"name": "b", "command": "sleep 1", "user": "nobody"}]}"#,
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_state-manager"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env_remove("STATE_MANAGER_DATA_DIR")
        .output()
        .expect("setpriv runs (Debian: util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let want = format!(
        "stacks[0].user: state-manager runs as uid {}, not root, so it cannot switch to user \"root\"",
        nobody.uid
    );
    assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    assert!(
        !err.contains("stacks[1]"),
        "its own user is allowed:\n{err}"
    );
}

/// `check` refuses what would fail later: serde's positional (array) form of the config or of a
/// section, and a duration out of its range (a zero checkpoint interval used to pass `check`
/// and then panic the service at start).
#[test]
fn check_refuses_arrays_for_objects_and_durations_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    for (doc, want) in [
        (r#"[null, ["web"]]"#, "must be a JSON object"),
        ("[]", "must be a JSON object"),
        (
            r#"{"checkpoint": [null, null, true, 8, [], "1h"]}"#,
            "checkpoint: invalid type: sequence",
        ),
        (r#"{"stacks": [["web", "sleep 1"]]}"#, "stacks[0]"),
        (
            r#"{"checkpoint": {"interval": "0s"}}"#,
            "checkpoint.interval: 0s is out of range",
        ),
    ] {
        std::fs::write(&file, doc).unwrap();
        let out = sm(&["check", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{doc}: {err}");
        assert!(err.contains(want), "{doc}: missing {want:?} in:\n{err}");
    }
}

/// `serve` with a config that has a problem exits 1 and names the problem once (the error used
/// to be printed with its own source appended: every problem twice).
#[test]
fn serve_names_each_config_problem_once_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(&file, r#"{"checkpoint": {"interval": "0s"}}"#).unwrap();
    let data = dir.path().join("data");
    let out = sm(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .env(
        "STATE_MANAGER_JWT_SECRET",
        "entrypoint-secret-0123456789abcdef0123",
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("checkpoint.interval: 0s is out of range")
            .count(),
        1,
        "{err}"
    );
}

/// A restart delay of zero is valid (restart at once, as supervisord and PM2 allow).
#[test]
fn check_accepts_a_zero_restart_delay() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        r#"{"stacks": [{"name": "r", "command": "sleep 1", "restart_delay": "0s"}]}"#,
    )
    .unwrap();
    let out = sm(&["check", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short lease ttl is valid with the default clock skew (which follows the ttl); a skew
/// given too large for it is refused with the default named.
#[test]
fn check_accepts_a_short_lease_ttl_with_the_default_skew() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    let check = |lease: &str| {
        std::fs::write(&file, format!(r#"{{"lease": {lease}}}"#)).unwrap();
        sm(&["check", "--config", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = check(r#"{"ttl": "6s", "poll_interval": "1s"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(r#"{"ttl": "6s", "poll_interval": "1s", "clock_skew": "2s"}"#);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lease.clock_skew: must be less than a third of lease.ttl (6s); leave it out for the default, 1s 200ms"),
        "{err}"
    );
}

#[test]
fn version_is_printed() {
    let out = sm(&["--version"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("state-manager {}", env!("CARGO_PKG_VERSION"))
    );
}
