//! History sinks against real HTTP receivers on 127.0.0.1, fed by a supervisor with real
//! processes.

use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::{Json, Router, extract::State, routing::post};
use common::wait_for_async;
use state_manager::config::{self, WebhookConfig};
use state_manager::events::{Event, StateName};
use state_manager::feed::Feed;
use state_manager::supervisor::{self, Options, SupervisorHandle};
use state_manager::webhooks;
use tokio::sync::broadcast;

const LONG: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Got {
    batches: Vec<Vec<Event>>,
    auth: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Got>>;

async fn serve_on(l: tokio::net::TcpListener, got: Shared) {
    let app =
        Router::new()
            .route(
                "/hook",
                post(
                    |State(got): State<Shared>,
                     headers: HeaderMap,
                     Json(batch): Json<Vec<Event>>| async move {
                        let mut g = got.lock().unwrap();
                        g.batches.push(batch);
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        g.auth.push(auth);
                    },
                ),
            )
            .with_state(got);
    tokio::spawn(async move { axum::serve(l, app).await });
}

/// A supervisor with no processes yet, a subscription to its events, and the feed it
/// publishes on (what the sinks read).
fn supervisor() -> (SupervisorHandle, broadcast::Receiver<Arc<Event>>, Feed) {
    let (feed, _durable) = Feed::new();
    let h = supervisor::start(Options {
        forward_output: false,
        feed: Some(feed.clone()),
        ..Options::default()
    });
    let rx = h.subscribe();
    (h, rx, feed)
}

async fn load(h: &SupervisorHandle, json: &str) {
    let c = config::parse(json).unwrap_or_else(|e| panic!("{e}"));
    h.load(config::resolve(&c, Path::new("/"))).await.unwrap();
}

/// Events up to and including the first `fatal` one.
async fn until_fatal(rx: &mut broadcast::Receiver<Arc<Event>>) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a fatal event in time")
            .expect("the event stream");
        let fatal = e.to == StateName::Fatal;
        seen.push(Arc::unwrap_or_clone(e));
        if fatal {
            return seen;
        }
    }
}

/// A process that crashes at once `restarts` + 1 times, then is fatal.
fn crash_loop(restarts: u32) -> String {
    format!(
        r#"{{"stacks": [{{"name": "c", "command": "sh", "args": ["-c", "exit 3"], "restart_delay": "1ms", "backoff_max": "1ms", "max_restarts": {restarts}}}]}}"#
    )
}

fn hook(url: String, batch_size: u32, queue_capacity: u32) -> WebhookConfig {
    WebhookConfig {
        url,
        authorization: Some("Bearer t0ken".into()),
        batch_size,
        batch_interval: config::Dur::millis(20),
        queue_capacity,
        timeout: config::Dur::millis(500),
    }
}

#[tokio::test]
async fn a_receiver_gets_every_event_in_order_with_the_authorization_header() {
    let got: Shared = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    serve_on(l, got.clone()).await;
    let (h, mut rx, feed) = supervisor();
    let sink = webhooks::start(&hook(url, 3, 1000), feed.subscribe()).unwrap();
    load(&h, &crash_loop(8)).await;
    let expected = until_fatal(&mut rx).await;
    let received = wait_for_async("every event delivered", LONG, || async {
        let g = got.lock().unwrap();
        let all: Vec<Event> = g.batches.iter().flatten().cloned().collect();
        (all.len() >= expected.len()).then_some(all)
    })
    .await;
    assert_eq!(received, expected, "every event, in order, once");
    {
        let g = got.lock().unwrap();
        assert!(g.batches.iter().all(|b| !b.is_empty() && b.len() <= 3));
        assert!(g.auth.iter().all(|a| a.as_deref() == Some("Bearer t0ken")));
    }
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.dropped), (expected.len() as u64, 0));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_is_down_does_not_block_the_supervisor_and_drops_are_counted() {
    // Nothing listens on this port until the end of the test.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (h, mut rx, feed) = supervisor();
    let sink = webhooks::start(&hook(url, 2, 4), feed.subscribe()).unwrap();
    load(&h, &crash_loop(20)).await;
    // The supervisor goes through every restart to fatal while the receiver is down.
    let all = until_fatal(&mut rx).await;
    assert!(all.len() > 40, "{}", all.len());
    let info = h.get("c").await.unwrap();
    assert_eq!((info.state, info.restarts), (StateName::Fatal, 20));
    let stats = wait_for_async("drops and failures counted", LONG, || async {
        let s = sink.stats();
        (s.dropped > 0 && s.failed > 0).then_some(s)
    })
    .await;
    assert!(stats.queued <= 4, "{stats:?}");
    assert_eq!(stats.sent, 0);
    // The receiver comes up: what is still queued (the newest events) is delivered.
    let got: Shared = Arc::default();
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    serve_on(l, got.clone()).await;
    let received = wait_for_async("the queued events delivered", LONG, || async {
        let g = got.lock().unwrap();
        let all: Vec<Event> = g.batches.iter().flatten().cloned().collect();
        all.last()
            .is_some_and(|e| e.to == StateName::Fatal)
            .then_some(all)
    })
    .await;
    assert!(
        received.len() <= 4 + 2,
        "at most the queue and one batch: {}",
        received.len()
    );
    assert_eq!(
        &all[all.len() - received.len()..],
        &received[..],
        "the newest, in order"
    );
    let stats = sink.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.sent + stats.dropped, all.len() as u64, "{stats:?}");
    h.shutdown().await.unwrap();
}
