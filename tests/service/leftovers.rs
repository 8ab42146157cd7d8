//! The run ledger on the real state database: an earlier run's leftover recorded in SQLite is
//! stopped at start-up and its run closed; this run's processes are recorded and closed with
//! their exit status.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{alive, stray_sleep, wait_for_async, wait_for_line};
use state_manager::config;
use state_manager::events::{ExitStatus, StateName};
use state_manager::store::{RunStart, Store};
use state_manager::supervisor::{self, Options, RunLedger, StoreLedger};
use time::OffsetDateTime;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn leftovers_recorded_in_the_store_are_stopped_and_runs_are_kept_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    // A process of "an earlier run", leading its own group as supervised processes do.
    let mut stray = stray_sleep();
    let pid = stray.id();
    let now = OffsetDateTime::now_utc();
    store
        .run_started(RunStart::for_pid("old", pid, now))
        .await
        .unwrap();
    // A run of another boot: whatever holds that pid now is not it.
    let me = std::process::id();
    let mut other_boot = RunStart::for_pid("older", me, now);
    other_boot.boot_id = Some("another-boot".into());
    store.run_started(other_boot).await.unwrap();

    let ledger: Arc<dyn RunLedger> = Arc::new(StoreLedger::new(store.clone()));
    let h = supervisor::start(Options {
        forward_output: false,
        ledger: Some(ledger),
        ..Options::default()
    });
    let c = config::parse(r#"{"stacks": [{"name": "new", "command": "sleep", "args": ["1000"], "stop_timeout": "10s"}]}"#).unwrap();
    h.load(config::resolve(&c, Path::new("/"))).await.unwrap();
    let new = common::wait_for_async("new running", LONG, || async {
        let p = h.get("new").await.unwrap();
        (p.state == StateName::Running).then_some(p)
    })
    .await;
    assert!(!alive(pid), "the leftover was stopped");
    let runs = wait_for_async("only this run's process open", LONG, || async {
        let open = store.open_runs().await.unwrap();
        (open.len() == 1).then_some(open)
    })
    .await;
    assert_eq!(
        (runs[0].process.as_str(), Some(runs[0].pid)),
        ("new", new.pid)
    );
    assert!(runs[0].same_process_alive());
    h.stop("new", None).await.unwrap();
    let id = runs[0].id;
    let ended = wait_for_async("the run closed with its exit", LONG, || async {
        store
            .run(id)
            .await
            .unwrap()
            .filter(|r| r.ended_at.is_some())
    })
    .await;
    assert_eq!(ended.exit, Some(ExitStatus::Signal(15)));
    assert!(store.open_runs().await.unwrap().is_empty());
    h.shutdown().await.unwrap();
    // Reaped by the supervisor's reaper already, most likely (ECHILD, ignored).
    let _ = stray.try_wait();
}

#[tokio::test]
async fn a_ledger_given_after_register_cleans_up_before_start_all() {
    // The order of a node taking over: processes registered stopped, the database opened, then
    // the ledger handed over and the stacks started.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).await.unwrap();
    let mut stray = stray_sleep();
    let pid = stray.id();
    let start = RunStart::for_pid("new", pid, OffsetDateTime::now_utc());
    store.run_started(start).await.unwrap();
    let check = dir.path().join("seen");
    let json = format!(
        r#"{{"stacks": [{{"name": "new", "command": "sh", "stop_timeout": "10s", "args": ["-c",
            "st=$(cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null); if [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo alive; else echo gone; fi > {c}; exec sleep 1000"]}}]}}"#,
        c = check.display()
    );
    let h = supervisor::start(Options {
        forward_output: false,
        ..Options::default()
    });
    let c = config::parse(&json).unwrap();
    h.register(config::resolve(&c, Path::new("/")))
        .await
        .unwrap();
    assert!(alive(pid), "registering starts nothing and stops nothing");
    h.set_ledger(Some(Arc::new(StoreLedger::new(store.clone()))))
        .await
        .unwrap();
    h.start_all().await.unwrap();
    let seen = wait_for_line("the new process's check", &check).await;
    assert_eq!(
        seen.trim(),
        "gone",
        "the leftover was stopped before the start"
    );
    let open = wait_for_async("only the new run open", LONG, || async {
        let open = store.open_runs().await.unwrap();
        (open.len() == 1 && open[0].pid != pid).then_some(open)
    })
    .await;
    assert_eq!(Some(open[0].pid), h.get("new").await.unwrap().pid);
    h.set_ledger(None).await.unwrap();
    h.shutdown().await.unwrap();
    let _ = stray.try_wait();
}
