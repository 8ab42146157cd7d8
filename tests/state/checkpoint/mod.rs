//! Checkpoints and restores of a real directory tree against real storage: the local-directory
//! backend, moto, and s3s-fs (which checks signatures). Every case runs on the first two, all
//! but the racing GC case on s3s-fs.

use crate::common;

mod crash;
mod fixture;
mod gc;
mod roundtrip;
mod safety;
mod tree;

use fixture::Fx;
use state_manager::checkpoint::{CheckpointEngine, CreateRequest, EngineOptions};

/// One test per case on the local directory and moto; the cases after `;` also on s3s-fs
/// (which checks signatures). Before it: GC racing checkpoints of other nodes, since s3s-fs's
/// conditional writes are not atomic under a race.
macro_rules! on_every_backend {
    ($($rm:ident :: $race:ident),* ; $($module:ident :: $case:ident),* $(,)?) => {
        on_every_backend!(@each local, local, $($rm::$race,)* $($module::$case,)*);
        on_every_backend!(@each s3, moto, $($rm::$race,)* $($module::$case,)*);
        on_every_backend!(@each s3s, s3s, $($module::$case,)*);
    };
    (@each $name:ident, $make:ident, $($module:ident :: $case:ident,)*) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::common::backend::Backend::$make();
                    crate::checkpoint::$module::$case(crate::checkpoint::Fx::new(backend).await).await
                }
            )*
        }
    };
}

on_every_backend!(
    gc::gc_races_checkpoints;
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
