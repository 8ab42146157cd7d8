//! A checkpoint killed with SIGKILL in the middle of its upload, in a real separate process
//! (this test binary, re-executed to run `checkpoint_child_process`).

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_manager::checkpoint::CheckpointEngine;
use state_manager::config::StorageConfig;

use super::fixture::Fx;
use super::{common, roundtrip, tree};

/// What the child process of [`killed_mid_checkpoint`] works on.
#[derive(Serialize, Deserialize)]
pub struct ChildSpec {
    pub storage: StorageConfig,
    pub env_dir: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
}

pub const CHILD_SPEC: &str = "CHECKPOINT_TEST_CHILD_SPEC";

/// kill -9 of a process in the middle of uploading a checkpoint: nothing is listed, the next
/// start clears its marker, and a later checkpoint works.
pub async fn killed_mid_checkpoint(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    for i in 0..4 {
        tree::write_random(&env.join(format!("f{i}.bin")), 64 * 1024 * 1024, i);
    }
    let spec = ChildSpec {
        storage: fx.storage.clone(),
        env_dir: env.clone(),
        state_dir: fx.state("a"),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "checkpoint::checkpoint_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_SPEC, serde_json::to_string(&spec).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_async(
        "the child to upload some chunks",
        Duration::from_secs(120),
        || async { (fx.keys("chunks/").await.len() >= 2).then_some(()) },
    )
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();

    let marker_left = fx.keys("checkpoints/").await;
    assert!(
        marker_left.iter().all(|k| k.ends_with("/pending.json")) && marker_left.len() == 1,
        "{marker_left:?}"
    );
    let a = CheckpointEngine::new(fx.store.clone(), &env, fx.state("a"), Fx::options()).unwrap();
    assert!(
        a.list().await.unwrap().is_empty(),
        "a killed checkpoint is not listed"
    );
    assert_eq!(a.recover().await.unwrap().markers_removed, 1);
    let s = roundtrip::take(&a).await;
    assert_eq!(a.list().await.unwrap().len(), 1);
    assert!(a.gc().await.unwrap().deferred_by.is_none());
    let expected = tree::describe(&env);
    fs::remove_dir_all(&env).unwrap();
    roundtrip::restore(&a, s.id.as_str()).await;
    tree::assert_same_tree(&expected, &tree::describe(&env));
}
