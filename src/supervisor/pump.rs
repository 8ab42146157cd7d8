//! Child output: read line by line from the pipes into the process's [`LogBuffer`] (for the log
//! API and `log_line` probes) and forwarded to state-manager's own stdout/stderr prefixed with
//! the process name.
//!
//! Lines longer than [`MAX_LINE`] are split; a child that never writes a newline cannot make us
//! buffer without bound. Forwarding goes through one writer thread, so a slow terminal or log
//! collector slows the children's pipes (backpressure), never the async runtime.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::logs::{LogBuffer, LogLine, LogStream};

/// Longest line kept whole; longer output is split into several lines.
pub const MAX_LINE: usize = 16 * 1024;

struct Forward {
    name: Arc<str>,
    stream: LogStream,
    line: String,
}

/// The writer thread's queue, started at the first forwarded line. `None` if the system
/// refuses the thread (a pids limit in a container): the line is then kept in the buffer only,
/// and the thread is tried again with the next line.
fn forwarder() -> Option<&'static mpsc::Sender<Forward>> {
    static TX: OnceLock<mpsc::Sender<Forward>> = OnceLock::new();
    static START: Mutex<bool> = Mutex::new(false);
    if let Some(tx) = TX.get() {
        return Some(tx);
    }
    let mut warned = START.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = TX.get() {
        return Some(tx);
    }
    let (tx, mut rx) = mpsc::channel::<Forward>(4096);
    let started = std::thread::Builder::new()
        .name("sm-output".into())
        .spawn(move || {
            while let Some(f) = rx.blocking_recv() {
                let _ = match f.stream {
                    LogStream::Stdout => {
                        writeln!(std::io::stdout().lock(), "[{}] {}", f.name, f.line)
                    }
                    LogStream::Stderr => {
                        writeln!(std::io::stderr().lock(), "[{}] {}", f.name, f.line)
                    }
                };
            }
        });
    match started {
        Ok(_) => Some(TX.get_or_init(|| tx)),
        Err(e) => {
            if !std::mem::replace(&mut *warned, true) {
                tracing::error!(
                    "cannot start the output thread ({e}); child output is kept for the log API but not forwarded"
                );
            }
            None
        }
    }
}

/// Read `fd` until EOF, line by line, into `buffer` (and forwarded when `forward` is set).
pub async fn pump(
    fd: OwnedFd,
    name: Arc<str>,
    stream: LogStream,
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
    stream: LogStream,
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
    if forward && let Some(tx) = forwarder() {
        let _ = tx
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
            LogStream::Stdout,
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
}
