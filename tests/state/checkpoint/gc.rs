//! Listing, deletion, retention and garbage collection, including GC racing checkpoints taken
//! by another engine on the same storage.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use state_manager::checkpoint::{CheckpointError, CreateRequest, Retention};

use super::fixture::{Fx, GatedFreezer};
use super::roundtrip::{restore, take};
use super::tree::{assert_same_tree, describe, write_random};

fn small_tree(env: &std::path::Path, seed: u64) {
    fs::create_dir_all(env).unwrap();
    write_random(&env.join("a.bin"), 3 * 1024 * 1024, seed);
    write_random(&env.join("b.bin"), 2 * 1024 * 1024, seed + 100);
    fs::write(env.join("small.txt"), format!("small {seed}")).unwrap();
}

/// GC deletes exactly the chunks no remaining manifest references.
pub async fn gc_keeps_referenced_chunks(fx: Fx) {
    let env = fx.env("a");
    small_tree(&env, 1);
    let a = fx.engine("a").await;
    let first = take(&a).await;
    write_random(&env.join("a.bin"), 3 * 1024 * 1024, 77);
    let second = take(&a).await;
    let expected = describe(&env);
    let listed = a.list().await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        [second.id.clone(), first.id.clone()]
    );

    let nothing = a.gc().await.unwrap();
    assert_eq!(nothing.chunks_deleted, 0, "{nothing:?}");
    a.delete(first.id.as_str()).await.unwrap();
    let report = a.gc().await.unwrap();
    assert_eq!(report.manifests, 1);
    assert!(
        report.chunks_deleted >= 2,
        "the old a.bin chunks go: {report:?}"
    );
    assert_eq!(
        fx.keys("chunks/").await.len() as u64,
        report.chunks_seen - report.chunks_deleted
    );
    fs::remove_dir_all(&env).unwrap();
    restore(&a, second.id.as_str()).await;
    assert_same_tree(&expected, &describe(&env));
}

/// Chunks younger than the grace period survive GC even when unreferenced.
pub async fn gc_grace_period(fx: Fx) {
    small_tree(&fx.env("a"), 2);
    let opts = state_manager::checkpoint::EngineOptions {
        gc_grace: Duration::from_secs(3600),
        ..Fx::options()
    };
    let a = fx.engine_with("a", opts).await;
    let s = take(&a).await;
    a.delete(s.id.as_str()).await.unwrap();
    let report = a.gc().await.unwrap();
    assert_eq!(
        (report.chunks_deleted, report.chunks_seen > 0),
        (0, true),
        "{report:?}"
    );
}

/// A GC that runs while another node's checkpoint is in flight deletes nothing — even chunks
/// that are unreferenced right now but that the checkpoint is about to reuse.
pub async fn gc_defers_to_running_checkpoint(fx: Fx) {
    let env = fx.env("a");
    small_tree(&env, 3);
    let a = Arc::new(fx.engine("a").await);
    let old = take(&a).await;
    a.delete(old.id.as_str()).await.unwrap();
    let chunks_before = fx.keys("chunks/").await;

    let gated = GatedFreezer::new();
    let frozen = gated.frozen.notified();
    let running = {
        let (a, g) = (a.clone(), gated.clone());
        tokio::spawn(async move {
            a.create(CreateRequest {
                freezer: Some(g),
                ..Default::default()
            })
            .await
        })
    };
    frozen.await;
    let other_node = fx.engine("gc-node").await;
    let report = other_node.gc().await.unwrap();
    assert!(report.deferred_by.is_some(), "{report:?}");
    assert_eq!(fx.keys("chunks/").await, chunks_before);
    gated.release.add_permits(1);
    let s = running.await.unwrap().unwrap();
    assert_eq!(s.chunks_new, 0, "the known chunks were reused: {s:?}");
    let expected = describe(&env);
    fs::remove_dir_all(&env).unwrap();
    restore(&a, s.id.as_str()).await;
    assert_same_tree(&expected, &describe(&env));
}

/// After another node's GC removed chunks this node believes are stored, the next checkpoint
/// uploads them again instead of trusting its cache.
pub async fn cache_revalidated_after_gc(fx: Fx) {
    let env = fx.env("a");
    small_tree(&env, 4);
    let a = fx.engine("a").await;
    let old = take(&a).await;
    a.delete(old.id.as_str()).await.unwrap();
    let report = fx.engine("gc-node").await.gc().await.unwrap();
    assert!(report.chunks_deleted >= 3, "{report:?}");
    let s = take(&a).await;
    assert!(
        s.chunks_new >= 3,
        "deleted chunks are uploaded again: {s:?}"
    );
    let expected = describe(&env);
    fs::remove_dir_all(&env).unwrap();
    restore(&a, s.id.as_str()).await;
    assert_same_tree(&expected, &describe(&env));
}

/// Checkpoints, deletions and GCs from two engines interleave freely; every checkpoint that
/// was reported taken stays restorable.
pub async fn gc_races_checkpoints(fx: Fx) {
    let env = fx.env("a");
    small_tree(&env, 5);
    let a = Arc::new(fx.engine("a").await);
    let gc_node = Arc::new(fx.engine("gc-node").await);
    let mut previous = take(&a).await;
    for round in 0..6u64 {
        write_random(&env.join("b.bin"), 2 * 1024 * 1024, 1000 + round % 2);
        a.delete(previous.id.as_str()).await.unwrap();
        let (a2, g2) = (a.clone(), gc_node.clone());
        let create = tokio::spawn(async move { a2.create(CreateRequest::default()).await });
        let gc = tokio::spawn(async move { g2.gc().await });
        let taken = create.await.unwrap().unwrap();
        match gc.await.unwrap() {
            Ok(_) | Err(CheckpointError::GcBusy { .. }) => {}
            Err(e) => panic!("round {round}: gc failed: {e}"),
        }
        let expected = describe(&env);
        let m = a.load_manifest(taken.id.as_str()).await.unwrap();
        for c in m
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                state_manager::checkpoint::EntryKind::File { chunks, .. } => Some(chunks),
                _ => None,
            })
            .flatten()
        {
            assert!(
                fx.store.head(&c.hash.key()).await.unwrap().is_some(),
                "round {round}: chunk {} was deleted",
                c.hash
            );
        }
        restore(&a, taken.id.as_str()).await;
        assert_same_tree(&expected, &describe(&env));
        previous = taken;
    }
}

/// Retention keeps the newest `keep_last` and everything younger than `keep_within`.
pub async fn retention(fx: Fx) {
    fs::create_dir_all(fx.env("a")).unwrap();
    let a = fx.engine("a").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        fs::write(fx.env("a").join("f"), format!("{i}")).unwrap();
        ids.push(take(&a).await.id);
    }
    let now = time::OffsetDateTime::now_utc();
    let keep_all_young = Retention {
        keep_last: Some(1),
        keep_within: Some(Duration::from_secs(3600)),
    };
    assert!(
        a.apply_retention(&keep_all_young, now)
            .await
            .unwrap()
            .is_empty()
    );
    let deleted = a
        .apply_retention(
            &Retention {
                keep_last: Some(2),
                keep_within: None,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(deleted, [ids[1].clone(), ids[0].clone()]);
    let left: Vec<_> = a.list().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(left, [ids[3].clone(), ids[2].clone()]);
    let later = now + time::Duration::hours(2);
    let deleted = a
        .apply_retention(
            &Retention {
                keep_last: Some(0),
                keep_within: Some(Duration::from_secs(60)),
            },
            later,
        )
        .await
        .unwrap();
    assert_eq!(deleted, [ids[2].clone()], "the newest is always kept");
}
