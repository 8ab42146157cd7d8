//! What each supervised process costs: CPU % and resident memory of its whole process group,
//! sampled from `/proc` at a fixed interval and published on a watch channel.
//!
//! One sample reads the list of pids and each one's `/proc/<pid>/stat` once (through
//! [`procfs::Reader`], which allocates nothing per process), and files every member under its
//! process group: the cost is one stat read per process visible in `/proc`, however many groups
//! there are, and the members of a group (grandchildren, orphans re-parented elsewhere) are all
//! found without walking any tree. The reading runs on a blocking thread, never on the runtime.
//!
//! Invariants: CPU is counted per member, from the difference of its `utime + stime` with the
//! previous sample of the same member (same pid *and* start time, so a recycled pid starts
//! afresh); a member first seen in this sample was born since the previous one, so all its
//! time counts. A member that ends between two samples takes its last interval with it, as in
//! `top`. The per-process CPU total only grows (it is a Prometheus counter). The first sample
//! has no interval, so no CPU figure: `cpu_percent` is `None` until the second. RSS is the sum
//! of the members' resident sets, shared pages counted once per member, as `ps` shows them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Command, ProcessInfo};
use crate::proc::procfs::{self, Reader};

/// Default time between two samples.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest interval accepted (a shorter one would only measure the sampler itself).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The cost of one process (its whole group) over the last sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// CPU time used over the last interval, in percent of one core (above 100 on several
    /// cores); `null` until two samples were taken.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the group's processes, in bytes.
    pub rss_bytes: u64,
    /// Live processes in the group (the process itself and its descendants that stayed in it).
    pub processes: u32,
    /// The group leader's pid the sample belongs to.
    #[serde(skip)]
    pub pid: u32,
}

/// The latest sample of every process, by name.
#[derive(Clone, Debug, Default)]
pub struct UsageTable {
    /// Processes that were up at the sample.
    pub live: HashMap<String, Usage>,
    /// CPU seconds of each process over its life under this supervisor (every incarnation),
    /// for the processes it still knows.
    pub cpu_seconds: HashMap<String, f64>,
}

impl UsageTable {
    /// `info` with the usage of its current incarnation, if it was sampled.
    pub fn attach(&self, info: &mut ProcessInfo) {
        info.usage = match (info.pid, self.live.get(&info.name)) {
            (Some(pid), Some(u)) if u.pid == pid => Some(u.clone()),
            _ => None,
        };
    }
}

/// One member of a group at the previous sample.
#[derive(Clone, Copy)]
struct Seen {
    start_ticks: u64,
    ticks: u64,
}

/// Sampling state kept between samples (moved to a blocking thread for each one).
pub struct Sampler {
    reader: Reader,
    seen: HashMap<u32, Seen>,
    last: Option<Instant>,
    cpu_seconds: HashMap<String, f64>,
    tick_hz: f64,
    page_size: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        // SAFETY: sysconf only reads configuration values.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Sampler {
            reader: Reader::new(),
            seen: HashMap::new(),
            last: None,
            cpu_seconds: HashMap::new(),
            tick_hz: if hz > 0 { hz as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    }

    /// Sample the groups led by `leaders` (name, pid); `known` are every process name still
    /// supervised (their CPU totals are kept). Blocking: run it off the async runtime.
    pub fn sample(&mut self, leaders: &[(String, u32)], known: &[String]) -> UsageTable {
        let now = Instant::now();
        let interval = self.last.map(|t| now.duration_since(t).as_secs_f64());
        let by_group: HashMap<u32, usize> =
            leaders.iter().enumerate().map(|(i, l)| (l.1, i)).collect();
        let mut acc = vec![(0u64, 0u64, 0u32); leaders.len()];
        let mut seen = HashMap::with_capacity(self.seen.len());
        if let Ok(pids) = procfs::pids() {
            for pid in pids {
                let Ok(stat) = self.reader.stat(pid) else {
                    continue; // gone since the listing
                };
                let Some(&g) = by_group.get(&stat.pgrp) else {
                    continue;
                };
                if stat.state.is_zombie() {
                    continue;
                }
                let ticks = stat.utime + stat.stime;
                let before = self
                    .seen
                    .get(&pid)
                    .filter(|s| s.start_ticks == stat.start_ticks);
                let delta = before.map_or(ticks, |s| ticks.saturating_sub(s.ticks));
                seen.insert(
                    pid,
                    Seen {
                        start_ticks: stat.start_ticks,
                        ticks,
                    },
                );
                let a = &mut acc[g];
                a.0 += delta;
                a.1 += stat.rss_pages;
                a.2 += 1;
            }
        }
        self.seen = seen;
        self.last = Some(now);
        let mut live = HashMap::with_capacity(leaders.len());
        for ((name, pid), (delta, pages, members)) in leaders.iter().zip(acc) {
            if members == 0 {
                continue;
            }
            let cpu = delta as f64 / self.tick_hz;
            *self.cpu_seconds.entry(name.clone()).or_default() += cpu;
            let cpu_percent = interval
                .filter(|&i| i > 0.0)
                .map(|i| (cpu / i * 1000.0).round() / 10.0);
            let usage = Usage {
                cpu_percent,
                rss_bytes: pages * self.page_size,
                processes: members,
                pid: *pid,
            };
            live.insert(name.clone(), usage);
        }
        self.cpu_seconds.retain(|name, _| known.contains(name));
        UsageTable {
            live,
            cpu_seconds: self.cpu_seconds.clone(),
        }
    }
}

/// Sample every `interval` until the supervisor ends, publishing each sample on `out`. Holds
/// only a weak sender, so it never keeps the actor alive.
pub(super) async fn run(
    commands: mpsc::WeakSender<Command>,
    interval: Duration,
    out: watch::Sender<Arc<UsageTable>>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampler = Sampler::new();
    loop {
        tick.tick().await;
        let Some(list) = list(&commands).await else {
            break;
        };
        let leaders: Vec<(String, u32)> = list
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.pid?)))
            .collect();
        let known: Vec<String> = list.into_iter().map(|p| p.name).collect();
        let done = tokio::task::spawn_blocking(move || {
            let table = sampler.sample(&leaders, &known);
            (sampler, table)
        });
        let Ok((back, table)) = done.await else { break };
        sampler = back;
        out.send_replace(Arc::new(table));
    }
}

/// Every process from the actor, or `None` once it is gone.
async fn list(commands: &mpsc::WeakSender<Command>) -> Option<Vec<ProcessInfo>> {
    let (reply, rx) = oneshot::channel();
    let tx = commands.upgrade()?;
    tx.send(Command::List {
        pattern: None,
        reply,
    })
    .await
    .ok()?;
    drop(tx);
    rx.await.ok()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proc::{self, SpawnRequest, Stdio3, child_env, signal_group};

    #[tokio::test]
    async fn a_busy_group_shows_cpu_from_the_second_sample_and_its_memory() {
        let child = proc::spawn(SpawnRequest {
            argv: ["sh", "-c", "while :; do :; done"]
                .map(String::from)
                .to_vec(),
            env: child_env([]),
            cwd: None,
            stdio: Stdio3::Capture,
            die_with_parent: true,
            credentials: None,
        })
        .await
        .unwrap();
        let pid = child.pid;
        // A vfork'ed child counts as spawned once it is exec'ing, a moment before its new
        // program has any resident memory: wait for that, with a deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        while procfs::stat(pid).map_or(0, |s| s.rss_pages) == 0 {
            assert!(
                Instant::now() < deadline,
                "the child never had resident memory"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let leaders = vec![("busy".to_string(), pid)];
        let known = vec!["busy".to_string(), "idle".to_string()];
        let mut s = Sampler::new();
        let first = s.sample(&leaders, &known);
        let u = &first.live["busy"];
        assert_eq!(u.cpu_percent, None, "no interval yet");
        assert!(u.rss_bytes > 0 && u.processes == 1, "{u:?}");
        // Sample every 200 ms (the sampler's own interval, not a wait for an event) until the
        // loop has used a measurable share of a core, within a deadline.
        let (s, cpu, totals) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let t = s.sample(&leaders, &known);
                let cpu = t.live["busy"].cpu_percent.unwrap();
                if cpu > 5.0 || Instant::now() > deadline {
                    return (s, cpu, t.cpu_seconds);
                }
            }
        })
        .await
        .unwrap();
        assert!(cpu > 5.0, "a busy loop used {cpu}% of a core");
        assert!(totals["busy"] > 0.0);
        assert!(!totals.contains_key("idle"), "never sampled");
        signal_group(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        child.exit.await.unwrap();
        let mut s = s;
        let leaders = vec![("busy".to_string(), pid)];
        let gone = s.sample(&leaders, &["busy".to_string()]);
        assert!(
            !gone.live.contains_key("busy"),
            "a group with no live member"
        );
        assert!(
            gone.cpu_seconds["busy"] > 0.0,
            "the total outlives the process"
        );
        assert!(
            s.sample(&[], &[]).cpu_seconds.is_empty(),
            "forgotten with the process"
        );
    }

    #[test]
    fn usage_attaches_only_to_the_incarnation_it_was_sampled_from() {
        let mut table = UsageTable::default();
        let u = Usage {
            cpu_percent: Some(1.0),
            rss_bytes: 4096,
            processes: 1,
            pid: 10,
        };
        table.live.insert("web".into(), u.clone());
        let mut info = ProcessInfo::example("web", Some(10));
        table.attach(&mut info);
        assert_eq!(info.usage, Some(u));
        let mut restarted = ProcessInfo::example("web", Some(11));
        table.attach(&mut restarted);
        assert_eq!(restarted.usage, None);
        let mut stopped = ProcessInfo::example("web", None);
        table.attach(&mut stopped);
        assert_eq!(stopped.usage, None);
    }
}
