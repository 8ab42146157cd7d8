//! One attempt of each kind of probe, bounded by the probe's timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::Check;
use crate::logs::{LogBuffer, LogLine};
use crate::proc::{self, RunOptions};

/// Most bytes of the process's output given to an exec probe on stdin (the newest part).
pub const STDIN_LIMIT: usize = 64 * 1024;

/// What an attempt saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
}

impl Outcome {
    fn ok(message: impl Into<String>) -> Self {
        Outcome {
            ok: true,
            message: message.into(),
        }
    }
    fn fail(message: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            message: message.into(),
        }
    }
}

/// The state an attempt needs about the process incarnation it probes.
pub struct Probed {
    pub pid: u32,
    pub logs: Arc<LogBuffer>,
    /// The log mark taken before the spawn: output after it is this incarnation's.
    pub mark: u64,
    /// Lines not yet looked at by a `log_line` probe, and the live feed of later ones.
    lines: Option<(VecDeque<LogLine>, broadcast::Receiver<LogLine>)>,
}

impl Probed {
    pub fn new(pid: u32, logs: Arc<LogBuffer>, mark: u64) -> Self {
        Probed {
            pid,
            logs,
            mark,
            lines: None,
        }
    }
}

/// Run one attempt of `check` against `p`.
pub async fn attempt(check: &Check, p: &mut Probed, timeout: Duration) -> Outcome {
    match check {
        Check::Exec { argv, cwd, env } => exec(argv, cwd, env, p, timeout).await,
        Check::Http {
            url,
            status,
            client,
        } => http(client, url, *status, timeout).await,
        Check::Tcp { addr } => tcp(addr, timeout).await,
        Check::LogLine { regex } => log_line(regex, p, timeout).await,
    }
}

async fn exec(
    argv: &[String],
    cwd: &Option<std::path::PathBuf>,
    env: &[(String, String)],
    p: &Probed,
    timeout: Duration,
) -> Outcome {
    let mut stdin = Vec::new();
    for l in p.logs.since(p.mark) {
        stdin.extend_from_slice(l.line.as_bytes());
        stdin.push(b'\n');
    }
    if stdin.len() > STDIN_LIMIT {
        stdin.drain(..stdin.len() - STDIN_LIMIT);
    }
    let mut env = env.to_vec();
    env.push(("STATE_MANAGER_PID".into(), p.pid.to_string()));
    let opts = RunOptions {
        env,
        cwd: cwd.clone(),
        // No output yet: /dev/null (EOF at once) costs no pipe.
        stdin: (!stdin.is_empty()).then_some(stdin),
        timeout,
    };
    match proc::run(argv, opts).await {
        Ok(out) if out.status.success() => Outcome::ok(first_line(&out.stdout, "exit code 0")),
        Ok(out) => {
            let said = first_line(&out.stderr, &first_line(&out.stdout, ""));
            if said.is_empty() {
                Outcome::fail(out.status.to_string())
            } else {
                Outcome::fail(format!("{}: {said}", out.status))
            }
        }
        Err(e) => Outcome::fail(e.to_string()),
    }
}

fn first_line(s: &str, default: &str) -> String {
    let l = s.lines().map(str::trim).find(|l| !l.is_empty());
    let l = l.unwrap_or(default);
    l.chars().take(200).collect()
}

async fn http(
    client: &reqwest::Client,
    url: &reqwest::Url,
    want: Option<u16>,
    timeout: Duration,
) -> Outcome {
    match client.get(url.clone()).timeout(timeout).send().await {
        Ok(resp) => {
            let got = resp.status();
            let ok = match want {
                Some(w) => got.as_u16() == w,
                None => got.is_success(),
            };
            if ok {
                Outcome::ok(format!("HTTP {}", got.as_u16()))
            } else {
                let expected = want.map_or("2xx".to_string(), |w| w.to_string());
                Outcome::fail(format!("HTTP {}, expected {expected}", got.as_u16()))
            }
        }
        Err(e) if e.is_timeout() => Outcome::fail(format!("no answer within {timeout:?}")),
        Err(e) => Outcome::fail(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Outcome::ok(format!("connected to {addr}")),
        Ok(Err(e)) => Outcome::fail(format!("{addr}: {e}")),
        Err(_) => Outcome::fail(format!("{addr}: no connection within {timeout:?}")),
    }
}

/// A matching line among those not seen yet, or one arriving within `timeout`.
async fn log_line(regex: &regex::Regex, p: &mut Probed, timeout: Duration) -> Outcome {
    let (backlog, rx) = p.lines.get_or_insert_with(|| {
        let (lines, rx) = p.logs.follow_from(p.mark);
        (lines.into(), rx)
    });
    while let Some(l) = backlog.pop_front() {
        if regex.is_match(&l.line) {
            return Outcome::ok(format!("matched {:?}", clip(&l.line)));
        }
    }
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(l) if regex.is_match(&l.line) => return Some(l.line),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Some(line)) => Outcome::ok(format!("matched {:?}", clip(&line))),
        Ok(None) => Outcome::fail("the output ended"),
        Err(_) => Outcome::fail(format!("no line matching {:?} yet", regex.as_str())),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogStream;
    use time::OffsetDateTime;

    fn line(s: &str) -> LogLine {
        LogLine {
            at: OffsetDateTime::now_utc(),
            stream: LogStream::Stdout,
            line: s.into(),
        }
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn exec_gets_this_incarnations_output_on_stdin() {
        let logs = Arc::new(LogBuffer::default());
        logs.push(line("old incarnation: listening"));
        let mark = logs.mark();
        logs.push(line("booting"));
        logs.push(line("listening on 5050"));
        let mut p = Probed::new(4242, logs, mark);
        let check = Check::Exec {
            argv: [
                "sh",
                "-c",
                "test \"$STATE_MANAGER_PID\" = 4242 && [ \"$(grep -c listening)\" = 1 ]",
            ]
            .map(String::from)
            .to_vec(),
            cwd: None,
            env: Vec::new(),
        };
        let o = attempt(&check, &mut p, T).await;
        assert!(o.ok, "{o:?}");
        let failing = Check::Exec {
            argv: ["sh", "-c", "echo not yet >&2; exit 3"]
                .map(String::from)
                .to_vec(),
            cwd: None,
            env: Vec::new(),
        };
        let o = attempt(&failing, &mut p, T).await;
        assert_eq!(o, Outcome::fail("exit code 3: not yet"));
    }

    #[tokio::test]
    async fn tcp_connects_or_says_why_not() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert!(tcp(&addr, T).await.ok);
        drop(l);
        let o = tcp(&addr, T).await;
        assert!(!o.ok && o.message.contains(&addr), "{o:?}");
    }

    #[tokio::test]
    async fn http_checks_the_status() {
        use axum::{Router, http::StatusCode, routing::get};
        let app = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = |p: &str| reqwest::Url::parse(&format!("{base}{p}")).unwrap();
        assert_eq!(
            http(&client, &url("/ok"), None, T).await,
            Outcome::ok("HTTP 200")
        );
        let o = http(&client, &url("/teapot"), None, T).await;
        assert_eq!(o, Outcome::fail("HTTP 418, expected 2xx"));
        assert!(http(&client, &url("/teapot"), Some(418), T).await.ok);
    }

    #[tokio::test]
    async fn log_line_sees_backlog_then_live_lines_once() {
        let logs = Arc::new(LogBuffer::default());
        let mark = logs.mark();
        logs.push(line("ready to serve"));
        let re = regex::Regex::new("ready").unwrap();
        let mut p = Probed::new(1, logs.clone(), mark);
        assert!(log_line(&re, &mut p, T).await.ok);
        let o = log_line(&re, &mut p, Duration::from_millis(50)).await;
        assert!(!o.ok, "a line counts once: {o:?}");
        let pusher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            logs.push(line("still ready"));
        });
        assert!(log_line(&re, &mut p, T).await.ok);
        pusher.await.unwrap();
    }
}
