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
use std::task::Poll;

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

/// Read a child's `stdout` and `stderr` until both reach EOF, line by line, into `buffer` (and
/// forwarded when `forward` is set).
///
/// One task reads both pipes, and it holds no buffer of its own while it waits: reads go into
/// one scratch buffer per runtime thread, a line is only held while it is unfinished, and the
/// wait registers the task's waker with each pipe (`poll_read_ready`) rather than keeping a
/// readiness future per pipe. A supervised process that is quiet (most of them, most of the
/// time) costs one small task.
pub async fn pump(
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    name: Arc<str>,
    buffer: Arc<LogBuffer>,
    forward: bool,
) {
    let mut pipes = [
        Pipe::open(stdout, LogStream::Stdout),
        Pipe::open(stderr, LogStream::Stderr),
    ];
    let mut done = Vec::new();
    // The pipe looked at first; the pipes take turns so that a busy one never starves the other.
    let mut first = 0;
    while pipes.iter().any(|p| p.rx.is_some()) {
        let (i, ready) = std::future::poll_fn(|cx| {
            for i in [first, 1 - first] {
                if let Some(rx) = &pipes[i].rx
                    && let Poll::Ready(ready) = rx.poll_read_ready(cx)
                {
                    return Poll::Ready((i, ready));
                }
            }
            Poll::Pending
        })
        .await;
        first = 1 - i;
        let pipe = &mut pipes[i];
        let open = ready.is_ok() && pipe.read(&mut done);
        if !open {
            pipe.rx = None;
            if !pipe.line.is_empty() {
                done.push(std::mem::take(&mut pipe.line));
            }
        }
        let stream = pipe.stream;
        for raw in done.drain(..) {
            // Boxed: the forwarding queue's send is only waited for while a line is out, so
            // the task does not carry its space while the child is quiet.
            Box::pin(emit(raw, &name, stream, &buffer, forward)).await;
        }
    }
}

/// One of a child's output pipes: open until EOF or an error, with its unfinished line.
struct Pipe {
    rx: Option<tokio::net::unix::pipe::Receiver>,
    stream: LogStream,
    line: Vec<u8>,
}

impl Pipe {
    fn open(fd: Option<OwnedFd>, stream: LogStream) -> Self {
        Self {
            rx: fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok()),
            stream,
            line: Vec::new(),
        }
    }

    /// Read what the pipe holds, moving the lines it completes to `done`. False at EOF or on an
    /// error; a read that would block leaves the pipe open (its readiness is cleared).
    fn read(&mut self, done: &mut Vec<Vec<u8>>) -> bool {
        thread_local! {
            static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
        }
        let Some(rx) = &self.rx else { return false };
        // Synchronous from the read to the split: the scratch buffer is never held across an await.
        let read = SCRATCH.with_borrow_mut(|scratch| {
            let n = rx.try_read(scratch)?;
            split_lines(&scratch[..n], &mut self.line, done);
            Ok::<_, std::io::Error>(n)
        });
        match read {
            Ok(n) => n > 0,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
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
            Some(OwnedFd::from(r)),
            None,
            "t".into(),
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

    #[tokio::test]
    async fn one_task_reads_both_pipes_to_their_ends_and_a_busy_one_does_not_starve_the_other() {
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let buffer = Arc::new(LogBuffer::default());
        let task = tokio::spawn(pump(
            Some(OwnedFd::from(out_r)),
            Some(OwnedFd::from(err_r)),
            "t".into(),
            buffer.clone(),
            false,
        ));
        // stdout keeps writing (from a thread, blocking when its pipe is full) while stderr
        // writes one line and closes: that line must arrive before stdout is done.
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(OwnedFd::from(out_w));
            for i in 0..20_000 {
                writeln!(w, "out {i}").unwrap();
            }
        });
        let mut e = std::fs::File::from(OwnedFd::from(err_w));
        writeln!(e, "err once").unwrap();
        write!(e, "err unfinished").unwrap();
        drop(e);
        task.await.unwrap();
        writer.join().unwrap();
        assert_eq!(buffer.mark(), 20_002, "every line of both pipes");
        // stderr ended long before stdout did: none of its lines is among the last.
        let last = buffer.tail(crate::logs::RING_LINES);
        assert!(
            last.iter()
                .enumerate()
                .all(|(i, l)| l.stream == LogStream::Stdout
                    && l.line == format!("out {}", 19_000 + i)),
            "stderr waited for stdout to finish, or stdout lost its order"
        );
    }

    #[test]
    fn a_quiet_childs_reader_is_small() {
        let (r, _w) = std::io::pipe().unwrap();
        let (r2, _w2) = std::io::pipe().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let task = pump(
            Some(OwnedFd::from(r)),
            Some(OwnedFd::from(r2)),
            "t".into(),
            Arc::new(LogBuffer::default()),
            true,
        );
        // A reader per pipe, each with its readiness future and the forwarding send inline,
        // took 584 bytes (1,168 for a child), plus a task header each.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 400, "the reader of both pipes is {size} bytes");
    }
}
