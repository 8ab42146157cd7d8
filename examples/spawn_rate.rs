//! How fast children can be started: `cargo run --release --example spawn_rate [N]`.
use std::time::Instant;

use state_manager::proc::{self, SpawnRequest, Stdio3};

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let env = proc::child_env([]);
    let req = SpawnRequest {
        argv: vec!["sleep".into(), "1000".into()],
        env,
        cwd: None,
        stdio: Stdio3::Capture,
        die_with_parent: true,
        credentials: None,
    };
    let t = Instant::now();
    let children = futures::future::join_all((0..n).map(|_| proc::spawn(req.clone()))).await;
    println!("{n} concurrent spawns: {:?}", t.elapsed());
    for c in children.into_iter().flatten() {
        let _ = proc::signal_group(c.pid, nix::sys::signal::Signal::SIGKILL);
    }
}
