//! The one place that starts and reaps child processes.
//!
//! Every child of this process is spawned by one long-lived thread ("sm-spawner") and reaped by one
//! other ("sm-reaper"), process-wide, whatever tokio runtime asked:
//!
//! - The spawners (a few threads, so that starts overlap) start each child with [`launch`]: a
//!   clone that shares our memory until its `execve`, so nothing of our address space is copied
//!   however many children we hold. They set `PR_SET_PDEATHSIG(SIGKILL)` in supervised children.
//!   That signal fires when the *thread* that started the child exits, so starting only from
//!   threads that live as long as the process means children die with the supervisor, not with a
//!   tokio worker.
//! - Each child leads its own process group (pgid = pid), so a stop reaches its grandchildren.
//! - The reaper is the only caller of `waitpid` in the process. It waits for SIGCHLD and reaps with
//!   `waitpid(-1, WNOHANG)`, which also collects orphans re-parented to us when we are PID 1 or a
//!   subreaper. Spawns hold a shared gate that reaping takes exclusively, so a child can never be
//!   reaped before its exit channel is registered, and a child that failed before its `exec` is
//!   reaped by its spawner alone.
//!
//! Invariant: no other code in the crate uses `std::process::Command::{status, output, wait}` or
//! `tokio::process` for children; they call [`spawn`] or [`run`].

mod census;
mod env;
mod launch;
pub mod procfs;
mod run;
pub mod user;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock, mpsc};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::events::ExitStatus;

pub use env::{Environment, child_env};
pub use run::{CommandError, Output, RunOptions, run};
pub use user::{Credentials, UserError};

/// What to do with a child's standard streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio3 {
    /// stdin from /dev/null, stdout and stderr captured through pipes.
    Capture,
    /// stdin piped (the caller writes to it), stdout and stderr captured.
    CaptureWithStdin,
    /// All three inherited from this process (single-app mode).
    Inherit,
}

/// A request to start a process.
#[derive(Clone, Debug)]
pub struct SpawnRequest {
    pub argv: Vec<String>,
    /// The complete environment of the child (nothing else is inherited).
    pub env: Environment,
    pub cwd: Option<PathBuf>,
    pub stdio: Stdio3,
    /// Kill the child if state-manager dies (`PR_SET_PDEATHSIG`): for supervised processes,
    /// hooks and probes.
    pub die_with_parent: bool,
    /// The user and groups to switch to before exec ([`user`]), resolved by the caller off the
    /// async runtime; `None` keeps this process's.
    pub credentials: Option<Credentials>,
}

/// A started child. Its exit status arrives on `exit` once the reaper has collected it.
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub exit: oneshot::Receiver<ExitStatus>,
    pub started: Instant,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22), to tell a recycled pid
    /// from the original process. Only for children started with `die_with_parent`.
    pub start_ticks: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start {program:?}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
    #[error("empty command")]
    EmptyCommand,
    #[error("the process spawner is not running")]
    SpawnerGone,
    #[error(
        "cannot start a thread to spawn or reap child processes ({0}); is a pids limit reached? Raise it (docker run --pids-limit) or run fewer processes"
    )]
    Thread(std::io::Error),
}

type Reply = oneshot::Sender<Result<Unclaimed, SpawnError>>;

/// A started child on its way to the caller of [`spawn`]. If that caller is gone (its future
/// was dropped, as a cancelled probe's is) the child's group is killed, never left running with
/// no owner.
struct Unclaimed(Option<Child>);

impl Unclaimed {
    fn claim(mut self) -> Child {
        self.0.take().expect("a child is claimed once")
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = signal_group(child.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Spawner threads: forks overlap, so one child's way to `exec` does not hold up the next.
const SPAWNERS: usize = 4;

type Requests = Arc<Mutex<mpsc::Receiver<(SpawnRequest, Reply)>>>;

struct Shared {
    /// Held shared by every spawn from before its fork until its pid is registered, and
    /// exclusively by the reaper around `waitpid`.
    gate: RwLock<()>,
    /// Exit channels of live children, by pid.
    waiting: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    spawn_tx: Mutex<mpsc::Sender<(SpawnRequest, Reply)>>,
    requests: Requests,
    /// The threads running so far. The system may refuse a thread (a pids limit in a
    /// container); the missing ones are tried again at the next spawn.
    threads: Mutex<Threads>,
}

#[derive(Default)]
struct Threads {
    reaper: bool,
    spawners: usize,
    warned: bool,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(SpawnRequest, Reply)>();
        Shared {
            gate: RwLock::new(()),
            waiting: Mutex::new(HashMap::new()),
            spawn_tx: Mutex::new(tx),
            requests: Arc::new(Mutex::new(rx)),
            threads: Mutex::new(Threads::default()),
        }
    })
}

/// The shared state, with the reaper and at least one spawner running. Fails only if the
/// system refuses the reaper or every spawner; fewer spawners than [`SPAWNERS`] is a warning.
fn running() -> Result<&'static Shared, SpawnError> {
    let s = shared();
    let mut t = s.threads.lock().unwrap_or_else(|p| p.into_inner());
    if !t.reaper {
        std::thread::Builder::new()
            .name("sm-reaper".into())
            .spawn(reap_forever)
            .map_err(SpawnError::Thread)?;
        t.reaper = true;
    }
    while t.spawners < SPAWNERS {
        let requests = s.requests.clone();
        let started = std::thread::Builder::new()
            .name(format!("sm-spawner-{}", t.spawners))
            .spawn(move || serve_spawns(requests));
        match started {
            Ok(_) => t.spawners += 1,
            Err(e) if t.spawners == 0 => return Err(SpawnError::Thread(e)),
            Err(e) => {
                if !std::mem::replace(&mut t.warned, true) {
                    tracing::warn!(
                        running = t.spawners,
                        "cannot start another spawner thread ({e}); fewer children start at once"
                    );
                }
                break;
            }
        }
    }
    Ok(s)
}

fn serve_spawns(requests: Requests) {
    loop {
        let next = requests.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((req, reply)) = next else { break };
        // A send to a caller that is gone drops the child, which kills it.
        let _ = reply.send(spawn_now(req).map(|c| Unclaimed(Some(c))));
    }
}

/// Start the spawner and reaper threads now (done at the first spawn otherwise). Call early in
/// `main`, before any child exists, so that orphans re-parented to a PID 1 are reaped from the
/// start.
pub fn init() -> Result<(), SpawnError> {
    running().map(|_| ())
}

/// Become a subreaper: orphaned descendants are re-parented to this process (and reaped here).
pub fn set_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments has no memory effects.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Start a child in its own process group, from the long-lived spawner thread.
pub async fn spawn(req: SpawnRequest) -> Result<Child, SpawnError> {
    let (tx, rx) = oneshot::channel();
    running()?
        .spawn_tx
        .lock()
        .map_err(|_| SpawnError::SpawnerGone)?
        .send((req, tx))
        .map_err(|_| SpawnError::SpawnerGone)?;
    Ok(rx.await.map_err(|_| SpawnError::SpawnerGone)??.claim())
}

fn spawn_now(req: SpawnRequest) -> Result<Child, SpawnError> {
    let program = req.argv.first().ok_or(SpawnError::EmptyCommand)?.clone();
    let exec_error = |source| SpawnError::Exec {
        program: program.clone(),
        source,
    };
    let path = resolve_program(&program, &req.env)
        .ok_or_else(|| exec_error(std::io::Error::from_raw_os_error(libc::ENOENT)))?;
    let mut plan = launch::Plan::new(
        &path,
        &req.argv,
        req.env,
        req.cwd.as_deref(),
        req.die_with_parent,
        req.credentials.as_ref(),
    )
    .map_err(exec_error)?;
    // Our ends and the child's; the child's are closed here once it has exec'd.
    let (mut ours, theirs): ([Option<OwnedFd>; 3], Vec<OwnedFd>) = match req.stdio {
        Stdio3::Inherit => ([None, None, None], vec![]),
        capture => {
            let (stdin_ours, stdin_theirs) = if capture == Stdio3::CaptureWithStdin {
                let (r, w) = launch::pipe().map_err(exec_error)?;
                (Some(w), r)
            } else {
                (None, launch::dev_null().map_err(exec_error)?)
            };
            let (out_r, out_w) = launch::pipe().map_err(exec_error)?;
            let (err_r, err_w) = launch::pipe().map_err(exec_error)?;
            (
                [stdin_ours, Some(out_r), Some(err_r)],
                vec![stdin_theirs, out_w, err_w],
            )
        }
    };
    for (n, fd) in theirs.iter().enumerate() {
        plan.stdio(n, fd);
    }
    let (exit_tx, exit_rx) = oneshot::channel();
    let gate = shared().gate.read().unwrap_or_else(|p| p.into_inner());
    let pid = match launch::launch(&plan) {
        Ok(pid) => pid,
        Err((source, failed)) => {
            if let Some(pid) = failed {
                // The child exited before exec; the reaper waits for the gate we hold.
                let mut status = 0;
                // SAFETY: waits for our own child, writing into a local.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            return Err(exec_error(source));
        }
    };
    shared()
        .waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(pid, exit_tx);
    drop(gate);
    drop(theirs);
    let pid = pid as u32;
    Ok(Child {
        pid,
        stdin: ours[0].take(),
        stdout: ours[1].take(),
        stderr: ours[2].take(),
        exit: exit_rx,
        started: Instant::now(),
        // Short commands are never looked up later by start time.
        start_ticks: req
            .die_with_parent
            .then(|| procfs::start_ticks(pid))
            .flatten(),
    })
}

/// The file to execute for `program`: itself when it names a path, else the first executable
/// of that name in the `PATH` of `env` (as `execvp` searches, with its default when `PATH` is
/// unset). `None` when there is none.
fn resolve_program(program: &str, env: &Environment) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    let path = env.get("PATH").unwrap_or(OsStr::new("/bin:/usr/bin"));
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn reap_forever() {
    let mut signals = match signal_hook::iterator::Signals::new([libc::SIGCHLD]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGCHLD, children will not be reaped: {e}");
            return;
        }
    };
    reap_all();
    for _ in signals.forever() {
        reap_all();
    }
}

/// Collect every child that has exited; deliver statuses to their owners, drop orphans'.
fn reap_all() {
    // Blocks until no spawn is between its fork and its registration.
    let _gate = shared().gate.write().unwrap_or_else(|p| p.into_inner());
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall writing into a local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break; // 0: children remain, none exited; -1: ECHILD, no children at all.
        }
        let owner = shared()
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
        if let Some(tx) = owner {
            let _ = tx.send(ExitStatus::from_wait_status(status));
        }
    }
}

/// Send `sig` to the process group led by `pgid`. A group that is already gone is not an error.
/// Pgid 0 or 1 (our own group, init) is refused: only a child's group can be signalled.
pub fn signal_group(pgid: u32, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
    if pgid <= 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the group `pgid` has any member at all, zombies included: one system call
/// (`kill(-pgid, 0)`), cheap enough for the async runtime. `false` means the group is gone.
pub fn group_exists(pgid: u32) -> bool {
    pgid > 1 && nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), None).is_ok()
}

/// Whether any live process is left in the group `pgid`. Zombies do not count: an orphan that
/// died may wait a while for a slow init to reap it, yet it holds nothing and runs nothing.
/// Blocking: when the group exists and its leader is gone, this reads the stat of every
/// process, so call it off the async runtime (a group that does not exist costs one system
/// call, see [`group_exists`]).
pub fn group_alive(pgid: u32) -> bool {
    if !group_exists(pgid) {
        return false;
    }
    census::live_groups(&[pgid].into()).is_none_or(|live| live.contains(&pgid))
}

/// [`group_alive`] without blocking the runtime: one system call when the group is gone, else
/// the look at `/proc` on the blocking pool, shared with the other groups asked about meanwhile
/// ([`census`]).
pub async fn group_alive_async(pgid: u32) -> bool {
    if !group_exists(pgid) {
        return false;
    }
    census::live(pgid).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A captured child with our environment (also for the tests of `proc`'s modules).
    pub(super) fn req(argv: &[&str]) -> SpawnRequest {
        SpawnRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: child_env([]),
            cwd: None,
            stdio: Stdio3::Capture,
            die_with_parent: true,
            credentials: None,
        }
    }

    #[tokio::test]
    async fn exit_codes_and_signals_are_delivered() {
        let c = spawn(req(&["sh", "-c", "exit 7"])).await.unwrap();
        assert_eq!(c.exit.await.unwrap(), ExitStatus::Code(7));
        let c = spawn(req(&["sleep", "30"])).await.unwrap();
        assert!(c.start_ticks.is_some());
        signal_group(c.pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert_eq!(c.exit.await.unwrap(), ExitStatus::Signal(9));
    }

    #[tokio::test]
    async fn a_group_exists_while_it_has_members() {
        let c = spawn(req(&["sleep", "30"])).await.unwrap();
        assert!(group_exists(c.pid) && group_alive(c.pid));
        assert!(group_alive_async(c.pid).await);
        signal_group(c.pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        c.exit.await.unwrap();
        assert!(!group_exists(c.pid), "reaped, its group is gone");
        assert!(!group_alive_async(c.pid).await);
        assert!(
            !group_exists(0) && !group_exists(1),
            "never our own group or init's"
        );
    }

    #[tokio::test]
    async fn missing_program_is_an_error_not_a_panic() {
        let err = spawn(req(&["/nonexistent/prog"])).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
    }

    async fn stdout_of(argv: &[&str]) -> String {
        let c = spawn(req(argv)).await.unwrap();
        tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            use std::io::Read;
            std::fs::File::from(c.stdout.unwrap())
                .read_to_string(&mut s)
                .unwrap();
            s
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn exec_failures_report_their_errno() {
        let err = spawn(req(&["no-such-program-sm-test"])).await.unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let err = spawn(req(&[plain.to_str().unwrap()])).await.unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        let mut bad_cwd = req(&["true"]);
        bad_cwd.cwd = Some(dir.path().join("gone"));
        let err = spawn(bad_cwd).await.unwrap_err();
        assert!(err.to_string().contains("cannot change directory"), "{err}");
    }

    #[tokio::test]
    async fn a_child_starts_with_no_blocked_signal_sigpipe_default_and_only_its_stdio() {
        // Descriptors of ours that a child must not inherit (ours close on exec).
        let (r, w) = launch::pipe().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsFd;
        // Copies above the child's own numbers (`ls` reads its directory through 3).
        let high = [r.as_fd(), w.as_fd(), file.as_fd()]
            .map(|fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).unwrap());
        let ours = high.map(|fd| fd.to_string());
        let status = stdout_of(&["cat", "/proc/self/status"]).await;
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{status}");
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_eq!(field("SigIgn:") & sigpipe, 0, "SIGPIPE ignored: {status}");
        // 0, 1 and 2, and none of ours (what this test's own parent left open without
        // close-on-exec is passed on, as by any exec).
        let fds = stdout_of(&["ls", "/proc/self/fd"]).await;
        let fds: Vec<&str> = fds.split_whitespace().collect();
        assert!(
            fds.starts_with(&["0", "1"]) && fds.contains(&"2"),
            "{fds:?}"
        );
        for fd in &ours {
            assert!(!fds.contains(&fd.as_str()), "fd {fd} inherited: {fds:?}");
        }
    }

    #[tokio::test]
    async fn child_leads_its_own_group_and_secrets_are_not_inherited() {
        // SAFETY: test-only; no other thread of this test reads this variable.
        unsafe { std::env::set_var("STATE_MANAGER_JWT_SECRET", "s3cret") };
        let c = spawn(req(&["sh", "-c", "cut -d' ' -f5 /proc/$$/stat; env"]))
            .await
            .unwrap();
        let out = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            use std::io::Read;
            std::fs::File::from(c.stdout.unwrap())
                .read_to_string(&mut s)
                .unwrap();
            (s, c.pid)
        })
        .await
        .unwrap();
        assert_eq!(out.0.lines().next().unwrap().trim(), out.1.to_string());
        assert!(!out.0.contains("s3cret"));
    }
}
