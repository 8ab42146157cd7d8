//! The task that runs one probe for one incarnation of a process, and what it reports.
//!
//! Readiness: after `initial_delay`, an attempt every `period` until one succeeds (reported as
//! [`Verdict::Ready`]); if none does within `start_timeout` of the spawn, [`Verdict::StartTimeout`]
//! and the task ends. Once ready it keeps probing: `failures` failures in a row report
//! [`Verdict::Unready`], the next success [`Verdict::Ready`] again.
//!
//! Liveness: after `initial_delay`, an attempt every `period`; `failures` failures in a row report
//! [`Verdict::LivenessFailed`] and the task ends (the process is restarted).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use super::check::{Outcome, Probed, attempt};
use super::{ProbeResult, ProbeRole, ProbeSpec};
use crate::logs::LogBuffer;

/// The incarnation a probe task watches.
pub struct Target {
    pub name: Arc<str>,
    pub pid: u32,
    pub logs: Arc<LogBuffer>,
    /// [`LogBuffer::mark`] taken before the spawn.
    pub mark: u64,
    /// Readiness was reached before (the probe was paused during a freeze): go on checking
    /// whether it stays ready, with no start timeout.
    pub already_ready: bool,
}

/// A change the actor must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Readiness reached (or reached again).
    Ready,
    /// The readiness probe failed `failures` times in a row after the process was ready.
    Unready(String),
    /// Not ready within `start_timeout`: the start failed.
    StartTimeout(String),
    /// The liveness probe failed `failures` times in a row: restart.
    LivenessFailed(String),
}

/// One attempt's result, for one pid.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: Arc<str>,
    pub pid: u32,
    pub result: ProbeResult,
    pub verdict: Option<Verdict>,
}

/// A running probe task; dropping it aborts the task (and kills a command it is running).
#[derive(Debug)]
pub struct ProbeTask {
    pub pid: u32,
    pub role: ProbeRole,
    handle: JoinHandle<()>,
}

impl Drop for ProbeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Start the `role` probe `spec` for `target`; reports go to `tx`.
pub fn spawn(
    role: ProbeRole,
    spec: Arc<ProbeSpec>,
    target: Target,
    tx: mpsc::UnboundedSender<Report>,
) -> ProbeTask {
    let pid = target.pid;
    let runner = Runner {
        role,
        probed: Probed::new(target.pid, target.logs.clone(), target.mark),
        target,
        tx,
    };
    let handle = tokio::spawn(async move {
        match role {
            ProbeRole::Readiness => runner.readiness(&spec).await,
            ProbeRole::Liveness => runner.liveness(&spec).await,
        }
    });
    ProbeTask { pid, role, handle }
}

struct Runner {
    role: ProbeRole,
    target: Target,
    probed: Probed,
    tx: mpsc::UnboundedSender<Report>,
}

impl Runner {
    async fn readiness(mut self, spec: &ProbeSpec) {
        if self.target.already_ready {
            return self.keep_checking_readiness(spec).await;
        }
        let mut last = None;
        let reached = async {
            tokio::time::sleep(spec.initial_delay).await;
            let mut tick = ticker(spec.period);
            loop {
                tick.tick().await;
                let o = self.attempt(spec).await;
                let ok = o.ok;
                last = Some(o.message.clone());
                self.report(o, ok.then_some(Verdict::Ready));
                if ok {
                    return;
                }
            }
        };
        let in_time = match spec.start_timeout {
            Some(t) => tokio::time::timeout(t, reached).await.is_ok(),
            None => {
                reached.await;
                true
            }
        };
        if !in_time {
            let t = spec.start_timeout.unwrap_or_default();
            let why = format!(
                "not ready within {}{}",
                humantime::format_duration(t),
                last.map(|m| format!(" (last probe: {m})"))
                    .unwrap_or_default()
            );
            self.report(
                Outcome {
                    ok: false,
                    message: why.clone(),
                },
                Some(Verdict::StartTimeout(why)),
            );
            return;
        }
        self.keep_checking_readiness(spec).await;
    }

    async fn keep_checking_readiness(mut self, spec: &ProbeSpec) {
        let mut tick = ticker(spec.period);
        tick.tick().await; // the first tick is immediate; the success just reported was it
        let mut streak = Streak::new(spec.failures);
        let mut ready = true;
        loop {
            tick.tick().await;
            let o = self.attempt(spec).await;
            let verdict = match (streak.record(o.ok), ready, o.ok) {
                (true, true, _) => {
                    ready = false;
                    Some(Verdict::Unready(streak.describe(&o.message)))
                }
                (_, false, true) => {
                    ready = true;
                    Some(Verdict::Ready)
                }
                _ => None,
            };
            self.report(o, verdict);
        }
    }

    async fn liveness(mut self, spec: &ProbeSpec) {
        tokio::time::sleep(spec.initial_delay).await;
        let mut tick = ticker(spec.period);
        let mut streak = Streak::new(spec.failures);
        loop {
            tick.tick().await;
            let o = self.attempt(spec).await;
            if streak.record(o.ok) {
                let why = streak.describe(&o.message);
                self.report(o, Some(Verdict::LivenessFailed(why)));
                return;
            }
            self.report(o, None);
        }
    }

    async fn attempt(&mut self, spec: &ProbeSpec) -> Outcome {
        attempt(&spec.check, &mut self.probed, spec.timeout).await
    }

    fn report(&self, o: Outcome, verdict: Option<Verdict>) {
        let _ = self.tx.send(Report {
            name: self.target.name.clone(),
            pid: self.target.pid,
            result: ProbeResult {
                at: OffsetDateTime::now_utc(),
                probe: self.role,
                ok: o.ok,
                message: o.message,
            },
            verdict,
        });
    }
}

fn ticker(period: Duration) -> Interval {
    let mut i = tokio::time::interval(period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// Consecutive failures against a threshold.
#[derive(Debug)]
struct Streak {
    failures: u32,
    threshold: u32,
}

impl Streak {
    fn new(threshold: u32) -> Self {
        Streak {
            failures: 0,
            threshold: threshold.max(1),
        }
    }

    /// Count an attempt; true exactly when this failure reaches the threshold.
    fn record(&mut self, ok: bool) -> bool {
        if ok {
            self.failures = 0;
            false
        } else {
            self.failures += 1;
            self.failures == self.threshold
        }
    }

    fn describe(&self, last: &str) -> String {
        format!("failed {} times in a row: {last}", self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::Check;

    #[test]
    fn streak_fires_once_at_the_threshold_and_resets_on_success() {
        let mut s = Streak::new(3);
        assert_eq!(
            [false, false, true, false, false, false, false].map(|ok| s.record(ok)),
            [false, false, false, false, false, true, false]
        );
        assert_eq!(s.describe("x"), "failed 4 times in a row: x");
    }

    fn spec(check: Check, failures: u32, start_timeout: Option<Duration>) -> Arc<ProbeSpec> {
        Arc::new(ProbeSpec {
            check,
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            failures,
            start_timeout,
        })
    }

    fn target(logs: &Arc<LogBuffer>) -> Target {
        Target {
            name: "p".into(),
            pid: 7,
            logs: logs.clone(),
            mark: logs.mark(),
            already_ready: false,
        }
    }

    async fn verdict(rx: &mut mpsc::UnboundedReceiver<Report>) -> Verdict {
        loop {
            let r = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("a verdict in time")
                .expect("the task is alive");
            assert_eq!(r.pid, 7);
            if let Some(v) = r.verdict {
                return v;
            }
        }
    }

    #[tokio::test]
    async fn readiness_times_out_with_the_last_message() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let logs = Arc::new(LogBuffer::default());
        let check = Check::Tcp { addr: addr.clone() };
        let s = spec(check, 1, Some(Duration::from_millis(300)));
        let _t = spawn(ProbeRole::Readiness, s, target(&logs), tx);
        match verdict(&mut rx).await {
            Verdict::StartTimeout(why) => {
                assert!(why.starts_with("not ready within 300ms"), "{why}");
                assert!(why.contains(&addr), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn readiness_goes_unready_and_back_and_liveness_fails_after_n() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let logs = Arc::new(LogBuffer::default());
        let check = Check::Tcp { addr: addr.clone() };
        let _r = spawn(
            ProbeRole::Readiness,
            spec(check.clone(), 2, None),
            target(&logs),
            tx.clone(),
        );
        assert_eq!(verdict(&mut rx).await, Verdict::Ready);
        drop(l);
        assert!(
            matches!(verdict(&mut rx).await, Verdict::Unready(m) if m.starts_with("failed 2 times"))
        );
        let _l = std::net::TcpListener::bind(&addr).unwrap();
        assert_eq!(verdict(&mut rx).await, Verdict::Ready);
        drop(_r);
        drop(_l);
        let _live = spawn(ProbeRole::Liveness, spec(check, 3, None), target(&logs), tx);
        match verdict(&mut rx).await {
            Verdict::LivenessFailed(m) => assert!(m.starts_with("failed 3 times in a row"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
