//! Slow and many clients against the real server: a client dribbling its request head is cut
//! off, one dribbling its body is answered 408, both within bounded time; connections beyond
//! the limit wait until a slot frees while the idle ones are cut; 500 idle connections do not
//! delay an ordinary client. Raw `TcpStream`s, so nothing finishes a request for us.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use state_manager::auth::{Auth, Scope};
use state_manager::http::listen::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use super::support::{Server, keys};

/// Short limits, so that each test takes a few seconds.
fn short(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
    }
}

async fn server(limits: Limits) -> Server {
    Server::start_limited(
        tempfile::tempdir().unwrap(),
        Auth::Jwt(Box::new(keys())),
        limits,
    )
    .await
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// Write `bytes` one at a time, 100 ms apart, until they run out or the server hangs up.
fn dribble(mut w: OwnedWriteHalf, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        for b in bytes {
            pace.tick().await;
            if w.write_all(&[b]).await.is_err() {
                return;
            }
        }
    })
}

/// Everything the server sends until it closes the connection (a reset ends it too), and when.
async fn read_to_close(r: &mut tokio::net::tcp::OwnedReadHalf) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection");
    (got, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dribbling_its_request_head_is_cut_off() {
    let s = server(short(8)).await;
    let stream = TcpStream::connect(addr(&s)).await.unwrap();
    let (mut r, w) = stream.into_split();
    let start = Instant::now();
    // A head that would take a minute at this pace.
    let head = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-slow: {}\r\n\r\n",
        "a".repeat(600)
    );
    let writer = dribble(w, head.into_bytes());
    let (got, closed) = read_to_close(&mut r).await;
    let took = closed - start;
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the header timeout"
    );
    assert!(took < Duration::from_secs(20), "closed only after {took:?}");
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    writer.abort();
    // The server still serves everyone else.
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dribbling_its_body_is_answered_408() {
    let s = server(short(8)).await;
    let stream = TcpStream::connect(addr(&s)).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let body = format!(r#"{{"stacks": {{}}, "pad": "{}"}}"#, "a".repeat(600));
    let head = format!(
        "POST /config HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.token(Scope::Admin),
        body.len()
    );
    w.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let writer = dribble(w, body.into_bytes());
    let (got, closed) = read_to_close(&mut r).await;
    let took = closed - start;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("request-timeout"), "{text}");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "answered only after {took:?}"
    );
    writer.abort();
    // Nothing was written: the server is still unconfigured.
    assert!(!s.config_path().exists());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_an_idle_one_is_cut() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(2),
        ..short(4)
    };
    let s = server(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr(&s)).await.unwrap());
    }
    // The fifth waits in the backlog: it is served only once the idle four are cut.
    let start = Instant::now();
    let r = s
        .client
        .get(s.url("/healthz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        took >= Duration::from_millis(1500),
        "served after {took:?}: the limit of 4 did not hold"
    );
    assert!(took < Duration::from_secs(20), "served only after {took:?}");
    // The idle ones were closed by the server.
    for mut c in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("an idle connection was left open");
        assert!(n.map_or(true, |n| n == 0 || !buf.starts_with(b"HTTP/1.1 200")));
    }
    s.stop().await;
}

/// Let this test process hold 1,000 descriptors (both ends of 500 connections).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(8192).max(lim.rlim_cur);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(lim.rlim_cur >= 1200, "RLIMIT_NOFILE is {}", lim.rlim_cur);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_connections_do_not_delay_an_ordinary_client() {
    raise_fd_limit();
    // The default limits: 512 connections, a 10 s header timeout.
    let s = server(Limits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(addr(&s)).await.unwrap());
    }
    let start = Instant::now();
    let r = s
        .client
        .get(s.url("/"))
        .bearer_auth(s.token(Scope::Read))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    // Well before the header timeout would have freed a slot.
    assert!(took < Duration::from_secs(8), "served only after {took:?}");
    drop(idle);
    s.stop().await;
}
