//! The output of each supervised process as the API and the probes read it: a ring of its last
//! [`RING_LINES`] lines ([`LogBuffer`]) with live subscribers. The supervisor fills it (its
//! `pump`); `GET /processes/{name}/logs` and `log_line` probes read it.
//!
//! Invariant: a reader that takes the kept lines and a subscription together
//! ([`LogBuffer::follow`], [`LogBuffer::follow_from`]) sees every line once, with no gap or
//! overlap between the two.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Lines kept per process.
pub const RING_LINES: usize = 1000;

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line a process wrote, as `GET /processes/{name}/logs` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub stream: LogStream,
    pub line: String,
}

/// The last lines of one process, and live subscribers.
#[derive(Debug, Default)]
pub struct LogBuffer {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lines: VecDeque<LogLine>,
    /// Lines pushed over the buffer's life; the oldest kept line has number `pushed - lines.len()`.
    pushed: u64,
    /// Created on first subscription, so idle processes cost no channel.
    live: Option<broadcast::Sender<LogLine>>,
}

impl LogBuffer {
    pub fn push(&self, line: LogLine) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.lines.len() == RING_LINES {
            inner.lines.pop_front();
        }
        if let Some(tx) = &inner.live {
            if tx.receiver_count() == 0 {
                inner.live = None;
            } else {
                let _ = tx.send(line.clone());
            }
        }
        inner.lines.push_back(line);
        inner.pushed += 1;
    }

    /// A mark of "now": lines pushed later are returned by [`LogBuffer::follow_from`].
    /// Taken before a process is spawned, it separates its output from earlier incarnations'.
    pub fn mark(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).pushed
    }

    /// The lines pushed since `mark` that are still kept, oldest first.
    pub fn since(&self, mark: u64) -> Vec<LogLine> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = inner
            .pushed
            .saturating_sub(mark)
            .min(inner.lines.len() as u64) as usize;
        inner
            .lines
            .iter()
            .skip(inner.lines.len() - n)
            .cloned()
            .collect()
    }

    /// The lines pushed since `mark` that are still kept, and a receiver of every later line,
    /// with no gap or overlap between them.
    pub fn follow_from(&self, mark: u64) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rx = subscribe(&mut inner);
        let n = inner
            .pushed
            .saturating_sub(mark)
            .min(inner.lines.len() as u64) as usize;
        let skip = inner.lines.len() - n;
        (inner.lines.iter().skip(skip).cloned().collect(), rx)
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .lines
            .iter()
            .skip(inner.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The last `n` lines and a receiver of every later line, with no gap or overlap between them.
    pub fn follow(&self, n: usize) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rx = subscribe(&mut inner);
        let tail = inner
            .lines
            .iter()
            .skip(inner.lines.len().saturating_sub(n))
            .cloned()
            .collect();
        (tail, rx)
    }
}

fn subscribe(inner: &mut Inner) -> broadcast::Receiver<LogLine> {
    match &inner.live {
        Some(tx) => tx.subscribe(),
        None => {
            let (tx, rx) = broadcast::channel(1024);
            inner.live = Some(tx);
            rx
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines_and_follow_has_no_gap() {
        let b = LogBuffer::default();
        let line = |i: usize| LogLine {
            at: OffsetDateTime::now_utc(),
            stream: LogStream::Stderr,
            line: i.to_string(),
        };
        for i in 0..RING_LINES + 5 {
            b.push(line(i));
        }
        let tail = b.tail(2);
        assert_eq!(tail[1].line, (RING_LINES + 4).to_string());
        let (tail, mut rx) = b.follow(1);
        assert_eq!(tail.len(), 1);
        b.push(line(9999));
        assert_eq!(rx.try_recv().unwrap().line, "9999");
        let mark = b.mark();
        b.push(line(1));
        b.push(line(2));
        let (since, mut rx) = b.follow_from(mark);
        let got: Vec<_> = since.into_iter().map(|l| l.line).collect();
        assert_eq!(got, ["1", "2"], "only the lines after the mark");
        assert_eq!(b.since(mark).len(), 2);
        b.push(line(3));
        assert_eq!(rx.try_recv().unwrap().line, "3");
        assert!(
            b.follow_from(0).0.len() == RING_LINES,
            "a mark older than the ring"
        );
    }
}
