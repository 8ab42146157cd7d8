//! The connections under the API: how many are served at once, how long a client may take to
//! send a request's head and its body, and the accept loop that applies both, with a graceful
//! shutdown (stop accepting, let every open connection finish its request, then return).
//!
//! Invariants: at most [`Limits::max_connections`] connections are open; a further client waits
//! in the listen backlog until one closes, so an idle crowd delays it by at most the header
//! timeout. A connection that has not sent a whole request head within
//! [`Limits::header_read_timeout`] (its first request, or the next one on a kept-alive
//! connection) is closed; a body not read whole within [`Limits::body_read_timeout`] is a 408
//! (read in `extract.rs`). HTTP/1.1 only (h2c would bypass the header timeout), without
//! upgrades: no route needs one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits of the API server. The defaults are what `serve` uses; tests shrink them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time from the start of a request (or of waiting for the next one on a kept-alive
    /// connection) until its whole head has arrived; then the connection is closed.
    pub header_read_timeout: Duration,
    /// Time to read a request's whole body; then the request is answered 408.
    pub body_read_timeout: Duration,
}

/// Below the common `ulimit -n` of 1024 with room for the database, logs and children's pipes.
pub const MAX_CONNECTIONS: usize = 512;
/// A request head is a few hundred bytes; 10 s is ample on any link.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A body is at most 1 MiB (a config is a few kB): 30 s is ample on any link.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
        }
    }
}

/// The time allowed to read a body, as a request extension for `extract.rs`.
#[derive(Clone, Copy, Debug)]
pub struct BodyReadTimeout(pub Duration);

/// Serve `router` on `listener` within `limits` until `shutdown` resolves; then stop accepting
/// and return once every open connection has finished.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let router = router.layer(axum::Extension(BodyReadTimeout(limits.body_read_timeout)));
    // hyper's own HTTP/1 builder: hyper-util's `auto` one first waits, without a timeout, for
    // bytes that tell HTTP/1 from HTTP/2, so a silent connection would never be cut.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed accept: a client that went away is nothing; running out of descriptors or memory is
/// logged and retried after a pause, so the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
