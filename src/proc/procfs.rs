//! Everything state-manager reads from `/proc`, typed: a process's stat line, its command line and
//! wait channel, its socket descriptors, the list of processes, the listening TCP sockets and the
//! boot id. Nothing else in the crate opens a path under `/proc`.
//!
//! The parsers are pure functions of the file's text, tested on fixed input. Reading goes
//! through a [`Reader`] that keeps its path and text buffers between calls, so that reading the
//! stat of every process in turn (leftover checks, port holders, and later CPU and memory
//! samples of many process groups) allocates nothing per process. All of it is blocking file
//! I/O: call it off the async runtime, except for a single small file where noted.
//!
//! A process that is gone by the time its file is read is an `Err` of kind `NotFound` (or
//! `ESRCH`); callers treat it as "not there", never as a failure of their own.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::OnceLock;

/// A process's scheduling state (field 3 of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Sleeping,
    /// Uninterruptible sleep (`D`), usually in a system call that waits on a disk.
    DiskSleep,
    Stopped,
    TracingStop,
    Zombie,
    Dead,
    Idle,
    Other(char),
}

impl TaskState {
    fn from_letter(c: char) -> TaskState {
        match c {
            'R' => TaskState::Running,
            'S' => TaskState::Sleeping,
            'D' => TaskState::DiskSleep,
            'T' => TaskState::Stopped,
            't' => TaskState::TracingStop,
            'Z' => TaskState::Zombie,
            'X' => TaskState::Dead,
            'I' => TaskState::Idle,
            other => TaskState::Other(other),
        }
    }

    /// The letter `/proc` shows, for messages.
    pub fn letter(self) -> char {
        match self {
            TaskState::Running => 'R',
            TaskState::Sleeping => 'S',
            TaskState::DiskSleep => 'D',
            TaskState::Stopped => 'T',
            TaskState::TracingStop => 't',
            TaskState::Zombie => 'Z',
            TaskState::Dead => 'X',
            TaskState::Idle => 'I',
            TaskState::Other(c) => c,
        }
    }

    /// Exited and waiting to be reaped: it runs nothing and holds nothing.
    pub fn is_zombie(self) -> bool {
        self == TaskState::Zombie
    }

    /// Stopped by a signal or a tracer.
    pub fn is_stopped(self) -> bool {
        matches!(self, TaskState::Stopped | TaskState::TracingStop)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// The fields of `/proc/<pid>/stat` state-manager uses. Times are in clock ticks
/// (`sysconf(_SC_CLK_TCK)`), memory in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub state: TaskState,
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// CPU time in user mode, in clock ticks.
    pub utime: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime: u64,
    /// Start time in clock ticks after boot: with the pid, it tells a recycled pid from the
    /// process that had it before.
    pub start_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let mut f = text.get(close + 1..)?.split_ascii_whitespace();
    let state = TaskState::from_letter(f.next()?.chars().next()?);
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    // session, tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt
    let utime = f.nth(8)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    // cutime, cstime, priority, nice, num_threads, itrealvalue
    let start_ticks = f.nth(6)?.parse().ok()?;
    // vsize
    let rss_pages = f.nth(1)?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        ppid,
        pgrp,
        utime,
        stime,
        start_ticks,
        rss_pages,
    })
}

/// The command name (field 2) of a stat line, without its parentheses.
pub fn parse_comm(text: &str) -> Option<&str> {
    text.get(text.find('(')? + 1..text.rfind(')')?)
}

/// The arguments of a NUL-separated `/proc/<pid>/cmdline` (empty for a kernel thread).
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Inodes of the LISTEN sockets bound to `port` in the text of `/proc/net/tcp` or `tcp6`.
pub fn parse_listening(text: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    text.lines().skip(1).filter_map(move |l| {
        let mut f = l.split_ascii_whitespace();
        let local_port = f.nth(1)?.rsplit_once(':')?.1;
        let listening = f.nth(1)? == "0A";
        let inode: u64 = f.nth(5)?.parse().ok()?;
        (listening && inode != 0 && u16::from_str_radix(local_port, 16).ok()? == port)
            .then_some(inode)
    })
}

/// Reads `/proc` files into buffers it keeps, for reading many processes in a row.
#[derive(Debug, Default)]
pub struct Reader {
    path: String,
    text: String,
    raw: Vec<u8>,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// The stat of `pid`.
    pub fn stat(&mut self, pid: u32) -> io::Result<Stat> {
        self.read_text(pid, "stat")?;
        parse_stat(&self.text).ok_or_else(|| unexpected(pid, "stat"))
    }

    /// The stat of `pid` and its command name.
    pub fn stat_and_comm(&mut self, pid: u32) -> io::Result<(Stat, String)> {
        let stat = self.stat(pid)?;
        let comm = parse_comm(&self.text).unwrap_or_default().to_string();
        Ok((stat, comm))
    }

    /// The command line of `pid` (empty for a kernel thread).
    pub fn cmdline(&mut self, pid: u32) -> io::Result<Vec<String>> {
        self.set_path(pid, "cmdline");
        self.raw.clear();
        std::fs::File::open(&self.path)?.read_to_end(&mut self.raw)?;
        Ok(parse_cmdline(&self.raw))
    }

    /// Where `pid` sleeps in the kernel (`/proc/<pid>/wchan`), e.g. `wait_for_vfork_done`.
    pub fn wchan(&mut self, pid: u32) -> io::Result<&str> {
        self.read_text(pid, "wchan")?;
        Ok(self.text.trim())
    }

    /// Whether `pid` has a descriptor on a socket with one of `inodes`. `false` when the
    /// process is gone or its descriptors are not ours to look at.
    pub fn holds_socket(&mut self, pid: u32, inodes: &HashSet<u64>) -> bool {
        self.set_path(pid, "fd");
        let Ok(fds) = std::fs::read_dir(&self.path) else {
            return false;
        };
        fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let s = l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
                s.parse::<u64>().ok()
            })
            .any(|ino| inodes.contains(&ino))
    }

    fn read_text(&mut self, pid: u32, file: &str) -> io::Result<()> {
        self.set_path(pid, file);
        self.text.clear();
        std::fs::File::open(&self.path)?.read_to_string(&mut self.text)?;
        Ok(())
    }

    fn set_path(&mut self, pid: u32, file: &str) {
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/{file}");
    }
}

fn unexpected(pid: u32, file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc/{pid}/{file} format"),
    )
}

/// The stat of `pid` (one small file: cheap enough to read on the runtime once).
pub fn stat(pid: u32) -> io::Result<Stat> {
    Reader::new().stat(pid)
}

/// Start time of `pid` in clock ticks after boot, if it exists.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).ok().map(|s| s.start_ticks)
}

/// Every pid in `/proc` now (an error when `/proc` cannot be listed at all).
pub fn pids() -> io::Result<impl Iterator<Item = u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()))
}

/// Inodes of the listening TCP sockets (IPv4 and IPv6) bound to `port` in this network
/// namespace. The error names the file that could not be read.
pub fn listening_inodes(port: u16) -> Result<HashSet<u64>, (&'static str, io::Error)> {
    let mut out = HashSet::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No IPv6 in this kernel or namespace.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err((path, e)),
        };
        out.extend(parse_listening(&text, port));
    }
    Ok(out)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once: with a start time it tells
/// a process of this boot from one of an earlier boot that had the same pid.
pub fn boot_id() -> Option<&'static str> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(id.trim().to_string())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 120 0 3 0 17 5 0 0 20 0 \
                        2 0 987654 12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                state: TaskState::Sleeping,
                ppid: 1,
                pgrp: 4242,
                utime: 17,
                stime: 5,
                start_ticks: 987654,
                rss_pages: 321,
            }
        );
        assert_eq!(parse_comm(STAT), Some("my (odd) app"));
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
        let zombie = STAT.replacen(") S", ") Z", 1);
        assert!(parse_stat(&zombie).unwrap().state.is_zombie());
        assert_eq!(TaskState::from_letter('t').letter(), 't');
    }

    #[test]
    fn reads_this_process_and_reuses_its_buffers() {
        let me = std::process::id();
        let mut r = Reader::new();
        let a = r.stat(me).unwrap();
        let (b, comm) = r.stat_and_comm(me).unwrap();
        assert_eq!((a.pid, a.start_ticks), (b.pid, b.start_ticks));
        assert!(!comm.is_empty());
        assert!(a.rss_pages > 0);
        assert_eq!(start_ticks(me), Some(a.start_ticks));
        assert!(!r.cmdline(me).unwrap().is_empty());
        assert!(r.stat(u32::MAX).is_err());
        assert!(pids().unwrap().any(|p| p == me));
        assert_eq!(boot_id().map(str::len), Some(36));
    }

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(parse_cmdline(b"sleep\x0030\x00"), ["sleep", "30"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn parses_listening_sockets_of_the_port_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:13BA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0
   1: 0100007F:13BA 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0
";
        let got: Vec<u64> = parse_listening(text, 5050).collect();
        assert_eq!(got, [111], "established connections do not count");
        assert_eq!(parse_listening(text, 8080).collect::<Vec<_>>(), [333]);
    }
}

/// What the standard `process_*` metrics report about this process, in base units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfUsage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Unix time of the process's start, in seconds.
    pub start_time_seconds: f64,
}

/// This process's usage from `/proc/self` (stat, statm, fd/, limits) and `/proc/stat`'s boot
/// time. Blocking file reads: call it off the async runtime.
pub fn self_usage() -> io::Result<SelfUsage> {
    // SAFETY: sysconf only reads a constant of the system.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (tick, page) = (tick.max(1) as f64, page.max(1) as u64);
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat")?)
        .ok_or_else(|| unexpected_self("stat"))?;
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let virtual_pages: u64 = statm
        .split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| unexpected_self("statm"))?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| unexpected_self("../stat"))?;
    Ok(SelfUsage {
        cpu_seconds: (stat.utime + stat.stime) as f64 / tick,
        resident_bytes: stat.rss_pages * page,
        virtual_bytes: virtual_pages * page,
        open_fds,
        max_fds: parse_max_fds(&limits),
        start_time_seconds: btime as f64 + stat.start_ticks as f64 / tick,
    })
}

/// `btime` of `/proc/stat`: the boot time, in Unix seconds.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/<pid>/limits` (`None` if unlimited).
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod self_usage_tests {
    #[test]
    fn this_process_is_measured_in_base_units() {
        let u = super::self_usage().unwrap();
        assert!(u.resident_bytes > 1 << 20, "{u:?}");
        assert!(u.virtual_bytes >= u.resident_bytes, "{u:?}");
        assert!(
            u.open_fds >= 3 && u.max_fds.is_some_and(|m| m >= u.open_fds),
            "{u:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            u.start_time_seconds <= now + 1.0 && u.start_time_seconds > now - 86400.0,
            "{u:?}"
        );
        assert_eq!(
            super::parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            super::parse_max_fds(
                "Max open files            1024                 524288               files\n"
            ),
            Some(1024)
        );
    }
}

fn unexpected_self(file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc/self/{file} format"),
    )
}
