//! The page the server and its fence process share: one small file under the data directory,
//! mapped `MAP_SHARED` by both, holding only atomics.
//!
//! The server writes the deadline and the epoch, and arms or disarms the page; the fence
//! process writes what it did. Each field is written by one side only, and every value a
//! field ever holds is valid on its own: the deadlines only grow while armed (each grant is
//! measured from a later write of the lease), so a reader that sees one field new and another
//! old at worst wakes early and looks again. `generation` changes on every write of the server;
//! the fence waits on it (a futex) while disarmed.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// "smfence1": a file of another layout is never interpreted.
const MAGIC: u64 = u64::from_le_bytes(*b"smfence1");
/// The file's length: one page.
const LEN: usize = 4096;

/// The shared fields (see the module header for who writes which).
#[repr(C)]
pub struct Page {
    magic: AtomicU64,
    /// Changed by the server on every write; the futex word.
    pub generation: AtomicU32,
    /// 1 while the server's processes may run only until the deadline.
    pub armed: AtomicU32,
    pub epoch: AtomicU64,
    /// CLOCK_BOOTTIME nanoseconds at which the fence kills (counts time suspended).
    pub kill_at_boot: AtomicU64,
    /// The same instant on CLOCK_REALTIME, checked too.
    pub kill_at_real: AtomicU64,
    /// Nanoseconds the fence waits, disarmed, before it looks again without being woken.
    pub idle_check: AtomicU64,
    /// Written by the fence: its pid.
    pub fence_pid: AtomicU64,
    /// Written by the fence: how often it fired, the last time's epoch, its CLOCK_REALTIME
    /// nanoseconds, the processes it killed then, and the `kill_at_boot` it fired on.
    pub fired: AtomicU64,
    pub fired_epoch: AtomicU64,
    pub fired_at_real: AtomicU64,
    pub fired_processes: AtomicU64,
    pub fired_for: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Page>() <= LEN);

/// A mapping of the page file.
pub struct Mapping {
    page: NonNull<Page>,
}

// SAFETY: the mapping holds only atomics, valid for the life of the mapping from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; every access goes through the atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Create (or reset) the page at `path`, 0600, disarmed: for the server at start.
    pub fn create(path: &Path) -> io::Result<Mapping> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_len(LEN as u64)?;
        let m = Mapping::map(&file)?;
        m.page().magic.store(MAGIC, Ordering::Release);
        Ok(m)
    }

    /// Map the page the server created at `path`: for the fence process.
    pub fn open(path: &Path) -> io::Result<Mapping> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() < LEN as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a fence page",
            ));
        }
        let m = Mapping::map(&file)?;
        if m.page().magic.load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a fence page",
            ));
        }
        Ok(m)
    }

    fn map(file: &std::fs::File) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of a file at least LEN long; the file may be closed
        // afterwards (the mapping keeps it). The page is only accessed through atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = NonNull::new(ptr.cast::<Page>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { page })
    }

    pub fn page(&self) -> &Page {
        // SAFETY: mapped in `map`, page-aligned, unmapped only on drop; zeroed bytes (a new
        // file) are valid atomics.
        unsafe { self.page.as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; no reference to it outlives `self`.
        unsafe { libc::munmap(self.page.as_ptr().cast(), LEN) };
    }
}

/// The two clocks the fence reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceClock {
    /// CLOCK_BOOTTIME: monotonic, counts time suspended.
    Boot,
    /// CLOCK_REALTIME: the wall clock, which a resumed machine's time sync corrects.
    Real,
}

impl FenceClock {
    fn id(self) -> libc::clockid_t {
        match self {
            FenceClock::Boot => libc::CLOCK_BOOTTIME,
            FenceClock::Real => libc::CLOCK_REALTIME,
        }
    }

    /// Nanoseconds on this clock now.
    pub fn now(self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes the timespec given; both clocks exist on every Linux we run on.
        unsafe { libc::clock_gettime(self.id(), &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Sleep until this clock reads `at` nanoseconds (at once if it is past).
    pub fn sleep_until(self, at: u64) {
        let ts = timespec(at);
        // SAFETY: an absolute sleep on a valid timespec; EINTR just ends it early (the caller
        // looks again).
        unsafe { libc::clock_nanosleep(self.id(), libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
    }

    /// The deadline of `page` on this clock.
    pub fn kill_at(self, page: &Page) -> u64 {
        match self {
            FenceClock::Boot => page.kill_at_boot.load(Ordering::Acquire),
            FenceClock::Real => page.kill_at_real.load(Ordering::Acquire),
        }
    }
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Wait until `word` is no longer `seen`, or `timeout` passes, or a spurious wake.
pub fn futex_wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = timespec(timeout.as_nanos().min(u64::MAX as u128) as u64);
    // SAFETY: FUTEX_WAIT on a u32 in a shared mapping (not FUTEX_PRIVATE: the waker is another
    // process), with a relative timeout; it only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
        )
    };
}

/// Wake every process waiting on `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a u32 of a shared mapping; it touches no memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}
