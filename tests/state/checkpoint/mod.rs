//! Checkpoints and restores of a real directory tree against real storage: the local-directory
//! backend and S3 (a real moto server). Every case runs on both.

use crate::common;

mod crash;
mod fixture;
mod gc;
mod roundtrip;
mod safety;
mod tree;

use fixture::Fx;
use state_manager::checkpoint::{CheckpointEngine, CreateRequest, EngineOptions};

macro_rules! on_every_backend {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::checkpoint::$module::$case(crate::checkpoint::Fx::new(crate::common::backend::Backend::local()).await).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::checkpoint::$module::$case(crate::checkpoint::Fx::new(crate::common::backend::Backend::moto()).await).await
                }
            )*
        }
    };
}

on_every_backend!(
    roundtrip::round_trip,
    roundtrip::incremental,
    roundtrip::excludes,
    safety::bad_ids_and_manifests,
    safety::corrupt_chunk,
    safety::hostile_manifests,
    safety::freezer_always_thawed,
    safety::busy,
    safety::swap_recovery,
    gc::gc_keeps_referenced_chunks,
    gc::gc_grace_period,
    gc::gc_defers_to_running_checkpoint,
    gc::cache_revalidated_after_gc,
    gc::gc_races_checkpoints,
    gc::retention,
    crash::killed_mid_checkpoint,
);

/// The checkpoint that `crash::killed_mid_checkpoint` kills; does nothing when run on its own.
#[tokio::test]
#[ignore = "run as a child process by crash::killed_mid_checkpoint"]
async fn checkpoint_child_process() {
    let Ok(spec) = std::env::var(crash::CHILD_SPEC) else {
        return;
    };
    let spec: crash::ChildSpec = serde_json::from_str(&spec).unwrap();
    let store = state_manager::objstore::open(Some(&spec.storage), &spec.state_dir)
        .await
        .unwrap();
    let opts = EngineOptions {
        concurrency: 1,
        ..EngineOptions::default()
    };
    let engine = CheckpointEngine::new(store, spec.env_dir, spec.state_dir, opts).unwrap();
    engine.recover().await.unwrap();
    engine.create(CreateRequest::default()).await.unwrap();
}
