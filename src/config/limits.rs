//! The valid range of every duration and number in the config, in one table ([`check_limits`]),
//! so that `state-manager check`, start-up and `POST /config` refuse the same values, and no
//! value that passes can make a timer, an interval or an addition downstream panic or overflow
//! (a zero period panics `tokio::time::interval`; "1000000y" overflows an `Instant`).
//!
//! Rules that relate two fields (a poll shorter than the lease, retention not shorter than the
//! snapshot interval) stay beside their section; this file only bounds each value on its own.
//! The ranges are documented in docs/CONFIGURATION.md ("Valid ranges"); keep both in step.

use std::time::Duration;

use super::process::ProcessConfig;
use super::{Config, Dur, Problem, StackEntry};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const TEN_MIN: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);
/// humantime's years: 365.25 days each.
const TEN_YEARS: Duration = Duration::from_secs(315_576_000);

/// An inclusive range of durations.
#[derive(Clone, Copy, Debug)]
pub struct DurRange(pub Duration, pub Duration);

/// Restart delay (zero: restart at once, every time, as supervisord and PM2 can) and backoff
/// cap (top level and per process).
pub const RESTART_DELAY: DurRange = DurRange(Duration::ZERO, HOUR);
pub const BACKOFF_MAX: DurRange = DurRange(MS, DAY);
pub const BACKOFF_RESET_AFTER: DurRange = DurRange(MS, DAY);
/// Zero means SIGKILL right after the stop signal.
pub const STOP_TIMEOUT: DurRange = DurRange(Duration::ZERO, HOUR);
pub const MAX_RESTARTS: u32 = 1_000_000;
pub const PROBE_INITIAL_DELAY: DurRange = DurRange(Duration::ZERO, HOUR);
pub const PROBE_PERIOD: DurRange = DurRange(MS, HOUR);
pub const PROBE_TIMEOUT: DurRange = DurRange(MS, HOUR);
pub const PROBE_START_TIMEOUT: DurRange = DurRange(MS, DAY);
pub const PROBE_FAILURES: (u32, u32) = (1, 1000);
pub const REPLICATION_INTERVAL: DurRange = DurRange(Duration::from_millis(10), HOUR);
pub const SNAPSHOT_INTERVAL: DurRange = DurRange(Duration::from_millis(10), MONTH);
pub const RETENTION: DurRange = DurRange(Duration::from_millis(10), TEN_YEARS);
pub const CHECKPOINT_INTERVAL: DurRange = DurRange(SEC, MONTH);
pub const KEEP_WITHIN: DurRange = DurRange(SEC, TEN_YEARS);
pub const KEEP_LAST: (u32, u32) = (1, 1_000_000);
pub const CONCURRENCY: (u32, u32) = (1, 256);
pub const LEASE_TTL: DurRange = DurRange(Duration::from_secs(3), HOUR);
pub const LEASE_POLL: DurRange = DurRange(MS, HOUR);
pub const CLOCK_SKEW: DurRange = DurRange(Duration::ZERO, TEN_MIN);
pub const HOOK_TIMEOUT: DurRange = DurRange(MS, DAY);
pub const WEBHOOK_BATCH_SIZE: (u32, u32) = (1, 10_000);
pub const WEBHOOK_BATCH_INTERVAL: DurRange = DurRange(MS, HOUR);
pub const WEBHOOK_QUEUE_CAPACITY: (u32, u32) = (1, 1_000_000);
pub const WEBHOOK_TIMEOUT: DurRange = DurRange(MS, TEN_MIN);

/// Every duration and number of `config` outside its range, as problems at its path.
pub(super) fn check_limits(c: &Config, p: &mut Vec<Problem>) {
    let mut l = Limits(p);
    l.dur("restart_delay", c.restart_delay, RESTART_DELAY);
    l.dur("backoff_max", c.backoff_max, BACKOFF_MAX);
    l.dur(
        "backoff_reset_after",
        c.backoff_reset_after,
        BACKOFF_RESET_AFTER,
    );
    l.dur("stop_timeout", c.stop_timeout, STOP_TIMEOUT);
    l.opt_num("max_restarts", c.max_restarts, (0, MAX_RESTARTS));
    for (i, entry) in c.stacks.iter().enumerate() {
        if let StackEntry::Inline(pc) = entry {
            l.process(pc, &format!("stacks[{i}]"));
        }
    }
    let r = &c.replication;
    l.dur("replication.interval", r.interval, REPLICATION_INTERVAL);
    l.dur(
        "replication.snapshot_interval",
        r.snapshot_interval,
        SNAPSHOT_INTERVAL,
    );
    l.dur("replication.retention", r.retention, RETENTION);
    let k = &c.checkpoint;
    l.opt_dur("checkpoint.interval", k.interval, CHECKPOINT_INTERVAL);
    l.opt_dur("checkpoint.keep_within", k.keep_within, KEEP_WITHIN);
    l.opt_num("checkpoint.keep_last", k.keep_last, KEEP_LAST);
    l.num("checkpoint.concurrency", k.concurrency, CONCURRENCY);
    let le = &c.lease;
    l.dur("lease.ttl", le.ttl, LEASE_TTL);
    l.dur("lease.poll_interval", le.poll_interval, LEASE_POLL);
    l.dur("lease.clock_skew", le.clock_skew, CLOCK_SKEW);
    for (name, h) in [
        ("pre_start", &c.hooks.pre_start),
        ("post_stop", &c.hooks.post_stop),
        ("on_shutdown", &c.hooks.on_shutdown),
    ] {
        if let Some(h) = h {
            l.dur(&format!("hooks.{name}.timeout"), h.timeout, HOOK_TIMEOUT);
        }
    }
    for (i, w) in c.webhooks.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        l.num(&at("batch_size"), w.batch_size, WEBHOOK_BATCH_SIZE);
        l.dur(
            &at("batch_interval"),
            w.batch_interval,
            WEBHOOK_BATCH_INTERVAL,
        );
        l.num(
            &at("queue_capacity"),
            w.queue_capacity,
            WEBHOOK_QUEUE_CAPACITY,
        );
        l.dur(&at("timeout"), w.timeout, WEBHOOK_TIMEOUT);
    }
}

struct Limits<'a>(&'a mut Vec<Problem>);

impl Limits<'_> {
    fn process(&mut self, pc: &ProcessConfig, base: &str) {
        let at = |f: &str| format!("{base}.{f}");
        self.opt_dur(&at("restart_delay"), pc.restart_delay, RESTART_DELAY);
        self.opt_dur(&at("backoff_max"), pc.backoff_max, BACKOFF_MAX);
        self.opt_dur(
            &at("backoff_reset_after"),
            pc.backoff_reset_after,
            BACKOFF_RESET_AFTER,
        );
        self.opt_dur(&at("stop_timeout"), pc.stop_timeout, STOP_TIMEOUT);
        self.opt_num(&at("max_restarts"), pc.max_restarts, (0, MAX_RESTARTS));
        // `instances` has its own rule beside the process.
        for (kind, probe) in [("readiness", &pc.readiness), ("liveness", &pc.liveness)] {
            let Some(pr) = probe else { continue };
            let at = |f: &str| format!("{base}.{kind}.{f}");
            self.dur(&at("initial_delay"), pr.initial_delay, PROBE_INITIAL_DELAY);
            self.dur(&at("period"), pr.period, PROBE_PERIOD);
            self.dur(&at("timeout"), pr.timeout, PROBE_TIMEOUT);
            self.num(&at("failures"), pr.failures, PROBE_FAILURES);
            self.opt_dur(&at("start_timeout"), pr.start_timeout, PROBE_START_TIMEOUT);
        }
    }

    fn dur(&mut self, path: &str, d: Dur, DurRange(min, max): DurRange) {
        if d.get() < min || d.get() > max {
            self.0.push(Problem::new(
                path,
                format!(
                    "{d} is out of range: must be between {} and {}",
                    show(min),
                    show(max)
                ),
            ));
        }
    }

    fn opt_dur(&mut self, path: &str, d: Option<Dur>, range: DurRange) {
        if let Some(d) = d {
            self.dur(path, d, range);
        }
    }

    fn num(&mut self, path: &str, n: u32, (min, max): (u32, u32)) {
        if !(min..=max).contains(&n) {
            self.0.push(Problem::new(
                path,
                format!("{n} is out of range: must be between {min} and {max}"),
            ));
        }
    }

    fn opt_num(&mut self, path: &str, n: Option<u32>, range: (u32, u32)) {
        if let Some(n) = n {
            self.num(path, n, range);
        }
    }
}

/// `"0s"` rather than humantime's `"0s"`-less empty string for zero.
fn show(d: Duration) -> String {
    if d.is_zero() {
        "\"0s\"".into()
    } else {
        format!("{:?}", Dur(d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, parse_with_env, problems_of as problems};

    #[test]
    fn a_zero_or_huge_duration_is_refused_at_its_path() {
        let p = problems(r#"{"checkpoint": {"interval": "0s"}}"#);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, "checkpoint.interval");
        assert!(
            p[0].message.contains("between \"1s\" and \"30days\""),
            "{p:#?}"
        );
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "stop_timeout": "1000000years",
                            "readiness": {"tcp": 1, "period": "0s"}}],
                "webhooks": [{"url": "http://h/", "batch_interval": "0s"}]}"#,
        );
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "stacks[0].stop_timeout",
            "stacks[0].readiness.period",
            "webhooks[0].batch_interval",
        ] {
            assert!(paths.contains(&want), "{want}: {p:#?}");
        }
    }

    #[test]
    fn the_defaults_and_the_documented_edges_are_inside() {
        assert!(problems("{}").is_empty());
        let edges = r#"{"stop_timeout": "0s", "restart_delay": "0s", "checkpoint": {"interval": "1s"},
                        "lease": {"ttl": "1h", "poll_interval": "1ms", "clock_skew": "0s"}}"#;
        assert!(problems(edges).is_empty(), "{:#?}", problems(edges));
        assert!(matches!(
            parse_with_env(r#"{"checkpoint": {"interval": "0s"}}"#, |_| None),
            Err(ConfigError::Invalid(_))
        ));
    }
}
