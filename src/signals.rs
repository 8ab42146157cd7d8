//! The signals state-manager itself receives, for both ways of running it (`serve` and `run`):
//! SIGTERM and SIGINT end it ([`termination`]); SIGUSR1 and SIGUSR2 are passed on to every
//! supervised process group ([`forward`]), and so is SIGHUP in `run` mode; in `serve` mode
//! SIGHUP asks for a reload of the config file instead (the convention of supervisord, nginx
//! and Prometheus).

use std::future::Future;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::supervisor::SupervisorHandle;

/// Forward SIGHUP, SIGUSR1 and SIGUSR2 to every supervised process group; with `reload`,
/// SIGHUP is sent there instead (each one a request to reload the config file).
pub fn forward(
    handle: SupervisorHandle,
    reload: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
        ) else {
            tracing::warn!("cannot listen for SIGHUP/SIGUSR1/SIGUSR2; they will not be forwarded");
            return;
        };
        loop {
            let sig = tokio::select! {
                Some(()) = hup.recv() => Signal::SIGHUP,
                Some(()) = usr1.recv() => Signal::SIGUSR1,
                Some(()) = usr2.recv() => Signal::SIGUSR2,
                else => break,
            };
            if let (Signal::SIGHUP, Some(tx)) = (sig, &reload) {
                tracing::info!("SIGHUP: reloading the config file");
                let _ = tx.send(());
                continue;
            }
            tracing::info!("forwarding {sig} to all processes");
            handle.signal(sig).await;
        }
    })
}

/// Resolves with the exit code for the first SIGTERM (143) or SIGINT (130). Registers the
/// handlers at once, so a signal that arrives before it is awaited is not lost.
pub fn termination() -> std::io::Result<impl Future<Output = i32>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        }
    })
}
