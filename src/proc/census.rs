//! Which process groups still have a live member, for many askers at once.
//!
//! When a leader exits while its group still answers, whether a member is left takes a read of
//! every process's stat. A hundred processes stopped together ask that a hundred times within a
//! few milliseconds; on the blocking pool, one thread each, those reads took both cores of a
//! small machine from the actor that was sending the rest of the hundred their SIGKILL (the
//! last was recorded stopped 123-161 ms after the kill deadline, docs/BENCHMARKS.md). Here a
//! question asked while a look is under way waits for the next look, which answers every
//! question waiting: a hundred groups cost a few passes over `/proc`, and no answer predates
//! its question.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::procfs;

/// Questions not yet answered, and whether a look is under way.
#[derive(Default)]
struct Queue {
    waiting: Vec<(u32, oneshot::Sender<bool>)>,
    looking: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    waiting: Vec::new(),
    looking: false,
});

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether group `pgid` has a member that is not a zombie, looked up on the blocking pool with
/// the other questions asked meanwhile. `true` when it cannot be told.
pub(super) async fn live(pgid: u32) -> bool {
    let (tx, rx) = oneshot::channel();
    let start = {
        let mut q = queue();
        q.waiting.push((pgid, tx));
        !std::mem::replace(&mut q.looking, true)
    };
    if start {
        tokio::task::spawn_blocking(look_while_asked);
    }
    rx.await.unwrap_or(true)
}

/// Answer what is waiting, then what was asked meanwhile, until nothing is.
fn look_while_asked() {
    loop {
        let asked = {
            let mut q = queue();
            if q.waiting.is_empty() {
                q.looking = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let groups: HashSet<u32> = asked.iter().map(|&(pgid, _)| pgid).collect();
        let live = live_groups(&groups);
        for (pgid, tx) in asked {
            let _ = tx.send(live.as_ref().is_none_or(|l| l.contains(&pgid)));
        }
    }
}

/// Those of `groups` with a member that is not a zombie; `None` when `/proc` cannot be read.
pub(super) fn live_groups(groups: &HashSet<u32>) -> Option<HashSet<u32>> {
    let is_live_member = |s: &procfs::Stat, pgid: u32| s.pgrp == pgid && !s.state.is_zombie();
    // Most often the leader itself is still there.
    let mut live: HashSet<u32> = groups
        .iter()
        .copied()
        .filter(|&pgid| procfs::stat(pgid).is_ok_and(|s| is_live_member(&s, pgid)))
        .collect();
    if live.len() == groups.len() {
        return Some(live);
    }
    let pids = procfs::pids().ok()?;
    let mut reader = procfs::Reader::new();
    for pid in pids {
        if let Ok(s) = reader.stat(pid)
            && groups.contains(&s.pgrp)
            && is_live_member(&s, s.pgrp)
        {
            live.insert(s.pgrp);
            if live.len() == groups.len() {
                break;
            }
        }
    }
    Some(live)
}

#[cfg(test)]
mod tests {
    use super::live;
    use crate::proc::tests::req;
    use crate::proc::{group_exists, signal_group, spawn};
    use nix::sys::signal::Signal;

    async fn start(argv: &[&str]) -> crate::proc::Child {
        spawn(req(argv)).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn questions_asked_together_are_each_answered_for_their_own_group() {
        // A group whose leader runs, and one whose leader exited and left a member running.
        let led = start(&["sleep", "100"]).await;
        let orphaned = start(&["sh", "-c", "sleep 100 & exit 0"]).await;
        let (led_pid, orphaned_pid) = (led.pid, orphaned.pid);
        orphaned.exit.await.unwrap();
        assert!(group_exists(orphaned_pid));
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..64 {
            let pgid = if i % 2 == 0 { led_pid } else { orphaned_pid };
            asked.spawn(async move { (pgid, live(pgid).await) });
        }
        let mut answers = 0;
        while let Some(answer) = asked.join_next().await {
            let (pgid, alive) = answer.unwrap();
            assert!(alive, "group {pgid} has a live member");
            answers += 1;
        }
        assert_eq!(answers, 64);
        // Its last member killed and reaped, the group has none.
        signal_group(orphaned_pid, Signal::SIGKILL).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while group_exists(orphaned_pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the member was not reaped"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (gone, still) = tokio::join!(live(orphaned_pid), live(led_pid));
        assert!(!gone && still);
        signal_group(led_pid, Signal::SIGKILL).unwrap();
        led.exit.await.unwrap();
    }
}
