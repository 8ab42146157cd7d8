//! Failures that must leave everything as it was: bad ids, corrupt or missing chunks, hostile
//! manifests, a freezer that must be thawed whatever happens, concurrent requests.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use state_manager::checkpoint::{
    CheckpointError, CheckpointId, CreateRequest, Entry, EntryKind, Freezer, Manifest, Meta,
};

use super::fixture::{CountingFreezer, Fx, GatedFreezer};
use super::roundtrip::take;
use super::tree::{assert_same_tree, describe, mixed_tree};
use crate::common::wait_for_async;

/// Unknown, malformed and unreadable checkpoints are told apart before anything is touched.
pub async fn bad_ids_and_manifests(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    let a = fx.engine("a").await;
    let unknown = CheckpointId::generate(time::OffsetDateTime::now_utc());
    let e = a.load_manifest(unknown.as_str()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = a.load_manifest("../../lease.json").await.unwrap_err();
    assert!(matches!(e, CheckpointError::InvalidId { .. }), "{e}");
    fx.store
        .put(&Manifest::key(&unknown), Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let e = a.load_manifest(unknown.as_str()).await.unwrap_err();
    assert!(matches!(e, CheckpointError::Unreadable { .. }), "{e}");
    assert!(matches!(
        a.delete(CheckpointId::generate(time::OffsetDateTime::now_utc()).as_str())
            .await,
        Err(CheckpointError::NotFound { .. })
    ));
}

/// A chunk whose bytes do not match its hash, or that is gone, fails the restore and leaves
/// env_dir untouched.
pub async fn corrupt_chunk(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    mixed_tree(&env);
    let a = fx.engine("a").await;
    let s = take(&a).await;
    fs::write(env.join("after-checkpoint"), "must survive").unwrap();
    let before = describe(&env);
    let chunks = fx.keys("chunks/").await;
    let m = a.load_manifest(s.id.as_str()).await.unwrap();

    let other = zstd::bulk::compress(b"some other content", 3).unwrap();
    fx.store.put(&chunks[0], Bytes::from(other)).await.unwrap();
    let e = a.restore(&m).await.unwrap_err();
    assert!(matches!(e, CheckpointError::CorruptChunk { .. }), "{e}");
    assert_same_tree(&before, &describe(&env));

    fx.store
        .put(&chunks[0], Bytes::from_static(b"not zstd at all"))
        .await
        .unwrap();
    let e = a.restore(&m).await.unwrap_err();
    assert!(matches!(e, CheckpointError::CorruptChunk { .. }), "{e}");

    fx.store.delete(&chunks[0]).await.unwrap();
    let e = a.restore(&m).await.unwrap_err();
    assert!(matches!(e, CheckpointError::MissingChunk { .. }), "{e}");
    assert_same_tree(&before, &describe(&env));
    let beside: Vec<_> = fs::read_dir(env.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 2, "no staging left beside env_dir");
}

/// Manifests naming paths outside the tree, or entries under a symlink, are rejected at load
/// and at restore, before any write.
pub async fn hostile_manifests(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    fs::write(env.join("f"), "content").unwrap();
    let a = fx.engine("a").await;
    let good = a.load_manifest(take(&a).await.id.as_str()).await.unwrap();
    let before = describe(fx.dir.path());
    let meta = good.entries[0].meta;
    let dir = |p: &str| Entry {
        path: p.into(),
        meta,
        kind: EntryKind::Dir,
    };
    let link = |p: &str, t: &str| Entry {
        path: p.into(),
        meta,
        kind: EntryKind::Symlink { target: t.into() },
    };
    let file = |p: &str| Entry {
        path: p.into(),
        meta,
        kind: good.entries[0].kind.clone(),
    };
    let cases: Vec<Vec<Entry>> = vec![
        vec![file("../escaped")],
        vec![file("/tmp/absolute")],
        vec![dir("a"), file("a/../../escaped")],
        vec![file("./f")],
        vec![file("a//b")],
        vec![file("nul\0byte")],
        vec![link("l", "/tmp"), file("l/through-link")],
        vec![file("f"), file("f/under-file")],
        vec![file("missing-parent/f")],
        vec![file("f"), file("f")],
    ];
    for entries in cases {
        let id = CheckpointId::generate(time::OffsetDateTime::now_utc());
        let crafted = Manifest {
            id: id.clone(),
            entries: entries.clone(),
            ..good.clone()
        };
        fx.store
            .put(
                &Manifest::key(&id),
                Bytes::from(serde_json::to_vec(&crafted).unwrap()),
            )
            .await
            .unwrap();
        let e = a.load_manifest(id.as_str()).await.unwrap_err();
        assert!(
            matches!(e, CheckpointError::Unreadable { .. }),
            "{entries:?}: {e}"
        );
        let e = a.restore(&crafted).await.unwrap_err();
        assert!(
            matches!(e, CheckpointError::Unreadable { .. }),
            "{entries:?}: {e}"
        );
    }
    let bad_mode = Manifest {
        root: Meta {
            mode: 0o170777,
            ..good.root
        },
        ..good.clone()
    };
    assert!(matches!(
        a.restore(&bad_mode).await,
        Err(CheckpointError::Unreadable { .. })
    ));
    let after = describe(fx.dir.path());
    let only_objects_changed = |t: &std::collections::BTreeMap<String, super::tree::Node>| {
        t.iter()
            .filter(|(k, _)| !k.starts_with("objects"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(only_objects_changed(&before), only_objects_changed(&after));
}

/// The freezer is thawed when the frozen work fails, when the freeze itself fails and when the
/// checkpoint is abandoned mid-window; a failed checkpoint leaves no manifest.
pub async fn freezer_always_thawed(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    fs::write(env.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name")), "x").unwrap();
    let a = fx.engine("a").await;
    let counting = Arc::new(CountingFreezer::default());
    let req = |f: Arc<dyn Freezer>| CreateRequest {
        freezer: Some(f),
        ..CreateRequest::default()
    };
    let e = a.create(req(counting.clone())).await.unwrap_err();
    assert!(matches!(e, CheckpointError::NonUtf8Path { .. }), "{e}");
    assert_eq!(
        (
            counting.freezes.load(Ordering::SeqCst),
            counting.thaws.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    let failing = Arc::new(CountingFreezer {
        fail_freeze: true,
        ..CountingFreezer::default()
    });
    let e = a.create(req(failing.clone())).await.unwrap_err();
    assert!(matches!(e, CheckpointError::Freeze { .. }), "{e}");
    assert_eq!(failing.thaws.load(Ordering::SeqCst), 1);

    let gated = GatedFreezer::new();
    let frozen = gated.frozen.notified();
    let pending = a.create(req(gated.clone()));
    tokio::select! {
        _ = pending => panic!("the gated checkpoint cannot finish"),
        _ = frozen => {}
    }
    wait_for_async(
        "thaw after the checkpoint was dropped",
        Duration::from_secs(30),
        || async { (gated.thaws.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    wait_for_async(
        "the abandoned checkpoint's marker to go",
        Duration::from_secs(30),
        || async {
            fx.store
                .list("checkpoints/")
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert!(a.list().await.unwrap().is_empty());
}

/// A second checkpoint or a restore while one runs is refused with `Busy`.
pub async fn busy(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    let a = Arc::new(fx.engine("a").await);
    let first = take(&a).await;
    let manifest = a.load_manifest(first.id.as_str()).await.unwrap();
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
    assert!(matches!(
        a.create(CreateRequest::default()).await,
        Err(CheckpointError::Busy)
    ));
    assert!(matches!(
        a.restore(&manifest).await,
        Err(CheckpointError::Busy)
    ));
    gated.release.add_permits(1);
    running.await.unwrap().unwrap();
    assert_eq!(a.list().await.unwrap().len(), 2);
}

/// A crash between the two renames of the fallback swap is completed by `recover`.
pub async fn swap_recovery(fx: Fx) {
    let env = fx.env("a");
    fs::create_dir_all(&env).unwrap();
    fs::write(env.join("old"), "old tree").unwrap();
    let parent = env.parent().unwrap();
    let staging = parent.join(".env.restore-staging");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("new"), "new tree").unwrap();
    fs::create_dir_all(fx.state("a")).unwrap();
    // What a crash after `env_dir → aside` and before `staging → env_dir` leaves behind.
    fs::write(
        fx.state("a").join("restore-journal.json"),
        "{\"phase\":\"swapping\"}",
    )
    .unwrap();
    fs::rename(&env, parent.join(".env.restore-aside")).unwrap();
    let a = state_manager::checkpoint::CheckpointEngine::new(
        fx.store.clone(),
        &env,
        fx.state("a"),
        Fx::options(),
    )
    .unwrap();
    let r = a.recover().await.unwrap();
    assert!(r.completed_swap && !r.rolled_back, "{r:?}");
    assert_eq!(fs::read_to_string(env.join("new")).unwrap(), "new tree");
    assert!(!env.join("old").exists());
    let beside: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    assert!(!fx.state("a").join("restore-journal.json").exists());
}
