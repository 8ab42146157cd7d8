//! A supervisor started in the test process from a JSON config, with its event stream.

use std::path::Path;
use std::sync::Arc;

use state_manager::config::{self, ProcessSpec};
use state_manager::events::Event;
use state_manager::supervisor::{self, Options, SupervisorHandle};
use tokio::sync::broadcast;

/// The processes of a config given as JSON (string stacks would resolve under a missing dir).
pub fn specs(json: &str) -> Vec<Arc<ProcessSpec>> {
    let c = config::parse(json).unwrap_or_else(|e| panic!("{e}"));
    config::resolve(&c, Path::new("/nonexistent"))
}

/// A supervisor running the processes of `json`, subscribed before they start.
pub async fn start(json: &str) -> (SupervisorHandle, broadcast::Receiver<Arc<Event>>) {
    start_with(
        json,
        Options {
            forward_output: false,
            ..Options::default()
        },
    )
    .await
}

/// [`start`] with the supervisor's options given.
pub async fn start_with(
    json: &str,
    options: Options,
) -> (SupervisorHandle, broadcast::Receiver<Arc<Event>>) {
    let h = supervisor::start(options);
    let rx = h.subscribe();
    h.load(specs(json)).await.unwrap();
    (h, rx)
}
