//! Managed ports and start-up cleanup with real listening processes.
//!
//! The state database's record of open runs does not exist yet: [`MemLedger`] stands in for it
//! (it only answers "which runs were open" and records what the supervisor reports).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{alive, wait_for, wait_for_line};
use state_manager::config;
use state_manager::events::{Event, ExitStatus, StateName};
use state_manager::ports;
use state_manager::supervisor::{self, OpenRun, Options, RunLedger, SupervisorHandle};
use tokio::sync::broadcast;

const LONG: Duration = Duration::from_secs(30);

const LISTENER: &str = r#"
import os, socket, sys, time
port, pidfile, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode != "0":
    os.setpgrp()
if mode == "2":
    # Lead a group, leave a child holding the port in it, and exit.
    st = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    open(pidfile + ".leader", "w").write(f"{os.getpid()} {st[19]}")
    if os.fork() > 0:
        os._exit(0)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
open(pidfile + ".tmp", "w").write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// How a stray listener is placed.
#[derive(Clone, Copy)]
enum Group {
    /// In the process group it was started in.
    Inherited,
    /// Leading its own process group, as supervised processes do.
    Own,
    /// A member of a group whose leader has exited.
    LeaderGone,
}

/// A listening process that is not our descendant (started through a shell that exits), killed
/// by pid on drop.
struct Stray {
    pid: u32,
    pidfile: PathBuf,
}

impl Stray {
    fn start(dir: &Path, port: u16, group: Group) -> Stray {
        let pidfile = dir.join(format!("stray-{port}.pid"));
        // The shell exits at once: the listener is re-parented away from this test process.
        let mut sh = std::process::Command::new("sh")
            .args([
                "-c",
                r#"python3 -c "$1" "$2" "$3" "$4" </dev/null >/dev/null 2>&1 &"#,
                "sh",
            ])
            .args([LISTENER, &port.to_string(), &pidfile.display().to_string()])
            .arg(match group {
                Group::Inherited => "0",
                Group::Own => "1",
                Group::LeaderGone => "2",
            })
            .spawn()
            .expect("sh");
        // It exits at once; the supervisor's reaper may collect it first (ECHILD, ignored).
        let _ = sh.wait();
        let pid = wait_for("the stray's pid file", LONG, || {
            std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
        });
        wait_for("the stray listening", LONG, || {
            ports::in_use(port).unwrap().then_some(())
        });
        Stray { pid, pidfile }
    }

    /// The run an earlier supervisor would have recorded for it.
    fn run(&self) -> OpenRun {
        OpenRun {
            process: "api".into(),
            pid: self.pid,
            start_ticks: state_manager::proc::procfs::start_ticks(self.pid).unwrap(),
        }
    }

    /// The recorded run of the group leader that left it behind (`Group::LeaderGone`).
    fn leader_run(&self) -> OpenRun {
        let mut leader = self.pidfile.clone().into_os_string();
        leader.push(".leader");
        let text = std::fs::read_to_string(leader).unwrap();
        let (pid, ticks) = text.split_once(' ').unwrap();
        OpenRun {
            process: "api".into(),
            pid: pid.parse().unwrap(),
            start_ticks: ticks.parse().unwrap(),
        }
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[derive(Debug, Default)]
struct MemLedger {
    earlier: Vec<OpenRun>,
    opened: Mutex<Vec<OpenRun>>,
    closed: Mutex<Vec<(String, u32)>>,
}

#[async_trait]
impl RunLedger for MemLedger {
    async fn earlier_runs(&self) -> Vec<OpenRun> {
        self.earlier.clone()
    }
    fn opened(&self, process: &str, pid: u32, start_ticks: Option<u64>) {
        let start_ticks = start_ticks.unwrap_or_default();
        let run = OpenRun {
            process: process.into(),
            pid,
            start_ticks,
        };
        self.opened.lock().unwrap().push(run);
    }
    fn closed(&self, process: &str, pid: u32, _exit: Option<ExitStatus>) {
        self.closed.lock().unwrap().push((process.into(), pid));
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A managed process `api` that owns `port` and listens on it itself once started.
fn api_json(dir: &Path, port: u16, reclaim: bool) -> String {
    let pidfile: PathBuf = dir.join("api.pid");
    let mut v = serde_json::json!({"stacks": [{"name": "api", "command": "python3",
        "args": ["-c", LISTENER, port.to_string(), pidfile.display().to_string(), "0"],
        "ports": [port], "restart_delay": "100ms", "max_restarts": 0,
        "readiness": {"tcp": true, "period": "50ms", "timeout": "1s", "start_timeout": "60s"}}]});
    if reclaim {
        v["stacks"][0]["reclaim_ports"] = true.into();
    }
    v.to_string()
}

async fn start(
    json: &str,
    ledger: Option<Arc<MemLedger>>,
) -> (SupervisorHandle, broadcast::Receiver<Arc<Event>>) {
    let h = supervisor::start(Options {
        forward_output: false,
        ledger: ledger.map(|l| l as Arc<dyn RunLedger>),
        ..Options::default()
    });
    let rx = h.subscribe();
    let c = config::parse(json).unwrap_or_else(|e| panic!("{e}"));
    h.load(config::resolve(&c, Path::new("/"))).await.unwrap();
    (h, rx)
}

async fn next(rx: &mut broadcast::Receiver<Arc<Event>>, to: StateName) -> Event {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if e.to == to => return Arc::unwrap_or_clone(e),
            Ok(Ok(_)) => {}
            other => panic!("waiting for {to}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_port_held_by_a_stray_of_an_earlier_run_is_freed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stray = Stray::start(dir.path(), port, Group::Own);
    let ledger = Arc::new(MemLedger {
        earlier: vec![stray.run()],
        ..MemLedger::default()
    });
    let (h, mut rx) = start(&api_json(dir.path(), port, false), Some(ledger.clone())).await;
    let running = next(&mut rx, StateName::Running).await;
    assert!(!alive(stray.pid), "the stray was stopped");
    let pid = running.pid.unwrap();
    let listed = h.ports().await.unwrap();
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert_eq!(
        (p.port, p.process.as_str(), p.in_use, p.held_by_owner),
        (port, "api", true, true)
    );
    assert_eq!(p.holder.as_ref().unwrap().pid, pid, "{p:?}");
    assert!(
        ledger
            .closed
            .lock()
            .unwrap()
            .contains(&("api".into(), stray.pid))
    );
    assert!(ledger.opened.lock().unwrap().iter().any(|r| r.pid == pid));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_leftover_found_only_at_the_port_is_killed_through_the_ports_path() {
    // A member of an earlier run's process group (its leader gone) holds the port; it is
    // recognised as a leftover by its group, without start-up cleanup.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stray = Stray::start(dir.path(), port, Group::LeaderGone);
    let leader = stray.leader_run();
    assert_ne!(leader.pid, stray.pid);
    wait_for("the leader gone", LONG, || {
        (!alive(leader.pid)).then_some(())
    });
    let holder = ports::holders(port).unwrap().remove(0);
    assert_eq!(holder.pid, stray.pid);
    let nobody = state_manager::supervisor::leftovers::Earlier::default();
    assert!(
        !state_manager::supervisor::leftovers::is_ours(&nobody, &holder),
        "without the record it is foreign"
    );
    let earlier = state_manager::supervisor::leftovers::Earlier { runs: vec![leader] };
    let is_ours =
        move |h: &ports::Holder| state_manager::supervisor::leftovers::is_ours(&earlier, h);
    let policy = ports::Policy {
        reclaim_foreign: false,
        is_ours: &is_ours,
        grace: Duration::from_secs(5),
    };
    let freed = ports::free(&[port], &policy).await.unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].holder.pid, stray.pid);
    assert!(!ports::in_use(port).unwrap());
}

#[tokio::test]
async fn a_port_held_by_a_foreign_process_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stray = Stray::start(dir.path(), port, Group::Inherited);
    let (h, mut rx) = start(&api_json(dir.path(), port, false), None).await;
    let fatal = next(&mut rx, StateName::Fatal).await;
    let reason = fatal.reason.unwrap();
    assert!(
        reason.contains(&format!("port {port} is held by pid {}", stray.pid))
            && reason.contains("python"),
        "{reason}"
    );
    assert!(
        reason.contains("reclaim_ports"),
        "says how to fix it: {reason}"
    );
    assert!(alive(stray.pid), "a foreign holder is left alone");
    let listed = h.ports().await.unwrap();
    let holder = listed[0].holder.clone().expect("a holder");
    assert_eq!(holder.pid, stray.pid);
    assert!(
        holder.command.contains("python") && !listed[0].held_by_owner,
        "{listed:?}"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn reclaim_ports_kills_a_foreign_holder() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stray = Stray::start(dir.path(), port, Group::Inherited);
    let (h, mut rx) = start(&api_json(dir.path(), port, true), None).await;
    next(&mut rx, StateName::Running).await;
    assert!(!alive(stray.pid));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn start_up_cleanup_stops_leftovers_before_anything_starts_and_spares_recycled_pids() {
    let dir = tempfile::tempdir().unwrap();
    let spawn_sleep = || {
        std::process::Command::new("sh")
            .args(["-c", "exec setsid sleep 1000 </dev/null >/dev/null 2>&1"])
            .spawn()
            .unwrap()
    };
    let (mut leftover_child, mut recycled_child) = (spawn_sleep(), spawn_sleep());
    let (leftover, recycled) = (leftover_child.id(), recycled_child.id());
    wait_for("both sleeping", LONG, || {
        let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
        (comm(leftover)?.trim() == "sleep" && comm(recycled)?.trim() == "sleep").then_some(())
    });
    let ticks = |p| state_manager::proc::procfs::start_ticks(p).unwrap();
    let ledger = Arc::new(MemLedger {
        earlier: vec![
            OpenRun {
                process: "old".into(),
                pid: leftover,
                start_ticks: ticks(leftover),
            },
            // Same pid, another start time: the pid was reused by an unrelated process.
            OpenRun {
                process: "old".into(),
                pid: recycled,
                start_ticks: ticks(recycled) + 1,
            },
        ],
        ..MemLedger::default()
    });
    let check = dir.path().join("seen");
    let json = format!(
        r#"{{"stacks": [{{"name": "new", "command": "sh", "args": ["-c",
            "st=$(cut -d' ' -f3 /proc/{leftover}/stat 2>/dev/null); if [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo alive; else echo gone; fi > {c}; exec sleep 1000"]}}]}}"#,
        c = check.display()
    );
    let (h, mut rx) = start(&json, Some(ledger.clone())).await;
    next(&mut rx, StateName::Running).await;
    let seen = wait_for_line("the new process's check", &check).await;
    assert_eq!(
        seen.trim(),
        "gone",
        "the leftover was stopped before the new process started"
    );
    assert!(alive(recycled), "a recycled pid is not ours");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(recycled as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    h.shutdown().await.unwrap();
    // Already reaped by the supervisor's reaper, most likely (ECHILD, ignored).
    let _ = (leftover_child.try_wait(), recycled_child.try_wait());
}

#[tokio::test]
async fn a_port_held_by_another_supervised_process_is_not_taken_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pidfile = dir.path().join("b.pid");
    let json = serde_json::json!({"stacks": [
        {"name": "b", "command": "python3",
         "args": ["-c", LISTENER, port.to_string(), pidfile.display().to_string(), "0"],
         "readiness": {"tcp": port, "period": "50ms", "start_timeout": "60s"}},
        {"name": "a", "command": "sleep", "args": ["1000"], "ports": [port], "depends_on": ["b"]}]});
    let (h, mut rx) = start(&json.to_string(), None).await;
    let fatal = next(&mut rx, StateName::Fatal).await;
    assert_eq!(fatal.process, "a");
    let b = h.get("b").await.unwrap();
    assert_eq!(b.state, StateName::Running, "b keeps its socket");
    let holder_pid = ports::holders(port).unwrap()[0].pid;
    let reason = fatal.reason.unwrap();
    assert!(
        reason.contains(&format!("held by pid {holder_pid}")),
        "{reason}"
    );
    h.shutdown().await.unwrap();
}
