//! Helpers shared by the integration tests: polling with a deadline, and (in submodules) real
//! servers started on loopback for the duration of a test.
#![allow(dead_code)]

pub mod backend;
pub mod moto;
pub mod node;
pub mod s3s;
pub mod supervised;
pub mod throttle;

use std::time::{Duration, Instant};

/// Poll `cond` until it returns `Some`, or panic after `deadline` naming `what`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Async form of [`wait_for`].
pub async fn wait_for_async<T, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The environment of the running `pid` (`/proc/<pid>/environ`), once it has one: a child is
/// `running` as soon as its exec has begun (the spawner resumes when the child leaves our
/// memory), and until the kernel has set up the new program's stack it reads empty.
pub async fn environ(pid: u32) -> Vec<String> {
    let path = format!("/proc/{pid}/environ");
    wait_for_async(
        &format!("the environment of {pid}"),
        Duration::from_secs(30),
        || async {
            let bytes = std::fs::read(&path).ok().filter(|b| !b.is_empty())?;
            Some(
                bytes
                    .split(|b| *b == 0)
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| String::from_utf8_lossy(kv).into_owned())
                    .collect(),
            )
        },
    )
    .await
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`R`, `S`, `Z`…), or `None` if it is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Whether `pid` runs: a zombie still has a /proc entry, and counts as gone.
pub fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|c| c != 'Z')
}

/// Whether `pid` has exited and waits to be reaped.
pub fn zombie(pid: u32) -> bool {
    proc_state(pid) == Some('Z')
}

/// A `sleep 1000` leading its own session and process group (as supervised processes do), not
/// a child of any supervisor: a process "of an earlier run". Returned once it runs `sleep`.
pub fn stray_sleep() -> std::process::Child {
    let stray = std::process::Command::new("setsid")
        .args(["sleep", "1000"])
        .spawn()
        .unwrap();
    let pid = stray.id();
    wait_for("the stray running sleep", Duration::from_secs(30), || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    });
    stray
}

/// The content of `path` once a whole line has been written to it.
pub async fn wait_for_line(what: &str, path: &std::path::Path) -> String {
    wait_for_async(what, Duration::from_secs(30), || async {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
}
