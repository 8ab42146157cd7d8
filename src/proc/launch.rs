//! How one child is started: `clone(CLONE_VM | CLONE_VFORK)`, a few system calls, `execve`.
//!
//! `fork` copies the page tables of our whole address space and the child's `exec` throws them
//! away again: with a thousand children and their log buffers in memory that is most of the cost
//! of a start (and of a restart). Like `posix_spawn`, the child here shares our memory and the
//! calling thread waits until it has called `execve` (or failed), so nothing is copied. Unlike
//! `posix_spawn`, the child can also set `PR_SET_PDEATHSIG` and switch users, which supervised
//! processes need.
//!
//! Invariants of the child side ([`child_main`]), which runs on our memory while our other
//! threads go on:
//! - it only reads what [`Plan`] prepared before the clone, and writes only the plan's `failure`
//!   atomics: no allocation, no lock, no panic;
//! - every signal is blocked from before the clone until the child has reset the dispositions
//!   (it has its own copy of the handler table: no `CLONE_SIGHAND`), so none of our handlers can
//!   run in it; the child then starts with an empty mask and SIGPIPE at its default, as std does;
//! - credentials change by raw system calls: glibc's `setuid` would ask every thread of *our*
//!   process to change too, since the child shares our memory and glibc's thread list.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use super::{Credentials, Environment};

/// Stack of the child until its `execve`: it makes a handful of system calls.
const STACK: usize = 64 * 1024;

/// Everything the child needs, as C data built before the clone.
pub(super) struct Plan {
    path: CString,
    argv: CArray,
    envp: CArray,
    cwd: Option<CString>,
    /// Descriptors to become the child's 0, 1 and 2; `None` keeps ours.
    stdio: [Option<RawFd>; 3],
    /// Our pid, to check after `PR_SET_PDEATHSIG` that we did not die before it was set.
    die_with_parent: Option<libc::pid_t>,
    credentials: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Set by a child that failed before `execve`: the step and its errno.
    failed_step: AtomicU8,
    failed_errno: AtomicI32,
}

/// A NULL-terminated array of C strings and the block of NUL-terminated strings it points into.
struct CArray {
    _block: Vec<u8>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArray {
    /// `items` copied once, into one block.
    fn new(items: &[impl AsRef<[u8]>]) -> io::Result<CArray> {
        let mut block = Vec::with_capacity(items.iter().map(|i| i.as_ref().len() + 1).sum());
        for item in items {
            let item = item.as_ref();
            if item.contains(&0) {
                return Err(nul_error());
            }
            block.extend_from_slice(item);
            block.push(0);
        }
        Ok(CArray::from_block(block))
    }

    /// Over `block`, strings that each end in NUL.
    fn from_block(block: Vec<u8>) -> CArray {
        let mut ptrs = Vec::with_capacity(block.iter().filter(|&&b| b == 0).count() + 1);
        let mut start = 0;
        for (i, &b) in block.iter().enumerate() {
            if b == 0 {
                ptrs.push(block[start..].as_ptr().cast());
                start = i + 1;
            }
        }
        ptrs.push(std::ptr::null());
        // The pointers stay valid: moving the Vec does not move its buffer.
        CArray {
            _block: block,
            ptrs,
        }
    }
}

fn cstring(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_error())
}

/// A string for the child that holds a NUL byte.
pub(super) fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a NUL byte in an argument or environment value",
    )
}

/// The steps of the child, to say which one failed.
const STEPS: [&str; 6] = [
    "",
    "switch user",
    "set the process group",
    "set up standard streams",
    "change directory",
    "execute",
];

impl Plan {
    pub(super) fn new(
        path: &Path,
        argv: &[String],
        env: Environment,
        cwd: Option<&Path>,
        die_with_parent: bool,
        credentials: Option<&Credentials>,
    ) -> io::Result<Plan> {
        Ok(Plan {
            path: cstring(path.as_os_str().as_bytes().to_vec())?,
            argv: CArray::new(argv)?,
            envp: CArray::from_block(env.into_block()?),
            cwd: cwd
                .map(|c| cstring(c.as_os_str().as_bytes().to_vec()))
                .transpose()?,
            stdio: [None; 3],
            die_with_parent: die_with_parent.then(|| std::process::id() as libc::pid_t),
            credentials: credentials.map(|c| (c.uid.as_raw(), c.gid.as_raw(), c.groups.clone())),
            failed_step: AtomicU8::new(0),
            failed_errno: AtomicI32::new(0),
        })
    }

    /// Make `fd` the child's descriptor `n` (0, 1 or 2).
    pub(super) fn stdio(&mut self, n: usize, fd: &OwnedFd) {
        self.stdio[n] = Some(fd.as_raw_fd());
    }
}

/// Start the child; returns its pid once it has called `execve`. On failure the child has
/// already exited: the caller must reap the pid in the error.
pub(super) fn launch(plan: &Plan) -> Result<libc::pid_t, (io::Error, Option<libc::pid_t>)> {
    let stack = Stack::new().map_err(|e| (e, None))?;
    // SAFETY: a full set, then the calling thread's mask; restored below on every path.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child runs `child_main` on its own stack, reads `plan` (alive until we return:
    // CLONE_VFORK suspends this thread until the child has exec'd or exited) and never returns
    // into our frames.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            plan as *const Plan as *mut libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        return Err((clone_error, None));
    }
    match plan.failed_step.load(Ordering::Acquire) {
        0 => Ok(pid),
        step => {
            let errno = plan.failed_errno.load(Ordering::Acquire);
            let e = io::Error::from_raw_os_error(errno);
            let e = match STEPS.get(step as usize) {
                Some(s) if step as usize != STEPS.len() - 1 => {
                    io::Error::new(e.kind(), format!("cannot {s}: {e}"))
                }
                _ => e,
            };
            Err((e, Some(pid)))
        }
    }
}

/// The child: runs on our memory until `execve`; see the module's invariants.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `&Plan` given to clone, alive while we run.
    let plan = unsafe { &*(arg as *const Plan) };
    let fail = |step: u8| -> libc::c_int {
        plan.failed_errno.store(
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
            Ordering::Relaxed,
        );
        plan.failed_step.store(step, Ordering::Release);
        // SAFETY: ends this child only.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: system calls on data prepared before the clone; see the module's invariants.
    unsafe {
        reset_signals();
        if let Some((uid, gid, groups)) = &plan.credentials {
            // Raw calls: this task only (see the module header). A change of credentials
            // clears the parent-death signal, so it comes first.
            if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
                || libc::syscall(libc::SYS_setgid, *gid) != 0
                || libc::syscall(libc::SYS_setuid, *uid) != 0
            {
                return fail(1);
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(2);
        }
        for (n, fd) in plan.stdio.iter().enumerate() {
            let Some(fd) = *fd else { continue };
            let n = n as RawFd;
            let ok = if fd == n {
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, n) == n
            };
            if !ok {
                return fail(3);
            }
        }
        if let Some(cwd) = &plan.cwd
            && libc::chdir(cwd.as_ptr()) != 0
        {
            return fail(4);
        }
        if let Some(parent) = plan.die_with_parent {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                // We died between the clone and the prctl.
                libc::raise(libc::SIGKILL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(
            plan.path.as_ptr(),
            plan.argv.ptrs.as_ptr(),
            plan.envp.ptrs.as_ptr(),
        );
    }
    fail(5)
}

/// Every caught signal back to its default, and SIGPIPE too (std ignores it in our process).
///
/// # Safety
/// Only in the child, with every signal blocked.
unsafe fn reset_signals() {
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if sig == libc::SIGPIPE || old.sa_sigaction != libc::SIG_IGN {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
}

/// The child's stack: an anonymous mapping with a guard page at its low end.
struct Stack {
    base: *mut libc::c_void,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: a fresh private mapping; the guard page is inside it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, page_size(), libc::PROT_NONE);
            Ok(Stack { base })
        }
    }

    fn top(&self) -> *mut libc::c_void {
        // The stack grows down from the end of the mapping (16-byte aligned: STACK is).
        self.base.wrapping_byte_add(STACK)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the child no longer runs on it.
        unsafe { libc::munmap(self.base, STACK) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A pipe whose both ends close on exec (the child's end is dup'ed onto 0, 1 or 2).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((r, w))
}

/// `/dev/null` for a child's stdin.
pub(super) fn dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open(OsStr::new("/dev/null"))?.into())
}
