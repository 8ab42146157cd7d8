//! Child output: read line by line from the pipes, kept in a per-process ring buffer (for the log
//! API and `log_line` probes) and forwarded to state-manager's own stdout/stderr prefixed with
//! the process name.
//!
//! Lines longer than [`MAX_LINE`] are split; a child that never writes a newline cannot make us
//! buffer without bound. Forwarding goes through one writer thread, so a slow terminal or log
//! collector slows the children's pipes (backpressure), never the async runtime.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc};

/// Longest line kept whole; longer output is split into several lines.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept per process.
pub const RING_LINES: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LogStream)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub stream: Stream,
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

struct Forward {
    name: Arc<str>,
    stream: Stream,
    line: String,
}

fn forwarder() -> &'static mpsc::Sender<Forward> {
    static TX: OnceLock<mpsc::Sender<Forward>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, mut rx) = mpsc::channel::<Forward>(4096);
        std::thread::Builder::new()
            .name("sm-output".into())
            .spawn(move || {
                while let Some(f) = rx.blocking_recv() {
                    let _ = match f.stream {
                        Stream::Stdout => {
                            writeln!(std::io::stdout().lock(), "[{}] {}", f.name, f.line)
                        }
                        Stream::Stderr => {
                            writeln!(std::io::stderr().lock(), "[{}] {}", f.name, f.line)
                        }
                    };
                }
            })
            .expect("cannot start the output thread");
        tx
    })
}

/// Read `fd` until EOF, line by line, into `buffer` (and forwarded when `forward` is set).
pub async fn pump(
    fd: OwnedFd,
    name: Arc<str>,
    stream: Stream,
    buffer: Arc<LogBuffer>,
    forward: bool,
) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut reader = BufReader::with_capacity(4096, pipe);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let room = MAX_LINE - line.len();
        let (take, complete) = match buf.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), buf.len() >= room),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if complete {
            emit(&mut line, &name, stream, &buffer, forward).await;
        }
    }
    if !line.is_empty() {
        emit(&mut line, &name, stream, &buffer, forward).await;
    }
}

async fn emit(
    raw: &mut Vec<u8>,
    name: &Arc<str>,
    stream: Stream,
    buffer: &LogBuffer,
    forward: bool,
) {
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    let text = String::from_utf8_lossy(raw).into_owned();
    raw.clear();
    if forward {
        let _ = forwarder()
            .send(Forward {
                name: name.clone(),
                stream,
                line: text.clone(),
            })
            .await;
    }
    buffer.push(LogLine {
        at: OffsetDateTime::now_utc(),
        stream,
        line: text,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_splits_lines_and_bounds_them() {
        let (r, w) = std::io::pipe().unwrap();
        let buffer = Arc::new(LogBuffer::default());
        let task = tokio::spawn(pump(
            OwnedFd::from(r),
            "t".into(),
            Stream::Stdout,
            buffer.clone(),
            false,
        ));
        let mut w = std::fs::File::from(OwnedFd::from(w));
        let long = "x".repeat(MAX_LINE + 10);
        write!(w, "one\r\ntwo\n{long}\nlast").unwrap();
        drop(w);
        task.await.unwrap();
        let lines: Vec<_> = buffer.tail(10).into_iter().map(|l| l.line).collect();
        assert_eq!(
            lines.len(),
            5,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(&lines[..2], ["one", "two"]);
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], "x".repeat(10));
        assert_eq!(lines[4], "last");
    }

    #[test]
    fn ring_keeps_the_last_lines_and_follow_has_no_gap() {
        let b = LogBuffer::default();
        let line = |i: usize| LogLine {
            at: OffsetDateTime::now_utc(),
            stream: Stream::Stderr,
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
