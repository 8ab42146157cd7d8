//! Child output: read line by line from the pipes into the process's [`LogBuffer`] (for the log
//! API and `log_line` probes) and forwarded to state-manager's own stdout/stderr prefixed with
//! the process name.
//!
//! Lines longer than [`MAX_LINE`] are split; a child that never writes a newline cannot make us
//! buffer without bound. Forwarding goes through one writer thread, so a slow terminal or log
//! collector slows the children's pipes (backpressure), never the async runtime.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;
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
///
/// Reads go into one scratch buffer per runtime thread, not one per pipe: a supervised process
/// that is quiet (most of them, most of the time) costs its pipes no buffer at all, and a line
/// is only held while it is unfinished.
pub async fn pump(
    fd: OwnedFd,
    name: Arc<str>,
    stream: LogStream,
    buffer: Arc<LogBuffer>,
    forward: bool,
) {
    thread_local! {
        static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
    }
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    // The unfinished line, and the lines one read completed.
    let (mut line, mut done) = (Vec::new(), Vec::new());
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        // Synchronous from the read to the split: the scratch buffer is never held across an await.
        let read = SCRATCH.with_borrow_mut(|scratch| {
            let n = pipe.try_read(scratch)?;
            split_lines(&scratch[..n], &mut line, &mut done);
            Ok::<_, std::io::Error>(n)
        });
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
        for raw in done.drain(..) {
            emit(raw, &name, stream, &buffer, forward).await;
        }
    }
    if !line.is_empty() {
        emit(line, &name, stream, &buffer, forward).await;
    }
}

/// Bytes read from a pipe at once.
const READ_SIZE: usize = 16 * 1024;

/// Append `bytes` to the unfinished `line`, moving every line they complete to `done`: at a
/// newline, or when the line reaches [`MAX_LINE`].
fn split_lines(mut bytes: &[u8], line: &mut Vec<u8>, done: &mut Vec<Vec<u8>>) {
    while !bytes.is_empty() {
        let room = MAX_LINE - line.len();
        let (take, complete) = match bytes.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (bytes.len().min(room), bytes.len() >= room),
        };
        line.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if complete {
            done.push(std::mem::take(line));
        }
    }
}

async fn emit(
    mut raw: Vec<u8>,
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
    let text = String::from_utf8(raw)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
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

    #[test]
    fn a_line_read_in_pieces_is_one_line_and_nothing_is_held_between_lines() {
        let (mut line, mut done) = (Vec::new(), Vec::new());
        split_lines(b"a\nhal", &mut line, &mut done);
        split_lines(b"f", &mut line, &mut done);
        split_lines(b" done\nb\n", &mut line, &mut done);
        assert_eq!(done, [&b"a\n"[..], b"half done\n", b"b\n"]);
        assert_eq!(line.capacity(), 0, "no buffer kept after a complete line");
        split_lines(&[b'x'; MAX_LINE + 1], &mut line, &mut done);
        assert_eq!(done.len(), 4);
        assert_eq!(done[3].len(), MAX_LINE);
        assert_eq!(line, b"x");
    }

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
