//! The fence process itself (`state-manager fence`, started by the server): it waits for the
//! deadline in the shared page and, if the server has not moved it on by then while armed,
//! SIGKILLs every process the server started.
//!
//! Two watchers, one per clock ([`FenceClock`]): each sleeps with an absolute
//! `clock_nanosleep` until the deadline on its clock, reads the page again on waking, and fires
//! if the page is still armed and its clock has passed the deadline. So the fence fires at the
//! earlier of the two, and a machine that was suspended (CLOCK_BOOTTIME counted it) or whose
//! wall clock was corrected after a pause (CLOCK_REALTIME) fires as soon as it runs again.
//! Disarmed, a watcher waits on the page's futex. While the page stays armed and past its
//! deadline, the watchers sweep again every [`SWEEP`], so nothing the server starts then
//! survives either.
//!
//! Whom it kills: every process whose parent is the server, except the fence itself; a group
//! leader (every supervised process is one) with its whole group. Read from /proc when firing,
//! rather than from a list the server keeps: a frozen server cannot have kept a list up to
//! date, and a child of the server cannot be a recycled pid (it stays a zombie until the server
//! reaps it), so a group led by one is still the group the server started.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::page::{FenceClock, Mapping, Page, futex_wait};
use crate::proc::procfs;

/// How often the watchers kill again while the page stays armed past its deadline.
pub const SWEEP: Duration = Duration::from_millis(50);

/// Run the fence for server `server` on the page at `page`; returns only if the page cannot
/// be mapped (exit code 2).
pub fn run(page: &Path, server: u32) -> i32 {
    let mapping = match Mapping::open(page) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("state-manager fence: cannot map {}: {e}", page.display());
            return 2;
        }
    };
    let me = std::process::id();
    mapping
        .page()
        .fence_pid
        .store(u64::from(me), Ordering::Release);
    let firing = Arc::new(Mutex::new(Killed::default()));
    let (m, f) = (Arc::clone(&mapping), Arc::clone(&firing));
    let real = std::thread::Builder::new()
        .name("fence-real".into())
        .spawn(move || watch(m.page(), FenceClock::Real, server, me, &f));
    if let Err(e) = real {
        eprintln!(
            "state-manager fence: cannot start the wall-clock watcher ({e}); watching CLOCK_BOOTTIME only"
        );
    }
    watch(mapping.page(), FenceClock::Boot, server, me, &firing)
}

/// The processes killed for one deadline, so that the other watcher, or a sweep, does not
/// count one again before it has died.
#[derive(Default)]
struct Killed {
    deadline: u64,
    pids: Vec<u32>,
}

fn watch(page: &Page, clock: FenceClock, server: u32, me: u32, firing: &Mutex<Killed>) -> ! {
    loop {
        let generation = page.generation.load(Ordering::Acquire);
        if page.armed.load(Ordering::Acquire) == 0 {
            let idle = Duration::from_nanos(page.idle_check.load(Ordering::Acquire));
            futex_wait(
                &page.generation,
                generation,
                idle.max(Duration::from_millis(100)),
            );
            continue;
        }
        let kill_at = clock.kill_at(page);
        if clock.now() < kill_at {
            clock.sleep_until(kill_at);
            continue;
        }
        fire(page, clock, server, me, firing);
        FenceClock::Boot.sleep_until(FenceClock::Boot.now() + SWEEP.as_nanos() as u64);
    }
}

/// Kill the server's processes if the page is still armed and past its deadline on `clock`,
/// and record it (one firing per deadline) when there was anything to kill.
fn fire(page: &Page, clock: FenceClock, server: u32, me: u32, firing: &Mutex<Killed>) {
    let mut done = firing.lock().unwrap_or_else(|p| p.into_inner());
    if page.armed.load(Ordering::Acquire) == 0 || clock.now() < clock.kill_at(page) {
        return;
    }
    let deadline = page.kill_at_boot.load(Ordering::Acquire);
    if done.deadline != deadline {
        *done = Killed {
            deadline,
            pids: Vec::new(),
        };
    }
    let before = done.pids.len();
    kill_children(server, me, &mut done.pids);
    let killed = (done.pids.len() - before) as u64;
    if killed == 0 {
        // The server stopped its processes itself in time (or had none).
        return;
    }
    let epoch = page.epoch.load(Ordering::Acquire);
    if page.fired_for.load(Ordering::Acquire) != deadline {
        page.fired_epoch.store(epoch, Ordering::Release);
        page.fired_at_real
            .store(FenceClock::Real.now(), Ordering::Release);
        page.fired_processes.store(killed, Ordering::Release);
        page.fired_for.store(deadline, Ordering::Release);
        page.fired.fetch_add(1, Ordering::AcqRel);
    } else {
        page.fired_processes.fetch_add(killed, Ordering::AcqRel);
    }
    let late_ms = clock.now().saturating_sub(clock.kill_at(page)) / 1_000_000;
    eprintln!(
        "state-manager fence: the lease (epoch {epoch}) was not renewed in time by server \
         {server}; killed {killed} process(es) and their groups ({clock:?} clock, {late_ms} ms \
         after the deadline)"
    );
}

/// SIGKILL every live child of `server` but `me`, with its group if it leads one; the live
/// ones not in `killed` yet are added to it.
pub fn kill_children(server: u32, me: u32, killed: &mut Vec<u32>) {
    let Ok(pids) = procfs::pids() else { return };
    let mut reader = procfs::Reader::new();
    for pid in pids {
        let Ok(stat) = reader.stat(pid) else { continue };
        if stat.ppid != server || pid == me {
            continue;
        }
        let target = if stat.pgrp == pid {
            -(pid as libc::pid_t)
        } else {
            pid as libc::pid_t
        };
        // SAFETY: kill(2) on a child of the server (or the group it leads); no memory involved.
        unsafe { libc::kill(target, libc::SIGKILL) };
        if !stat.state.is_zombie() && !killed.contains(&pid) {
            killed.push(pid);
        }
    }
}
